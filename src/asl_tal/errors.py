"""The error types shown as one ``error:`` line (exit status 2, no traceback)."""


class UserInputError(ValueError):
    """A command-line input that cannot work (the message says why and what to do)."""


class OutputWriteError(OSError):
    """A result file or folder of the run cannot be written (read-only, full, blocked)."""
