"""The reconstruction autoencoders (models/autoencoders.py): shapes for any window, parameter counts
against the notebooks' model summaries, and the Keras example's NAB experiment (conv autoencoder,
max-training-error threshold) reproduced end to end. Each one's fit / score / save / load is
tests/test_models.py's interface test (one Keras fit per member).
"""

import numpy as np
import pytest

from models.autoencoders import AUTOENCODERS, ConvAE
from models.registry import REGISTRY
from models.window import ReconstructionDetector
from telemetry.errors import TelemetryError
from telemetry.series import Series

TINY = dict(latent=4, units=8, epochs=1, batch_size=64, seed=0)
ANOMALY = slice(400, 430)  # rows given a large offset on every channel


def make_series(n=600, channels=3, seed=0, anomaly=False) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    values = np.sin(t / 8.0 + np.arange(channels)) + rng.normal(0, 0.05, (n, channels))
    if anomaly:
        values[ANOMALY] += 6.0
    return Series(np.arange(n, dtype=np.int64), values.astype(np.float32), None,
                  tuple(f"channel_{c}" for c in range(channels)))


def test_every_autoencoder_is_registered():
    for name in AUTOENCODERS:
        cls = REGISTRY[name]
        assert issubclass(cls, ReconstructionDetector) and cls.name == name and cls.target == "self"
        est = cls()
        assert est.window == 32
        assert set(est.get_params()) >= set(ReconstructionDetector.param_names())


@pytest.mark.parametrize("window", [1, 7, 13, 64])
@pytest.mark.parametrize("name", AUTOENCODERS)
def test_output_shape_equals_input_shape(name, window):
    model = REGISTRY[name](window=window, latent=4, units=8).build(3)
    assert tuple(model.input_shape) == (None, window, 3)
    assert tuple(model.output_shape) == (None, window, 3)
    x = np.random.default_rng(0).normal(size=(2, window, 3)).astype(np.float32)
    assert tuple(model.predict_on_batch(x).shape) == (2, window, 3)


def test_hyperparameters_shape_the_model():
    dense = REGISTRY["dense_ae"](window=5, latent=3, units=7).build(2)
    assert dense.get_layer("bottleneck").units == 3 and dense.get_layer("enc").units == 7
    deep = REGISTRY["deep_lstm_ae"](window=5, latent=3, units=10).build(2)
    assert [deep.get_layer(n).units for n in ("enc_lstm_1", "enc_lstm_2", "latent_lstm", "dec_lstm_1", "dec_lstm_2")] == [10, 5, 3, 5, 10]
    conv = ConvAE(window=10, units=6, latent=5, kernel_size=3).build(2)
    assert conv.get_layer("pad").output.shape[1] == 12 and conv.get_layer("conv_2").filters == 5
    assert "pad" not in [layer.name for layer in ConvAE(window=12).build(2).layers]
    assert ConvAE(window=10, strides=3).build(2).get_layer("pad").output.shape[1] == 18
    attn = REGISTRY["conv2d_lstm_attention_ae"](window=5, filters=8, kernel_size=5)
    assert attn.get_params()["filters"] == 8 and attn.build(4).get_layer("per_step").output.shape[-1] == 32
    no_dropout = REGISTRY["lstm_ae"](window=5, dropout=0.0).build(2)
    assert not any("dropout" in layer.name for layer in no_dropout.layers)
    # bad widths fail at fit, before any training, naming the parameter
    with pytest.raises(TelemetryError, match="lstm_ae: units must be a positive integer, got 0"):
        REGISTRY["lstm_ae"](units=0).fit(make_series())
    with pytest.raises(TelemetryError, match="conv_ae: latent must be a positive integer, got -1"):
        REGISTRY["conv_ae"](latent=-1).fit(make_series())
    with pytest.raises(TelemetryError, match="filters must be a positive integer, got 2.5"):
        REGISTRY["conv_lstm_attention_ae"](filters=2.5).fit(make_series())


