"""Telecommand responses in the synthetic mission: "smooth" (the default) and "transient" surges."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from telemetry.__main__ import main
from telemetry.errors import TelemetryError
from telemetry.schema import DEFAULT_CHANNELS
from telemetry.synthetic.mission import _Mission, generate_mission

# Seed 0 with one telecommand: it acts on channels 41-46 (never quantised) and fires four times.
ROWS, TEST_ROWS, CHUNK, SEED, N_TC = 20_000, 5_000, 3_000, 0, 1


def _values(out: Path, names) -> dict[str, np.ndarray]:
    train, test = pq.read_table(out / "train.parquet"), pq.read_table(out / "test.parquet")
    return {n: np.concatenate([train[n].to_numpy(), test[n].to_numpy()]).astype(np.float64) for n in names}


def _labels(out: Path) -> np.ndarray:
    return np.concatenate([pq.read_table(out / "train.parquet")["is_anomaly"].to_numpy(),
                           pq.read_table(out / "test_labels.parquet")["is_anomaly"].to_numpy()])


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same mission with smooth and with transient command responses."""
    root = tmp_path_factory.mktemp("responses")
    for kind in ("smooth", "transient"):
        generate_mission(root / kind, rows=ROWS, test_rows=TEST_ROWS, seed=SEED, chunk_rows=CHUNK,
                         n_telecommands=N_TC, command_response=kind)
    return root / "smooth", root / "transient"


def test_default_is_smooth_and_unchanged(pair, tmp_path):
    smooth, _ = pair
    generate_mission(tmp_path, rows=ROWS, test_rows=TEST_ROWS, seed=SEED, chunk_rows=CHUNK, n_telecommands=N_TC)
    for name in ("train", "test", "test_labels"):
        assert (tmp_path / f"{name}.parquet").read_bytes() == (smooth / f"{name}.parquet").read_bytes()
    params = json.loads((tmp_path / "mission.json").read_text())["parameters"]
    assert params["command_response"] == "smooth" and "responses" not in params


def test_transient_keeps_the_mission_and_never_labels_a_response(pair):
    smooth, transient = pair
    a, b = (json.loads((d / "mission.json").read_text()) for d in pair)
    assert a["anomalies"] == b["anomalies"]
    assert [(t["id"], t["telecommand"], t["rows"]) for t in a["telecommands"]] == \
           [(t["id"], t["telecommand"], t["rows"]) for t in b["telecommands"]]
    truth = _labels(transient)
    np.testing.assert_array_equal(truth, _labels(smooth))
    for cmd in b["telecommands"]:  # the step and the surge's first rows are clear of every anomaly
        assert truth[cmd["id"]:cmd["id"] + 250].sum() == 0
        assert [(c["start_id"], c["rows"]) for c in cmd["mode_changes"]] == [(cmd["id"], 3)]
    params = b["parameters"]
    assert params["command_response"] == "transient" and params["step_rows"] == 3
    assert params["response_time_constant_rows"] == 250.0  # 1,000 rows, shortened for a 25k-row mission


def test_each_firing_adds_the_same_recorded_surge(pair):
    """After the smooth transition has ended both missions are in the same mode with the same noise,
    so transient - smooth is the surge alone: peak * exp(-rows since the pulse / tau)."""
    smooth, transient = pair
    a, b = (json.loads((d / "mission.json").read_text()) for d in pair)
    params = b["parameters"]
    tau = params["response_time_constant_rows"]
    (response,) = params["responses"]
    assert response["telecommand"] == "telecommand_1" and response["group"] == 0
    peak = response["peak"]
    assert sorted(peak) == list(DEFAULT_CHANNELS)
    x, y = _values(smooth, DEFAULT_CHANNELS), _values(transient, DEFAULT_CHANNELS)
    fired = [(t["id"], t["mode_changes"][0]) for t in a["telecommands"]]
    assert len(fired) == 4
    # Rows since the pulse at which every smooth transition is over, up to two time constants.
    s = np.arange(max(c["start_id"] + c["rows"] - row for row, c in fired), int(2 * tau))
    for c in DEFAULT_CHANNELS:
        gain = np.stack([(y[c] - x[c])[row + s] * np.exp(s / tau) for row, _ in fired])
        tol = 1e-3 * np.abs(x[c]).max()  # float32 rounding of the values
        np.testing.assert_allclose(gain, gain[:1].repeat(len(fired), 0), atol=tol)  # the same shape at every firing
        np.testing.assert_allclose(gain, peak[c], rtol=1e-3, atol=tol)  # the recorded peak and sign, decaying as recorded
    # Large enough that a channel-only model notices: several stds of the nominal rows.
    nominal = _labels(smooth) == 0
    assert min(abs(peak[c]) / x[c][nominal].std() for c in DEFAULT_CHANNELS) > 1.5


