"""Wavelet denoising, vectorised over whole channels.

Denoising shrinks the detail coefficients before reconstructing (decomposing and reconstructing
untouched returns the input). The shrinkage threshold per channel is the universal threshold
sigma * sqrt(2 ln n) with sigma from the MAD of the finest details (Donoho & Johnstone), estimated
on the fit split in :meth:`fit` and reused unchanged on every other series.
"""
from __future__ import annotations

import numpy as np
import pywt

from telemetry.errors import TelemetryError

MODES = ("soft", "hard")


class WaveletDenoiser:
    def __init__(self, wavelet: str = "db4", level: int = 2, mode: str = "soft", threshold_scale: float = 1.0,
                 block_rows: int = 1 << 20):
        self.wavelet = wavelet
        self.level = level
        self.mode = mode
        self.threshold_scale = threshold_scale
        self.block_rows = block_rows

    def _check(self, n: int):
        if self.wavelet not in pywt.wavelist(kind="discrete"):
            raise TelemetryError(f"unknown wavelet {self.wavelet!r} (e.g. db4, sym5, haar)")
        if self.mode not in MODES:
            raise TelemetryError(f"wavelet threshold mode must be soft or hard, got {self.mode!r}")
        max_level = pywt.dwt_max_level(n, pywt.Wavelet(self.wavelet).dec_len)
        if not 1 <= self.level <= max(max_level, 1):
            raise TelemetryError(f"wavelet level {self.level} is outside 1..{max_level} for {n} rows with {self.wavelet}")

    def fit(self, values: np.ndarray) -> "WaveletDenoiser":
        self._check(values.shape[0])
        finest = pywt.dwt(values, self.wavelet, axis=0)[1]  # one level is all sigma needs
        sigma = np.median(np.abs(finest), axis=0) / 0.6745
        self.thresholds_ = (self.threshold_scale * sigma * np.sqrt(2.0 * np.log(values.shape[0]))).astype(np.float32)
        return self

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Denoise block by block (bounded memory on 10^7 rows), identical to one whole-series pass.

        Blocks overlap by a margin longer than the filter cascade's reach and start on multiples of
        2**level, so every kept coefficient sees the same samples and decimation phase as in a
        single transform of the whole series.
        """
        n = values.shape[0]
        self._check(n)
        step = 1 << self.level
        margin = -(-(pywt.Wavelet(self.wavelet).dec_len * step * 2) // step) * step
        block = max(step, (self.block_rows // step) * step)
        if n <= block + 2 * margin:
            return self._denoise(values)
        out = np.empty(values.shape, dtype=np.float32)
        for a in range(0, n, block):
            b = min(n, a + block)
            lo, hi = max(0, a - margin), min(n, b + margin)
            out[a:b] = self._denoise(values[lo:hi])[a - lo:b - lo]
        return out

    def _denoise(self, values: np.ndarray) -> np.ndarray:
        n = values.shape[0]
        coeffs = pywt.wavedec(values, self.wavelet, level=self.level, axis=0)
        # Shrink every detail band of every channel at once; the approximation band stays.
        thr = self.thresholds_[None, :]
        shrunk = [coeffs[0]] + [_shrink(d, thr, self.mode) for d in coeffs[1:]]
        return np.ascontiguousarray(pywt.waverec(shrunk, self.wavelet, axis=0)[:n], dtype=np.float32)

    def to_dict(self) -> dict:
        return {"wavelet": self.wavelet, "level": self.level, "mode": self.mode,
                "threshold_scale": self.threshold_scale, "thresholds": self.thresholds_.tolist()}


def _shrink(d: np.ndarray, thr: np.ndarray, mode: str) -> np.ndarray:
    if mode == "soft":
        return np.sign(d) * np.maximum(np.abs(d) - thr, 0.0)
    return np.where(np.abs(d) > thr, d, 0.0)
