"""Telecommands as conditioning features: rows since the last pulse, continued across files."""
import numpy as np
import pytest

from telemetry import telecommands as tcm
from telemetry.errors import TelemetryError


def test_rows_since_the_last_pulse_start_on_a_hand_made_case():
    p = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [0, 0], [1, 0]], np.uint8)
    since = tcm.last_pulse_rows(p)
    np.testing.assert_array_equal(since[:, 0], [np.inf, 0, 1, 2, 3, 0])  # a 2-row pulse counts from its start
    np.testing.assert_array_equal(since[:, 1], [np.inf, np.inf, np.inf, 0, 1, 2])
    f = tcm.features(p, horizon=2.0)
    np.testing.assert_allclose(f[:, 0], np.exp(-np.array([np.inf, 0, 1, 2, 3, 0]) / 2.0), rtol=1e-6)
    assert f.dtype == np.float32 and f[0, 0] == 0.0
    with pytest.raises(TelemetryError, match="horizon must be > 0"):
        tcm.features(p, horizon=0)


def test_features_continue_from_one_series_into_the_next():
    rng = np.random.default_rng(0)
    p = (rng.random((500, 3)) < 0.02).astype(np.uint8)
    p[320:322] = 0  # no pulse across the boundary (one there would restart its count)
    whole = tcm.features(p, 50.0)
    a, b = p[:321], p[321:]
    np.testing.assert_array_equal(np.vstack([tcm.features(a, 50.0), tcm.features(b, 50.0, tcm.end_state(a))]), whole)


def test_column_specs():
    assert tcm.columns(None, None) is None and tcm.columns("none", None) is None
    assert tcm.columns("all", None) == "all"
    assert tcm.columns([1, "telecommand_4", "7"], None) == ["telecommand_1", "telecommand_4", "telecommand_7"]
    with pytest.raises(TelemetryError, match="unknown column 'telecommand_99'"):
        tcm.columns([99], ["telecommand_1"])


def test_prepare_loads_telecommands_as_features_sliced_with_the_splits(tmp_path):
    from telemetry.prepare import DataConfig, prepare
    from telemetry.synth import generate_mission

    generate_mission(tmp_path, rows=20_000, seed=1, test_rows=5_000)
    cfg = DataConfig(train=str(tmp_path / "train.parquet"), test=str(tmp_path / "test.parquet"), channels="41-46",
                     telecommands="all", telecommand_horizon=200.0, fractions=[0.5, 0.25, 0.25])
    d = prepare(cfg)
    assert d.fit.n_channels == 6 and len(d.fit.telecommand_names) == 11
    parts = [d.fit.telecommands, d.validation.telecommands, d.holdout.telecommands]
    assert all(t.dtype == np.float32 and t.shape[1] == 11 for t in parts + [d.test.telecommands])
    stacked = np.vstack(parts)
    assert stacked.max() == 1.0 and stacked.min() >= 0.0 and (stacked == 1.0).any(axis=0).sum() >= 3
    plain = prepare(DataConfig(train=cfg.train, test=cfg.test, channels="41-46", fractions=[0.5, 0.25, 0.25]))
    np.testing.assert_array_equal(plain.fit.values, d.fit.values)  # channels are not touched
    assert plain.fit.telecommands is None
