"""The supervised CNN-BiLSTM-attention window classifier (from the user's notebook).

Architecture (notebook ``create_model``): three parallel Conv1D branches (kernels 3, 5, 7, ``filters``
each, ReLU) concatenated -> BatchNorm -> ReLU -> SpatialDropout1D -> MaxPool(2); one head takes the
global max of those features, the other runs a BiLSTM (return_sequences) with dot-product
self-attention and a global max; both are concatenated into Dense(1). The model outputs the logit;
the loss is binary cross-entropy on logits (numerically safer than a sigmoid layer, same model), and
scoring applies the sigmoid. Departures from the notebook: fixed window length (``window``, so the
graph compiles once), no ``recurrent_dropout`` (it disables the fused cuDNN LSTM kernel; input
``lstm_dropout`` is kept), and ``padding="same"`` in the pooling so odd windows keep their last row.

Target: a window is labelled anomalous when any of its rows is labelled anomalous in the fit split
(the notebook classifies whole windows; a sigmoid per window needs no per-row decoder). Class
imbalance: with ``class_weight="balanced"`` each window is weighted ``n / (2 * n_class)`` (Keras
sample weights, since ``class_weight=`` is not accepted with a ``PyDataset``), so both classes weigh
alike; the validation loss is weighted the same way from the validation split's own labels.

Score: each window's anomaly probability, spread back to rows with ``spread_to_rows`` using
``row_reduction`` over the windows covering the row. ``mean`` (default) localises: a row inside an
event is covered only by positive windows, a row d rows before it by a fraction (window - d) / window
of them, so the score ramps up to the event; ``max`` marks everything within a window of an event.

Training, batched prediction and persistence are :class:`models.window.KerasWindowDetector`'s; this
file adds the network, the labelled batches (each window's target computed once, by prefix sums over
the labels, then served batch by batch) and the probability as the window's value.
"""
from __future__ import annotations

import numpy as np

from models.base import FRACTION, NON_NEGATIVE, POSITIVE_INT, one_of, optional
from models.registry import register
from models.window import KerasWindowDetector
from telemetry.errors import TelemetryError
from telemetry.series import Series
from telemetry.windows import anomalous_windows

CLASS_WEIGHTS = ("balanced", None)
KERNELS = (3, 5, 7)


def _balanced_weights(positive: np.ndarray) -> np.ndarray:
    """[weight of a nominal window, weight of an anomalous one]: n / (2 n_class); 1 for a missing class."""
    n, n_pos = positive.size, int(positive.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.ones(2, dtype=np.float32)
    return np.array([n / (2.0 * n_neg), n / (2.0 * n_pos)], dtype=np.float32)


def _labelled_dataset(batches, positive: np.ndarray, class_weights: np.ndarray):
    """A ``keras.utils.PyDataset`` of (x [B, window, C], y [B, 1], sample weight [B]) per batch;
    ``positive[j]``: does window ``j`` of ``batches.starts`` hold an anomalous row."""
    import keras

    class _LabelledWindows(keras.utils.PyDataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            y = positive[batches.batch_indices(i)].astype(np.intp)
            return batches[i], y.astype(np.float32)[:, None], class_weights[y]

        def on_epoch_end(self):
            batches.on_epoch_end()

    return _LabelledWindows()


@register("cnn_lstm_classifier")
class CNNLSTMClassifier(KerasWindowDetector):
    """Supervised: needs the training split's labels, with at least one anomalous row."""

    _tags = {"needs_labels": True}
    _checks = {"filters": POSITIVE_INT, "lstm_dropout": FRACTION, "l2": NON_NEGATIVE,
               "clipnorm": optional(NON_NEGATIVE), "class_weight": one_of(*CLASS_WEIGHTS)}
    window: int = 64
    units: int = 32
    dropout: float = 0.3
    filters: int = 64
    lstm_dropout: float = 0.2
    l2: float = 1e-4
    clipnorm: float | None = 1.0
    class_weight: str | None = "balanced"

    def build(self, n_channels: int):
        import keras
        from keras import layers

        reg = keras.regularizers.L2(float(self.l2)) if self.l2 else None
        inputs = keras.Input(shape=(int(self.window), n_channels), name="window")
        branches = [layers.Conv1D(int(self.filters), k, padding="same", activation="relu", name=f"conv_k{k}")(inputs)
                    for k in KERNELS]
        x = layers.Concatenate(axis=-1, name="concat_conv")(branches)
        x = layers.BatchNormalization(name="bn1")(x)
        x = layers.Activation("relu", name="act1")(x)
        x = layers.SpatialDropout1D(float(self.dropout), name="spatial_dropout1")(x)
        x = layers.MaxPooling1D(pool_size=2, padding="same", name="maxpool1")(x)
        cnn_branch = layers.GlobalMaxPooling1D(name="cnn_global_max")(x)
        seq = layers.Bidirectional(
            layers.LSTM(int(self.units), dropout=float(self.lstm_dropout), kernel_regularizer=reg,
                        return_sequences=True, name="lstm"), name="bilstm")(x)
        context = layers.Attention(name="self_attention")([seq, seq])
        attn_branch = layers.GlobalMaxPooling1D(name="attention_global_max")(context)
        merged = layers.Concatenate(name="concat")([cnn_branch, attn_branch])
        logit = layers.Dense(1, name="logit")(merged)
        return keras.Model(inputs, logit, name="cnn_lstm_classifier")

    def _compile_args(self, keras) -> dict:
        clip = float(self.clipnorm) if self.clipnorm else None
        return {"optimizer": keras.optimizers.Adam(learning_rate=float(self.learning_rate), clipnorm=clip),
                "loss": keras.losses.BinaryCrossentropy(from_logits=True)}

    def _training_data(self, series: Series, training: bool):
        """Every window, labelled; the validation split is weighted from its own labels."""
        if training and not series.labels.any():
            raise TelemetryError(f"{self.name} is supervised: the training split ({series.source}) has no "
                                 f"anomalous row to learn from")
        batches = self._windows(series, self.train_stride, shuffle=training)
        positive = anomalous_windows(series.labels, batches.starts, int(self.window))
        if training:
            if positive.all() or not positive.any():
                what = "nominal" if positive.all() else "anomalous"
                raise TelemetryError(f"{self.name}: the training split ({series.source}) has no {what} window of "
                                     f"{self.window} rows at train_stride {self.train_stride}")
            self.positive_rate_ = float(positive.mean())
        weights = _balanced_weights(positive) if self.class_weight == "balanced" else np.ones(2, np.float32)
        return _labelled_dataset(batches, positive, weights)

    def _window_values(self, prediction, target):
        logits = prediction.astype(np.float64).reshape(-1)
        with np.errstate(over="ignore"):
            return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def _state(self) -> dict:
        return {"positive_rate": self.positive_rate_}

    def _set_state(self, state) -> None:
        self.positive_rate_ = float(state["positive_rate"])
