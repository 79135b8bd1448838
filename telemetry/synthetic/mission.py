"""Synthetic spacecraft mission in the ESA-ADB challenge schema, for demos, tests and benchmarks.

The generator imitates what makes the real challenge data hard:

* periodic orbits (period ~5,400 rows, three harmonics plus an eclipse-like square wave) under a
  yearly seasonal modulation and a slow ageing trend;
* about eight groups of channels driven by shared latent factors, so channels within a group move
  together; ``channel_41..channel_46`` form one tightly correlated group (the challenge's subset);
* slow coloured noise per group (AR(1)) plus white noise per channel, some channels quantised
  like ADC readings;
* telecommands that switch a group into another operating mode (new level and amplitude, reached
  over a smooth transition) -- nominal behaviour, never labelled; with
  ``command_response="transient"`` the switch is a fast step plus a decaying surge of fixed shape
  per telecommand (see :data:`COMMAND_RESPONSES`), which looks like an anomaly to a model that
  sees only the channels; ``"switch"`` makes that response stereotyped (an ON and an OFF command
  per group) and fires commands eight times as often, so a model can learn it;
* labelled anomalies of six kinds (spike, level shift, drift, flat line, noise burst, frequency
  change), single- and multichannel, 1 to thousands of rows long, obvious to subtle, about 10 % of
  rows in train and test alike, ~70 % of them touching channels 41-46.

Every event is planned up front from the seed (a list of O(#events) items); the series is then
generated chunk by chunk as a function of the *global* row index, so deterministic parts are
continuous across chunk borders and the full 14.7 M-row mission fits in a few hundred MB.
Noise comes from ``np.random.default_rng([seed, stream, chunk_index])``: the same arguments give
byte-identical files (a different ``chunk_rows`` gives a different noise realisation).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import operator
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.signal import lfilter

from telemetry.atomic import atomic_path, write_text
from telemetry.errors import TelemetryError
from telemetry.schema import CHANNEL_PREFIX, ID, LABEL, TELECOMMAND_PREFIX

log = logging.getLogger("telemetry.synthetic.mission")

GENERATOR_VERSION = 1
ANOMALY_KINDS = ("spike", "level_shift", "drift", "flatline", "noise_burst", "frequency_change")
# Relative frequency of each kind (by count) and its length range in rows (log-uniform).
_KIND_WEIGHTS = {"spike": 0.25, "level_shift": 0.15, "drift": 0.12, "flatline": 0.15,
                 "noise_burst": 0.15, "frequency_change": 0.18}
_KIND_LENGTHS = {"spike": (1, 20), "level_shift": (50, 5_000), "drift": (300, 8_000),
                 "flatline": (20, 3_000), "noise_burst": (20, 2_000), "frequency_change": (500, 10_000)}
# Magnitude ranges in units of a channel's periodic standard deviation (log-uniform, so some
# anomalies are obvious and some are buried in the orbit); for frequency_change, the time-warp ratio.
_KIND_MAGNITUDES = {"spike": (1.5, 12.0), "level_shift": (0.3, 4.0), "drift": (0.5, 5.0),
                    "flatline": (1.0, 1.0), "noise_burst": (0.2, 3.0), "frequency_change": (1.8, 8.0)}

TARGET_CHANNELS = tuple(range(40, 46))  # 0-based indices of channel_41..channel_46
N_GROUPS = 8
TARGET_SHARE = 0.7          # share of anomalies placed on the channel_41..46 group
ORBIT_ROWS = 5_400.0        # nominal orbit period in rows
SEASON_ROWS = 1_051_200.0   # one year at 30 s per row
N_MODES = 3                 # operating modes per group; a telecommand cycles its group to the next
ROWS_PER_TELECOMMAND = 30_000
MIN_ROWS = 1_000
MAX_CHUNK_ROWS = 5_000_000  # keeps one chunk's float32 block (~20 B/row/channel peak) in check
_PLAN_STREAM, _NOISE_STREAM, _RESPONSE_STREAM = 1, 2, 3
# How a group answers a telecommand that switches its mode:
# "smooth": the new level and amplitude are reached over a smooth transition of up to 600 rows,
#   which stays inside the nominal range (the default);
# "transient": a fast step (STEP_ROWS) at the pulse, plus a surge on every channel of the group,
#   gain_c * exp(-rows since the pulse / RESPONSE_ROWS), with one fixed gain vector (several channel
#   stds, a sign per channel) per telecommand: real commands (heaters, wheels, payload on) make
#   such transients, which break the group's usual correlations. The surge is exactly
#   gain * the telecommand feature of telemetry.telecommands at its default horizon (1,000 rows),
#   so a model that reads telecommands can learn it and one that does not sees an anomaly;
# "switch": the transient response made stereotyped, so a model can learn it from the fit split:
#   each commanded group has an ON and an OFF telecommand (mode 0 <-> mode 1, always the same step,
#   fast as in "transient", plus each command's own fixed surge), and pulses come SWITCH_RATE times
#   as often (about 10 firings per command in the fit split of a 1M-row mission instead of 1-3).
#   With "transient" the step went to whichever mode came next (modes cycle), which no feature of
#   the pulse can predict. Group 0 (channels 41-46) always gets a pair.
COMMAND_RESPONSES = ("smooth", "transient", "switch")
SWITCH_RATE = 8
RESPONSE_ROWS = 1_000.0      # surge time constant (DataConfig.telecommand_horizon's default)
STEP_ROWS = 3                # a commanded step, instead of the smooth transition
_RESPONSE_GAIN = (3.0, 6.0)  # surge size at the pulse, in channel stds (uniform per telecommand)
_RESPONSE_SPAN = 10.0        # time constants after which a surge is cut off (e^-10: invisible)
_N_BASIS = 7                # sin/cos of 3 harmonics + eclipse


@dataclass
class _Anomaly:
    start: int                  # global row, inclusive
    stop: int                   # global row, exclusive
    kind: str
    split: str
    group: int
    channels: np.ndarray        # 0-based channel indices, all in ``group``
    magnitude: float
    factors: np.ndarray         # per-channel multiplier (sign included) for additive kinds
    stuck: np.ndarray | None = None  # flatline: values frozen at ``start`` (filled when generated)


@dataclass
class _Telecommand:
    row: int
    index: int                  # 0-based telecommand column
    pulse: int                  # rows the column stays 1
    effects: list = field(default_factory=list)  # (group, t0, duration, from_mode, to_mode)


@dataclass
class _Group:
    channels: np.ndarray        # 0-based channel indices
    mixing: np.ndarray          # [N_BASIS, k] periodic basis -> channel, each column ~unit std
    season_gain: float
    ar_phi: float
    ar_gain: float              # innovation scale so the AR(1) has the wanted stationary std
    ar_state: float
    trend: float                # ageing, in channel std per 10 M rows
    mode_level: np.ndarray      # [N_MODES]
    mode_amp: np.ndarray        # [N_MODES]
    # Mode transitions as arrays (t0, duration, delta level, delta amplitude), sorted by t0.
    changes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def _as_int(name: str, value, lo: int, hi: int | None = None) -> int:
    """``value`` as an int within [lo, hi], else a one-line TelemetryError."""
    if isinstance(value, bool):
        raise TelemetryError(f"{name} must be an integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TelemetryError(f"{name} must be an integer, got {value!r}") from None
    if number < lo:
        raise TelemetryError(f"{name} must be at least {lo:,}, got {number:,}")
    if hi is not None and number > hi:
        raise TelemetryError(f"{name} must be at most {hi:,}, got {number:,}")
    return number


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _switch_commands(n_effective: int, order: np.ndarray) -> tuple[dict, dict]:
    """Switch mode: telecommands 2p, 2p+1 are group g_p's ON and OFF commands (group 0 first, then
    ``order``); a single effective telecommand toggles group 0; an odd one left over has no effect.
    Returns (telecommand -> group, group -> (ON, OFF))."""
    groups = [0] + [int(g) for g in order if g != 0]
    if n_effective == 1:
        return {0: 0}, {0: (0, 0)}
    pairs = min(n_effective // 2, N_GROUPS)
    switches = {groups[p]: (2 * p, 2 * p + 1) for p in range(pairs)}
    return {j: g for g, pair in switches.items() for j in pair}, switches


def _smoothstep(x: np.ndarray) -> np.ndarray:
    return x * x * (3.0 - 2.0 * x)


class _Mission:
    """The whole plan (channel structure and every event) plus the state carried between chunks."""

    def __init__(self, rows: int, test_rows: int, seed: int, n_channels: int, n_telecommands: int,
                 command_response: str = "smooth"):
        self.rows, self.test_rows, self.total = rows, test_rows, rows + test_rows
        self.seed, self.n_channels, self.n_telecommands = seed, n_channels, n_telecommands
        self.command_response = command_response
        rng = np.random.default_rng([seed, _PLAN_STREAM])
        self.orbit = rng.uniform(0.98, 1.02) * ORBIT_ROWS
        self.eclipse_phase = rng.uniform(0, 2 * np.pi)
        self.season_phase = rng.uniform(0, 2 * np.pi)
        self._plan_channels(rng)
        self.anomalies = (self._plan_anomalies(rng, 0, rows, "train")
                          + self._plan_anomalies(rng, rows, test_rows, "test"))
        self.anomaly_starts = np.array([a.start for a in self.anomalies], dtype=np.int64)
        self.telecommands = self._plan_telecommands(rng)
        self._plan_responses()

    # ---- planning -------------------------------------------------------------------------
    def _plan_channels(self, rng: np.random.Generator) -> None:
        c = self.n_channels
        others = np.array([i for i in range(c) if i not in TARGET_CHANNELS])
        members = [np.array(TARGET_CHANNELS)] + list(np.array_split(others, N_GROUPS - 1))
        # Per-channel physical offset and scale: telemetry mixes volts, degrees, amperes...
        self.offset = rng.uniform(-50, 50, c).astype(np.float32)
        self.scale = np.exp(rng.uniform(np.log(0.05), np.log(20), c)).astype(np.float32)
        self.noise = rng.uniform(0.05, 0.5, c).astype(np.float32)
        self.level_w = rng.uniform(0.5, 1.5, c) * rng.choice([-1.0, 1.0], c)
        self.ar_w = rng.uniform(0.5, 1.0, c) * rng.choice([-1.0, 1.0], c)
        # About a quarter of the non-target channels read through a coarse ADC.
        self.quant = np.where(rng.random(c) < 0.25, rng.uniform(0.02, 0.1, c), 0.0) * self.scale
        harmonic_decay = np.array([1, 1, 0.5, 0.5, 0.25, 0.25, 1.0])
        self.groups: list[_Group] = []
        for g, chans in enumerate(members):
            target = g == 0
            k = int(rng.integers(2, 4))  # latent factors of this group
            coef = rng.normal(size=(_N_BASIS, k)) * harmonic_decay[:, None]
            coef[6] *= rng.uniform(0, 1.5)  # how strongly this group sees eclipses
            if target:
                # One shared orbit shape, same sign everywhere, so channels 41-46 move together;
                # a ~20 % per-channel perturbation gives each a slightly different shape.
                shape = coef[:, :1]
                wiggle = 0.2 * np.linalg.norm(shape) / math.sqrt(_N_BASIS)
                mixing = shape * rng.uniform(0.8, 1.2, len(chans)) + wiggle * rng.normal(size=(_N_BASIS, len(chans)))
                self.noise[chans] = rng.uniform(0.05, 0.15, len(chans))
                self.level_w[chans] = np.abs(self.level_w[chans])
                self.ar_w[chans] = np.abs(self.ar_w[chans])
                self.quant[chans] = 0.0
            else:
                mixing = coef @ rng.normal(size=(k, len(chans)))
            # Normalise so each channel's periodic part has std ~1 (sin/cos variance 1/2, the
            # eclipse square wave ~0.85): anomaly magnitudes are then in channel-std units.
            var = 0.5 * (mixing[:6] ** 2).sum(axis=0) + 0.85 * mixing[6] ** 2
            mixing = (mixing / np.sqrt(var)).astype(np.float32)
            phi = rng.uniform(0.995, 0.9995)
            ar_std = 0.3
            self.groups.append(_Group(
                channels=np.asarray(chans, dtype=np.int64), mixing=mixing,
                season_gain=rng.uniform(0.0, 0.4), ar_phi=phi, ar_gain=ar_std * math.sqrt(1 - phi * phi),
                ar_state=float(rng.normal(0, ar_std)), trend=float(rng.normal(0, 0.3)),
                mode_level=np.concatenate([[0.0], rng.uniform(0.5, 2.0, N_MODES - 1) * rng.choice([-1, 1], N_MODES - 1)]),
                mode_amp=np.concatenate([[1.0], rng.uniform(0.5, 1.6, N_MODES - 1)])))
        self.group_of = np.empty(c, dtype=np.int64)
        for g, grp in enumerate(self.groups):
            self.group_of[grp.channels] = g

    def _plan_anomalies(self, rng: np.random.Generator, seg_start: int, seg_len: int, split: str) -> list[_Anomaly]:
        """Non-overlapping anomalies covering 8.5-11.5 % of [seg_start, seg_start + seg_len)."""
        budget = int(round(rng.uniform(0.085, 0.115) * seg_len))
        cap = max(1, budget // 8)  # small series: shorter anomalies, so every kind still fits
        kinds = list(rng.permutation(ANOMALY_KINDS))  # each kind at least once
        probs = np.array([_KIND_WEIGHTS[k] for k in ANOMALY_KINDS])
        lengths, used = [], 0
        while used < budget:
            if len(lengths) >= len(kinds):
                kinds.append(str(rng.choice(ANOMALY_KINDS, p=probs)))
            lo, hi = _KIND_LENGTHS[kinds[len(lengths)]]
            hi = min(hi, cap)
            lo = min(lo, hi)
            n = int(np.clip(round(_loguniform(rng, lo, hi + 1) - 0.5), lo, hi))
            n = min(n, budget - used)
            lengths.append(n)
            used += n
        kinds = kinds[: len(lengths)]
        order = rng.permutation(len(lengths))
        # Random gaps (uniform spacings) with a minimum nominal stretch between anomalies.
        free = seg_len - used
        min_gap = min(200, free // (2 * (len(lengths) + 1)))
        slack = free - min_gap * (len(lengths) + 1)
        gaps = min_gap + np.floor(slack * rng.dirichlet(np.ones(len(lengths) + 1))).astype(np.int64)
        out, cursor = [], seg_start
        for j, i in enumerate(order):
            cursor += int(gaps[j])
            out.append(self._anomaly(rng, kinds[i], cursor, cursor + lengths[i], split))
            cursor += lengths[i]
        return out

    def _anomaly(self, rng: np.random.Generator, kind: str, start: int, stop: int, split: str) -> _Anomaly:
        group = 0 if rng.random() < TARGET_SHARE else int(rng.integers(1, N_GROUPS))
        chans = self.groups[group].channels
        size = int(rng.integers(2, len(chans) + 1)) if rng.random() < 0.5 and len(chans) > 1 else 1
        picked = np.sort(rng.choice(chans, size=size, replace=False))
        lo, hi = _KIND_MAGNITUDES[kind]
        magnitude = _loguniform(rng, lo, hi)
        if kind == "frequency_change" and rng.random() < 0.5:
            magnitude = 1.0 / magnitude  # slower as well as faster patterns
        # A subsystem fault pushes its channels the same way, each by its own amount.
        factors = rng.choice([-1.0, 1.0]) * rng.uniform(0.6, 1.4, size)
        return _Anomaly(start, stop, kind, split, group, picked, magnitude, factors)

    def _plan_telecommands(self, rng: np.random.Generator) -> list[_Telecommand]:
        """Telecommand pulses placed in nominal stretches, with their mode transitions."""
        total = self.total
        dur_max = int(np.clip(total // 100, 1, 600))
        delay_max = min(50, dur_max // 4)
        window = 3 + delay_max + dur_max  # pulse + delay + transition
        margin = 100
        # Nominal stretches between anomalies, shrunk so pulse and transition stay clear of them.
        edges = [0] + [x for a in self.anomalies for x in (a.start, a.stop)] + [total]
        lo = np.array(edges[0::2], dtype=np.int64) + margin
        hi = np.array(edges[1::2], dtype=np.int64) - margin - window
        ok = hi > lo
        lo, hi = lo[ok], hi[ok]
        room = np.cumsum(hi - lo)
        if len(room) == 0:
            return []
        switch = self.command_response == "switch"
        wanted = max(4, total // (ROWS_PER_TELECOMMAND // (SWITCH_RATE if switch else 1)))
        virtual = np.sort(rng.uniform(0, room[-1], wanted))
        which = np.searchsorted(room, virtual, side="right")
        rows = lo[which] + (virtual - (room[which] - (hi - lo)[which])).astype(np.int64)
        # Keep transitions of successive telecommands apart.
        kept: list[int] = []
        for r in rows:
            if not kept or r - kept[-1] >= window + margin:
                kept.append(int(r))
        # Telecommand -> group it cycles to the next mode; a quarter of the commands act on
        # subsystems we do not see (real operations are full of such no-effect commands).
        n_tc = self.n_telecommands
        n_noop = n_tc // 4
        order = rng.permutation(N_GROUPS)
        target = {j: int(order[j % N_GROUPS]) for j in range(n_tc - n_noop)}
        switches = {}  # switch mode: group -> (ON telecommand, OFF telecommand)
        if switch:
            target, switches = _switch_commands(n_tc - n_noop, order)
        modes = [0] * N_GROUPS
        changes: list[list[tuple]] = [[] for _ in range(N_GROUPS)]
        self.command_group = target
        out = []
        for r in kept:
            tc = _Telecommand(row=r, index=int(rng.integers(n_tc)), pulse=int(rng.integers(1, 4)))
            if tc.index in target:
                g = target[tc.index]
                t0 = r + int(rng.integers(0, delay_max + 1))
                dur = int(rng.integers(1, dur_max + 1))
                if self.command_response != "smooth":
                    # Drawn all the same, so pulses and anomalies sit where the default puts them.
                    t0, dur = r, STEP_ROWS
                new = (modes[g] + 1) % N_MODES
                if switch:  # the group's ON command when it is off, else its OFF command
                    tc.index = switches[g][modes[g] != 0]
                    new = int(modes[g] == 0)
                grp = self.groups[g]
                changes[g].append((t0, dur, grp.mode_level[new] - grp.mode_level[modes[g]],
                                   grp.mode_amp[new] - grp.mode_amp[modes[g]]))
                tc.effects.append((g, t0, dur, modes[g], new))
                modes[g] = new
            out.append(tc)
        for g, grp in enumerate(self.groups):
            grp.changes = np.array(changes[g], dtype=np.float64).reshape(-1, 4)
        return out

    def _plan_responses(self) -> None:
        """Transient mode: one surge gain vector per effective telecommand, and each group's firings.

        Drawn from a stream of their own, so the rest of the mission is that of the default mode.
        """
        self.response_gain: dict[int, np.ndarray] = {}
        self.firings = [np.zeros((0, 2), dtype=np.int64) for _ in self.groups]  # (pulse row, telecommand)
        # Small missions place telecommands closer to anomalies: shorter surges (1,000 rows from 100k on).
        self.response_rows = min(RESPONSE_ROWS, self.total / 100)
        if self.command_response == "smooth":
            return
        rng = np.random.default_rng([self.seed, _RESPONSE_STREAM])
        for j in sorted(self.command_group):
            k = len(self.groups[self.command_group[j]].channels)
            gain = rng.uniform(*_RESPONSE_GAIN) * rng.choice([-1.0, 1.0], k) * rng.uniform(0.6, 1.4, k)
            self.response_gain[j] = gain
        for g in range(len(self.groups)):
            fired = [(tc.row, tc.index) for tc in self.telecommands if tc.effects and tc.effects[0][0] == g]
            self.firings[g] = np.array(fired, dtype=np.int64).reshape(-1, 2)

    # ---- generation -----------------------------------------------------------------------
    def _basis(self, t: np.ndarray) -> np.ndarray:
        """Orbital basis [N_BASIS, n] at (possibly fractional) global rows ``t``."""
        theta = (2 * np.pi / self.orbit) * t
        out = np.empty((_N_BASIS, len(t)), dtype=np.float32)
        for h in range(3):
            out[2 * h] = np.sin((h + 1) * theta)
            out[2 * h + 1] = np.cos((h + 1) * theta)
        out[6] = np.tanh(4 * np.sin(theta + self.eclipse_phase))  # eclipse: near-square wave
        return out

    @staticmethod
    def _mode_profile(changes: np.ndarray, column: int, base: float, cs: int, ce: int) -> np.ndarray:
        """Mode level (column 2) or amplitude (column 3) over rows [cs, ce), continuous in t."""
        t0, dur, delta = changes[:, 0], changes[:, 1], changes[:, column]
        done = t0 + dur <= cs
        out = np.full(ce - cs, base + delta[done].sum(), dtype=np.float32)
        moving = ~done & (t0 < ce)  # transitions in progress somewhere in this chunk
        for a, d, v in zip(t0[moving].astype(int), dur[moving].astype(int), delta[moving]):
            lo, hi = max(a, cs), min(a + d, ce)
            x = (np.arange(lo, hi, dtype=np.float64) - a + 1) / d
            out[lo - cs:hi - cs] += (v * _smoothstep(x)).astype(np.float32)
            out[hi - cs:] += v  # settled for the rest of the chunk
        return out

    def _response(self, g: int, cs: int, ce: int) -> np.ndarray | None:
        """Telecommand surges on group ``g``'s channels over rows [cs, ce), [k, n] float32 in channel
        stds (None when none reaches this chunk): a function of the global row, so chunk-continuous."""
        span = int(math.ceil(_RESPONSE_SPAN * self.response_rows))
        fire = self.firings[g]
        fire = fire[(fire[:, 0] < ce) & (fire[:, 0] + span > cs)]
        if len(fire) == 0:
            return None
        out = np.zeros((len(self.groups[g].channels), ce - cs), dtype=np.float64)
        for row, j in fire:
            lo, hi = max(row, cs), min(row + span, ce)
            decay = np.exp(-(np.arange(lo, hi, dtype=np.float64) - row) / self.response_rows)
            out[:, lo - cs:hi - cs] += np.outer(self.response_gain[j], decay)
        return out.astype(np.float32)

    def chunk(self, cs: int, ce: int, chunk_index: int):
        """Values [C, n] float32, telecommands [n_tc, n] uint8 and labels [n] uint8 for [cs, ce).

        Chunks must be requested in order, once each: the AR state and flat-line values carry over.
        """
        n = ce - cs
        rng = np.random.default_rng([self.seed, _NOISE_STREAM, chunk_index])
        t = np.arange(cs, ce, dtype=np.float64)
        basis = self._basis(t)
        season = np.sin((2 * np.pi / SEASON_ROWS) * t + self.season_phase).astype(np.float32)
        ageing = (t * 1e-7).astype(np.float32)
        del t
        values = np.empty((self.n_channels, n), dtype=np.float32)
        labels = np.zeros(n, dtype=np.uint8)
        # Anomalies touching this chunk (they never overlap, so starts are sorted and disjoint).
        first = max(0, int(np.searchsorted(self.anomaly_starts, cs, side="right")) - 1)
        live = [a for a in self.anomalies[first:np.searchsorted(self.anomaly_starts, ce)] if a.stop > cs]
        for a in live:
            labels[max(a.start, cs) - cs:min(a.stop, ce) - cs] = 1
        for g, grp in enumerate(self.groups):
            ch = grp.channels
            amp = self._mode_profile(grp.changes, 3, 1.0, cs, ce)
            amp *= 1.0 + grp.season_gain * season
            level = self._mode_profile(grp.changes, 2, 0.0, cs, ce)
            level += grp.trend * ageing
            # Slow coloured noise shared by the group; the filter state carries across chunks.
            ar, _ = lfilter([grp.ar_gain], [1.0, -grp.ar_phi], rng.standard_normal(n),
                             zi=[grp.ar_phi * grp.ar_state])
            grp.ar_state = float(ar[-1])
            z = grp.mixing.T @ basis
            z *= amp
            z += self.level_w[ch, None].astype(np.float32) * level
            z += self.ar_w[ch, None].astype(np.float32) * ar.astype(np.float32)
            z += self.noise[ch, None] * rng.standard_normal((len(ch), n), dtype=np.float32)
            surge = self._response(g, cs, ce)  # draws no noise: the default's stream is kept
            if surge is not None:
                z += surge
            mine = [a for a in live if a.group == g]
            for a in mine:
                self._apply_additive(a, z, ch, amp, basis, cs, ce, rng)
            x = self.offset[ch, None] + self.scale[ch, None] * z
            del z
            for i, c in enumerate(ch):
                if self.quant[c] > 0:
                    x[i] = np.round(x[i] / self.quant[c]) * self.quant[c]
            for a in mine:
                if a.kind == "flatline":
                    rows = np.searchsorted(ch, a.channels)
                    if a.stuck is None:  # the stuck value is whatever the sensor read at onset
                        a.stuck = x[rows, a.start - cs].copy()
                    x[rows, max(a.start, cs) - cs:min(a.stop, ce) - cs] = a.stuck[:, None]
            values[ch] = x
        telecommands = np.zeros((self.n_telecommands, n), dtype=np.uint8)
        for tc in self.telecommands:
            if tc.row < ce and tc.row + tc.pulse > cs:
                telecommands[tc.index, max(tc.row, cs) - cs:min(tc.row + tc.pulse, ce) - cs] = 1
        return values, telecommands, labels

    def _apply_additive(self, a: _Anomaly, z, ch, amp, basis, cs, ce, rng) -> None:
        """Add anomaly ``a``'s effect (in channel-std units) to group block ``z`` on [cs, ce)."""
        lo, hi = max(a.start, cs), min(a.stop, ce)
        rows = np.searchsorted(ch, a.channels)
        # Progress through the anomaly, from the global row: continuous across chunks.
        u = (np.arange(lo, hi, dtype=np.float64) - a.start) / (a.stop - a.start)
        f = a.factors[:, None]
        sl = slice(lo - cs, hi - cs)
        if a.kind == "spike":
            z[rows, sl] += (a.magnitude * f * np.exp(-4.0 * u)).astype(np.float32)
        elif a.kind == "level_shift":
            z[rows, sl] += (a.magnitude * f).astype(np.float32)
        elif a.kind == "drift":
            z[rows, sl] += (a.magnitude * f * u).astype(np.float32)
        elif a.kind == "noise_burst":
            burst = rng.standard_normal((len(rows), hi - lo), dtype=np.float32)
            z[rows, sl] += (a.magnitude * np.abs(f)).astype(np.float32) * burst
        elif a.kind == "frequency_change":
            # The orbital pattern runs at a different speed from the onset on (time warp).
            warped = a.start + (np.arange(lo, hi, dtype=np.float64) - a.start) * a.magnitude
            m = self.groups[a.group].mixing[:, rows]
            z[rows, sl] += (m.T @ (self._basis(warped) - basis[:, sl])) * amp[sl]
        # flatline is applied after scaling, on the final values.


