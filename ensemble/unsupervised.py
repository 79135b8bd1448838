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
from sklearn.base import BaseEstimator, clone

from ensemble.calibration import Calibration
from ensemble.combine import BaseLayer, ChannelView, CombinedDecision
from telemetry.errors import TelemetryError
from telemetry.series import checked_offsets
from detection.thresholds import Threshold


class Mean(BaseEstimator):
    """The plain mean of the calibrated members: nothing fitted on labels. Fitted: ``weights_``
    (each member's share, for the record)."""

    method = "mean"

    def fit(self, calibrated: np.ndarray, *args, **kwargs) -> "Mean":
        m = np.asarray(calibrated).shape[1]
        self.weights_ = np.full(m, 1.0 / m)
        return self

    def transform(self, calibrated: np.ndarray) -> np.ndarray:
        return np.asarray(calibrated).mean(axis=1).astype(np.float32)


class MeanChannelView(ChannelView):
    """Each channel's score: the mean over the members of their calibrated channel scores."""

    def _combine(self, cs: np.ndarray) -> np.ndarray:
        out = np.zeros(cs.shape[::2], dtype=np.float64)  # [rows, C]
        for p, cal in enumerate(self.calibrations_):  # member by member: no [rows, P, C] copy
            out += cal.transform(cs[:, p, :])
        return (out / len(self.calibrations_)).astype(np.float32)


class UnsupervisedEnsemble(BaseLayer):
    """``calibration`` (on all validation rows) -> the mean -> ``rule``, a :class:`Threshold` of an
    unlabelled method (its ``seed`` set by the layer's ``seed``)."""

    SECTIONS = {"calibration": Calibration, "rule": Threshold}

    def __init__(self, calibration: Calibration | None = None, rule: Threshold | None = None, seed: int = 0):
        # None: a fresh default component (a shared default instance would be changed by set_params).
        self.calibration = Calibration("robust_z") if calibration is None else calibration
        self.rule = Threshold(method="pot", risk=1e-3) if rule is None else rule
        if self.rule.method in Threshold.LABELLED:
            raise TelemetryError(f"threshold method {self.rule.method} needs labels; use pot, percentile or ndt")
        self.seed = seed

    def fit(self, scores: np.ndarray, names=None, channel_scores: np.ndarray | None = None, channel_members=None,
            channels=None, segments=None) -> "UnsupervisedEnsemble":
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[0] < 2:
            raise TelemetryError(f"the ensemble needs validation scores [rows, members], got {list(scores.shape)}")
        segments = checked_offsets(segments, scores.shape[0], "validation scores")
        self.names_ = list(names) if names is not None else [f"member_{j}" for j in range(scores.shape[1])]
        calibration = clone(self.calibration).fit(scores)
        cal = calibration.transform(scores)
        mean = Mean().fit(cal)
        rule = clone(self.rule).set_params(seed=self.seed)
        rule.fit(mean.transform(cal), None, segments=segments)
        self.decision_ = CombinedDecision(calibration, mean, rule, float("nan"))
        self.channel_view_ = None
        if channel_scores is not None:
            cs = np.asarray(channel_scores, dtype=np.float32)
            names = [str(c) for c in channels] if channels is not None else [f"channel {k}" for k in range(cs.shape[2])]
            members = list(channel_members) if channel_members is not None else list(range(cs.shape[1]))
            view = MeanChannelView(members, names, np.full(cs.shape[1], 1.0 / cs.shape[1]),
                                   [clone(self.calibration).fit(cs[:, p, :]) for p in range(cs.shape[1])], "mean")
            e = view._combine(cs)
            view.rules_ = [clone(self.rule).set_params(seed=self.seed).fit(e[:, c], None, segments=segments)
                           for c in range(cs.shape[2])]
            self.channel_view_ = view
        return self

    def record(self) -> dict:
        """The fitted layer as plain data (``ensemble.yaml``'s ``ensemble``)."""
        combined = self.decision_
        return {
            "kind": "unsupervised", "calibration": self.calibration.method, "combination": "mean", "seed": self.seed,
            "members": [{"name": n, "weight": 1.0 / len(self.names_), "calibration": c.to_dict()}
                        for n, c in zip(self.names_, combined.calibration_.calibrators_)],
            "rule": combined.rule_.to_dict(),
            "channels": None if not self.has_channels else [
                {"channel": n, "threshold": float(r.threshold_)}
                for n, r in zip(self.channel_view_.channels_, self.channel_view_.rules_)],
            "layer": self.to_dict(),
        }
