"""The report's figures: a per-row score over consecutive splits."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from telemetry.atomic import atomic_path
from telemetry.errors import TelemetryError


def _envelope(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket maxima (indices of bucket starts, maxima): millions of rows plot fast, spikes stay."""
    if x.size <= n:
        return np.arange(x.size), x
    starts = np.linspace(0, x.size, n + 1).astype(np.int64)[:-1]
    return starts, np.maximum.reduceat(x, starts)


def plot_score_splits(path: str | os.PathLike, parts: Sequence[tuple[str, np.ndarray, np.ndarray]], *,
                      title: str = "", ylabel: str = "reconstruction error", threshold: float | None = None,
                      max_points: int = 4000, dpi: int = 90) -> None:
    """Plot a per-row score over consecutive splits, with a vertical line at each split boundary.

    ``parts``: ``[(name, ids, score), ...]`` in time order (e.g. fit, validation, holdout, test).
    Long scores are drawn as bucket maxima (``max_points`` per split) so spikes stay visible. The
    image format follows the file suffix (``.png``, ``.svg``, ``.pdf``); the file is written
    atomically. Uses matplotlib's Agg canvas directly: no display, no global backend switch.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not parts:
        raise TelemetryError("plot: no split to plot")
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    fig = Figure(figsize=(14, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for k, (name, ids, score) in enumerate(parts):
        ids = np.asarray(ids)
        score = np.asarray(score, dtype=np.float64).ravel()
        if ids.shape != score.shape:
            raise TelemetryError(f"plot: split {name!r} has {ids.size} ids but {score.size} scores")
        if score.size == 0:
            continue
        idx, env = _envelope(score, max(1, max_points))
        ax.plot(ids[idx], env, lw=0.7, label=name)
        if k:  # boundary at the first id of every split after the first
            ax.axvline(ids[0], color="0.3", ls="--", lw=1)
            ax.annotate(name, (ids[0], 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize=8, color="0.3")
    if threshold is not None:
        ax.axhline(threshold, color="#c0392b", ls=":", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel("id")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=fmt)