def _schema(n_channels: int, n_telecommands: int, with_label: bool) -> pa.Schema:
    fields = [pa.field(ID, pa.int64(), nullable=False)]
    fields += [pa.field(f"{CHANNEL_PREFIX}{i + 1}", pa.float32(), nullable=False) for i in range(n_channels)]
    fields += [pa.field(f"{TELECOMMAND_PREFIX}{i + 1}", pa.uint8(), nullable=False) for i in range(n_telecommands)]
    if with_label:
        fields.append(pa.field(LABEL, pa.uint8(), nullable=False))
    return pa.schema(fields)


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # Dictionary encoding only pays for the 0/1 columns (noisy floats would try it and fall back).
    # Byte-stream-split floats under zstd-1 measured ~25 % smaller and faster to write than the
    # snappy default; delta-encoded ids cost almost nothing.
    small = [f.name for f in schema if f.type == pa.uint8()]
    encoding = {f.name: "BYTE_STREAM_SPLIT" for f in schema if f.type == pa.float32()}
    encoding[ID] = "DELTA_BINARY_PACKED"
    return pq.ParquetWriter(path, schema, compression="zstd", compression_level=1,
                            use_dictionary=small, column_encoding=encoding)


def default_test_rows(rows: int) -> int:
    """The challenge's test length (521,280 rows) or a quarter of ``rows``, at least 1,000."""
    return min(521_280, max(MIN_ROWS, rows // 4))


def generate_mission(out_dir, rows: int, seed: int = 0, test_rows: int | None = None,
                     chunk_rows: int = 500_000, n_channels: int = 76, n_telecommands: int = 11,
                     command_response: str = "smooth") -> dict:
    """Write ``train.parquet``, ``test.parquet``, ``test_labels.parquet`` and ``mission.json``.

    ``command_response``: "smooth" (default), "transient" or "switch" (see :data:`COMMAND_RESPONSES`);
    the same seed gives the same anomalies, labels and noise in all three, and the same pulses in the
    first two (which then differ only by the commanded steps and surges).

    Returns ``{"paths": {...}, "rows": {"train", "test"}, "anomalous_fraction": {"train", "test"},
    "events_by_kind": {kind: count, ..., "mode_change", "telecommand_no_effect"},
    "anomalies_on_default_channels": share, "seconds": wall time}``.
    """
    rows = _as_int("rows", rows, MIN_ROWS)
    seed = _as_int("seed", seed, 0, 2**63 - 1)
    test_rows = default_test_rows(rows) if test_rows is None else _as_int("test_rows", test_rows, MIN_ROWS)
    chunk_rows = _as_int("chunk_rows", chunk_rows, MIN_ROWS, MAX_CHUNK_ROWS)
    # channel_41..46 must exist; the rest (>= 40 channels) fill the other seven groups.
    n_channels = _as_int("n_channels", n_channels, max(TARGET_CHANNELS) + 1, 10_000)
    n_telecommands = _as_int("n_telecommands", n_telecommands, 1, 1_000)
    if command_response not in COMMAND_RESPONSES:
        raise TelemetryError(f"command_response must be one of {', '.join(COMMAND_RESPONSES)}, got {command_response!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TelemetryError(f"output directory {str(out)!r} is a file")
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    mission = _Mission(rows, test_rows, seed, n_channels, n_telecommands, command_response)
    log.info("planned mission: %s train + %s test rows, %d anomalies, %d telecommands (seed %d)",
             f"{rows:,}", f"{test_rows:,}", len(mission.anomalies), len(mission.telecommands), seed)
    paths = {name: out / f"{name}.parquet" for name in ("train", "test", "test_labels")}
    paths["mission"] = out / "mission.json"
    anomalous = _write_parquet_files(mission, paths, chunk_rows, started)
    summary = _summary(mission, paths, anomalous, started)
    write_text(paths["mission"], json.dumps(_mission_record(mission, summary, chunk_rows), indent=1) + "\n")
    log.info("mission written to %s: %.1f %% of train and %.1f %% of test rows anomalous (%.1f s)", out,
             100 * summary["anomalous_fraction"]["train"], 100 * summary["anomalous_fraction"]["test"],
             summary["seconds"])
    return summary


def _write_parquet_files(mission: _Mission, paths: dict, chunk_rows: int, started: float) -> dict[str, int]:
    """Train, test and test-label files, chunk by chunk; returns the anomalous rows per split."""
    train_schema = _schema(mission.n_channels, mission.n_telecommands, True)
    test_schema = _schema(mission.n_channels, mission.n_telecommands, False)
    labels_schema = pa.schema([train_schema.field(ID), train_schema.field(LABEL)])
    rows, test_rows = mission.rows, mission.test_rows
    anomalous = {"train": 0, "test": 0}
    n_chunks = math.ceil(rows / chunk_rows) + math.ceil(test_rows / chunk_rows)
    # All three files become visible together at the end: an interrupted run leaves the old set.
    with contextlib.ExitStack() as stack:
        tmp = {k: stack.enter_context(atomic_path(paths[k])) for k in ("train", "test", "test_labels")}
        chunk_index = 0
        for split, lo, hi in (("train", 0, rows), ("test", rows, rows + test_rows)):
            writer = _writer(tmp[split], train_schema if split == "train" else test_schema)
            label_writer = _writer(tmp["test_labels"], labels_schema) if split == "test" else None
            for cs in range(lo, hi, chunk_rows):
                ce = min(cs + chunk_rows, hi)
                labels = _write_chunk(mission, cs, ce, chunk_index, writer, label_writer, chunk_rows)
                anomalous[split] += int(labels.sum(dtype=np.int64))
                chunk_index += 1
                log.info("%s rows %s-%s written (chunk %d/%d, %.1f s elapsed)", split, f"{cs:,}",
                         f"{ce - 1:,}", chunk_index, n_chunks, time.perf_counter() - started)
            writer.close()
            if label_writer is not None:
                label_writer.close()
    return anomalous


def _write_chunk(mission: _Mission, cs: int, ce: int, chunk_index: int, writer, label_writer,
                 chunk_rows: int) -> np.ndarray:
    """Rows [cs, ce) into ``writer`` (train: with labels; test: labels into ``label_writer``)."""
    values, tcs, labels = mission.chunk(cs, ce, chunk_index)
    ids = pa.array(np.arange(cs, ce, dtype=np.int64))
    cols = [ids] + [pa.array(v) for v in values] + [pa.array(c) for c in tcs]
    if label_writer is None:
        cols.append(pa.array(labels))
    else:
        label_writer.write_table(pa.Table.from_arrays([ids, pa.array(labels)], schema=label_writer.schema),
                                 row_group_size=chunk_rows)
    writer.write_table(pa.Table.from_arrays(cols, schema=writer.schema), row_group_size=chunk_rows)
    return labels


def _summary(mission: _Mission, paths: dict, anomalous: dict, started: float) -> dict:
    counts = {k: sum(a.kind == k for a in mission.anomalies) for k in ANOMALY_KINDS}
    counts["mode_change"] = sum(len(tc.effects) for tc in mission.telecommands)
    counts["telecommand_no_effect"] = sum(not tc.effects for tc in mission.telecommands)
    return {
        "paths": {k: str(v) for k, v in paths.items()},
        "rows": {"train": mission.rows, "test": mission.test_rows},
        "anomalous_fraction": {"train": anomalous["train"] / mission.rows,
                               "test": anomalous["test"] / mission.test_rows},
        "events_by_kind": counts,
        "anomalies_on_default_channels": float(np.mean([a.group == 0 for a in mission.anomalies])),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _mission_record(m: _Mission, summary: dict, chunk_rows: int) -> dict:
    """mission.json: parameters, summary and the event list (for per-kind evaluation)."""
    name = lambda i: f"{CHANNEL_PREFIX}{int(i) + 1}"  # noqa: E731
    return {
        "generator": "telemetry.synthetic.mission", "version": GENERATOR_VERSION,
        "parameters": {"rows": m.rows, "test_rows": m.test_rows, "seed": m.seed, "chunk_rows": chunk_rows,
                       "n_channels": m.n_channels, "n_telecommands": m.n_telecommands,
                       "orbit_rows": round(m.orbit, 3), "season_rows": SEASON_ROWS,
                       **_response_parameters(m)},
        "summary": {k: v for k, v in summary.items() if k != "paths"},
        "files": {k: Path(v).name for k, v in summary["paths"].items()},
        "channel_groups": [[name(c) for c in g.channels] for g in m.groups],
        "anomalies": [{"first_id": a.start, "last_id": a.stop - 1, "split": a.split, "kind": a.kind,
                       "channels": [name(c) for c in a.channels], "magnitude": round(a.magnitude, 4)}
                      for a in m.anomalies],
        "telecommands": [{"id": tc.row, "telecommand": f"{TELECOMMAND_PREFIX}{tc.index + 1}", "rows": tc.pulse,
                          "mode_changes": [{"group": g, "start_id": t0, "rows": d, "from_mode": a, "to_mode": b}
                                           for g, t0, d, a, b in tc.effects]}
                         for tc in m.telecommands],
    }


def _response_parameters(m: _Mission) -> dict:
    """How commands act, for mission.json; transient: each telecommand's surge as the peak (at its
    pulse row) it adds to every channel of its group, in the file's units."""
    out = {"command_response": m.command_response}
    if m.command_response == "smooth":
        return out
    name = lambda i: f"{CHANNEL_PREFIX}{int(i) + 1}"  # noqa: E731
    out.update({"response_time_constant_rows": m.response_rows, "step_rows": STEP_ROWS, "responses": [
        {"telecommand": f"{TELECOMMAND_PREFIX}{j + 1}", "group": m.command_group[j],
         "peak": {name(c): round(float(m.scale[c] * gain), 6)
                  for c, gain in zip(m.groups[m.command_group[j]].channels, m.response_gain[j])}}
        for j in sorted(m.response_gain)]})
    return out
