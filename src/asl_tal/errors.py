"""The error type of inputs a user gave that cannot work (shown as one ``error:`` line)."""


class UserInputError(ValueError):
    """A command-line input that cannot work (the message says why and what to do)."""
