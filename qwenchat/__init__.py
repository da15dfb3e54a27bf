"""qwenchat: a terminal chat for Hugging Face chat models."""

__version__ = "0.1.0"
