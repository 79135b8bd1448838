"""telemetry: series, labels and everything computed from them alone.

Imports none of telesweep's other packages (models, search, ensemble depend on it). Rules that
several layers apply live here once: window lengths and nominal windows in ``windows``, input
checks in ``checks``.
"""
from telemetry.errors import TelemetryError
from telemetry.series import Series

__all__ = ["TelemetryError", "Series"]
