"""Decision thresholds on per-row scores, and the estimator that applies them.

Every threshold is fitted on validation (or fit-split) scores only, never on the series it is
applied to, so holdout and test never influence it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.events import events, from_events, postprocess
from telemetry.metrics import _f05_from_counts, corrected_event_f05

METHODS = ("best_f05", "percentile", "max_fit", "ndt")


def _count_ge(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, how many values are >= it (values sorted ascending)."""
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")


def f05_curve(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None):
    """Corrected event-wise F0.5 of ``scores >= t`` for every threshold ``t``, exactly, in O(N log N).

    Each count the metric needs is "how many of some precomputed values are >= t":
    - detected true events: the per-event maxima;
    - false-positive rows: the nominal rows' scores;
    - predicted runs inside nominal stretches: nominal rows minus adjacent nominal pairs
      (min of the two), the superlevel-set run count;
    - runs that touch an event through a stretch's left / right border (min of the two border rows),
      plus stretches fully above t touching events on both sides (counted twice otherwise).
    So one sort per array and a searchsorted per threshold replaces thousands of metric runs.
    Returns (thresholds, f05, precision, recall). Default thresholds: every distinct score, plus +inf.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise TelemetryError(f"{s.size} scores for {y.size} labels")
    if not np.isfinite(s).all():
        raise TelemetryError("scores contain NaN or inf")
    n = s.size
    if thresholds is None:
        thresholds = np.append(np.unique(s), np.inf)
    thresholds = np.asarray(thresholds, dtype=np.float64)

    true_ev = events(y)
    nom_ev = events(~y)  # nominal stretches [a, b)
    # reduceat spans [start, next start): masking nominal rows keeps each maximum inside its event.
    ev_max = np.maximum.reduceat(np.where(y, s, -np.inf), true_ev[:, 0]) if len(true_ev) else np.zeros(0)
    nominal_scores = s[~y]
    both_nominal = ~y[1:] & ~y[:-1]
    pair_min = np.minimum(s[1:], s[:-1])[both_nominal]
    a, b = nom_ev[:, 0], nom_ev[:, 1]
    has_left, has_right = a > 0, b < n
    left = np.minimum(s[a[has_left]], s[a[has_left] - 1])
    right = np.minimum(s[b[has_right] - 1], s[b[has_right]])
    both = has_left & has_right
    if both.any():
        seg_min = np.minimum.reduceat(np.where(~y, s, np.inf), a)  # stretch minima
        both_min = np.minimum(np.minimum(seg_min[both], s[a[both] - 1]), s[b[both]])
    else:
        both_min = np.zeros(0)

    cnt = lambda v: _count_ge(np.sort(v), thresholds)  # noqa: E731
    tp = cnt(ev_max)
    fp_rows = cnt(nominal_scores)
    fp_events = fp_rows - cnt(pair_min) - cnt(left) - cnt(right) + cnt(both_min)
    f, pr, re = _f05_from_counts(tp, len(true_ev) - tp, fp_events, fp_rows, int((~y).sum()))
    return thresholds, f, pr, re


def best_f05_threshold(scores, labels, min_length: int = 1, max_gap: int = 0, max_candidates: int = 512):
    """The threshold maximising corrected event-wise F0.5 on labelled scores; returns (threshold, f05).

    Without post-processing the sweep is exact over every distinct score (:func:`f05_curve`).
    Post-processing breaks the counting identities, so then the best ``max_candidates`` thresholds of
    the exact sweep plus evenly spaced upper quantiles are re-scored with the full metric.
    Ties go to the highest threshold (fewest alarms).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(np.uint8)
    if not y.any():
        raise TelemetryError("cannot choose an F0.5 threshold on a split without anomalies")
    thr, f, _, _ = f05_curve(s, y)
    if min_length <= 1 and max_gap <= 1:
        best = np.flatnonzero(f == f.max())[-1]
        return float(thr[best]), float(f[best])
    top = thr[np.argsort(f)[-max_candidates // 2:]]
    quant = np.quantile(s, np.linspace(0.5, 1.0, max_candidates // 2))
    cands = np.unique(np.concatenate([top, quant]))
    cands = cands[np.isfinite(cands)]
    vals = np.array([corrected_event_f05(y, postprocess(s >= t, min_length, max_gap)) for t in cands])
    best = np.flatnonzero(vals == vals.max())[-1]
    return float(cands[best]), float(vals[best])


def ndt_threshold(scores: np.ndarray, z_range=np.arange(2.0, 10.5, 0.5), p: float = 0.13):
    """Telemanom's non-parametric dynamic threshold with pruning (Hundman et al., KDD 2018).

    Picks epsilon = mean + z*std maximising (dmean/mean + dstd/std) / (n_above + n_sequences**2),
    where dmean, dstd are the drops in mean and std when rows above epsilon are removed. Then prunes:
    sorts the sequences' peaks descending with the largest nominal score appended; sequences whose
    peaks are followed only by decreases smaller than ``p`` are reclassified as nominal.
    Returns (epsilon, min_peak): flag rows >= epsilon, keep only events whose peak >= min_peak.
    """
    e = np.asarray(scores, dtype=np.float64).ravel()
    mu, sd = e.mean(), e.std()
    best_eps, best_score = None, -np.inf
    for z in z_range:
        eps = mu + z * sd
        below = e < eps
        n_above = int((~below).sum())
        if n_above == 0 or n_above >= 0.5 * e.size:
            continue
        n_seq = len(events(~below))
        d_mu = (mu - e[below].mean()) / mu if mu else 0.0
        d_sd = (sd - e[below].std()) / sd if sd else 0.0
        score = (d_mu + d_sd) / (n_above + n_seq**2)
        if score > best_score:
            best_eps, best_score = eps, score
    if best_eps is None:  # nothing stands out: flag nothing
        return float(e.max()) + 1.0, -np.inf
    ev = events(e >= best_eps)
    peaks = np.maximum.reduceat(np.where(e >= best_eps, e, -np.inf), ev[:, 0])
    nominal_max = e[e < best_eps].max() if (e < best_eps).any() else 0.0
    return float(best_eps), prune_min_peak(peaks, nominal_max, p)


def prune_min_peak(peaks: np.ndarray, nominal_max: float, p: float = 0.13) -> float:
    """Telemanom's pruning as a minimum peak: sequences whose peak is below it become nominal.

    Peaks sorted descending, the nominal maximum appended; a peak stays anomalous if it, or any
    smaller peak, is followed by a relative drop of at least ``p``.
    """
    order = np.sort(np.asarray(peaks, dtype=np.float64))[::-1]
    chain = np.append(order, nominal_max)
    drops = (chain[:-1] - chain[1:]) / np.where(chain[:-1] != 0, chain[:-1], 1.0)
    big = np.flatnonzero(drops >= p)
    return float(order[big[-1]]) if big.size else float(np.inf)


@dataclass
class Threshold:
    """A threshold rule as plain data, fitted like a scikit-learn estimator.

    method: ``best_f05`` (labelled validation), ``percentile`` (``level`` in [0, 100] of validation
    scores), ``max_fit`` (``level`` x the largest fit-split score: the keras example's rule),
    ``ndt`` (Telemanom, ``level`` = the pruning fraction p). ``min_length`` / ``max_gap``:
    post-processing of predicted events, applied after thresholding.
    """

    method: str = "best_f05"
    level: float | None = None
    min_length: int = 1
    max_gap: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise TelemetryError(f"unknown threshold method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "percentile" and not (self.level is not None and 0 <= self.level <= 100):
            raise TelemetryError(f"percentile threshold needs a level in [0, 100], got {self.level!r}")
        if self.min_length < 1 or self.max_gap < 0:
            raise TelemetryError(f"min_length must be >= 1 and max_gap >= 0, got {self.min_length}, {self.max_gap}")

    def fit(self, val_scores: np.ndarray, val_labels: np.ndarray | None = None, fit_scores: np.ndarray | None = None):
        s = np.asarray(val_scores, dtype=np.float64).ravel()
        self.min_peak_ = -np.inf
        if self.method == "best_f05":
            if val_labels is None:
                raise TelemetryError("threshold method best_f05 needs validation labels")
            self.threshold_, _ = best_f05_threshold(s, val_labels, self.min_length, self.max_gap)
        elif self.method == "percentile":
            self.threshold_ = float(np.percentile(s, self.level))
        elif self.method == "max_fit":
            if fit_scores is None:
                raise TelemetryError("threshold method max_fit needs the fit split's scores")
            self.threshold_ = float(np.max(fit_scores)) * (1.0 if self.level is None else float(self.level))
        else:
            p = 0.13 if self.level is None else float(self.level)
            self.threshold_, self.min_peak_ = ndt_threshold(s, p=p)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Binary uint8 predictions, one per row."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        b = s >= self.threshold_
        if np.isfinite(self.min_peak_) and b.any():
            ev = events(b)
            peaks = np.maximum.reduceat(np.where(b, s, -np.inf), ev[:, 0])
            b &= ~from_events(ev[peaks < self.min_peak_], b.size).astype(bool)
        return postprocess(b, self.min_length, self.max_gap)

    def to_dict(self) -> dict:
        d = {"method": self.method, "level": self.level, "min_length": self.min_length, "max_gap": self.max_gap}
        if hasattr(self, "threshold_"):
            d.update(threshold=self.threshold_, min_peak=None if not np.isfinite(self.min_peak_) else self.min_peak_)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Threshold":
        """Inverse of :meth:`to_dict`: a fitted rule, ready to ``predict``."""
        rule = cls(d["method"], d.get("level"), int(d.get("min_length", 1)), int(d.get("max_gap", 0)))
        if d.get("threshold") is not None:
            rule.threshold_ = float(d["threshold"])
            rule.min_peak_ = -np.inf if d.get("min_peak") is None else float(d["min_peak"])
        return rule
