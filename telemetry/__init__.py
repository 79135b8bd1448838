"""telemetry: the data in: series, labels, their events, loading, checks, splits, scaling and windows.

The generators of synthetic data in the same shapes are in ``telemetry.synthetic``; what turns
scores into decisions and scores decisions is in the ``detection`` package. Imports none of
telesweep's other packages (detection, models, search, ensemble depend on it). Rules that
several layers apply live here once: window lengths and nominal windows in ``windows``, input
checks in ``checks``.
"""
from telemetry.errors import TelemetryError
from telemetry.series import Series

__all__ = ["TelemetryError", "Series"]
