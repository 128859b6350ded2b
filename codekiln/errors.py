"""The one error type the CLI turns into a single line and a non-zero exit."""


class UserError(ValueError):
    """Bad user input or configuration; the message says what is wrong and how to fix it."""


class PromptTooLong(UserError):
    """A prompt that leaves the model no room to generate: one problem's fault, not the
    run's (an evaluation scores it as a failure and goes on)."""
