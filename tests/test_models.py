"""Every registered detector honours the one estimator interface; member-specific checks follow.

Models are tiny (window 8, a handful of units, 1 epoch) so the file runs in about a minute on 2 cores.
"""
import numpy as np
import pytest

from sklearn.base import clone

from models import registry
from models.base import POSITIVE_INT, Detector, _merged
from telemetry.errors import TelemetryError
from telemetry.series import Series

TAG_KEYS = {"needs_labels", "forecaster", "windowed", "keras", "baseline", "channel_scores"}
BIG = slice(400, 430)  # the large injected anomaly

# Tiny hyperparameters, merged in this dict's order ("all" first, later entries win) for the tags a
# member has; each member receives only the names its constructor takes, so new members need no entry.
OVERRIDES = {
    "all": {"seed": 0, "n_estimators": 25},
    "windowed": {"window": 8, "latent": 4, "units": 8, "filters": 4, "epochs": 1, "batch_size": 64, "verbose": 0},
    "forecaster": {"horizon": 1},
    "needs_labels": {"learning_rate": 1e-2},  # one tiny epoch must be enough to learn the labels
}


def tiny_params(cls) -> dict:
    merged = dict(OVERRIDES["all"])
    for tag, over in OVERRIDES.items():
        if cls.tags.get(tag):
            merged.update(over)
    names = set(cls.param_names())
    return {k: v for k, v in merged.items() if k in names}


