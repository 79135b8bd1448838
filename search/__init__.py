"""search: Ray Tune + Optuna sweeps per architecture (imports telemetry and models).

A trial's config is ``{"arch": name, <estimator parameters>, "threshold": {<rule>}}``; the trainable
builds ``registry.get(arch)(**params)``, fits it, and scores every split with ``score_samples``.
"""
