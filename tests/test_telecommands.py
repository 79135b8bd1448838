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
    from telemetry.synthetic.mission import generate_mission

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


def _series_with_tc(n=2000, seed=0):
    from telemetry.series import Series

    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 3)).astype(np.float32)
    tc = tcm.features((rng.random((n, 2)) < 0.01).astype(np.uint8), 50.0)
    return Series(np.arange(n, dtype=np.int64), v, np.zeros(n, np.uint8), ("a", "b", "c"), "s",
                  telecommands=tc, telecommand_names=("telecommand_1", "telecommand_2"))


def test_window_batches_append_conditioning_to_inputs_only():
    from telemetry.windows import WindowBatches

    s = _series_with_tc(100)
    b = WindowBatches(s.values, 8, np.array([0, 5, 20]), batch_size=3, target="self", conditioning=s.telecommands)
    x, y = b[0]
    assert x.shape == (3, 8, 5) and y.shape == (3, 8, 3)
    np.testing.assert_array_equal(x[1, :, :3], s.values[5:13])
    np.testing.assert_array_equal(x[1, :, 3:], s.telecommands[5:13])
    np.testing.assert_array_equal(y, x[:, :, :3])
    f = WindowBatches(s.values, 8, np.array([0, 5]), target="next", horizon=2, conditioning=s.telecommands)
    x, y = f[0]
    assert x.shape == (2, 8, 5) and y.shape == (2, 2, 3)  # the forecast target holds channels only


def test_telecommand_inputs_widen_the_input_not_the_scored_channels(tmp_path):
    from models import registry

    s = _series_with_tc()
    ae = registry.get("dense_ae")(window=8, units=8, latent=4, epochs=1, telecommands=True).fit(s, s)
    assert ae.model_.input_shape == (None, 8, 5) and ae.scorer_.loc_.shape == (3,)
    plain = registry.get("dense_ae")(window=8, units=8, latent=4, epochs=1).fit(s, s)
    assert plain.model_.input_shape == (None, 8, 3)
    assert ae.score_samples(s).shape == (len(s),)
    again = registry.get("dense_ae").load(ae.save(tmp_path / "ae"))
    np.testing.assert_allclose(again.score_samples(s), ae.score_samples(s), rtol=1e-5)
    assert again.loss(s) == pytest.approx(ae.loss(s), rel=1e-5)  # compiled on load: the scored channels' loss
    pca = registry.get("pca")(lags=2, n_components=3, telecommands=True).fit(s, s)
    assert pca.components_.shape == (3, 3 * 2) and pca.coef_.shape == (3 * 2, 2) and pca.scorer_.loc_.shape == (3,)
    # per-channel scores cover the scored channels only, and still reduce to the per-row score
    row, ch = ae.score_samples_and_channels(s)
    assert ch.shape == (len(s), 3) and (row >= ch.max(axis=1) - 1e-5).all()
    row, ch = pca.score_samples_and_channels(s)
    assert ch.shape == (len(s), 3)
    np.testing.assert_array_equal(row, ch.max(axis=1))
    bare = type(s)(s.ids, s.values, s.labels, s.channels, "bare")
    with pytest.raises(TelemetryError, match="telecommands=True but the bare series has no telecommand columns"):
        pca.score_samples(bare)
    other = type(s)(s.ids, s.values, s.labels, s.channels, "one", telecommands=s.telecommands[:, :1])
    with pytest.raises(TelemetryError, match="fitted with 2 telecommand columns, got 1 in one"):
        pca.score_samples(other)