# The notebooks' model summaries, rebuilt with the same widths: (name, params, window, channels, count).
NOTEBOOK_SUMMARIES = [
    ("dense_ae", {}, 5, 6, 494),  # 7.3.1 (defaults 16/8)
    ("conv_lstm_attention_ae", {"units": 64, "latent": 64}, 5, 17, 110_161),  # 7.3.4
    ("conv_bilstm_attention_ae", {"units": 64, "latent": 64}, 7, 6, 314_470),  # 7.3.5
    ("conv2d_lstm_attention_ae", {"units": 64, "latent": 64}, 5, 6, 153_542),  # 7.3.6
    ("conv_ae", {}, 288, 1, 9_505),  # the Keras example's conv autoencoder (defaults 32/16, kernel 7)
    ("deep_lstm_ae", {}, 288, 1, 63_617),  # the example notebook's 64-32-16 LSTM autoencoder
]


@pytest.mark.parametrize("name,params,window,channels,count", NOTEBOOK_SUMMARIES)
def test_parameter_counts_match_the_notebooks(name, params, window, channels, count):
    assert REGISTRY[name](window=window, **params).build(channels).count_params() == count


def test_keras_example_conv_ae_detects_the_nab_jump(nab_dir):
    """keras.io/examples/timeseries/timeseries_anomaly_detection, through the project's pipeline.

    Train the conv autoencoder (window 288, filters 32/16, kernel 7, strides 2, dropout 0.2, Adam 1e-3,
    batch 128, early stopping on the last tenth of the windows) on art_daily_small_noise, standardised
    with its own mean/std; score art_daily_jumpsup (standardised with the same mean/std); threshold =
    the largest training score. The labelled window must be detected, with no other event.

    The example's rule is two-step: a window is anomalous when its MAE exceeds the largest training
    MAE, and a row only when *every* window covering it is. A 288-row MAE is dominated by noise and the
    test file is slightly noisier than the training file, so a few isolated nominal windows do exceed
    the training maximum; spreading their errors to rows by mean (a moving average that follows the
    local noise level) or by max (each such window flags its 288 rows) turns them into false events.
    In the project's terms the rule is ``row_reduction="max"`` (the largest training row score is
    then exactly the largest training window error) plus ``min_length=2 * window - 1``: a max-spread
    run is that long exactly when ``window`` consecutive windows exceed the threshold, i.e. when some
    row has all its covering windows above it.
    """
    import keras

    from telemetry.events import events
    from telemetry.loading import load_nab
    from detection.metrics import event_counts
    from detection.thresholds import Threshold

    files = [nab_dir / f for f in ("art_daily_small_noise.csv", "art_daily_jumpsup.csv", "combined_windows.json")]
    train = load_nab(files[0])
    test = load_nab(files[1], files[2])
    mean, std = train.values.mean(axis=0), train.values.std(axis=0)
    train, test = train.with_values((train.values - mean) / std), test.with_values((test.values - mean) / std)
    assert test.labels.any() and train.labels is None

    window = 288
    n_windows = len(train) - window + 1
    cut = n_windows - n_windows // 10  # keras' validation_split=0.1: the last tenth of the windows
    fit, validation = train.slice(0, cut + window - 1), train.slice(cut, len(train))
    est = ConvAE(window=window, units=32, latent=16, kernel_size=7, strides=2, dropout=0.2, learning_rate=1e-3,
                 batch_size=128, epochs=30, train_stride=2, row_reduction="max", seed=0)
    est.fit(fit, validation, callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, mode="min")])
    assert est.history_["val_loss"][-1] < 0.1

    train_scores, test_scores = est.score_samples(train), est.score_samples(test)
    threshold = Threshold(method="max_fit", min_length=2 * window - 1).fit(test_scores, fit_scores=train_scores)
    assert threshold.threshold_ == pytest.approx(float(train_scores.max()))
    predicted = threshold.predict(test_scores)
    counts = event_counts(test.labels, predicted)
    found = events(predicted.astype(bool)).tolist()
    assert counts.tp == 1 and counts.fn == 0, found
    assert counts.fp == 0, found
    # The jump itself (rows 2988-3095 of the file) is inside the predicted event.
    assert predicted[2988:3096].all()
