"""search: Ray Tune + Optuna sweeps per architecture (imports telemetry and models)."""
