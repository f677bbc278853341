"""One exception type for bad user input, so callers can catch it and CLIs can print it without a traceback."""


class FastFormersError(ValueError):
    """Raised for input the user can fix; the message names the problem and the fix."""
