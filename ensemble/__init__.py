"""ensemble: calibrated combination of sweep members into final predictions (imports telemetry, search)."""
