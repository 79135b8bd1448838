"""detection: from per-row scores to decisions, and how decisions are scored.

Threshold rules and post-processing (``thresholds``, ``postprocess``), the challenge metric and its
intervals (``metrics``), per-series detection for many short series (``series_metrics``) and the
drift between splits (``drift``). Depends on telemetry only; models do not import it, search and
ensemble do.
"""
