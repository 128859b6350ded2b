"""The one error type the CLI turns into a single line and a non-zero exit."""


class UserError(ValueError):
    """Bad user input or configuration; the message says what is wrong and how to fix it."""
