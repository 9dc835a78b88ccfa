"""User-facing errors: the CLIs print them as one line, never a traceback."""


class LeanError(Exception):
    """A problem with the user's input (files, flags, data) that has a one-line explanation."""
