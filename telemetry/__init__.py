"""telemetry: series, labels and everything computed from them alone.

Imports none of telesweep's other packages (models, search, ensemble depend on it).
"""
from telemetry.errors import TelemetryError
from telemetry.series import Series

__all__ = ["TelemetryError", "Series"]
