"""Tool calling (`:tools`): definitions, the call parser, mocks, and the session's side of it."""
