"""The ensemble estimator: calibrate members, combine, fit weights, threshold and post-processing.

Everything is fitted on the validation split alone; holdout and test are only transformed.
"""
from __future__ import annotations

import itertools

import numpy as np

from ensemble.calibration import Calibrator
from telemetry.errors import TelemetryError
from telemetry.thresholds import best_f05_threshold, f05_curve
from telemetry.events import postprocess

COMBINATIONS = ("mean", "max", "weighted")


def best_f05(scores: np.ndarray, labels: np.ndarray) -> float:
    """Best corrected event-wise F0.5 over every threshold (exact, one sort)."""
    return float(f05_curve(scores, labels)[1].max())


class Ensemble:
    """Members' scores [N, M] -> one score per row -> binary predictions.

    combination: ``mean`` or ``max`` of calibrated scores, or ``weighted`` mean with non-negative
    weights (summing to 1) searched with a seeded Optuna TPE on validation F0.5. The threshold and
    the post-processing (min event length, gap merging) are then chosen on validation.
    """

    def __init__(self, calibration: str = "robust_z", combination: str = "weighted", weight_trials: int = 60,
                 min_lengths=(1, 3, 10, 30), max_gaps=(0, 5, 20, 100), seed: int = 0):
        if combination not in COMBINATIONS:
            raise TelemetryError(f"unknown combination {combination!r}; choose one of {', '.join(COMBINATIONS)}")
        self.calibration = calibration
        self.combination = combination
        self.weight_trials = weight_trials
        self.min_lengths = tuple(min_lengths)
        self.max_gaps = tuple(max_gaps)
        self.seed = seed

    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        return np.stack([c.transform(scores[:, j]) for j, c in enumerate(self.calibrators_)], axis=1)

    def combine(self, calibrated: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        if self.combination == "max":
            return calibrated.max(axis=1)
        w = self.weights_ if weights is None else weights
        return (calibrated @ w).astype(np.float32)

    def score(self, scores: np.ndarray) -> np.ndarray:
        """The raw ensemble score per row."""
        return self.combine(self.calibrated(np.asarray(scores)))

    def fit(self, scores: np.ndarray, labels: np.ndarray, names=None) -> "Ensemble":
        scores = np.asarray(scores, dtype=np.float32)
        labels = np.asarray(labels).astype(np.uint8)
        if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
            raise TelemetryError(f"ensemble needs scores [rows, members] matching {labels.shape[0]} labels, got {list(scores.shape)}")
        m = scores.shape[1]
        self.names_ = list(names) if names is not None else [f"member_{j}" for j in range(m)]
        nominal = labels == 0
        self.calibrators_ = [Calibrator(self.calibration).fit(scores[:, j], nominal) for j in range(m)]
        cal = self.calibrated(scores)
        self.member_val_f05_ = [best_f05(cal[:, j], labels) for j in range(m)]
        self.weights_ = np.full(m, 1.0 / m)
        if self.combination == "weighted" and m > 1:
            self.weights_ = self._fit_weights(cal, labels)
        combined = self.combine(cal)
        best = (-1.0, None)
        for min_len, gap in itertools.product(self.min_lengths, self.max_gaps):
            t, f = best_f05_threshold(combined, labels, min_length=min_len, max_gap=gap, max_candidates=128)
            if f > best[0] + 1e-12:  # ties keep the simpler post-processing (earlier in the grid)
                best = (f, (t, min_len, gap))
        self.val_f05_, (self.threshold_, self.min_length_, self.max_gap_) = best
        return self

    def _fit_weights(self, cal: np.ndarray, labels: np.ndarray) -> np.ndarray:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        m = cal.shape[1]

        def weights_of(trial):
            raw = np.array([trial.suggest_float(f"w{j}", 0.0, 1.0) for j in range(m)])
            return raw / raw.sum() if raw.sum() > 0 else np.full(m, 1.0 / m)

        def objective(trial):
            return best_f05(cal @ weights_of(trial), labels)

        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed))
        study.enqueue_trial({f"w{j}": 1.0 for j in range(m)})  # the plain mean is always a candidate
        for j in range(m):  # and each member alone
            study.enqueue_trial({f"w{k}": float(k == j) for k in range(m)})
        study.optimize(objective, n_trials=max(self.weight_trials, m + 1))
        return weights_of(study.best_trial)

    def predict(self, scores: np.ndarray) -> np.ndarray:
        return postprocess(self.score(scores) >= self.threshold_, self.min_length_, self.max_gap_)

    def to_dict(self) -> dict:
        return {
            "calibration": self.calibration, "combination": self.combination, "seed": self.seed,
            "members": [{"name": n, "weight": float(w), "calibration": c.to_dict(), "validation_f05_alone": f}
                        for n, w, c, f in zip(self.names_, self.weights_, self.calibrators_, self.member_val_f05_)],
            "threshold": float(self.threshold_), "min_length": int(self.min_length_), "max_gap": int(self.max_gap_),
            "validation_f05": float(self.val_f05_),
        }
