import numpy as np
import pytest

from telemetry.errors import TelemetryError
from telemetry import windows
from telemetry.windows import (WindowBatches, anomalous_windows, as_keras_dataset, check_window_fits, spread_to_rows,
                               window_starts)


def materialised(values, window, horizon=0):
    n = len(values) - window - horizon + 1
    return np.stack([values[i:i + window] for i in range(n)])


@pytest.fixture
def values():
    return np.random.default_rng(0).normal(size=(103, 4)).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 7, 64, 500])
def test_batches_equal_materialised_windows(values, batch_size):
    starts = window_starts(len(values), 10)
    b = WindowBatches(values, 10, starts, batch_size)
    got = np.concatenate([b[i] for i in range(len(b))])
    np.testing.assert_array_equal(got, materialised(values, 10))
    assert len(b) == -(-94 // batch_size)


def test_autoencoder_and_forecast_targets(values):
    starts = window_starts(len(values), 8, horizon=2)
    x, y = WindowBatches(values, 8, starts, 1000, target="next", horizon=2)[0]
    np.testing.assert_array_equal(x, materialised(values, 8, horizon=2))
    np.testing.assert_array_equal(y, np.stack([values[i + 8:i + 10] for i in range(len(starts))]))
    x, y = WindowBatches(values, 8, starts, 16, target="self")[0]
    np.testing.assert_array_equal(y, materialised(values, 8)[:16])  # an autoencoder's target is its window
    _, y = WindowBatches(values, 8, starts, 16, target="next", horizon=2, target_channels=[1, 3])[0]
    assert y.shape == (16, 2, 2)


def test_shuffle_is_a_seeded_permutation_that_changes_per_epoch(values):
    starts = window_starts(len(values), 5)
    b = WindowBatches(values, 5, starts, 16, shuffle=True, seed=3)
    first = np.concatenate([b.batch_starts(i) for i in range(len(b))])
    assert sorted(first) == list(starts) and not np.array_equal(first, starts)
    b.on_epoch_end()
    second = np.concatenate([b.batch_starts(i) for i in range(len(b))])
    assert sorted(second) == list(starts) and not np.array_equal(first, second)
    again = WindowBatches(values, 5, starts, 16, shuffle=True, seed=3)
    np.testing.assert_array_equal(first, np.concatenate([again.batch_starts(i) for i in range(len(again))]))


def test_nominal_only_excludes_every_window_touching_an_anomaly():
    labels = np.zeros(50, np.uint8)
    labels[20] = 1
    s = window_starts(50, 5, labels=labels, nominal_only=True)
    assert not any(st <= 20 < st + 5 for st in s)
    assert len(s) == 46 - 5
    # the forecast target row counts too
    s = window_starts(50, 5, horizon=1, labels=labels, nominal_only=True)
    assert 15 not in s and 14 in s


def test_strided_starts_always_reach_the_end():
    s = window_starts(20, 6, stride=4)
    np.testing.assert_array_equal(s, [0, 4, 8, 12, 14])


def test_window_longer_than_series_is_refused():
    with pytest.raises(TelemetryError, match="window 30 is longer than the series \\(20 rows\\)"):
        window_starts(20, 30)
    with pytest.raises(TelemetryError, match="window 18 \\+ horizon 3 is longer than the fit split \\(20 rows\\)"):
        check_window_fits(20, 18, 3, "the fit split")
    check_window_fits(20, 18, 2, "the fit split")  # exactly fits


def test_one_rule_says_which_window_fits():
    assert windows.fits(20, 18, 2) and not windows.fits(20, 18, 3) and windows.fits(20, 20)
    assert windows.largest_window(20) == 20 and windows.largest_window(20, horizon=3) == 17
    largest = windows.largest_window(20, 3)
    assert windows.fits(20, largest, 3) and not windows.fits(20, largest + 1, 3)
    np.testing.assert_array_equal(windows.fits(np.array([5, 9, 12]), 8, 1), [False, True, True])  # per series


def test_the_window_bounds_are_the_models_and_the_sweep_files():
    """window_starts, the models' parameter checks and the sweep file's schema read the same bounds."""
    from models import registry

    for bad in ((20, 0, 1, 0), (20, 5, 0, 0), (20, 5, 1, -1), (20, True, 1, 0)):
        with pytest.raises(TelemetryError, match="must be >= 1"):
            window_starts(*bad)
    checks = registry.get("conv_ae").param_checks()
    assert checks["window"] is windows.WINDOW and checks["train_stride"] is windows.STRIDE
    assert windows.WINDOW.ok(1) and not windows.WINDOW.ok(0) and not windows.WINDOW.ok(2.5)


def test_anomalous_windows_flags_exactly_the_windows_holding_an_anomalous_row():
    rng = np.random.default_rng(4)
    labels = (rng.random(60) < 0.1).astype(np.uint8)
    starts = window_starts(60, 7, stride=3)
    expected = [labels[s:s + 7].any() for s in starts]
    np.testing.assert_array_equal(anomalous_windows(labels, starts, 7), expected)


def test_keras_trains_on_the_dataset_and_reshuffles_it_every_epoch(values):
    """Keras must see every window once per epoch and call on_epoch_end, so the order changes."""
    keras = pytest.importorskip("keras")
    b = WindowBatches(values, 10, window_starts(len(values), 10), 32, target="self", shuffle=True, seed=0)
    orders = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            orders.append(np.concatenate([b.batch_starts(i) for i in range(len(b))]))

    inputs = keras.Input(shape=(10, 4))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    model.compile(optimizer="sgd", loss="mse")
    hist = model.fit(as_keras_dataset(b), epochs=2, verbose=0, callbacks=[Spy()])
    assert len(hist.history["loss"]) == 2 and np.isfinite(hist.history["loss"]).all()
    assert sorted(orders[0]) == sorted(orders[1]) == list(b.starts)
    assert not np.array_equal(orders[0], orders[1])


def naive_spread(v, first, length, n, how):
    out = np.full(n, np.nan)
    for t in range(n):
        cov = [v[j] for j in range(len(first)) if first[j] <= t < first[j] + length]
        if cov:
            out[t] = np.mean(cov) if how == "mean" else np.max(cov)
    return out


@pytest.mark.parametrize("how", ["mean", "max"])
@pytest.mark.parametrize("seed", range(15))
def test_spread_to_rows_equals_naive_reduction(how, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    w = int(rng.integers(1, min(n, 12) + 1))
    starts = window_starts(n, w, int(rng.integers(1, 4)))
    v = rng.normal(size=starts.size)
    got = spread_to_rows(v, starts, w, n, how=how, fill="nan")
    np.testing.assert_allclose(got, naive_spread(v, starts, w, n, how), atol=1e-5)


def test_forecast_rows_before_the_first_prediction_take_the_nearest_score():
    # a forecaster with window 3 predicts rows 3..9; rows 0..2 have no score of their own
    first = np.arange(3, 10)
    v = np.arange(7, dtype=float)
    out = spread_to_rows(v, first, 1, 10)
    np.testing.assert_array_equal(out, [0, 0, 0, 0, 1, 2, 3, 4, 5, 6])
    assert np.isnan(spread_to_rows(v, first, 1, 10, fill="nan")[:3]).all()


def test_non_contiguous_values_take_the_gather_path_with_the_same_result(values):
    wide = np.asfortranarray(values)  # not C-contiguous: no block view, row gather instead
    starts = window_starts(len(values), 9, horizon=2)
    a = WindowBatches(values, 9, starts, 32, target="next", horizon=2)
    b = WindowBatches(wide, 9, starts, 32, target="next", horizon=2)
    assert a._blocks is not None and b._blocks is None
    for i in range(len(a)):
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
