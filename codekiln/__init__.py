"""codekiln: build a large language model for code, from raw repositories to an editor."""

__version__ = "0.1.0"
