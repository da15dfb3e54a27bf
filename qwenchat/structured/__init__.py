"""JSON-schema answers (`:json`): loading, compiling and checking a schema."""
