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

Windows are never materialised: batches are gathered from the one float32 array by
:class:`telemetry.windows.WindowBatches`, and each batch's targets from the labels of its windows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.base import Detector
from models.registry import register
from telemetry.errors import TelemetryError
from telemetry.series import Series
from telemetry.windows import REDUCTIONS, WindowBatches, spread_to_rows, window_starts

CLASS_WEIGHTS = ("balanced", None)
KERNELS = (3, 5, 7)


def _window_positive(labels: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Boolean per window: does it hold at least one anomalous row? (prefix sums, vectorised)"""
    c = np.concatenate([[0], np.cumsum(labels, dtype=np.int64)])
    return c[starts + window] > c[starts]


def _balanced_weights(positive: np.ndarray) -> np.ndarray:
    """[weight of a nominal window, weight of an anomalous one]: n / (2 n_class); 1 for a missing class."""
    n, n_pos = positive.size, int(positive.sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return np.ones(2, dtype=np.float32)
    return np.array([n / (2.0 * n_neg), n / (2.0 * n_pos)], dtype=np.float32)


def _labelled_dataset(batches: WindowBatches, labels: np.ndarray, class_weights: np.ndarray):
    """A ``keras.utils.PyDataset`` of (x [B, window, C], y [B, 1], sample weight [B]) per batch."""
    import keras

    offsets = np.arange(batches.window, dtype=np.int64)

    class _LabelledWindows(keras.utils.PyDataset):
        def __len__(self):
            return len(batches)

        def __getitem__(self, i):
            x = batches[i]
            s = batches.batch_starts(i)
            y = (labels[s[:, None] + offsets].max(axis=1) > 0).astype(np.intp)  # [B]: any anomalous row
            return x, y.astype(np.float32)[:, None], class_weights[y]

        def on_epoch_end(self):
            batches.on_epoch_end()

    return _LabelledWindows()


@register("cnn_lstm_classifier")
class CNNLSTMClassifier(Detector):
    """Supervised: needs the fit split's labels, with at least one anomalous row."""

    tags = {"needs_labels": True, "forecaster": False, "windowed": True, "keras": True}

    def __init__(self, window: int = 64, filters: int = 64, units: int = 32, dropout: float = 0.3,
                 lstm_dropout: float = 0.2, l2: float = 1e-4, learning_rate: float = 1e-3, clipnorm: float = 1.0,
                 batch_size: int = 256, epochs: int = 5, train_stride: int = 1, score_stride: int = 1,
                 class_weight: str | None = "balanced", row_reduction: str = "mean", seed: int = 0,
                 verbose: int = 0):
        self.window = window
        self.filters = filters
        self.units = units
        self.dropout = dropout
        self.lstm_dropout = lstm_dropout
        self.l2 = l2
        self.learning_rate = learning_rate
        self.clipnorm = clipnorm
        self.batch_size = batch_size
        self.epochs = epochs
        self.train_stride = train_stride
        self.score_stride = score_stride
        self.class_weight = class_weight
        self.row_reduction = row_reduction
        self.seed = seed
        self.verbose = verbose

    # -- checks ----------------------------------------------------------------------------------
    def _validate_params(self, n_rows: int) -> None:
        for name in ("window", "filters", "units", "batch_size", "train_stride", "score_stride"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise TelemetryError(f"{self.name}: {name} must be a positive integer, got {v!r}")
        if not isinstance(self.epochs, (int, np.integer)) or self.epochs < 0:
            raise TelemetryError(f"{self.name}: epochs must be >= 0, got {self.epochs!r}")
        for name in ("dropout", "lstm_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise TelemetryError(f"{self.name}: {name} must be in [0, 1), got {getattr(self, name)!r}")
        if float(self.l2) < 0 or float(self.learning_rate) <= 0:
            raise TelemetryError(f"{self.name}: l2 must be >= 0 and learning_rate > 0")
        if self.class_weight not in CLASS_WEIGHTS:
            raise TelemetryError(f"{self.name}: class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if self.row_reduction not in REDUCTIONS:
            raise TelemetryError(f"{self.name}: row_reduction must be mean or max, got {self.row_reduction!r}")
        if self.window > n_rows:
            raise TelemetryError(f"{self.name}: window {self.window} is longer than the series ({n_rows} rows)")

    def _check_labels(self, series: Series, split: str) -> None:
        if series.labels is None:
            raise TelemetryError(f"{self.name} is supervised: the {split} split ({series.source}) has no labels "
                                 f"(is_anomaly column)")

    # -- the network -----------------------------------------------------------------------------
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

    def _batches(self, series: Series, stride: int, shuffle: bool) -> WindowBatches:
        starts = window_starts(len(series), int(self.window), int(stride))
        return WindowBatches(series.values, int(self.window), starts, int(self.batch_size), shuffle=shuffle,
                             seed=int(self.seed))

    # -- training --------------------------------------------------------------------------------
    def fit(self, fit: Series, validation: Series | None = None, callbacks=None,
            initial_epoch: int = 0, initial_weights: str | None = None) -> "CNNLSTMClassifier":
        """Train on every window of ``fit`` (labels required); ``validation`` (labelled) gives val_loss.
        ``initial_weights``/``initial_epoch`` continue a checkpointed run."""
        import keras

        self._check_labels(fit, "fit")
        if not fit.labels.any():
            raise TelemetryError(f"{self.name} is supervised: the fit split ({fit.source}) has no anomalous row "
                                 f"to learn from")
        self._validate_params(len(fit))
        if validation is not None:
            self._check_labels(validation, "validation")
            self._validate_params(len(validation))

        train = self._batches(fit, self.train_stride, shuffle=True)
        positive = _window_positive(fit.labels, train.starts, int(self.window))
        if positive.all() or not positive.any():
            what = "nominal" if positive.all() else "anomalous"
            raise TelemetryError(f"{self.name}: the fit split ({fit.source}) has no {what} window of "
                                 f"{self.window} rows at train_stride {self.train_stride}")
        weights = _balanced_weights(positive) if self.class_weight == "balanced" else np.ones(2, np.float32)
        self.positive_rate_ = float(positive.mean())

        keras.utils.set_random_seed(int(self.seed))
        self.n_channels_ = fit.n_channels
        self.channels_ = list(fit.channels)
        self.model_ = self.build(fit.n_channels)
        self.model_.compile(optimizer=keras.optimizers.Adam(learning_rate=float(self.learning_rate),
                                                            clipnorm=float(self.clipnorm) if self.clipnorm else None),
                            loss=keras.losses.BinaryCrossentropy(from_logits=True))
        if initial_weights:
            self.model_.load_weights(initial_weights)
        val = None
        if validation is not None:
            vb = self._batches(validation, self.train_stride, shuffle=False)
            vpos = _window_positive(validation.labels, vb.starts, int(self.window))
            vw = _balanced_weights(vpos) if self.class_weight == "balanced" else np.ones(2, np.float32)
            val = _labelled_dataset(vb, validation.labels, vw)
        self.history_ = {}
        if self.epochs > initial_epoch:
            hist = self.model_.fit(_labelled_dataset(train, fit.labels, weights), validation_data=val,
                                   epochs=int(self.epochs), initial_epoch=int(initial_epoch),
                                   callbacks=list(callbacks or []), verbose=self.verbose)
            self.history_ = {k: [float(x) for x in v] for k, v in hist.history.items()}
        self.fitted_ = True
        return self

    # -- scoring ---------------------------------------------------------------------------------
    def window_probabilities(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """(window starts, anomaly probability per window, float32), batch by batch."""
        self._check_fitted()
        if series.n_channels != self.n_channels_:
            raise TelemetryError(f"{self.name}: fitted on {self.n_channels_} channels, got {series.n_channels}")
        self._validate_params(len(series))
        batches = self._batches(series, self.score_stride, shuffle=False)
        logits = np.empty(len(batches.starts), dtype=np.float64)
        for i in range(len(batches)):
            x = batches[i]
            lo = i * batches.batch_size
            logits[lo: lo + len(x)] = np.asarray(self.model_.predict_on_batch(x), dtype=np.float64).reshape(-1)
        with np.errstate(over="ignore"):
            prob = 1.0 / (1.0 + np.exp(-logits))
        return batches.starts, prob.astype(np.float32)

    def score(self, series: Series) -> np.ndarray:
        starts, prob = self.window_probabilities(series)
        return spread_to_rows(prob, starts, int(self.window), len(series), how=self.row_reduction)

    # -- persistence: params.json (base) + model.weights.h5 + state.npz ------------------------------
    def _save_state(self, path: Path) -> None:
        self._check_fitted()
        self.model_.save_weights(str(path / "model.weights.h5"))
        np.savez(path / "state.npz", n_channels=self.n_channels_, channels=np.array(self.channels_),
                 positive_rate=getattr(self, "positive_rate_", np.nan))

    def _load_state(self, path: Path) -> None:
        st = np.load(path / "state.npz")
        self.n_channels_ = int(st["n_channels"])
        self.channels_ = [str(c) for c in st["channels"]]
        self.positive_rate_ = float(st["positive_rate"])
        self.model_ = self.build(self.n_channels_)
        self.model_.load_weights(str(path / "model.weights.h5"))
        self.fitted_ = True
