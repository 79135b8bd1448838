"""A synthetic discharge JSON in the seed-002 format (read by telemetry.discharges)."""
from __future__ import annotations

import json
import os

import numpy as np

from telemetry.atomic import write_text
from telemetry.errors import TelemetryError


def _envelope(t: np.ndarray, t_end: float) -> np.ndarray:
    """Flat-top pulse: 0 -> 1 over the first 0.1 s, 1 -> 0 over the last 0.1 s."""
    up = np.clip(t / 0.1, 0, 1)
    down = np.clip((t_end - t) / 0.1, 0, 1)
    return (up * up * (3 - 2 * up)) * (down * down * (3 - 2 * down))


def write_synthetic_discharges(path: str | os.PathLike, n_discharges: int = 12, n_signals: int = 7,
                               disrupting_fraction: float = 0.4, seed: int = 0, dt: float = 1e-3,
                               first_shot: int = 70_000) -> dict:
    """Write a synthetic discharge JSON in the seed-002 format (atomically) and describe it.

    Each discharge lasts 0.8-1.2 s. Odd sensors are sampled every ``dt``, even ones every
    ``2 * dt``, each with its own start offset, so loading exercises the resampling. Signals are a
    flat-top pulse at a per-sensor level with a slow oscillation and noise. A disrupting discharge
    has an ``anomalyTime`` at 55-85 % of its length; over the 0.15 s before it a precursor grows
    exponentially (time constant 0.03 s) on mode lock (sensor 2, oscillating), density (4) and
    radiated power (6); after it the current quenches and the discharge ends 0.05 s later.
    Normal discharges have no ``anomalyTime``. Discharge ids (shot numbers) count up from
    ``first_shot`` (a test file should start after the train file's). The same arguments give the
    same file.

    Returns ``{"path", "n_discharges", "disrupting": [ids], "anomaly_times": {id: t}}``.
    """
    if isinstance(n_discharges, bool) or not isinstance(n_discharges, int) or n_discharges < 1:
        raise TelemetryError(f"n_discharges must be a positive integer, got {n_discharges!r}")
    if isinstance(n_signals, bool) or not isinstance(n_signals, int) or n_signals < 1:
        raise TelemetryError(f"n_signals must be a positive integer, got {n_signals!r}")
    if not 0.0 <= disrupting_fraction <= 1.0:
        raise TelemetryError(f"disrupting_fraction must be within [0, 1], got {disrupting_fraction!r}")
    if not dt > 0:
        raise TelemetryError(f"dt must be positive, got {dt!r}")
    order = np.random.default_rng([seed, 0]).permutation(n_discharges)
    disrupting = set(order[: int(round(disrupting_fraction * n_discharges))].tolist())
    discharges, onsets = [], {}
    for d in range(n_discharges):
        rng = np.random.default_rng([seed, 1, d])  # per discharge: stable when n_discharges changes
        shot = int(first_shot) + d
        length = rng.uniform(0.8, 1.2)
        at = rng.uniform(0.55, 0.85) * length if d in disrupting else None
        end = at + 0.05 if at is not None else length
        signals = []
        for k in range(1, n_signals + 1):
            step = dt if k % 2 else 2 * dt
            t = rng.uniform(0, 3 * dt) + np.arange(0.0, end, step)
            t = t[t <= end]
            level = 1.0 + 0.5 * ((k - 1) % 7)
            v = level * _envelope(t, length) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(3, 12) * t + rng.uniform(0, 6.3)))
            v += rng.normal(0, 0.02 * level, t.size)
            if at is not None:
                grow = np.where(t < at, np.exp(np.clip((t - at) / 0.03, -50, 0)) * (t >= at - 0.15), 0.0)
                if k % 7 == 2:  # mode lock: a growing oscillation
                    v += 2.0 * level * grow * np.sin(2 * np.pi * 150 * t)
                elif k % 7 in (4, 6):  # density, radiated power: a growing rise
                    v += 1.5 * level * grow
                after = t >= at
                quench = np.exp(-(t[after] - at) / 0.008)
                v[after] = v[after] * quench + (3.0 * level * (1 - quench) * quench if k % 7 == 6 else 0.0)
            signals.append({"fileName": f"DES_{shot}_{k:02d}.txt", "times": np.round(t, 6).tolist(),
                            "values": np.round(v, 5).tolist()})
        item = {"id": shot, "signals": signals}
        if at is not None:
            item["anomalyTime"] = round(float(at), 6)
            onsets[shot] = item["anomalyTime"]
        discharges.append(item)
    write_text(path, json.dumps({"discharges": discharges}, separators=(",", ":")) + "\n")
    return {"path": str(path), "n_discharges": n_discharges, "disrupting": sorted(onsets), "anomaly_times": onsets}