def test_the_surge_is_a_function_of_the_global_row():
    """Chunk borders do not change the surge (noise aside, which depends on chunk_rows)."""
    m = _Mission(ROWS, TEST_ROWS, SEED, 76, N_TC, "transient")
    n = ROWS + TEST_ROWS
    whole = m._response(0, 0, n)
    assert whole is not None and np.abs(whole).max() > 0
    for step in (1_000, 7_000):
        parts = [m._response(0, cs, min(cs + step, n)) for cs in range(0, n, step)]
        parts = [np.zeros((6, min(cs + step, n) - cs), np.float32) if p is None else p
                 for cs, p in zip(range(0, n, step), parts)]
        np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    assert _Mission(ROWS, TEST_ROWS, SEED, 76, N_TC)._response(0, 0, n) is None  # smooth: no surge


def test_switch_commands_are_stereotyped_and_frequent():
    """switch: each commanded group has an ON (mode 0 -> 1) and an OFF (1 -> 0) telecommand, always the
    same step and the same surge, fired ~10 times each in the fit split (first 60 %) of a 1M-row mission;
    anomalies are those of the default mission."""
    rows, test_rows = 1_000_000, 250_000
    m = _Mission(rows, test_rows, SEED, 76, 11, "switch")
    assert [(a.start, a.stop, a.kind) for a in m.anomalies] == \
           [(a.start, a.stop, a.kind) for a in _Mission(rows, test_rows, SEED, 76, 11).anomalies]
    by_command: dict[int, list] = {}
    for tc in m.telecommands:
        for g, t0, dur, a, b in tc.effects:
            assert (t0, dur) == (tc.row, 3) and {a, b} == {0, 1}
            by_command.setdefault(tc.index, []).append((g, a, b, tc.row))
    assert sorted(by_command) == list(range(8))  # 11 commands: 4 ON/OFF pairs, 3 without effect
    for j, fired in by_command.items():
        assert len({(g, a, b) for g, a, b, _ in fired}) == 1  # one group, one direction, every time
        assert sum(row < 0.6 * rows for *_, row in fired) >= 8
    assert by_command[0][0][:3] == (0, 0, 1) and by_command[1][0][:3] == (0, 1, 0)  # group 0: ON, OFF
    for g in {f[0][0] for f in by_command.values()}:  # ON and OFF alternate, so each step is the same
        steps = m.groups[g].changes[:, 2]
        assert len(steps) >= 16 and np.allclose(steps[0::2], steps[0]) and np.allclose(steps[1::2], -steps[0])
    assert sorted(m.response_gain) == list(range(8))


def test_unknown_response_is_a_one_line_error(tmp_path):
    with pytest.raises(TelemetryError, match="command_response must be one of smooth, transient, switch, got 'spiky'") as err:
        generate_mission(tmp_path, rows=5_000, command_response="spiky")
    assert "\n" not in str(err.value) and not any(tmp_path.glob("*.parquet"))


def test_cli_flag(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--rows", "2000", "--command-response", "transient"]) == 0
    assert json.loads((tmp_path / "mission.json").read_text())["parameters"]["command_response"] == "transient"
    done = subprocess.run([sys.executable, "-m", "telemetry", "synth", "--out", str(tmp_path / "x"), "--rows", "2000",
                           "--command-response", "spiky"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 2
    assert done.stderr == "error: command_response must be one of smooth, transient, switch, got 'spiky'\n"
