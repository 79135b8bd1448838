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


def _checked(pulses: np.ndarray, start_state) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pulses)
    if p.ndim != 2:
        raise TelemetryError(f"telecommands must be [rows, commands], got shape {list(p.shape)}")
    init = np.full(p.shape[1], np.inf) if start_state is None else np.asarray(start_state, dtype=np.float64)
    return p, np.broadcast_to(init, (p.shape[1],))


def _since(column: np.ndarray, init: float) -> np.ndarray:
    """Rows since the last pulse started, for one telecommand's 0/1 column, float64 [N]. One column
    at a time: the full [rows, commands] temporaries cost ~8 GB on the challenge's 14.7 M rows."""
    on = column.astype(bool, copy=False)
    n = on.size
    rise = np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))  # the first row of each pulse
    last = np.full(n, -1, dtype=np.int64)
    last[rise] = rise
    np.maximum.accumulate(last, out=last)
    since = np.arange(n, dtype=np.float64)
    since -= last
    before = last < 0
    since[before] = init + np.flatnonzero(before) + 1
    return since


def last_pulse_rows(pulses: np.ndarray, start_state: np.ndarray | None = None) -> np.ndarray:
    """Rows since each telecommand's last pulse started, [N, T] float64 (inf before any pulse).

    ``start_state``: rows since the last pulse at the row before this series (to continue a series,
    e.g. test after train); inf where unknown.
    """
    p, init = _checked(pulses, start_state)
    out = np.empty(p.shape, dtype=np.float64)
    for j in range(p.shape[1]):
        out[:, j] = _since(p[:, j], init[j])
    return out


def features(pulses: np.ndarray, horizon: float = 1000.0, start_state: np.ndarray | None = None) -> np.ndarray:
    """exp(-rows since last pulse / horizon) per telecommand, float32 [N, T] (see module doc)."""
    if not horizon > 0:
        raise TelemetryError(f"telecommand horizon must be > 0 rows, got {horizon!r}")
    p, init = _checked(pulses, start_state)
    out = np.empty(p.shape, dtype=np.float32)
    for j in range(p.shape[1]):
        since = _since(p[:, j], init[j])
        np.divide(since, -float(horizon), out=since)
        out[:, j] = np.exp(since, out=since)
    return out


def end_state(pulses: np.ndarray, start_state: np.ndarray | None = None) -> np.ndarray:
    """Rows since each last pulse at the series' last row: the ``start_state`` of the series after it.
    (A pulse running over the boundary counts as starting again there: a few rows off at most.)"""
    p, init = _checked(pulses, start_state)
    if len(p) == 0:
        return init.astype(np.float64).copy()
    return np.array([_since(p[:, j], init[j])[-1] for j in range(p.shape[1])], dtype=np.float64)
