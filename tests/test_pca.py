"""The pca member: exact against scikit-learn on a materialised lag embedding, streamed in chunks,
and it sees what no single channel shows."""
import numpy as np
import pytest
from sklearn.decomposition import PCA

from models import pca as pca_module
from models import registry
from telemetry.errors import TelemetryError
from telemetry.series import Series


def series(x, labels=None, name="s"):
    n = len(x)
    return Series(np.arange(n, dtype=np.int64), np.ascontiguousarray(x, dtype=np.float32),
                  np.zeros(n, np.uint8) if labels is None else labels, tuple(f"c{i}" for i in range(x.shape[1])), name)


def correlated(n, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 1))
    # Three channels driven by one factor: c1 = z, c2 = -z, c3 = 0.5 z, each with a little noise.
    return np.concatenate([z, -z, 0.5 * z], axis=1) + 0.05 * rng.standard_normal((n, 3))


def test_lag_embedding_matches_a_materialised_reference():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    emb = pca_module.lagged(x, 3)
    ref = np.array([np.concatenate([x[t], x[max(t - 1, 0)], x[max(t - 2, 0)]]) for t in range(4)])
    np.testing.assert_array_equal(emb, ref)
    np.testing.assert_array_equal(pca_module.lagged(x, 3, 1, 3), ref[1:3])


def test_streamed_fit_equals_sklearn_pca_on_the_materialised_embedding(monkeypatch):
    monkeypatch.setattr(pca_module, "CHUNK_ROWS", 97)  # many chunks, with ragged edges
    x = correlated(1000, 0)
    est = registry.get("pca")(lags=4, n_components=3).fit(series(x))
    ref = PCA(3).fit(pca_module.lagged(x.astype(np.float32), 4))
    # Components are defined up to sign.
    np.testing.assert_allclose(np.abs(est.components_), np.abs(ref.components_), atol=1e-4)
    np.testing.assert_allclose(est.mean_, ref.mean_, atol=1e-5)
    np.testing.assert_allclose(est.explained_variance_ratio_, ref.explained_variance_ratio_, atol=1e-4)
    frac = registry.get("pca")(lags=1, n_components=0.9).fit(series(x))
    assert frac.components_.shape == (1, 3)  # one factor explains > 90 % of the variance


def test_pca_finds_a_correlation_break_that_every_channel_hides():
    x = correlated(6000, 1)
    test = correlated(2000, 2)
    # Rows 1000-1100: c2 follows +z instead of -z. Each channel stays inside its own nominal range.
    test[1000:1100, 1] = test[1000:1100, 0]
    lo, hi = x.min(axis=0), x.max(axis=0)
    assert ((test >= lo) & (test <= hi)).all(axis=1)[1000:1100].mean() > 0.95
    est = registry.get("pca")(lags=1, n_components=1).fit(series(x[:4000]), series(x[4000:]))
    s = est.score_samples(series(test))
    assert s.shape == (2000,) and s.dtype == np.float32
    inside, outside = s[1000:1100], np.delete(s, np.s_[1000:1100])
    assert np.median(inside) > np.quantile(outside, 0.999)
    # The per-channel z-score baseline cannot separate them.
    std = registry.get("global_std")().fit(series(x[:4000]))
    b = std.score_samples(series(test))
    assert np.median(b[1000:1100]) < np.quantile(np.delete(b, np.s_[1000:1100]), 0.99)


def test_save_load_round_trip_and_input_checks(tmp_path):
    x = correlated(500, 3)
    est = registry.get("pca")(lags=2, n_components=0.95).fit(series(x))
    again = registry.get("pca").load(est.save(tmp_path / "m"))
    np.testing.assert_array_equal(again.score_samples(series(x)), est.score_samples(series(x)))
    with pytest.raises(TelemetryError, match="n_components must be an integer >= 1 or a fraction in \\(0, 1\\), got 1.5"):
        registry.get("pca")(n_components=1.5).fit(series(x))
    with pytest.raises(TelemetryError, match="lags must be a positive integer, got 0"):
        registry.get("pca")(lags=0).fit(series(x))
    with pytest.raises(TelemetryError, match="fitted on 3 channels, got 2"):
        est.score_samples(series(x[:, :2]))
