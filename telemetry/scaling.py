"""Standard scaling fitted on the nominal rows of the fit split only (float32 throughout)."""
from __future__ import annotations

import numpy as np

from telemetry.errors import TelemetryError

_CHUNK = 1 << 20


class StandardScaler:
    """Per-channel (x - mean) / std, estimated on the rows given to :meth:`fit` (pass nominal rows).

    Channels with zero spread keep scale 1 so constant channels do not blow up to inf.
    """

    def fit(self, values: np.ndarray, mask: np.ndarray | None = None) -> "StandardScaler":
        x = values if mask is None else values[mask]
        if x.shape[0] == 0:
            raise TelemetryError("cannot fit the scaler on zero rows")
        # Two-pass in float64 per chunk of rows: accurate over 10^7 rows without a float64 copy.
        n = x.shape[0]
        s = np.zeros(x.shape[1])
        for i in range(0, n, _CHUNK):
            s += x[i:i + _CHUNK].sum(axis=0, dtype=np.float64)
        mean = s / n
        ss = np.zeros(x.shape[1])
        for i in range(0, n, _CHUNK):
            ss += ((x[i:i + _CHUNK] - mean) ** 2).sum(axis=0)
        std = np.sqrt(ss / n)
        self.mean_ = mean.astype(np.float32)
        self.scale_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        out = np.empty_like(values, dtype=np.float32)
        for i in range(0, values.shape[0], _CHUNK):
            np.divide(values[i:i + _CHUNK] - self.mean_, self.scale_, out=out[i:i + _CHUNK])
        return out

    def to_dict(self) -> dict:
        return {"mean": self.mean_.tolist(), "scale": self.scale_.tolist()}
