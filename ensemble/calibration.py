"""Put member scores on one scale, using the validation split's nominal rows only.

- ``z``: (s - mean) / std
- ``robust_z``: (s - median) / (1.4826 MAD), insensitive to the few large nominal errors
- ``normal``: monotone map to a standard normal through the empirical CDF of the nominal scores
  (Merlion's calibration idea); values beyond the observed range extend linearly in z.
- ``robust_log``: the robust z compressed beyond one unit, sign(z) log1p(|z|): the same ranking
  per member, but one member's z of 100 counts like 4.6 rather than 100, so a combination needs
  several members to agree instead of following whichever member spikes (a soft vote, no parameter).
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator

from telemetry.errors import TelemetryError

METHODS = ("z", "robust_z", "normal", "robust_log")


class Calibrator:
    def __init__(self, method: str = "robust_z", n_quantiles: int = 1000):
        if method not in METHODS:
            raise TelemetryError(f"unknown calibration {method!r}; choose one of {', '.join(METHODS)}")
        self.method = method
        self.n_quantiles = n_quantiles

    def fit(self, scores: np.ndarray, nominal: np.ndarray | None = None) -> "Calibrator":
        s = np.asarray(scores, dtype=np.float64)
        ref = s[nominal] if nominal is not None else s
        if ref.size < 2:
            raise TelemetryError("calibration needs at least two nominal validation rows")
        if self.method == "z":
            self.center_, self.scale_ = float(ref.mean()), float(ref.std())
        elif self.method in ("robust_z", "robust_log"):
            med = float(np.median(ref))
            self.center_, self.scale_ = med, float(1.4826 * np.median(np.abs(ref - med)))
            if self.scale_ <= 1e-12:  # more than half the rows tie: fall back to the std
                self.scale_ = float(ref.std())
        else:
            p = np.linspace(0.5 / self.n_quantiles, 1 - 0.5 / self.n_quantiles, self.n_quantiles)
            self.quantiles_ = np.quantile(ref, p)
            self.z_ = stats.norm.ppf(p)
            self.center_, self.scale_ = float(np.median(ref)), float(ref.std())
        self.scale_ = self.scale_ if self.scale_ > 1e-12 else 1.0
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "robust_log":
            z = (s - self.center_) / self.scale_
            return (np.sign(z) * np.log1p(np.abs(z))).astype(np.float32)
        if self.method != "normal":
            return ((s - self.center_) / self.scale_).astype(np.float32)
        q, z = self.quantiles_, self.z_
        out = np.interp(s, q, z)
        # Beyond the nominal range keep ranking: continue linearly with the nominal std as unit.
        hi, lo = s > q[-1], s < q[0]
        out[hi] = z[-1] + (s[hi] - q[-1]) / self.scale_
        out[lo] = z[0] - (q[0] - s[lo]) / self.scale_
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        d = {"method": self.method, "center": self.center_, "scale": self.scale_}
        if self.method == "normal":
            d["quantiles"] = self.quantiles_.tolist()
        return d


class Calibration(BaseEstimator):
    """The decision layer's first step: each member's column of a score matrix [rows, M] calibrated
    by its own :class:`Calibrator` (``method``), fitted on the rows ``nominal`` marks (all rows
    when None). scikit-learn compatible: ``fit`` returns self, fitted state ends in ``_``."""

    def __init__(self, method: str = "robust_log"):
        self.method = method
        self._check()

    def _check(self) -> None:
        if self.method not in METHODS:
            raise TelemetryError(f"unknown calibration {self.method!r}; choose one of {', '.join(METHODS)}")

    def fit(self, scores: np.ndarray, nominal: np.ndarray | None = None) -> "Calibration":
        self._check()
        s = np.asarray(scores)
        self.calibrators_ = [Calibrator(self.method).fit(s[:, j], nominal) for j in range(s.shape[1])]
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores)
        return np.stack([c.transform(s[:, j]) for j, c in enumerate(self.calibrators_)], axis=1)
