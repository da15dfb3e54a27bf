"""One chat: the headless session and what it needs (observer, context fitting, attachments, model switch)."""