def _commanded(n, seed, pulse_every=2_000, tau=100.0):
    """Three channels on one factor (c1 = z, c2 = -z, c3 = z / 2) plus, after each pulse of telecommand 1,
    a surge that breaks that correlation: exactly (3, 3, -3) * its feature (the horizon is tau)."""
    from telemetry.series import Series

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 1))
    x = np.concatenate([z, -z, 0.5 * z], axis=1) + 0.05 * rng.standard_normal((n, 3))
    pulses = np.zeros((n, 2), np.uint8)
    pulses[pulse_every // 2::pulse_every, 0] = 1
    f = tcm.features(pulses, tau)
    x += f[:, :1] * np.array([3.0, 3.0, -3.0])
    return Series(np.arange(n, dtype=np.int64), x.astype(np.float32), np.zeros(n, np.uint8), ("a", "b", "c"), "s",
                  telecommands=f, telecommand_names=("telecommand_1", "telecommand_2"))


def test_pca_conditions_on_telecommands_by_regression():
    """The subspace is sklearn's PCA of the lag embedding's least-squares residuals on the features
    (telecommand_2 never fires: a constant column the pseudo-inverse leaves alone)."""
    from sklearn.decomposition import PCA

    from models import pca as pca_module
    from models import registry

    s = _commanded(6_000, 0)
    est = registry.get("pca")(lags=2, n_components=2, telecommands=True).fit(s)
    emb = pca_module.lagged(s.values, 2).astype(np.float64)
    f = np.column_stack([np.ones(len(s)), s.telecommands[:, :1]])
    resid = emb - f @ np.linalg.lstsq(f, emb, rcond=None)[0]
    ref = PCA(2).fit(resid)
    np.testing.assert_allclose(np.abs(est.components_), np.abs(ref.components_), atol=1e-4)
    np.testing.assert_allclose(est.coef_[:, 0], np.tile([3.0, 3.0, -3.0], 2), atol=0.15)  # 3 pulses: z leaks in
    np.testing.assert_array_equal(est.coef_[:, 1], 0.0)


def test_pca_with_telecommands_does_not_flag_the_commanded_surge(tmp_path):
    from models import registry

    fit, test = _commanded(20_000, 1, pulse_every=5_000), _commanded(6_000, 2)
    since = tcm.last_pulse_rows(test.telecommands[:, :1] == 1.0)[:, 0]
    surge, calm = since < 100, since > 1_000  # the first time constant (surge > 3 / e), and after it died out
    plain = registry.get("pca")(lags=2, n_components=1).fit(fit)
    cond = registry.get("pca")(lags=2, n_components=1, telecommands=True).fit(fit)
    s_plain, s_cond = plain.score_samples(test), cond.score_samples(test)
    assert np.median(s_plain[surge]) > np.quantile(s_plain[calm], 0.999)  # channel-only: an anomaly
    assert np.median(s_cond[surge]) < np.quantile(s_cond[calm], 0.9)  # conditioned: nominal
    again = registry.get("pca").load(cond.save(tmp_path / "pca"))
    np.testing.assert_array_equal(again.score_samples(test), s_cond)


def test_a_sweep_on_data_without_telecommands_narrows_a_searched_choice_and_refuses_a_fixed_true(tmp_path):
    """configs/demo.yaml searches pca's telecommands; pointed at data without them, it still runs."""
    import pandas as pd

    from search import shapes
    from search.config import parse_config
    from telemetry.prepare import prepare

    n = 600
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": np.arange(n), "channel_1": rng.normal(size=n).astype(np.float32),
                       "is_anomaly": (np.arange(n) % 100 > 95).astype(np.uint8)})
    df.to_parquet(tmp_path / "train.parquet", index=False)
    raw = {"name": "t", "data": {"train": str(tmp_path / "train.parquet"), "channels": "1", "telecommands": "all"},
           "architectures": {"pca": {"trials": 2, "space": {"telecommands": {"choice": [True, False]},
                                                            "lags": {"choice": [1, 3]}}}}}
    cfg = parse_config(raw)
    shapes.adapt(cfg, prepare(cfg.data))
    (pca,) = cfg.architectures
    assert "telecommands" not in pca.space and pca.fixed["telecommands"] is False and "lags" in pca.space
    raw["architectures"]["pca"] = {"trials": 1, "fixed": {"telecommands": True}}
    cfg = parse_config(raw)
    with pytest.raises(TelemetryError, match=r"^architectures.pca: telecommands is true, but the data has none "
                                             r"\(no telecommand column in .*train.parquet\)$"):
        shapes.adapt(cfg, prepare(cfg.data))
