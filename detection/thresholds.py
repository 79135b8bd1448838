"""Decision thresholds on per-row scores, and the estimator that applies them.

Every threshold is fitted on validation (or fit-split) scores only, never on the series it is
applied to, so holdout and test never influence it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from telemetry.bounds import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, integer, one_of, optional, real
from telemetry.errors import TelemetryError
from telemetry.events import events, from_events
from detection.postprocess import hysteresis, postprocess
from detection.metrics import _f05_from_counts, corrected_event_f05
from telemetry.series import checked_offsets

# Labelled (validation F0.5): best_f05 (the edge of the best), plateau (the middle of the near-best
# range), bootstrap (best expected F0.5 over block resamples of validation); unlabelled: pot
# (extreme-value tail of the nominal scores), percentile, max_fit, ndt (Telemanom).
METHODS = ("best_f05", "plateau", "bootstrap", "pot", "percentile", "max_fit", "ndt")
SMOOTHERS = ("ewma", "mean")


def _count_ge(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, how many values are >= it (values sorted ascending)."""
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left")


EXACT_CANDIDATES = 250_000  # distinct scores swept exactly; a 1M-row mission's validation stays exact


def f05_curve(scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None, segments=None):
    """Corrected event-wise F0.5 of ``scores >= t`` for every threshold ``t``, exactly, in O(N log N).

    Each count the metric needs is "how many of some precomputed values are >= t":
    - detected true events: the per-event maxima;
    - false-positive rows: the nominal rows' scores;
    - predicted runs inside nominal stretches: nominal rows minus adjacent nominal pairs
      (min of the two), the superlevel-set run count;
    - runs that touch an event through a stretch's left / right border (min of the two border rows),
      plus stretches fully above t touching events on both sides (counted twice otherwise).
    So one sort per array and a searchsorted per threshold replaces thousands of metric runs.
    ``segments`` (telemetry.series; None = one series): counted per series, as
    ``corrected_event_f05(labels, scores >= t, segments)``: events and nominal stretches are cut at
    each offset, rows either side of one are no adjacent pair, and a stretch's border neighbour
    counts only inside its own series (a stretch starting or ending at an offset has none there).
    Returns (thresholds, f05, precision, recall). Default thresholds: every distinct score, plus +inf;
    beyond EXACT_CANDIDATES distinct scores (a full-size validation split), a quantile grid of that many
    plus every event's maximum (where detections change), so millions of rows cost seconds, not minutes.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise TelemetryError(f"{s.size} scores for {y.size} labels")
    if not np.isfinite(s).all():
        raise TelemetryError("scores contain NaN or inf")
    n = s.size
    seg = checked_offsets(segments, n)
    inner = np.zeros(0, dtype=np.int64) if seg is None else seg[1:-1]  # offsets between two series
    true_ev = events(y, seg)
    nom_ev = events(~y, seg)  # nominal stretches [a, b), each inside one series
    # reduceat spans [start, next start): masking nominal rows keeps each maximum inside its event.
    ev_max = np.maximum.reduceat(np.where(y, s, -np.inf), true_ev[:, 0]) if len(true_ev) else np.zeros(0)
    if thresholds is None:
        thresholds = np.unique(s)
        if thresholds.size > EXACT_CANDIDATES:
            grid = thresholds[np.linspace(0, thresholds.size - 1, EXACT_CANDIDATES).astype(np.int64)]  # sorted: no re-sort
            thresholds = np.unique(np.concatenate([grid, ev_max]))
        thresholds = np.append(thresholds, np.inf)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    nominal_scores = s[~y]
    both_nominal = ~y[1:] & ~y[:-1]
    both_nominal[inner - 1] = False  # the last row of one series and the first of the next: no pair
    pair_min = np.minimum(s[1:], s[:-1])[both_nominal]
    a, b = nom_ev[:, 0], nom_ev[:, 1]
    # A stretch starting (ending) at an offset has no event beside it there: the row across the
    # offset is another series'. Elsewhere the row beside a stretch is anomalous.
    has_left, has_right = (a > 0) & ~np.isin(a, inner), (b < n) & ~np.isin(b, inner)
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


CANDIDATE_ROW_PASSES = 200_000_000  # rows x candidates re-scored with post-processing (~10 s on 2 cores)


def best_f05_threshold(scores, labels, min_length: int = 1, max_gap: int = 0, max_candidates: int = 512,
                       segments=None):
    """The threshold maximising corrected event-wise F0.5 on labelled scores; returns (threshold, f05).

    Without post-processing the sweep is exact over every distinct score (:func:`f05_curve`).
    Post-processing breaks the counting identities, so then the best ``max_candidates`` thresholds of
    the exact sweep plus evenly spaced upper quantiles are re-scored with the full metric; each
    costs a pass over every row, so on long splits the candidates are capped at
    ``CANDIDATE_ROW_PASSES / rows`` (at least 64: 68 on the challenge's 2.9 M validation rows).
    Ties go to the highest threshold (fewest alarms). ``segments``: the series boundaries the
    post-processing never crosses (telemetry.events) and the metric counts events within.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(np.uint8)
    if not y.any():
        raise TelemetryError("cannot choose an F0.5 threshold on a split without anomalies")
    thr, f, _, _ = f05_curve(s, y, segments=segments)
    if min_length <= 1 and max_gap <= 1:
        best = np.flatnonzero(f == f.max())[-1]
        return float(thr[best]), float(f[best])
    max_candidates = min(int(max_candidates), max(64, CANDIDATE_ROW_PASSES // max(s.size, 1)))
    top = thr[np.argsort(f)[-max_candidates // 2:]]
    quant = np.quantile(s, np.linspace(0.5, 1.0, max_candidates // 2))
    cands = np.unique(np.concatenate([top, quant]))
    cands = cands[np.isfinite(cands)]
    vals = np.array([corrected_event_f05(y, postprocess(s >= t, min_length, max_gap, segments), segments)
                     for t in cands])
    best = np.flatnonzero(vals == vals.max())[-1]
    return float(cands[best]), float(vals[best])


def smooth(scores: np.ndarray, span: int = 1, how: str = "ewma", segments=None) -> np.ndarray:
    """Smoothed scores, float64, same length: ``ewma`` (causal, alpha = 2 / (span + 1), as Telemanom
    smooths its errors) or ``mean`` (centred moving mean over ``span`` rows, shorter at the ends).

    One isolated large error then no longer makes an event of its own, and a long anomaly's score
    stays above the threshold instead of flickering around it (each flicker is a separate event).
    ``segments`` (offsets [S+1], telemetry.series; None = one series): each series is smoothed on
    its own, so the end of one never leaks into the start of the next.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    span = int(span)
    if span < 1:
        raise TelemetryError(f"smoothing span must be >= 1, got {span}")
    seg = checked_offsets(segments, s.size)
    if span == 1 or s.size == 0:
        return s.copy()
    if how not in SMOOTHERS:
        raise TelemetryError(f"unknown smoothing {how!r}; choose one of {', '.join(SMOOTHERS)}")
    if seg is None:
        seg = np.array([0, s.size], dtype=np.int64)
    if how == "mean":
        return _centred_mean(s, span, seg)
    from scipy.signal import lfilter

    a = 2.0 / (span + 1.0)
    out = np.empty_like(s)
    for lo, hi in zip(seg[:-1].tolist(), seg[1:].tolist()):  # each series starts from its own first row
        out[lo:hi], _ = lfilter([a], [1.0, a - 1.0], s[lo:hi], zi=np.array([(1.0 - a) * s[lo]]))
    return out


def _centred_mean(s: np.ndarray, span: int, seg: np.ndarray) -> np.ndarray:
    """Centred moving mean over ``span`` rows, its window clipped to each row's own series."""
    c = np.concatenate([[0.0], np.cumsum(s)])
    lengths = np.diff(seg)
    first_row, end_row = np.repeat(seg[:-1], lengths), np.repeat(seg[1:], lengths)
    first = np.arange(s.size) - span // 2
    lo, hi = np.clip(first, first_row, end_row), np.clip(first + span, first_row, end_row)
    return (c[hi] - c[lo]) / (hi - lo)


def pot_threshold(scores: np.ndarray, risk: float = 1e-3, initial_quantile: float = 0.98) -> float:
    """Peaks-over-threshold (SPOT's initial step, Siffer et al., KDD 2017): the score exceeded with
    probability ``risk`` under a generalised Pareto tail fitted to the excesses over the
    ``initial_quantile`` of ``scores`` (nominal scores: no labels needed).

    z_q = t + (sigma / gamma) * ((risk * n / n_t) ** -gamma - 1), or t - sigma * log(risk * n / n_t)
    when gamma is 0; t is the initial threshold, n_t the number of excesses. A tail extrapolated from
    the bulk instead of the single largest nominal value seen, so it does not hug that value.
    """
    from scipy import stats

    s = np.asarray(scores, dtype=np.float64).ravel()
    if not 0 < risk < 1 - initial_quantile:
        raise TelemetryError(f"POT risk must be in (0, {1 - initial_quantile:g}), got {risk!r}")
    t = float(np.quantile(s, initial_quantile))
    excess = s[s > t] - t
    if excess.size < 10 or np.ptp(excess) <= 0:  # too few to fit a tail: fall back to the sample quantile
        return float(np.quantile(s, 1.0 - risk))
    gamma, _, sigma = stats.genpareto.fit(excess, floc=0.0)
    r = risk * s.size / excess.size
    if abs(gamma) < 1e-9:
        return t - sigma * np.log(r)
    return float(t + sigma / gamma * (r ** -gamma - 1.0))


def plateau_threshold(scores, labels, tolerance: float = 0.02, segments=None) -> tuple[float, float]:
    """The middle of the near-best range: over the contiguous run of thresholds (in score order)
    around the best one whose F0.5 is within ``tolerance`` of the best, the midpoint of its lowest
    and highest threshold. Returns (threshold, its validation F0.5); with ``segments`` events are
    counted per series.

    The best threshold on validation sits on an edge (just above the largest nominal score that
    would make a false event, or just below the weakest event's peak); the middle keeps a margin on
    both sides, so new nominal fluctuations and slightly weaker events both fall on the right side.
    """
    thr, f, _, _ = f05_curve(scores, labels, segments=segments)
    thr, f = thr[:-1], f[:-1]  # +inf predicts nothing
    if f.size == 0 or f.max() <= 0:
        return float(np.max(scores)) + 1.0, 0.0
    best = int(np.flatnonzero(f == f.max())[-1])
    ok = f >= f[best] - tolerance
    lo = best
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    hi = best
    while hi + 1 < f.size and ok[hi + 1]:
        hi += 1
    # thr[i] stands for every threshold in (thr[i-1], thr[i]]: the plateau starts just above thr[lo-1].
    t = 0.5 * ((thr[lo - 1] if lo > 0 else thr[0]) + thr[hi])
    _, ft, _, _ = f05_curve(scores, labels, np.array([t]), segments)
    return float(t), float(ft[0])


def block_resamples(n: int, n_blocks: int, resamples: int, seed: int) -> list[np.ndarray]:
    """Row indices of moving-block bootstrap replicates: ``n_blocks`` equal contiguous blocks drawn
    with replacement, keeping time order inside each block (events and nominal stretches stay whole
    unless cut by a block edge)."""
    edges = np.linspace(0, n, n_blocks + 1).astype(np.int64)
    rng = np.random.default_rng(seed)
    return [np.concatenate([np.arange(edges[b], edges[b + 1]) for b in rng.integers(0, n_blocks, n_blocks)])
            for _ in range(resamples)]


def replicate_offsets(idx: np.ndarray, seg: np.ndarray | None) -> np.ndarray | None:
    """The series boundaries of a replicate made of rows ``idx`` of a split with offsets ``seg``: a
    new series wherever a row's series differs from the previous row's, or the row is its series'
    first (None stays None). Block joins inside one series stay joined, as without series."""
    if seg is None:
        return None
    series = np.searchsorted(seg, idx, side="right") - 1
    cut = (series[1:] != series[:-1]) | (seg[series[1:]] == idx[1:])
    return np.concatenate([[0], np.flatnonzero(cut) + 1, [idx.size]]).astype(np.int64)


def bootstrap_threshold(scores, labels, resamples: int = 30, n_blocks: int = 20, seed: int = 0,
                        max_candidates: int = 1024, segments=None) -> tuple[float, float]:
    """The threshold with the best mean F0.5 over block-bootstrap replicates of validation; returns
    (threshold, mean F0.5). A threshold that wins only because of one event or one nominal stretch
    loses in the replicates without it. Candidates: upper quantiles plus the exact sweep's best.
    ``segments``: events counted per series, in each replicate too (:func:`replicate_offsets`)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(np.uint8)
    seg = checked_offsets(segments, s.size)
    thr, f, _, _ = f05_curve(s, y, segments=seg)
    cand = np.unique(np.concatenate([np.quantile(s, np.linspace(0.5, 1.0, max_candidates // 2)),
                                     thr[:-1][np.argsort(f[:-1])[-(max_candidates // 2):]]]))
    total = np.zeros(cand.size)
    reps = block_resamples(s.size, n_blocks, resamples, seed)
    used = 0
    for idx in reps:
        if not y[idx].any():
            continue  # a replicate without events says nothing about recall
        total += f05_curve(s[idx], y[idx], cand, replicate_offsets(idx, seg))[1]
        used += 1
    if used == 0:
        return best_f05_threshold(s, y, segments=seg)
    mean = total / used
    best = np.flatnonzero(mean == mean.max())[-1]
    return float(cand[best]), float(mean[best])


def ndt_threshold(scores: np.ndarray, z_range=np.arange(2.0, 10.5, 0.5), p: float = 0.13, segments=None):
    """Telemanom's non-parametric dynamic threshold with pruning (Hundman et al., KDD 2018).

    Picks epsilon = mean + z*std maximising (dmean/mean + dstd/std) / (n_above + n_sequences**2),
    where dmean, dstd are the drops in mean and std when rows above epsilon are removed. Then prunes:
    sorts the sequences' peaks descending with the largest nominal score appended; sequences whose
    peaks are followed only by decreases smaller than ``p`` are reclassified as nominal.
    Returns (epsilon, min_peak): flag rows >= epsilon, keep only events whose peak >= min_peak.
    With ``segments`` a sequence never spans two series.
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
        n_seq = len(events(~below, segments))
        d_mu = (mu - e[below].mean()) / mu if mu else 0.0
        d_sd = (sd - e[below].std()) / sd if sd else 0.0
        score = (d_mu + d_sd) / (n_above + n_seq**2)
        if score > best_score:
            best_eps, best_score = eps, score
    if best_eps is None:  # nothing stands out: flag nothing
        return float(e.max()) + 1.0, -np.inf
    ev = events(e >= best_eps, segments)
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
    """A decision rule as plain data, fitted like a scikit-learn estimator: scores -> binary rows.

    The chain: ``smooth`` the scores (span in rows, ``smoothing`` ``ewma`` or ``mean``; 1 = off) ->
    one threshold by ``method`` -> events with ``hysteresis`` (an event starts at the threshold and
    lasts while the score stays above ``end``, a fraction ``hysteresis`` of the way from the threshold
    down to the nominal median; 0 = one threshold) -> Telemanom's pruning (``ndt`` only) ->
    gap merging (``max_gap``) and minimum event length (``min_length``).

    Methods and their own parameters: ``best_f05`` (labelled validation; the best F0.5's edge),
    ``plateau`` (the middle of the range within ``tolerance`` of the best F0.5), ``bootstrap``
    (best mean F0.5 over ``resamples`` block resamples), ``pot`` (extreme-value tail of the
    validation nominal scores at ``risk``; labels only pick the nominal rows), ``percentile``
    (``percentile`` in [0, 100] of validation scores), ``max_fit`` (``multiple`` x the largest
    fit-split score: the keras example's rule), ``ndt`` (Telemanom, pruning fraction ``prune``).
    ``floor_risk`` (None = off): whatever the method, the threshold is at least the POT level that
    the validation nominal scores exceed with that probability per row (``floor_``).

    ``get_params``/``set_params`` follow scikit-learn's contract, so ``sklearn.base.clone`` copies a
    rule unfitted.
    """

    method: str = "best_f05"
    smooth: int = 1
    smoothing: str = "ewma"
    hysteresis: float = 0.0
    min_length: int = 1
    max_gap: int = 0
    tolerance: float = 0.02
    resamples: int = 30
    risk: float = 1e-3
    percentile: float | None = None
    multiple: float = 1.0
    prune: float = 0.13
    floor_risk: float | None = None
    seed: int = 0

    LABELLED = ("best_f05", "plateau", "bootstrap")

    # Each parameter's rule, declared once: __post_init__ applies them and the sweep file's schema
    # (search/schema.py) bounds the threshold block with them.
    CHECKS = {
        "method": one_of(*METHODS), "smooth": integer("a span >= 1", ge=1), "smoothing": one_of(*SMOOTHERS),
        "hysteresis": real("in [0, 1)", ge=0, lt=1), "min_length": POSITIVE_INT, "max_gap": NON_NEGATIVE_INT,
        "tolerance": real("in [0, 1]", ge=0, le=1), "resamples": POSITIVE_INT, "risk": real("in (0, 1)", gt=0, lt=1),
        "percentile": optional(real("in [0, 100]", ge=0, le=100)), "multiple": POSITIVE,
        "prune": real("in [0, 1)", ge=0, lt=1),
        "floor_risk": optional(real("in (0, 0.02)", gt=0, lt=0.02), phrase="in (0, 0.02) or null"),
        "seed": NON_NEGATIVE_INT,
    }

    def __post_init__(self):
        if self.method not in METHODS:
            raise TelemetryError(f"unknown threshold method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "percentile" and not (self.percentile is not None and 0 <= self.percentile <= 100):
            raise TelemetryError(f"percentile threshold needs a percentile in [0, 100], got {self.percentile!r}")
        for name, check in self.CHECKS.items():
            if not check.ok(getattr(self, name)):
                raise TelemetryError(f"threshold {name} must be {check.phrase}, got {getattr(self, name)!r}")

    # scikit-learn's estimator contract without importing scikit-learn here: ``sklearn.base.clone``
    # needs only these two (the ensemble's decision layer clones the rule it composes).
    def get_params(self, deep: bool = True) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def set_params(self, **params) -> "Threshold":
        names = {f.name for f in fields(self)}
        for key, value in params.items():
            if key not in names:
                raise TelemetryError(f"threshold has no parameter {key!r}; choose one of {', '.join(sorted(names))}")
            setattr(self, key, value)
        self.__post_init__()
        return self

    def smoothed(self, scores: np.ndarray, segments=None) -> np.ndarray:
        return smooth(scores, int(self.smooth), self.smoothing, segments)

    def fit(self, val_scores: np.ndarray, val_labels: np.ndarray | None = None, fit_scores: np.ndarray | None = None,
            segments=None):
        """Fitted on validation; ``segments``: its series boundaries (telemetry.series), which the
        smoothing and post-processing never cross and within which the labelled methods count events.
        ``fit_scores`` (max_fit) are taken as one series."""
        segments = checked_offsets(segments, np.size(val_scores))
        s = self.smoothed(val_scores, segments)
        y = None if val_labels is None else np.asarray(val_labels).ravel().astype(np.uint8)
        if self.method in self.LABELLED and (y is None or not y.any()):
            raise TelemetryError(f"threshold method {self.method} needs validation labels with at least one anomaly")
        nominal = s if y is None else s[y == 0]
        self.center_ = float(np.median(nominal)) if nominal.size else float(np.median(s))
        self.min_peak_ = -np.inf
        if self.method == "best_f05":
            self.threshold_, _ = best_f05_threshold(s, y, self.min_length, self.max_gap, segments=segments)
        elif self.method == "plateau":
            self.threshold_, _ = plateau_threshold(s, y, float(self.tolerance), segments)
        elif self.method == "bootstrap":
            self.threshold_, _ = bootstrap_threshold(s, y, int(self.resamples), seed=int(self.seed), segments=segments)
        elif self.method == "pot":
            self.threshold_ = pot_threshold(nominal, float(self.risk))
        elif self.method == "percentile":
            self.threshold_ = float(np.percentile(s, self.percentile))
        elif self.method == "max_fit":
            if fit_scores is None:
                raise TelemetryError("threshold method max_fit needs the fit split's scores")
            self.threshold_ = float(np.max(self.smoothed(fit_scores))) * float(self.multiple)
        else:
            self.threshold_, self.min_peak_ = ndt_threshold(s, p=float(self.prune), segments=segments)
        self.floor_ = -np.inf
        if self.floor_risk is not None and nominal.size:
            # Never below the level the nominal scores' extreme-value tail exceeds with probability
            # floor_risk: a labelled method reaching down for a subtle validation event would
            # otherwise sit inside the nominal peaks that later data reach.
            self.floor_ = pot_threshold(nominal, float(self.floor_risk))
            self.threshold_ = max(self.threshold_, self.floor_)
        return self

    @property
    def end_threshold_(self) -> float:
        """Where an event ends under hysteresis (the threshold itself without it)."""
        if not self.hysteresis:
            return self.threshold_
        return self.threshold_ - float(self.hysteresis) * max(self.threshold_ - self.center_, 0.0)

    def predict(self, scores: np.ndarray, segments=None) -> np.ndarray:
        """Binary uint8 predictions, one per row; ``segments``: the series boundaries no step crosses."""
        segments = checked_offsets(segments, np.size(scores))
        s = self.smoothed(scores, segments)
        b = hysteresis(s, self.threshold_, self.end_threshold_, segments).astype(bool)
        if np.isfinite(self.min_peak_) and b.any():
            ev = events(b, segments)
            peaks = np.maximum.reduceat(np.where(b, s, -np.inf), ev[:, 0])
            b &= ~from_events(ev[peaks < self.min_peak_], b.size).astype(bool)
        return postprocess(b, self.min_length, self.max_gap, segments)

    def to_dict(self) -> dict:
        d = asdict(self)
        if hasattr(self, "threshold_"):
            floor = getattr(self, "floor_", -np.inf)
            d.update(threshold=self.threshold_, center=getattr(self, "center_", self.threshold_),
                     min_peak=None if not np.isfinite(self.min_peak_) else self.min_peak_,
                     floor=None if not np.isfinite(floor) else floor)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Threshold":
        """Inverse of :meth:`to_dict`: a fitted rule, ready to ``predict``."""
        names = {f.name for f in fields(cls)}
        rule = cls(**{k: v for k, v in d.items() if k in names})
        if d.get("threshold") is not None:
            rule.threshold_ = float(d["threshold"])
            rule.center_ = float(d.get("center", rule.threshold_))
            rule.min_peak_ = -np.inf if d.get("min_peak") is None else float(d["min_peak"])
            rule.floor_ = -np.inf if d.get("floor") is None else float(d["floor"])
        return rule


PARAMS = tuple(f.name for f in fields(Threshold))  # what a sweep file's threshold block may set


def event_average_precision(scores: np.ndarray, labels: np.ndarray, segments=None) -> float:
    """A threshold-free event-wise figure: the mean, over the true events, of the metric's corrected
    event-wise precision at the threshold that just detects that event (its highest score), taking
    the events from the most to the least evident. Like average precision, but counting events and
    false predicted runs as the challenge metric does, so a member that ranks every event above
    nominal stretches scores 1 whatever threshold a rule would choose. NaN without events."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    seg = checked_offsets(segments, s.size)
    ev = events(y, seg)
    if not len(ev):
        return float("nan")
    ev_max = np.maximum.reduceat(np.where(y, s, -np.inf), ev[:, 0])
    levels = np.unique(ev_max)[::-1]  # each distinct level once; ties detected together
    _, _, precision, recall = f05_curve(s, y, levels, seg)
    gained = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(gained * precision))
