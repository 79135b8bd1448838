"""OptunaSearch that learns from a trial's final result only.

Ray's ``OptunaSearch.on_trial_result`` indexes ``result[metric]`` for every intermediate result and
raises ``KeyError`` (aborting ``Tuner.fit``) when it is missing, but our per-epoch reports carry
``val_loss`` for ASHA and only the last report carries ``f05``. Without an Optuna pruner the
intermediate values are unused anyway, so results without the metric are skipped. Module level so
that the searcher pickled into ``tuner.pkl`` unpickles on ``Tuner.restore``.
"""
from __future__ import annotations

from ray.tune.search.optuna import OptunaSearch


class FinalMetricOptunaSearch(OptunaSearch):
    def on_trial_result(self, trial_id: str, result: dict):
        if isinstance(self.metric, str) and self.metric not in result:
            return
        super().on_trial_result(trial_id, result)
