"""Row-wise baselines: scikit-learn's IsolationForest and the per-channel z-score (mean ± N·std).

Neither looks at windows: each row is scored on its own channel values. Both score in chunks of
``CHUNK_ROWS`` rows (bounded memory on 10^7-row series) and return float32 per row, aligned to ids.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.base import Detector
from models.registry import register
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


class _RowModel(Detector):
    tags = {"needs_labels": False, "forecaster": False, "windowed": False, "keras": False, "baseline": True}

    def _check_series(self, series: Series) -> None:
        self._check_fitted()
        if series.n_channels != self.n_channels_:
            raise TelemetryError(f"{self.name}: fitted on {self.n_channels_} channels, got {series.n_channels}")

    def _score_chunk(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, series: Series) -> np.ndarray:
        self._check_series(series)
        out = np.empty(len(series), dtype=np.float32)
        for lo in range(0, len(series), CHUNK_ROWS):
            out[lo: lo + CHUNK_ROWS] = self._score_chunk(series.values[lo: lo + CHUNK_ROWS])
        return out


@register("isolation_forest")
class IsolationForestDetector(_RowModel):
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

    def __init__(self, n_estimators: int = 100, max_samples: int | float | str = "auto",
                 max_features: float = 1.0, fit_rows: int | None = None, nominal_only: bool = True,
                 n_jobs: int | None = None, seed: int = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.fit_rows = fit_rows
        self.nominal_only = nominal_only
        self.n_jobs = n_jobs
        self.seed = seed

    def fit(self, fit: Series, validation: Series | None = None, callbacks=None) -> "IsolationForestDetector":
        from sklearn.ensemble import IsolationForest

        if not isinstance(self.n_estimators, (int, np.integer)) or self.n_estimators < 1:
            raise TelemetryError(f"{self.name}: n_estimators must be a positive integer, got {self.n_estimators!r}")
        if self.fit_rows is not None and (not isinstance(self.fit_rows, (int, np.integer)) or self.fit_rows < 2):
            raise TelemetryError(f"{self.name}: fit_rows must be None or an integer >= 2, got {self.fit_rows!r}")
        rows = _fit_rows(fit, bool(self.nominal_only))
        if self.fit_rows is not None and rows.size > self.fit_rows:
            rng = np.random.default_rng(int(self.seed))
            rows = np.sort(rng.choice(rows, size=int(self.fit_rows), replace=False))
        x = fit.values if rows.size == len(fit) else fit.values[rows]  # float32; no float64 copy
        self.n_fit_rows_ = int(rows.size)
        try:
            self.forest_ = IsolationForest(n_estimators=int(self.n_estimators), max_samples=self.max_samples,
                                           max_features=self.max_features, n_jobs=self.n_jobs,
                                           random_state=int(self.seed)).fit(x)
        except ValueError as e:  # sklearn's parameter validation: one line, ours
            raise TelemetryError(f"{self.name}: {e}") from None
        self.n_channels_ = fit.n_channels
        self.channels_ = list(fit.channels)
        self.fitted_ = True
        return self

    def _score_chunk(self, x: np.ndarray) -> np.ndarray:
        return -self.forest_.score_samples(x)

    def score(self, series: Series) -> np.ndarray:
        if self.n_jobs in (None, 1):
            return super().score(series)
        from joblib import parallel_backend

        with parallel_backend("threading", n_jobs=self.n_jobs):
            return super().score(series)

    def _save_state(self, path: Path) -> None:
        import joblib

        self._check_fitted()
        joblib.dump({"forest": self.forest_, "n_channels": self.n_channels_, "channels": self.channels_,
                     "n_fit_rows": self.n_fit_rows_}, path / "forest.joblib")

    def _load_state(self, path: Path) -> None:
        import joblib

        st = joblib.load(path / "forest.joblib")
        self.forest_, self.n_channels_ = st["forest"], st["n_channels"]
        self.channels_, self.n_fit_rows_ = st["channels"], st["n_fit_rows"]
        self.fitted_ = True


@register("global_std")
class GlobalStd(_RowModel):
    """The ESA challenge's starter baseline: per-channel mean and std of the fit split's nominal rows.

    score(row) = max over channels of |x - mean| / std, so the rule "anomalous when a channel leaves
    mean ± N·std" is the threshold N on this score (chosen like any other threshold). ``ddof`` is
    the std's delta degrees of freedom (0: numpy's population std; pandas uses 1); a std below
    ``min_std`` (a constant channel) is raised to it so the score stays finite.
    """

    def __init__(self, ddof: int = 0, min_std: float = 1e-6, nominal_only: bool = True):
        self.ddof = ddof
        self.min_std = min_std
        self.nominal_only = nominal_only

    def fit(self, fit: Series, validation: Series | None = None, callbacks=None) -> "GlobalStd":
        if not float(self.min_std) > 0:
            raise TelemetryError(f"{self.name}: min_std must be > 0, got {self.min_std!r}")
        rows = _fit_rows(fit, bool(self.nominal_only))
        if rows.size <= int(self.ddof):
            raise TelemetryError(f"{self.name}: {rows.size} fit rows are too few for ddof={self.ddof}")
        mean = np.zeros(fit.n_channels, dtype=np.float64)
        sq = np.zeros(fit.n_channels, dtype=np.float64)
        # Two passes in chunks: float64 accumulators, never a float64 copy of the rows.
        whole = rows.size == len(fit)
        for lo in range(0, rows.size, CHUNK_ROWS):
            x = fit.values[lo: lo + CHUNK_ROWS] if whole else fit.values[rows[lo: lo + CHUNK_ROWS]]
            mean += x.sum(axis=0, dtype=np.float64)
        mean /= rows.size
        for lo in range(0, rows.size, CHUNK_ROWS):
            x = fit.values[lo: lo + CHUNK_ROWS] if whole else fit.values[rows[lo: lo + CHUNK_ROWS]]
            sq += np.square(x - mean).sum(axis=0)
        std = np.sqrt(sq / (rows.size - int(self.ddof)))
        self.mean_ = mean.astype(np.float32)
        self.std_ = np.maximum(std, float(self.min_std)).astype(np.float32)
        self.n_channels_ = fit.n_channels
        self.channels_ = list(fit.channels)
        self.fitted_ = True
        return self

    def _score_chunk(self, x: np.ndarray) -> np.ndarray:
        return (np.abs(x - self.mean_) / self.std_).max(axis=1)

    def _save_state(self, path: Path) -> None:
        self._check_fitted()
        np.savez(path / "state.npz", mean=self.mean_, std=self.std_, channels=np.array(self.channels_))

    def _load_state(self, path: Path) -> None:
        st = np.load(path / "state.npz")
        self.mean_, self.std_ = st["mean"], st["std"]
        self.channels_ = [str(c) for c in st["channels"]]
        self.n_channels_ = len(self.channels_)
        self.fitted_ = True
