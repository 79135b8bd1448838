"""Distribution drift between the reference split (what the models were fitted on) and later data.

For every channel and every later split (validation, holdout, the test series, ...) the check
measures:

* ``ks``: the two-sample Kolmogorov-Smirnov statistic (largest gap between the two empirical
  CDFs, 0..1), from ``scipy.stats.ks_2samp`` on seeded random subsamples of at most ``max_rows``
  rows per side, so a 10^7-row series costs the same as a 20,000-row one;
* ``psi``: the population stability index over the reference's decile bins (same subsamples),
  ``sum((p_other - p_ref) * ln(p_other / p_ref))`` with empty bins floored at 1e-4;
* ``mean_shift``: (mean_other - mean_ref) / std_ref, and ``std_ratio``: std_other / std_ref,
  exact, from one blockwise float64 pass over all rows.

The flagging rule (:class:`DriftRules`) is fixed and deliberately two-part::

    drifted = ks > 0.3 and (psi > 0.25 or |mean_shift| > 1 or not 0.5 <= std_ratio <= 2)

Why: telemetry is strongly autocorrelated, so a later stretch of a perfectly stationary channel
never looks like an independent sample of the reference. P-values are useless here (with 10^4+
rows every split is "significantly" different), so the rule thresholds effect sizes. On stationary
data made of random-phase sines plus AR(1) noise (phi 0.99-0.995, splits of 10^4 rows) we measured
KS up to 0.20, PSI up to 0.23 and |mean shift| up to 0.45; a level shift of one reference std gives
KS 0.34-0.46 and PSI 0.8-1.7, two stds give KS ~0.7 and PSI > 3. PSI > 0.25 is the conventional
"significant shift" level, and the KS gate at 0.3 (about a 0.8-std shift of a Gaussian) keeps one
statistic alone from flagging: PSI reacts to small moves of mass between neighbouring deciles,
mean and std to a few extreme rows, KS to neither. Slow wander on the scale of the split itself
(AR time constants of ~1,000 rows or more in 10^4-row splits) *is* indistinguishable from drift by
any two-sample statistic and will be flagged; look at the score plot (ensemble.plots)
before acting on it. Variance-only changes are reported in ``std_ratio`` but flagged only when the
distribution moved enough for KS to pass its gate (e.g. a channel frozen at one value).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from telemetry.errors import TelemetryError
from telemetry.series import Series

COLUMNS = ("channel", "split", "ks", "psi", "mean_shift", "std_ratio", "drifted")
_PSI_FLOOR = 1e-4
_BLOCK_BYTES = 16 << 20  # float64 working block for the moments pass


@dataclass(frozen=True)
class DriftRules:
    """The fixed flagging rule (see the module docstring for why these levels)."""

    ks: float = 0.3
    psi: float = 0.25
    mean_shift: float = 1.0
    std_ratio: tuple[float, float] = (0.5, 2.0)

    def flag(self, ks, psi, mean_shift, std_ratio) -> np.ndarray:
        ks, psi, mean_shift, std_ratio = (np.asarray(a, dtype=np.float64) for a in (ks, psi, mean_shift, std_ratio))
        lo, hi = self.std_ratio
        # NaN std_ratio (constant reference and constant other) compares False: not a spread change.
        spread = (std_ratio < lo) | (std_ratio > hi)
        return (ks > self.ks) & ((psi > self.psi) | (np.abs(mean_shift) > self.mean_shift) | spread)


def _as_block(data, channels: Sequence[str] | None, what: str) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """(values [N, C], channel names or None) from a Series or a 2-D array (no copy)."""
    if isinstance(data, Series):
        return data.values, data.channels
    values = np.asarray(data)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise TelemetryError(f"drift: {what} must be a Series or a 2-D array [rows, channels], got shape {list(values.shape)}")
    return values, tuple(channels) if channels is not None else None


def _sample_rows(n: int, k: int, rng: np.random.Generator, mask: np.ndarray | None) -> np.ndarray:
    """Sorted row indices: all rows if there are at most ``k``, else ``k`` drawn without replacement."""
    if mask is None:
        if n <= k:
            return np.arange(n)
        return np.sort(rng.choice(n, size=k, replace=False))
    m = int(mask.sum())
    if m <= k:
        return np.flatnonzero(mask)
    # Draw a few more rows than needed among all rows and keep the masked ones: no [N] index array.
    frac = m / n
    want = min(n, int(k / frac * 1.2) + 64)
    cand = np.sort(rng.choice(n, size=want, replace=False))
    cand = cand[mask[cand]]
    if cand.size < k:  # unlucky draw on a sparse mask: fall back to the exact (O(N)) route
        cand = np.flatnonzero(mask)
    return np.sort(rng.choice(cand, size=k, replace=False))


def _moments(values: np.ndarray, mask: np.ndarray | None, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-channel mean and std (population) in one blockwise float64 pass.

    Sums are taken around ``shift`` (a sample mean) so the sum of squares does not cancel.
    """
    n, c = values.shape
    block = max(1024, _BLOCK_BYTES // (8 * max(c, 1)))
    s = np.zeros(c)
    ss = np.zeros(c)
    count = 0
    for lo in range(0, n, block):
        x = values[lo:lo + block]
        if mask is not None:
            x = x[mask[lo:lo + block]]
        d = x.astype(np.float64)
        d -= shift  # in place: one float64 block alive at a time
        s += d.sum(axis=0)
        ss += np.einsum("ij,ij->j", d, d)
        count += d.shape[0]
    if count == 0:
        return np.full(c, np.nan), np.full(c, np.nan)
    m = s / count
    return shift + m, np.sqrt(np.maximum(ss / count - m * m, 0.0))


def _psi(ref: np.ndarray, other: np.ndarray) -> np.ndarray:
    """PSI per channel over the reference's decile bins (ties collapse bins, e.g. quantised data)."""
    edges = np.quantile(ref, np.linspace(0.1, 0.9, 9), axis=0)  # [9, C]
    out = np.empty(ref.shape[1])
    for j in range(ref.shape[1]):
        e = np.unique(edges[:, j])
        pr = np.bincount(np.searchsorted(e, ref[:, j], side="right"), minlength=e.size + 1) / ref.shape[0]
        po = np.bincount(np.searchsorted(e, other[:, j], side="right"), minlength=e.size + 1) / other.shape[0]
        pr = np.maximum(pr, _PSI_FLOOR)
        po = np.maximum(po, _PSI_FLOOR)
        out[j] = float(np.sum((po - pr) * np.log(po / pr)))
    return out


def drift_table(reference, others: Mapping[str, object], channels: Sequence[str] | None = None, *,
                rules: DriftRules = DriftRules(), max_rows: int = 20_000, seed: int = 0,
                nominal_only: bool = True) -> pd.DataFrame:
    """Per-channel drift of each split in ``others`` against ``reference``.

    ``reference``: the fit split (a :class:`Series` or a float array [N, C]); when it is a labelled
    Series and ``nominal_only`` is true, only its nominal rows count (what the autoencoders trained
    on). ``others``: ``{"validation": ..., "holdout": ..., "test": ...}`` in the order wanted in the
    table, Series or arrays with the same channels; all their rows count. ``channels`` names the
    columns of plain arrays (default ``ch0, ch1, ...``).

    Returns a DataFrame with one row per (split, channel) and columns ``channel, split, ks, psi,
    mean_shift, std_ratio, drifted`` (see the module docstring for the statistics and the rule).
    A constant reference channel has ``mean_shift`` 0 if the other split has the same value, else
    +/-inf, and ``std_ratio`` NaN (0/0) or inf.
    """
    if max_rows < 100:
        raise TelemetryError(f"drift: max_rows must be at least 100, got {max_rows}")
    if not others:
        raise TelemetryError("drift: nothing to compare the reference with (others is empty)")
    ref_values, ref_names = _as_block(reference, channels, "the reference")
    ref_mask = reference.nominal if (nominal_only and isinstance(reference, Series) and reference.labels is not None) else None
    n_ch = ref_values.shape[1]
    names = ref_names or tuple(channels or (f"ch{j}" for j in range(n_ch)))
    if len(names) != n_ch:
        raise TelemetryError(f"drift: {len(names)} channel names for {n_ch} reference columns")
    if ref_values.shape[0] == 0 or (ref_mask is not None and not ref_mask.any()):
        raise TelemetryError("drift: the reference has no rows to compare with")

    rng = np.random.default_rng(seed)
    ref_sub = ref_values[_sample_rows(ref_values.shape[0], max_rows, rng, ref_mask)].astype(np.float32, copy=False)
    shift = ref_sub.mean(axis=0, dtype=np.float64)
    ref_mean, ref_std = _moments(ref_values, ref_mask, shift)
    if not (np.isfinite(ref_mean).all() and np.isfinite(ref_sub).all()):
        bad = names[int(np.flatnonzero(~np.isfinite(ref_mean))[0])] if not np.isfinite(ref_mean).all() else "?"
        raise TelemetryError(f"drift: the reference has NaN/inf values (channel {bad!r})")

    frames = []
    for split, data in others.items():
        values, split_names = _as_block(data, channels, f"split {split!r}")
        if values.shape[1] != n_ch or (split_names is not None and tuple(split_names) != tuple(names)):
            got = ", ".join(split_names) if split_names else f"{values.shape[1]} columns"
            raise TelemetryError(f"drift: split {split!r} has channels {got}, the reference has {', '.join(names)}")
        if values.shape[0] == 0:
            raise TelemetryError(f"drift: split {split!r} has no rows")
        sub = values[_sample_rows(values.shape[0], max_rows, rng, None)].astype(np.float32, copy=False)
        mean, std = _moments(values, None, shift)
        if not np.isfinite(mean).all():
            bad = names[int(np.flatnonzero(~np.isfinite(mean))[0])]
            raise TelemetryError(f"drift: split {split!r} has NaN/inf values in channel {bad!r}")
        ks = ks_2samp(ref_sub, sub, axis=0, method="asymp").statistic
        psi = _psi(ref_sub, sub)
        with np.errstate(divide="ignore", invalid="ignore"):
            diff = mean - ref_mean
            mean_shift = np.where(diff == 0, 0.0, diff / ref_std)
            std_ratio = std / ref_std
        frames.append(pd.DataFrame({
            "channel": list(names), "split": split, "ks": np.asarray(ks, dtype=np.float64), "psi": psi,
            "mean_shift": mean_shift, "std_ratio": std_ratio,
            "drifted": rules.flag(ks, psi, mean_shift, std_ratio),
        }))
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def splits_drift(splits, test: Series | None = None, **kwargs) -> pd.DataFrame:
    """:func:`drift_table` of validation, holdout (and the test series) against the fit split.

    ``splits``: a :class:`telemetry.splits.Splits` (or anything with ``fit``, ``validation`` and
    ``holdout`` Series). Keyword arguments go to :func:`drift_table`.
    """
    others = {"validation": splits.validation, "holdout": splits.holdout}
    if test is not None:
        others["test"] = test
    return drift_table(splits.fit, others, **kwargs)


def _detail(row) -> str:
    return f"{row.channel} (mean {row.mean_shift:+.1f} reference std, std x{row.std_ratio:.2f}, PSI {row.psi:.2f}, KS {row.ks:.2f})"


def describe_drift(table: pd.DataFrame, split: str | None = None, max_detail: int = 10) -> str:
    """Plain-English sentences, one per split (or only ``split``), naming the drifting channels.

    E.g. "The test period is out of the training distribution on 3 of 30 channels: device4 (mean
    +2.0 reference std, ...), ...". Channels are listed by decreasing KS; after ``max_detail`` of
    them the rest are named without figures.
    """
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise TelemetryError(f"drift: not a drift table (no column {missing[0]!r})")
    splits = [split] if split is not None else list(dict.fromkeys(table["split"]))
    sentences = []
    for sp in splits:
        part = table[table["split"] == sp]
        if part.empty:
            raise TelemetryError(f"drift: no split {sp!r} in the table (has {', '.join(map(str, dict.fromkeys(table['split'])))})")
        where = f"The {sp} period"
        bad = part[part["drifted"]].sort_values("ks", ascending=False, kind="stable")
        if bad.empty:
            top = part.loc[part["psi"].idxmax()]
            sentences.append(f"{where} is within the training distribution: no channel of {len(part)} drifted "
                             f"(largest PSI {top.psi:.2f} on {top.channel}, largest KS {part['ks'].max():.2f}).")
            continue
        shown = [_detail(r) for r in bad.head(max_detail).itertuples()]
        rest = list(bad["channel"].iloc[max_detail:])
        text = ", ".join(shown) + (f", and {len(rest)} more: {', '.join(rest)}" if rest else "")
        sentences.append(f"{where} is out of the training distribution on {len(bad)} of {len(part)} channels: {text}.")
    return " ".join(sentences)
