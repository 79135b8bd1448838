"""Cross-fitting on the labelled rows: judge a decision layer on rows it was not fitted on.

The decision layer is fitted on labelled rows (validation's, with ``--evidence fit+validation`` the fit
split's before them), and everything fitted on them looks better there than it is. Cross-fitting cuts
those rows into a few contiguous time folds, fits on the
others and predicts each fold, so the out-of-fold predictions cover them once and are honest
about the fitting. The decision layer's guard (ensemble.combine.Guard) uses it for one binary choice:
keep the combination, or fall back to the single best member, only when the member is
better out of fold with a block-bootstrap interval that excludes zero. With few validation events
the interval is wide and the combination stays: the choice needs evidence, not a point figure.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from detection import metrics


def fold_edges(n_rows: int, n_folds: int) -> np.ndarray:
    """Row edges of ``n_folds`` contiguous folds (int64 [n_folds + 1])."""
    return np.linspace(0, n_rows, n_folds + 1).astype(np.int64)


def out_of_fold(fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], scores: np.ndarray,
                labels: np.ndarray, n_folds: int = 3) -> np.ndarray | None:
    """Out-of-fold binary predictions [rows]: ``fit_predict(train_scores, train_labels, fold_scores)``
    for each contiguous fold, fitted on the other folds (joined end to end). None when some fold's
    training part holds no anomalous row or no nominal one (nothing to fit a threshold on)."""
    labels = np.asarray(labels).astype(np.uint8)
    edges = fold_edges(labels.shape[0], n_folds)
    out = np.zeros(labels.shape[0], dtype=np.uint8)
    for a, b in zip(edges[:-1], edges[1:]):
        rest = np.r_[0:a, b:labels.shape[0]]
        y = labels[rest]
        if not y.any() or y.all():
            return None
        out[a:b] = fit_predict(scores[rest], y, scores[a:b])
    return out


def compare(labels: np.ndarray, candidate: np.ndarray, incumbent: np.ndarray, level: float = 0.9,
            resamples: int = 1000, seed: int = 0) -> dict:
    """Out-of-fold F0.5 of both predictions and the paired block-bootstrap interval of
    (candidate - incumbent): the candidate wins only when the whole interval is above zero."""
    boot = metrics.bootstrap_f05(labels, [candidate, incumbent], resamples=resamples, seed=seed)
    lo, hi = metrics.interval(boot[:, 0] - boot[:, 1], level)
    f_c, f_i = metrics.corrected_event_f05(labels, candidate), metrics.corrected_event_f05(labels, incumbent)
    return {"candidate_f05": f_c, "incumbent_f05": f_i, "difference": f_c - f_i, "lo": lo, "hi": hi,
            "level": level, "candidate_wins": bool(lo > 0.0)}