def make_series(n=600, channels=3, seed=0, events=((150, 154), (250, 262), (BIG.start, BIG.stop)), name="tiny"):
    """Sines plus noise; anomalies: a spike, a frozen stretch, and a large offset on every channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    values = np.sin(t / 8.0 + np.arange(channels)) + rng.normal(0, 0.05, (n, channels))
    labels = np.zeros(n, dtype=np.uint8)
    for lo, hi in events:
        labels[lo:hi] = 1
    if n > 154:
        values[150:154, 0] += 3.0
    if n > 262:
        values[250:262] = values[250]
    if n > BIG.stop:
        values[BIG] += 6.0
    return Series(np.arange(n, dtype=np.int64), values.astype(np.float32), labels,
                  tuple(f"channel_{41 + c}" for c in range(channels)), source=name)


@pytest.fixture(scope="module")
def series():
    return make_series()


@pytest.fixture(scope="module")
def validation():
    return make_series(n=200, seed=1, events=((120, 130),), name="validation")


@pytest.mark.parametrize("name", registry.names())
def test_detector_interface(name, series, validation, tmp_path):
    cls = registry.get(name)
    assert TAG_KEYS <= set(cls.tags), f"{name}: tags lack {TAG_KEYS - set(cls.tags)}"
    params = tiny_params(cls)
    est = cls(**params)
    assert est.name == name

    # scikit-learn's contract: the constructor only stores; clone, get_params and set_params agree.
    assert set(est.get_params(deep=True)) == set(cls.param_names()) == set(est.get_params(deep=False))
    assert {k: est.get_params()[k] for k in params} == params
    twin = clone(est)
    assert twin is not est and type(twin) is cls and twin.get_params() == est.get_params()
    some = sorted(params)[0] if params else None
    if some is not None:
        assert twin.set_params(**{some: params[some]}) is twin
    with pytest.raises(ValueError, match="Invalid parameter"):
        est.set_params(no_such_parameter=1)

    # input checks, all before any training: every checked parameter, wrong input types, labels
    for param in _merged(cls, "_checks"):
        bad = clone(est).set_params(**{param: "bogus"})
        with pytest.raises(TelemetryError, match=f"{name}: {param} must be"):
            bad.fit(series, validation)
    with pytest.raises(TelemetryError, match="expected a telemetry Series"):
        clone(est).fit(series.values)
    with pytest.raises(TelemetryError, match="call fit before"):
        clone(est).score_samples(series)
    if cls.tags["needs_labels"]:
        with pytest.raises(TelemetryError, match="supervised: the training split .* no labels"):
            clone(est).fit(Series(series.ids, series.values, None, series.channels, source="unlabelled"))
    if cls.tags["windowed"]:
        short = make_series(n=est.window - 1, events=(), name="short")
        with pytest.raises(TelemetryError, match=f"window {est.window}( \\+ horizon 1)? is longer than the validation split"):
            clone(est).fit(series, short)

    assert est.fit(series, validation) is est
    if cls.tags["keras"]:  # one epoch asked, one epoch trained, with a finite loss
        assert len(est.history_["loss"]) == 1 and np.isfinite(est.history_["loss"][0]), est.history_
    s = est.score_samples(series)
    assert s.dtype == np.float32 and s.shape == (len(series),)
    assert np.isfinite(s).all()
    np.testing.assert_array_equal(est.score_samples(series), s)  # the same scores again
    nominal = series.labels == 0
    assert np.median(s[BIG]) > np.median(s[nominal]), f"{name}: the large anomaly does not stand out"
    # ...on every row of it (the edges aside), so the scores land on the rows they belong to
    assert s[BIG.start + 2: BIG.stop - 2].min() > np.median(s[nominal]), f"{name}: scores misaligned"
    assert not hasattr(clone(est), "fitted_"), "clone must copy parameters, not fitted state"
    two_channels = Series(series.ids, series.values[:, :2].copy(), series.labels, series.channels[:2])
    with pytest.raises(TelemetryError, match="fitted on 3 channels, got 2"):
        est.score_samples(two_channels)

    # per-channel scores: one pass gives the same per-row score, and [N, C] per channel where supported
    both, per_channel = est.score_samples_and_channels(series)
    np.testing.assert_array_equal(both, s)
    if cls.tags["channel_scores"]:
        assert per_channel.shape == (len(series), series.n_channels) and per_channel.dtype == np.float32
        assert np.isfinite(per_channel).all()
        np.testing.assert_array_equal(est.score_channels(series), per_channel)
    else:
        assert per_channel is None
        with pytest.raises(TelemetryError, match=f"{name} has no per-channel scores"):
            est.score_channels(series)
    with pytest.raises(TelemetryError, match="call fit before"):
        clone(est).score_channels(series)

    est.save(tmp_path / "m")
    back = Detector.load(tmp_path / "m")
    assert type(back) is cls and back.get_params() == est.get_params() and back.channels_ == est.channels_
    np.testing.assert_array_equal(back.score_samples(series), s)
    if cls.tags["channel_scores"]:
        np.testing.assert_array_equal(back.score_channels(series), per_channel)


def test_tags_are_merged_along_the_hierarchy():
    from models.baselines import RowDetector
    from models.window import KerasWindowDetector

    for name in registry.names():
        cls = registry.get(name)
        assert set(cls.tags) == TAG_KEYS, name
        assert cls.tags["baseline"] == (name in ("global_std", "isolation_forest")), name  # pca is a real member
        assert issubclass(cls, RowDetector) != cls.tags["keras"], name
        assert cls.tags["keras"] == cls.tags["windowed"] == issubclass(cls, KerasWindowDetector), name
    assert registry.get("lstm_forecaster").tags["forecaster"] and not registry.get("lstm_ae").tags["forecaster"]
    assert registry.get("cnn_lstm_classifier").tags["needs_labels"]
    with_channels = {n for n in registry.names() if registry.get(n).tags["channel_scores"]}
    assert {"pca", "global_std", "lstm_forecaster", "dense_ae"} <= with_channels
    assert not {"isolation_forest", "cnn_lstm_classifier"} & with_channels


def test_a_subclass_declares_only_what_it_adds():
    import inspect

    from models.window import ReconstructionDetector

    class Wider(ReconstructionDetector):
        _tags = {"needs_labels": True}
        _checks = {"extra": POSITIVE_INT}
        units: int = 128  # a new default for an inherited parameter
        extra: int = 3

    sig = inspect.signature(Wider.__init__)
    assert all(p.kind is p.KEYWORD_ONLY for n, p in sig.parameters.items() if n != "self")
    assert sig.parameters["units"].default == 128 and sig.parameters["window"].default == 32
    assert Wider.param_names()[-1] == "extra" and "latent" in Wider.param_names()
    assert Wider.tags == {**registry.get("lstm_ae").tags, "needs_labels": True}
    assert clone(Wider(extra=5)).extra == 5
    with pytest.raises(TelemetryError, match="extra must be a positive integer"):
        Wider(extra=0).fit(make_series())
    with pytest.raises(TelemetryError, match="latent must be a positive integer"):  # inherited check
        Wider(latent=0).fit(make_series())


# -- the forecaster ----------------------------------------------------------------------------------

@pytest.mark.parametrize("horizon", [1, 3])
def test_forecaster_scores_land_on_the_predicted_rows(horizon):
    n, spike = 300, 200
    rng = np.random.default_rng(2)
    values = (np.sin(np.arange(n)[:, None] / 6.0 + np.arange(2)) + rng.normal(0, 0.05, (n, 2))).astype(np.float32)
    values[spike, 1] += 40.0
    s_ = Series(np.arange(n, dtype=np.int64), values, None, ("a", "b"))
    est = registry.get("lstm_forecaster")(window=8, units=6, epochs=1, batch_size=64, horizon=horizon)
    s = est.fit(s_).score_samples(s_)
    assert s.shape == (n,) and s.dtype == np.float32
    assert spike <= int(np.argmax(s)) <= spike + 1, f"peak at row {np.argmax(s)}, spike at {spike}"
    # rows before the first forecast (the first window) take the first predicted row's score
    np.testing.assert_array_equal(s[:8], np.full(8, s[8]))


# -- the classifier ---------------------------------------------------------------------------------

def test_classifier_refuses_fit_without_labels_or_anomalies(series):
    est = registry.get("cnn_lstm_classifier")(window=8)
    unlabelled = Series(series.ids, series.values, None, series.channels, source="train.parquet")
    with pytest.raises(TelemetryError, match=r"supervised: the training split \(train\.parquet\).*no labels"):
        est.fit(unlabelled)
    nominal = Series(series.ids, series.values, np.zeros(len(series), np.uint8), series.channels, source="fit")
    with pytest.raises(TelemetryError, match="no anomalous row"):
        est.fit(nominal)
    with pytest.raises(TelemetryError, match="validation split .* no labels"):
        est.fit(series, Series(series.ids, series.values, None, series.channels, source="validation"))


def test_classifier_class_weights_balance_the_two_classes(series):
    """Each window's target is "holds an anomalous row"; with class_weight="balanced" both classes
    carry the same total weight, with None every window weighs 1."""
    labels = series.labels
    for class_weight in ("balanced", None):
        est = registry.get("cnn_lstm_classifier")(window=8, batch_size=50, class_weight=class_weight)
        data = est._training_data(series, training=True)
        ys, ws = map(np.concatenate, zip(*((y.ravel(), w) for _, y, w in (data[i] for i in range(len(data))))))
        starts = np.arange(len(series) - 8 + 1)  # stride 1: every window, each once (in shuffled order)
        assert len(ys) == starts.size
        assert ys.sum() == sum(labels[s:s + 8].any() for s in starts)
        assert est.positive_rate_ == pytest.approx(ys.mean())
        if class_weight is None:
            assert (ws == 1).all()
        else:
            assert ws[ys == 1].sum() == pytest.approx(ws[ys == 0].sum())
            assert ws[ys == 1].min() > ws[ys == 0].max()  # the rare class weighs more per window


# -- the baselines ----------------------------------------------------------------------------------

def test_global_std_matches_hand_computation():
    fit = Series(np.arange(3, dtype=np.int64), np.array([[1, 10], [3, 30], [100, 100]], np.float32),
                 np.array([0, 0, 1], np.uint8), ("a", "b"))
    test = Series(np.arange(3, dtype=np.int64), np.array([[5, 20], [2, 45], [2, 20]], np.float32), None, ("a", "b"))
    est = registry.get("global_std")().fit(fit)
    # nominal rows only: mean (2, 20), std (1, 10); the labelled row (100, 100) is ignored
    np.testing.assert_array_equal(est.mean_, [2, 20])
    np.testing.assert_array_equal(est.std_, [1, 10])
    np.testing.assert_array_equal(est.score_samples(test), np.array([3.0, 2.5, 0.0], np.float32))
    assert est.score_samples(test).dtype == np.float32


def test_isolation_forest_fit_rows_subsample_still_scores_every_row(series, monkeypatch):
    from models import baselines

    est = registry.get("isolation_forest")(n_estimators=20, fit_rows=50, seed=3).fit(series)
    assert est.n_fit_rows_ == 50
    s = est.score_samples(series)
    assert s.shape == (len(series),) and s.dtype == np.float32 and np.isfinite(s).all()
    monkeypatch.setattr(baselines, "CHUNK_ROWS", 64)  # chunked scoring equals one-shot scoring
    np.testing.assert_array_equal(est.score_samples(series), s)
    # the subsample is seeded: the same seed gives the same forest
    again = registry.get("isolation_forest")(n_estimators=20, fit_rows=50, seed=3).fit(series)
    np.testing.assert_array_equal(again.score_samples(series), s)


# -- per-channel scores ------------------------------------------------------------------------------

def one_channel_spike(n=300, rows=slice(200, 204), channel=1, size=8.0, seed=3):
    """Three smooth channels; a spike in ``channel`` only, on ``rows``."""
    rng = np.random.default_rng(seed)
    values = np.sin(np.arange(n)[:, None] / 7.0 + np.arange(3)) + rng.normal(0, 0.05, (n, 3))
    values[rows, channel] += size
    return Series(np.arange(n, dtype=np.int64), values.astype(np.float32), None, ("a", "b", "c"))


@pytest.mark.parametrize("name, params", [
    ("dense_ae", {"window": 8, "latent": 2, "units": 8, "epochs": 1, "batch_size": 64, "seed": 0}),
    ("lstm_forecaster", {"window": 8, "units": 6, "epochs": 1, "batch_size": 64, "horizon": 2, "seed": 0}),
    ("pca", {"lags": 2, "n_components": 2}),
])
def test_channel_scores_are_aligned_to_rows_and_name_the_spiked_channel(name, params):
    spiked, rows = one_channel_spike(), slice(200, 204)
    clean = one_channel_spike(size=0.0)
    est = registry.get(name)(**params).fit(clean)
    ch = est.score_channels(spiked)
    assert ch.shape == (300, 3) and ch.dtype == np.float32
    # the spiked channel alone stands out, at the spiked rows (a window model smears it over the
    # windows that hold them, a forecaster over the rows it predicted: within a window of them)
    peak_row, peak_channel = np.unravel_index(np.argmax(ch), ch.shape)
    assert peak_channel == 1 and rows.start - 8 <= peak_row < rows.stop + 8, (peak_row, peak_channel)
    # at each spiked row it is the spiked channel that scores highest (pca's residual leaks into the
    # other channels too, since the spike moves the projection, but less)
    assert (ch[rows].argmax(axis=1) == 1).all()
    far = np.r_[0:150]
    assert ch[far, 1].max() < ch[rows, 1].max() / 3
    # untouched rows score the same whether or not another part of the series was spiked
    np.testing.assert_allclose(ch[:150], est.score_channels(clean)[:150], atol=1e-4)


@pytest.mark.parametrize("reduction", ["max", "mean"])
def test_row_members_score_is_exactly_the_channel_reduction(reduction):
    s = make_series()
    for est in (registry.get("pca")(lags=2, n_components=2, channel_reduction=reduction), registry.get("global_std")()):
        if est.name == "global_std" and reduction == "mean":
            continue  # global_std always takes the max
        est.fit(s)
        ch = est.score_channels(s)
        reduced = ch.max(axis=1) if reduction == "max" else ch.mean(axis=1)
        np.testing.assert_array_equal(est.score_samples(s), reduced)


def test_window_channel_scores_relate_to_the_row_score_as_documented(series, validation):
    # max over channels and max over covering windows commute exactly; a mean over windows of a max
    # over channels is at least the max over channels of the per-channel means.
    base = {"window": 8, "latent": 2, "units": 8, "epochs": 1, "batch_size": 64, "seed": 0}
    mm = registry.get("dense_ae")(row_reduction="max", **base).fit(series, validation)
    np.testing.assert_array_equal(mm.score_samples(series), mm.score_channels(series).max(axis=1))
    mean = registry.get("dense_ae")(**base).fit(series, validation)  # channel max, row mean: the default
    s, ch = mean.score_samples_and_channels(series)
    assert (s >= ch.max(axis=1) - 1e-5).all() and (s > ch.max(axis=1) + 1e-3).any()
    # mean/mean is linear: equal up to rounding
    lin = registry.get("dense_ae")(channel_reduction="mean", **base).fit(series, validation)
    np.testing.assert_allclose(lin.score_samples(series), lin.score_channels(series).mean(axis=1), atol=1e-5)


def test_channel_row_scores_hand_computed():
    from models.scoring import RowScorer

    # two windows of length 2 over 3 rows, two channels; loc 1, scale 2 per channel
    err = np.array([[3.0, 1.0], [1.0, 5.0]], np.float32)
    sc = RowScorer("max", "mean").set_stats([1, 1], [2, 2])
    ch = sc.channel_row_scores(err, np.array([0, 1]), 2, 3)
    np.testing.assert_allclose(ch, [[1.0, 0.0], [0.5, 1.0], [0.0, 2.0]])  # z = [[1, 0], [0, 2]]
    np.testing.assert_allclose(sc.row_scores(err, np.array([0, 1]), 2, 3), [1.0, 1.5, 2.0])  # >= ch.max(1)
    with pytest.raises(TelemetryError, match="per-channel scores need errors"):
        sc.channel_row_scores(err[:, 0], np.array([0, 1]), 2, 3)


def test_keras_runs_on_the_backend_asked_for():
    """.ci/run's JAX job: Keras on JAX, and TensorFlow not importable (as in a JAX-only install)."""
    import os

    import keras

    if os.environ.get("KERAS_BACKEND"):  # unset: ~/.keras/keras.json decides
        assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    if os.environ.get("TELESWEEP_BLOCK_TENSORFLOW"):
        with pytest.raises(ImportError):
            import tensorflow  # noqa: F401
