"""Telecommands as conditioning inputs: what a model may know about commanded mode changes.

Telecommand columns are 0/1 pulses a few rows long. A mode change they trigger is nominal, yet to a
model that sees only the channels it looks like an anomaly (a step, a new amplitude). What the
model needs is how recently each telecommand fired: the feature per telecommand is
``exp(-rows since its last pulse started / horizon)``, 1 at the pulse, decaying over ``horizon``
rows, 0 before its first pulse. Computed once on the whole labelled series (so splits sliced from
it keep their history) and on the test series continuing from where the train series ended.
"""
from __future__ import annotations

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.schema import TELECOMMAND_PREFIX


def columns(spec, available) -> list[str] | str | None:
    """The ``telecommands`` of a data config as loader columns: None/"none"/[] (none), "all", or a
    list of names or numbers (3 -> telecommand_3)."""
    if spec in (None, "none", [], ()):
        return None
    if spec == "all":
        return "all"
    if isinstance(spec, (str, int)):
        spec = [spec]
    out = [f"{TELECOMMAND_PREFIX}{s}" if isinstance(s, int) or str(s).isdigit() else str(s) for s in spec]
    missing = [c for c in out if available is not None and c not in available]
    if missing:
        raise TelemetryError(f"telecommands: unknown column {missing[0]!r}")
    return out


def last_pulse_rows(pulses: np.ndarray, start_state: np.ndarray | None = None) -> np.ndarray:
    """Rows since each telecommand's last pulse started, [N, T] float64 (inf before any pulse).

    ``start_state``: rows since the last pulse at the row before this series (to continue a series,
    e.g. test after train); inf where unknown.
    """
    p = np.asarray(pulses).astype(bool)
    if p.ndim != 2:
        raise TelemetryError(f"telecommands must be [rows, commands], got shape {list(p.shape)}")
    n, t = p.shape
    rise = p & ~np.vstack([np.zeros((1, t), bool), p[:-1]])  # the first row of each pulse
    idx = np.where(rise, np.arange(n)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0).astype(np.float64)
    since = np.arange(n)[:, None] - last
    before = last < 0
    init = np.full(t, np.inf) if start_state is None else np.asarray(start_state, dtype=np.float64)
    since[before] = (np.broadcast_to(init, (n, t)) + np.arange(n)[:, None] + 1)[before]
    return since


def features(pulses: np.ndarray, horizon: float = 1000.0, start_state: np.ndarray | None = None) -> np.ndarray:
    """exp(-rows since last pulse / horizon) per telecommand, float32 [N, T] (see module doc)."""
    if not horizon > 0:
        raise TelemetryError(f"telecommand horizon must be > 0 rows, got {horizon!r}")
    return np.exp(-last_pulse_rows(pulses, start_state) / float(horizon)).astype(np.float32)


def end_state(pulses: np.ndarray, start_state: np.ndarray | None = None) -> np.ndarray:
    """Rows since each last pulse at the series' last row: the ``start_state`` of the series after it.
    (A pulse running over the boundary counts as starting again there: a few rows off at most.)"""
    p = np.asarray(pulses)
    if len(p) == 0:
        return np.full(p.shape[1], np.inf) if start_state is None else np.asarray(start_state, dtype=np.float64)
    return last_pulse_rows(p, start_state)[-1]
