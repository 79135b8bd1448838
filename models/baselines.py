"""Row-wise baselines under one non-Keras base: scikit-learn's IsolationForest and the per-channel
z-score (mean ± N·std).

:class:`RowDetector` (also the base of ``models/pca.py``) scores each row on its own channel values,
in chunks of ``CHUNK_ROWS`` rows (bounded memory on 10^7-row series), float32 per row, aligned to
ids; a member adds ``_fit`` and ``_score_chunk`` (and its state). These two are tagged ``baseline``:
references to beat, which the ensemble leaves out unless asked.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.base import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Detector, integer, optional, real
from models.registry import register
from models.scoring import RowScorer
from telemetry.errors import TelemetryError
from telemetry.series import Series

CHUNK_ROWS = 1 << 18


def _fit_rows(series: Series, nominal_only: bool) -> np.ndarray:
    """Indices of the rows a baseline learns from: the labelled-nominal ones if asked and known."""
    if nominal_only and series.labels is not None:
        rows = np.flatnonzero(series.labels == 0)
        if rows.size == 0:
            raise TelemetryError(f"{series.source}: no nominal row to fit on")
        return rows
    return np.arange(len(series), dtype=np.int64)


class RowDetector(Detector):
    """A non-Keras member scoring rows, chunk by chunk; subclasses define ``_fit`` and ``_score_chunk``."""

    def _score_chunk(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _chunk_rows(self) -> int:
        return CHUNK_ROWS

    def _score_rows(self, series: Series, lo: int, hi: int) -> np.ndarray:
        """Scores of rows [lo, hi): from those rows alone (a member that looks back, or reads more
        than the channels, overrides this)."""
        return self._score_chunk(series.values[lo:hi])

    def _score_samples(self, series: Series) -> np.ndarray:
        out = np.empty(len(series), dtype=np.float32)
        step = self._chunk_rows()
        for lo in range(0, len(series), step):
            hi = min(lo + step, len(series))
            out[lo:hi] = self._score_rows(series, lo, hi)
        return out

    def _channel_rows(self, series: Series, lo: int, hi: int) -> np.ndarray:
        """Standardised per-channel errors of rows [lo, hi) (members tagged ``channel_scores``)."""
        raise NotImplementedError

    def _row_losses(self, series: Series, lo: int, hi: int) -> np.ndarray:
        """The member's loss of each of rows [lo, hi) (float64); see each member."""
        raise NotImplementedError

    def loss(self, series: Series) -> float:
        """The member's mean loss over the nominal rows of ``series`` (every row when unlabelled):
        the objective of an unlabelled sweep (lower is better); comparable between trials of one
        member, not across members."""
        if not getattr(self, "fitted_", False):
            raise TelemetryError(f"{self.name}: call fit before loss")
        self._check_input(series, "validation")
        keep = series.nominal if series.labels is not None else None
        total, count = 0.0, 0
        step = self._chunk_rows()
        for lo in range(0, len(series), step):
            hi = min(lo + step, len(series))
            r = self._row_losses(series, lo, hi)
            if keep is not None:
                r = r[keep[lo:hi]]
            total += float(r.sum())
            count += r.size
        return total / count if count else float("nan")

    def _score_both(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """Per-row and per-channel scores chunk by chunk; the per-row score is exactly the scorer's
        channel reduction of the per-channel one (the same float32 operations as ``_score_samples``)."""
        out = np.empty(len(series), dtype=np.float32)
        channels = np.empty((len(series), series.n_channels), dtype=np.float32)
        step = self._chunk_rows()
        for lo in range(0, len(series), step):
            hi = min(lo + step, len(series))
            channels[lo:hi] = self._channel_rows(series, lo, hi)
            out[lo:hi] = self.scorer_.reduce(channels[lo:hi])
        return out, channels


@register("isolation_forest")
class IsolationForestDetector(RowDetector):
    """scikit-learn IsolationForest on rows; score = -score_samples (higher = more anomalous).

    ``max_samples`` is the per-tree subsample ("auto" = min(256, rows), an int, or a fraction).
    ``fit_rows`` (None = all) caps the rows handed to ``fit``: a uniform random sample without
    replacement (seeded) of the candidate rows, so a 10^7-row split need not be copied whole;
    with per-tree subsamples of 256 rows, 10^5-10^6 fit rows give the same forest statistically.
    ``nominal_only`` fits on the labelled-nominal rows when labels are known (novelty detection).
    ``contamination`` only moves sklearn's own 0/1 ``predict`` cut-off, which the score ignores
    (thresholds are chosen on validation), so it is not a parameter. ``n_jobs`` parallelises fit
    (over trees) and scoring (threads over trees). Persistence: joblib (trusted files only).
    """

    _tags = {"baseline": True}
    _checks = {"n_estimators": POSITIVE_INT,
               "fit_rows": optional(integer("an integer >= 2", ge=2)),
               "max_features": real("a fraction in (0, 1]", gt=0, le=1), "seed": NON_NEGATIVE_INT}
    n_estimators: int = 100
    max_samples: int | float | str = "auto"
    max_features: float = 1.0
    fit_rows: int | None = None
    nominal_only: bool = True
    n_jobs: int | None = None
    seed: int = 0

    def _fit(self, train: Series, validation: Series | None) -> None:
        from sklearn.ensemble import IsolationForest

        rows = _fit_rows(train, bool(self.nominal_only))
        if self.fit_rows is not None and rows.size > self.fit_rows:
            rng = np.random.default_rng(int(self.seed))
            rows = np.sort(rng.choice(rows, size=int(self.fit_rows), replace=False))
        x = train.values if rows.size == len(train) else train.values[rows]  # float32; no float64 copy
        self.n_fit_rows_ = int(rows.size)
        try:
            self.forest_ = IsolationForest(n_estimators=int(self.n_estimators), max_samples=self.max_samples,
                                           max_features=self.max_features, n_jobs=self.n_jobs,
                                           random_state=int(self.seed)).fit(x)
        except ValueError as e:  # sklearn's parameter validation: one line, ours
            raise TelemetryError(f"{self.name}: {e}") from None

    def _score_chunk(self, x: np.ndarray) -> np.ndarray:
        return -self.forest_.score_samples(x)

    def _row_losses(self, series: Series, lo: int, hi: int) -> np.ndarray:
        # A forest has no reconstruction: its loss is its own anomaly score (short isolation paths).
        return self._score_chunk(series.values[lo:hi]).astype(np.float64)

    def _score_samples(self, series: Series) -> np.ndarray:
        if self.n_jobs in (None, 1):
            return super()._score_samples(series)
        from joblib import parallel_backend

        with parallel_backend("threading", n_jobs=self.n_jobs):
            return super()._score_samples(series)

    def _save_state(self, path: Path) -> None:
        import joblib

        joblib.dump({"forest": self.forest_, "n_fit_rows": self.n_fit_rows_}, path / "forest.joblib")

    def _load_state(self, path: Path) -> None:
        import joblib

        st = joblib.load(path / "forest.joblib")
        self.forest_, self.n_fit_rows_ = st["forest"], st["n_fit_rows"]


@register("global_std")
class GlobalStd(RowDetector):
    """The ESA challenge's starter baseline: per-channel mean and std of the fit split's nominal rows.

    score(row) = max over channels of |x - mean| / std, so the rule "anomalous when a channel leaves
    mean ± N·std" is the threshold N on this score (chosen like any other threshold). ``ddof`` is
    the std's delta degrees of freedom (0: numpy's population std; pandas uses 1); a std below
    ``min_std`` (a constant channel) is raised to it so the score stays finite.
    """

    _tags = {"baseline": True, "channel_scores": True}
    _checks = {"ddof": NON_NEGATIVE_INT, "min_std": POSITIVE}
    ddof: int = 0
    min_std: float = 1e-6
    nominal_only: bool = True

    def _fit(self, train: Series, validation: Series | None) -> None:
        rows = _fit_rows(train, bool(self.nominal_only))
        if rows.size <= int(self.ddof):
            raise TelemetryError(f"{self.name}: {rows.size} fit rows are too few for ddof={self.ddof}")
        mean = np.zeros(train.n_channels, dtype=np.float64)
        sq = np.zeros(train.n_channels, dtype=np.float64)
        # Two passes in chunks: float64 accumulators, never a float64 copy of the rows.
        whole = rows.size == len(train)
        for lo in range(0, rows.size, CHUNK_ROWS):
            x = train.values[lo: lo + CHUNK_ROWS] if whole else train.values[rows[lo: lo + CHUNK_ROWS]]
            mean += x.sum(axis=0, dtype=np.float64)
        mean /= rows.size
        for lo in range(0, rows.size, CHUNK_ROWS):
            x = train.values[lo: lo + CHUNK_ROWS] if whole else train.values[rows[lo: lo + CHUNK_ROWS]]
            sq += np.square(x - mean).sum(axis=0)
        std = np.sqrt(sq / (rows.size - int(self.ddof)))
        self._set_stats(mean, np.maximum(std, float(self.min_std)))

    def _set_stats(self, mean, std) -> None:
        self.mean_ = np.asarray(mean).astype(np.float32)
        self.std_ = np.asarray(std).astype(np.float32)
        # The row's distance from the mean, in stds, is the "error"; max over channels.
        self.scorer_ = RowScorer("max").set_stats(np.zeros_like(self.mean_), self.std_)

    def _score_chunk(self, x: np.ndarray) -> np.ndarray:
        return self.scorer_.window_scores(np.abs(x - self.mean_))

    def _channel_rows(self, series: Series, lo: int, hi: int) -> np.ndarray:
        return self.scorer_.standardised(np.abs(series.values[lo:hi] - self.mean_))

    def _row_losses(self, series: Series, lo: int, hi: int) -> np.ndarray:
        # The model "reconstructs" every row as the fit mean: its loss is the mean squared z-score.
        z = (series.values[lo:hi] - self.mean_) / self.std_
        return np.square(z, dtype=np.float64).mean(axis=1)

    def _save_state(self, path: Path) -> None:
        np.savez(path / "state.npz", mean=self.mean_, std=self.std_)

    def _load_state(self, path: Path) -> None:
        st = np.load(path / "state.npz")
        self._set_stats(st["mean"], st["std"])
