"""The conversation: its data model, the versioned file format, the store, the lock, export."""
