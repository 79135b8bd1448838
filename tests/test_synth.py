"""The synthetic mission generator: schema, determinism, labels, structure, chunking, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from telemetry.__main__ import main
from telemetry.errors import TelemetryError
from telemetry.schema import DEFAULT_CHANNELS
from telemetry.synthetic.mission import ANOMALY_KINDS, generate_mission

ROWS, TEST_ROWS, CHUNK, SEED = 20_000, 5_000, 3_000, 7
CHANNELS = [f"channel_{i}" for i in range(1, 77)]
TELECOMMANDS = [f"telecommand_{i}" for i in range(1, 12)]


@pytest.fixture(scope="module")
def mission(tmp_path_factory):
    """One small mission, generated in many chunks so chunk borders are exercised everywhere."""
    out = tmp_path_factory.mktemp("mission")
    summary = generate_mission(out, rows=ROWS, seed=SEED, chunk_rows=CHUNK)
    return out, summary


def _read(out: Path, name: str) -> pa.Table:
    return pq.read_table(out / f"{name}.parquet")


def test_files_schema_and_dtypes(mission):
    out, summary = mission
    assert sorted(p.name for p in out.iterdir()) == ["mission.json", "test.parquet", "test_labels.parquet", "train.parquet"]
    train, test, labels = _read(out, "train"), _read(out, "test"), _read(out, "test_labels")
    assert train.column_names == ["id", *CHANNELS, *TELECOMMANDS, "is_anomaly"]
    assert test.column_names == ["id", *CHANNELS, *TELECOMMANDS]
    assert labels.column_names == ["id", "is_anomaly"]
    for table in (train, test, labels):
        assert table.schema.field("id").type == pa.int64()
    for name in CHANNELS:
        assert train.schema.field(name).type == pa.float32() == test.schema.field(name).type
        assert np.isfinite(train[name].to_numpy()).all()
    for name in [*TELECOMMANDS, "is_anomaly"]:
        assert train.schema.field(name).type == pa.uint8()
        assert set(np.unique(train[name].to_numpy())) <= {0, 1}
    assert labels.schema.field("is_anomaly").type == pa.uint8()
    assert (train.num_rows, test.num_rows, labels.num_rows) == (ROWS, TEST_ROWS, TEST_ROWS)
    assert summary["rows"] == {"train": ROWS, "test": TEST_ROWS}
    # Row groups follow the chunk size.
    meta = pq.ParquetFile(out / "train.parquet").metadata
    assert meta.num_row_groups == -(-ROWS // CHUNK) and meta.row_group(0).num_rows == CHUNK


def test_ids_increase_and_continue_into_test(mission):
    out, _ = mission
    train_ids = _read(out, "train")["id"].to_numpy()
    test_ids = _read(out, "test")["id"].to_numpy()
    np.testing.assert_array_equal(train_ids, np.arange(ROWS))
    np.testing.assert_array_equal(test_ids, np.arange(ROWS, ROWS + TEST_ROWS))
    np.testing.assert_array_equal(_read(out, "test_labels")["id"].to_numpy(), test_ids)


def test_same_seed_gives_identical_files_and_other_seed_differs(mission, tmp_path):
    out, _ = mission
    generate_mission(tmp_path / "again", rows=ROWS, seed=SEED, chunk_rows=CHUNK)
    for name in ("train", "test", "test_labels"):
        assert (tmp_path / "again" / f"{name}.parquet").read_bytes() == (out / f"{name}.parquet").read_bytes()
    generate_mission(tmp_path / "other", rows=ROWS, seed=SEED + 1, chunk_rows=CHUNK)
    a, b = _read(out, "train"), _read(tmp_path / "other", "train")
    assert not np.array_equal(a["channel_41"].to_numpy(), b["channel_41"].to_numpy())
    assert not np.array_equal(a["is_anomaly"].to_numpy(), b["is_anomaly"].to_numpy())


def test_anomalous_fraction_and_kinds(mission):
    out, summary = mission
    train_frac = _read(out, "train")["is_anomaly"].to_numpy().mean()
    test_frac = _read(out, "test_labels")["is_anomaly"].to_numpy().mean()
    assert 0.05 <= train_frac <= 0.15 and 0.05 <= test_frac <= 0.15
    assert summary["anomalous_fraction"] == pytest.approx({"train": train_frac, "test": test_frac})
    kinds = summary["events_by_kind"]
    assert len([k for k in ANOMALY_KINDS if kinds[k] > 0]) >= 6
    record = json.loads((out / "mission.json").read_text())
    assert record["parameters"]["seed"] == SEED and record["summary"]["events_by_kind"] == kinds
    # Every planned anomaly is a labelled run of its own (anomalies never touch each other).
    labels = np.concatenate([_read(out, "train")["is_anomaly"].to_numpy(),
                             _read(out, "test_labels")["is_anomaly"].to_numpy()])
    runs = np.flatnonzero(np.diff(np.concatenate([[0], labels, [0]]).astype(np.int8)) == 1)
    assert len(runs) == len(record["anomalies"]) == sum(kinds[k] for k in ANOMALY_KINDS)
    on_default = [a for a in record["anomalies"] if set(a["channels"]) & set(DEFAULT_CHANNELS)]
    assert 0 < len(on_default) < len(record["anomalies"])  # most, but not all, are on 41-46


def test_telecommand_rows_are_nominal_mode_changes(mission):
    out, summary = mission
    train, test, labels = _read(out, "train"), _read(out, "test"), _read(out, "test_labels")
    tc = np.concatenate([np.stack([t[n].to_numpy() for n in TELECOMMANDS]).max(axis=0) for t in (train, test)])
    truth = np.concatenate([train["is_anomaly"].to_numpy(), labels["is_anomaly"].to_numpy()])
    assert tc.sum() > 0 and summary["events_by_kind"]["mode_change"] > 0
    assert truth[tc == 1].sum() == 0
    # Mode transitions (the level/amplitude change that follows) are nominal too.
    record = json.loads((out / "mission.json").read_text())
    for cmd in record["telecommands"]:
        for change in cmd["mode_changes"]:
            assert truth[change["start_id"]:change["start_id"] + change["rows"]].sum() == 0


def test_default_channels_strongly_correlated(mission):
    out, _ = mission
    train = _read(out, "train")
    nominal = train["is_anomaly"].to_numpy() == 0
    x = np.stack([train[c].to_numpy()[nominal] for c in DEFAULT_CHANNELS])
    corr = np.abs(np.corrcoef(x))[np.triu_indices(len(DEFAULT_CHANNELS), 1)]
    assert corr.mean() > 0.5
    record = json.loads((out / "mission.json").read_text())
    assert list(DEFAULT_CHANNELS) in record["channel_groups"]


def test_chunk_borders_are_continuous(mission):
    """First differences at chunk borders look like those anywhere else in nominal stretches."""
    out, _ = mission
    train, test = _read(out, "train"), _read(out, "test")
    record = json.loads((out / "mission.json").read_text())
    n = ROWS + TEST_ROWS
    group_of = {c: g for g, chans in enumerate(record["channel_groups"]) for c in chans}
    # Rows whose difference to the previous row may legitimately jump: anomalies, mode transitions.
    busy = np.zeros((len(record["channel_groups"]), n + 1), dtype=bool)
    for a in record["anomalies"]:
        busy[:, a["first_id"]:a["last_id"] + 2] = True
    for cmd in record["telecommands"]:
        for ch in cmd["mode_changes"]:
            busy[ch["group"], ch["start_id"]:ch["start_id"] + ch["rows"] + 1] = True
    borders = np.array([*range(CHUNK, ROWS, CHUNK), ROWS, *range(ROWS + CHUNK, n, CHUNK)])
    ratios = []
    for name in CHANNELS:
        x = np.concatenate([train[name].to_numpy(), test[name].to_numpy()]).astype(np.float64)
        jump = np.abs(np.diff(x))  # jump[i - 1] is the step from row i - 1 to row i
        calm = ~busy[group_of[name], 1:n]
        at_border = np.zeros(n - 1, dtype=bool)
        at_border[borders - 1] = True
        typical = jump[calm & ~at_border]
        border = jump[calm & at_border]
        assert len(border) > 0 or name not in DEFAULT_CHANNELS
        if len(border):
            assert border.max() <= typical.max(), name
            ratios.append(border / np.median(typical))
    # A reset of any slow component at the borders would lift this well above its ~1.2 baseline.
    assert np.mean(np.concatenate(ratios)) < 1.6


def test_flatline_anomalies_hold_one_value_across_chunks(tmp_path):
    # Seed 5 with 1,000-row chunks has a flat line spanning the border at id 24,000.
    generate_mission(tmp_path, rows=ROWS, seed=5, chunk_rows=1_000)
    train, test = _read(tmp_path, "train"), _read(tmp_path, "test")
    record = json.loads((tmp_path / "mission.json").read_text())
    flats = [a for a in record["anomalies"] if a["kind"] == "flatline"]
    assert any(a["first_id"] < 24_000 <= a["last_id"] for a in flats)
    for a in flats:
        for name in a["channels"]:
            x = np.concatenate([train[name].to_numpy(), test[name].to_numpy()])
            assert np.unique(x[a["first_id"]:a["last_id"] + 1]).size == 1, (a, name)


def test_smallest_mission_still_has_every_kind(tmp_path):
    summary = generate_mission(tmp_path, rows=1_000, seed=3)
    assert summary["rows"] == {"train": 1_000, "test": 1_000}
    assert all(summary["events_by_kind"][k] > 0 for k in ANOMALY_KINDS)


@pytest.mark.parametrize("kwargs, words", [
    (dict(rows=10), "rows must be at least 1,000"),
    (dict(rows=5_000, seed=-1), "seed must be at least 0"),
    (dict(rows=5_000, test_rows=10), "test_rows must be at least 1,000"),
    (dict(rows=5_000, chunk_rows=0), "chunk_rows must be at least 1,000"),
    (dict(rows=5_000, n_channels=20), "n_channels must be at least 46"),
    (dict(rows="many"), "rows must be an integer"),
    (dict(rows=True), "rows must be an integer"),
])
def test_bad_arguments_raise_one_line_errors(tmp_path, kwargs, words):
    with pytest.raises(TelemetryError, match=words) as err:
        generate_mission(tmp_path, **kwargs)
    assert "\n" not in str(err.value)
    assert not any(tmp_path.glob("*.parquet"))


def test_cli_writes_mission(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--rows", "2000", "--seed", "1", "--chunk-rows", "1500"]) == 0
    assert "train.parquet: 2,000 rows" in capsys.readouterr().out
    assert pq.ParquetFile(tmp_path / "test.parquet").metadata.num_rows == 1_000


def test_cli_error_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "telemetry", "synth", "--out", str(tmp_path), "--rows", "10"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert done.returncode == 2
    assert done.stderr == "error: rows must be at least 1,000, got 10\n"
