"""The ensemble of a sweep over unlabelled data: calibrated members, their mean, one unsupervised threshold.

Without labels nothing can be fitted against detections (no weights, no F0.5-chosen threshold or
smoothing), so every choice here is fixed in advance:

1. each member's validation scores calibrated to robust z (median, 1.4826 MAD) over *all*
   validation rows (no labels say which are nominal; the median and MAD ignore the few anomalous
   ones);
2. the plain mean of the calibrated members;
3. one threshold rule fitted on the validation ensemble score by an unsupervised method: by
   default ``pot`` (the extreme-value tail of the validation scores at ``risk`` 1e-3: about one row
   in a thousand of data like validation's is flagged); ``percentile`` and ``ndt`` also work.

Per channel, when the members stored per-channel scores: each channel's score is the mean over
those members of their calibrated channel-``c`` scores, with its own rule of the same kind; the
margins (score minus that channel's threshold) name the channels behind each flagged event.

``segments`` (``fit``: validation's; the rest: that split's) are the boundaries of the independent
series the rows are made of (telemetry.series): no rule smooths or extends an event across one.
"""
from __future__ import annotations

import numpy as np

from ensemble.calibration import Calibrator
from ensemble.combine import channel_margins
from telemetry.errors import TelemetryError
from telemetry.series import checked_offsets
from detection.thresholds import Threshold

DEFAULT_RULE = {"method": "pot", "risk": 1e-3}


class UnsupervisedEnsemble:
    def __init__(self, calibration: str = "robust_z", rule: dict | None = None, seed: int = 0):
        self.calibration = calibration
        self.rule = dict(DEFAULT_RULE if rule is None else rule)
        if Threshold(**self.rule).method in Threshold.LABELLED:
            raise TelemetryError(f"threshold method {self.rule['method']} needs labels; use pot, percentile or ndt")
        self.seed = seed

    # -- the combined score ---------------------------------------------------------------------
    def calibrated(self, scores: np.ndarray) -> np.ndarray:
        return np.stack([c.transform(scores[:, j]) for j, c in enumerate(self.calibrators_)], axis=1)

    def score(self, scores: np.ndarray, channel_scores=None, segments=None) -> np.ndarray:
        return self.calibrated(np.asarray(scores)).mean(axis=1).astype(np.float32)

    def decision_score(self, scores: np.ndarray, channel_scores=None, segments=None) -> np.ndarray:
        return self.rule_.smoothed(self.score(scores), segments)

    def predict(self, scores: np.ndarray, channel_scores=None, segments=None) -> np.ndarray:
        return self.rule_.predict(self.score(scores), segments)

    def fit(self, scores: np.ndarray, names=None, channel_scores: np.ndarray | None = None, channel_members=None,
            channels=None, segments=None) -> "UnsupervisedEnsemble":
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[0] < 2:
            raise TelemetryError(f"the ensemble needs validation scores [rows, members], got {list(scores.shape)}")
        segments = checked_offsets(segments, scores.shape[0], "validation scores")
        self.names_ = list(names) if names is not None else [f"member_{j}" for j in range(scores.shape[1])]
        self.calibrators_ = [Calibrator(self.calibration).fit(scores[:, j]) for j in range(scores.shape[1])]
        self.rule_ = Threshold(**{**self.rule, "seed": self.seed}).fit(self.score(scores), None, segments=segments)
        self.threshold_ = self.rule_.threshold_
        self.channels_ = None
        if channel_scores is not None:
            cs = np.asarray(channel_scores, dtype=np.float32)
            self.channels_ = [str(c) for c in channels] if channels is not None else [f"channel {k}" for k in range(cs.shape[2])]
            self.channel_members_ = list(channel_members) if channel_members is not None else list(range(cs.shape[1]))
            self.channel_calibrators_ = [[Calibrator(self.calibration).fit(cs[:, p, c]) for c in range(cs.shape[2])]
                                         for p in range(cs.shape[1])]
            e = self.channel_ensemble_scores(cs)
            self.channel_rules_ = [Threshold(**{**self.rule, "seed": self.seed}).fit(e[:, c], None, segments=segments)
                                   for c in range(cs.shape[2])]
        return self

    # -- per channel ----------------------------------------------------------------------------
    @property
    def has_channels(self) -> bool:
        return getattr(self, "channels_", None) is not None

    def channel_ensemble_scores(self, channel_scores: np.ndarray) -> np.ndarray:
        cs = np.asarray(channel_scores, dtype=np.float32)
        out = np.zeros(cs.shape[::2], dtype=np.float64)  # [rows, C]
        for p, cals in enumerate(self.channel_calibrators_):  # member by member: no [rows, P, C] copy
            out += np.stack([c.transform(cs[:, p, k]) for k, c in enumerate(cals)], axis=1)
        return (out / len(self.channel_calibrators_)).astype(np.float32)

    def channel_margins(self, channel_scores: np.ndarray, segments=None) -> np.ndarray:
        """[rows, C]: each channel's smoothed ensemble score minus its own threshold (>= 0: above it)."""
        return channel_margins(self.channel_rules_, self.channel_ensemble_scores(channel_scores), segments)

    def to_dict(self) -> dict:
        return {
            "kind": "unsupervised", "calibration": self.calibration, "combination": "mean", "seed": self.seed,
            "members": [{"name": n, "weight": 1.0 / len(self.names_), "calibration": c.to_dict()}
                        for n, c in zip(self.names_, self.calibrators_)],
            "rule": self.rule_.to_dict(),
            "channels": None if not self.has_channels else [
                {"channel": n, "threshold": float(r.threshold_)} for n, r in zip(self.channels_, self.channel_rules_)],
        }
