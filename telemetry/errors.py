"""The one error type users see for bad input: a single line naming the file, column or value."""


class TelemetryError(ValueError):
    """Bad input data or parameters. ``str(err)`` is one line, fit for a CLI error message."""

    def __init__(self, message: str):
        # Keep messages to one line whatever the caller passed in.
        super().__init__(" ".join(str(message).split()))
