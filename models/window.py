"""Keras models over windows of rows: the machinery once, and the three ways of scoring them.

:class:`KerasWindowDetector` builds the subclass's network, compiles it, trains it with a seed and
one Keras epoch per reported epoch (``callbacks``, continuing from ``initial_weights`` at
``initial_epoch``), predicts batch by batch, and saves/loads weights. Windows are never
materialised: :class:`telemetry.windows.WindowBatches` slices each batch from the one array.

Its subclasses differ only in what a window's output means:

- :class:`ReconstructionDetector` (autoencoders): rebuild the window; the error is per channel;
- :class:`ForecastDetector`: predict the ``horizon`` rows after the window; the error belongs to
  the rows it predicted;
- a classifier (``models/classifier.py``): a probability per window, learnt from labels.

Error members (the first two) train on fully nominal windows when labels are known and standardise
each channel's error by its mean/std over the validation split's nominal windows; the shared
:class:`models.scoring.RowScorer` reduces channels (``channel_reduction``) and spreads windows to
rows (``row_reduction``).
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from models.base import BOOLEAN, FRACTION, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Detector, one_of
from models.scoring import CHANNEL_REDUCTIONS, RowScorer
from telemetry.errors import TelemetryError
from telemetry.series import Series
from telemetry.windows import (REDUCTIONS, STRIDE, WINDOW, WindowBatches, anomalous_windows, as_keras_dataset,
                               check_window_fits, window_starts)

WEIGHTS_FILE, STATE_FILE = "model.weights.h5", "state.npz"


def conditioning_of(est: Detector, series: Series) -> np.ndarray | None:
    """The telecommand features a member with ``telecommands=True`` reads, checked against what it
    was fitted with (None when the option is off)."""
    if not est.telecommands:
        return None
    if series.telecommands is None:
        raise TelemetryError(f"{est.name}: telecommands=True but the {series.source} series has no telecommand "
                             f"columns (set data.telecommands in the sweep file)")
    tc = np.ascontiguousarray(series.telecommands, dtype=np.float32)
    fitted = getattr(est, "n_conditioning_", None)
    if fitted is not None and tc.shape[1] != fitted:
        raise TelemetryError(f"{est.name}: fitted with {fitted} telecommand columns, got {tc.shape[1]} in {series.source}")
    return tc


class KerasWindowDetector(Detector):
    """Subclasses define ``build(n_channels) -> keras.Model`` and the hooks below."""

    _tags = {"windowed": True, "keras": True}
    _checks = {"window": WINDOW, "units": POSITIVE_INT, "batch_size": POSITIVE_INT,
               "train_stride": STRIDE, "score_stride": STRIDE, "epochs": NON_NEGATIVE_INT,
               "dropout": FRACTION, "learning_rate": POSITIVE, "row_reduction": one_of(*REDUCTIONS),
               "seed": NON_NEGATIVE_INT}
    horizon: ClassVar[int] = 0  # rows after the window that belong to it (forecasters: a parameter)
    target: ClassVar[str | None] = None  # what a batch pairs with its windows: None, "self" or "next"

    window: int = 32
    units: int = 64
    dropout: float = 0.1
    learning_rate: float = 1e-3
    batch_size: int = 256
    epochs: int = 5
    train_stride: int = 1
    score_stride: int = 1
    row_reduction: str = "mean"
    seed: int = 0
    verbose: int = 0

    # -- hooks ----------------------------------------------------------------------------------
    def build(self, n_channels: int):
        raise NotImplementedError

    def _compile_args(self, keras) -> dict:
        return {"optimizer": keras.optimizers.Adam(learning_rate=float(self.learning_rate)), "loss": "mse"}

    def _training_data(self, series: Series, training: bool):
        """What ``keras.Model.fit`` trains on (``training``: shuffled each epoch) or validates on."""
        raise NotImplementedError

    def _window_values(self, prediction: np.ndarray, target: np.ndarray | None) -> np.ndarray:
        """One batch's network output (and target) -> its values per window."""
        raise NotImplementedError

    def _after_training(self, train: Series, validation: Series | None) -> None:
        """Fit what scoring needs beyond the weights (error statistics); nothing by default."""

    def _scorer(self) -> RowScorer:
        return RowScorer(row_reduction=self.row_reduction)

    def _rows_of(self, starts: np.ndarray) -> tuple[np.ndarray, int]:
        """(first row, length) of the rows each window's value belongs to: the window itself."""
        return starts, int(self.window)

    def _conditioning(self, series: Series) -> np.ndarray | None:
        """Input-only columns appended to every window (none by default; see ErrorWindowDetector)."""
        return None

    # -- the machinery --------------------------------------------------------------------------
    def _check_length(self, n_rows: int, what: str) -> None:
        check_window_fits(n_rows, int(self.window), int(self.horizon), what)

    def _check_input(self, series: Series, role: str) -> None:
        super()._check_input(series, role)
        if series.segments is not None and series.n_segments > 1:  # windows never cross from one series to the next
            self._check_length(series.longest_segment, f"the longest series of the {role} split")

    def _windows(self, series: Series, stride: int, shuffle: bool, nominal_only: bool = False) -> WindowBatches:
        starts = window_starts(len(series), int(self.window), int(stride), int(self.horizon), series.labels,
                               nominal_only=nominal_only and series.labels is not None, segments=series.segments)
        if len(starts) == 0:
            raise TelemetryError(f"{self.name}: the {series.source} series has no fully nominal window of "
                                 f"{self.window} rows to train on")
        return WindowBatches(series.values, int(self.window), starts, int(self.batch_size), target=self.target,
                             horizon=max(int(self.horizon), 1), shuffle=shuffle, seed=int(self.seed),
                             conditioning=self._conditioning(series))

    def _fit(self, train: Series, validation: Series | None, callbacks=None, initial_epoch: int = 0,
             initial_weights: str | None = None) -> None:
        """Seeded build and compile, then ``epochs`` Keras epochs; ``initial_weights`` and
        ``initial_epoch`` continue a checkpointed run."""
        import keras

        self.n_conditioning_ = None  # set below, once the training inputs are known
        train_data = self._training_data(train, training=True)
        val_data = self._training_data(validation, training=False) if validation is not None else None
        keras.utils.set_random_seed(int(self.seed))
        cond = self._conditioning(train)
        self.n_conditioning_ = 0 if cond is None else cond.shape[1]
        self.n_inputs_ = train.n_channels + self.n_conditioning_
        self.model_ = self.build(self.n_inputs_)
        self._compile(keras, train.n_channels)
        if initial_weights:
            self.model_.load_weights(initial_weights)
        self.history_ = {}
        if self.epochs > initial_epoch:
            hist = self.model_.fit(train_data, validation_data=val_data, epochs=int(self.epochs),
                                   initial_epoch=int(initial_epoch), callbacks=list(callbacks or []),
                                   verbose=self.verbose)
            self.history_ = {k: [float(x) for x in v] for k, v in hist.history.items()}
        self._after_training(train, validation)

    def _compile(self, keras, n_channels: int) -> None:
        args = self._compile_args(keras)
        if self.n_inputs_ > n_channels:  # conditioning inputs come out too, but the loss ignores them
            args["loss"] = _channels_only_mse(n_channels)
        self.model_.compile(**args)

    def window_values(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """(window starts, the network's value per window), predicted batch by batch."""
        batches = self._windows(series, self.score_stride, shuffle=False)
        out = None
        for i in range(len(batches)):
            item = batches[i]
            x, y = item if isinstance(item, tuple) else (item, None)
            v = self._window_values(np.asarray(self.model_.predict_on_batch(x)), y)
            if out is None:
                out = np.empty((len(batches.starts), *v.shape[1:]), dtype=v.dtype)
            lo = i * batches.batch_size
            out[lo: lo + len(v)] = v
        return batches.starts, out

    def _score_samples(self, series: Series) -> np.ndarray:
        starts, values = self.window_values(series)
        first, length = self._rows_of(starts)
        return self._scorer().row_scores(values, first, length, len(series), series.segments)

    def loss(self, series: Series) -> float:
        """The training loss on ``series`` (what Keras reports as ``val_loss`` for the validation
        split): the objective of an unlabelled sweep, and an honest figure on holdout."""
        if not getattr(self, "fitted_", False):
            raise TelemetryError(f"{self.name}: call fit before loss")
        self._check_input(series, "validation")
        out = self.model_.evaluate(self._training_data(series, training=False), verbose=0)
        return float(out[0] if isinstance(out, (list, tuple)) else out)

    # -- persistence: weights + the arrays of ``_state`` ------------------------------------------
    def _state(self) -> dict:
        return {}

    def _set_state(self, state) -> None:
        """Restore what ``_state`` returned (an ``np.load`` of it)."""

    def _save_state(self, path: Path) -> None:
        self.model_.save_weights(str(path / WEIGHTS_FILE))
        np.savez(path / STATE_FILE, n_inputs=self.n_inputs_, **self._state())

    def _load_state(self, path: Path) -> None:
        state = np.load(path / STATE_FILE)
        self._set_state(state)
        self.n_inputs_ = int(state["n_inputs"]) if "n_inputs" in state else self.n_channels_
        self.n_conditioning_ = self.n_inputs_ - self.n_channels_
        self.model_ = self.build(self.n_inputs_)
        self.model_.load_weights(str(path / WEIGHTS_FILE))
        import keras

        self._compile(keras, self.n_channels_)  # a loaded model computes its loss too (an unlabelled finalist's holdout)


def _channels_only_mse(n_channels: int):
    """MSE over the first ``n_channels`` outputs: the network sees the conditioning columns as inputs
    (and has outputs for them, so any architecture's ``build`` serves), but is never asked to
    reconstruct or forecast them."""
    import keras

    def channels_mse(y_true, y_pred):
        return keras.ops.mean(keras.ops.square(y_true - y_pred[..., :n_channels]), axis=-1)

    return channels_mse


class ErrorWindowDetector(KerasWindowDetector):
    """Scores the per-channel mean absolute error of what the network predicts for each window.

    ``telecommands``: feed the series' telecommand features (``data.telecommands`` of the sweep file,
    telemetry.telecommands) to the network as extra input columns of every window, neither
    reconstructed nor scored, so a commanded mode change need not look like an anomaly.
    """

    _tags = {"channel_scores": True}
    _checks = {"channel_reduction": one_of(*CHANNEL_REDUCTIONS), "telecommands": BOOLEAN}
    channel_reduction: str = "max"
    telecommands: bool = False

    def _conditioning(self, series: Series) -> np.ndarray | None:
        return conditioning_of(self, series)

    def _training_data(self, series: Series, training: bool):
        # Train (and validate) on fully nominal windows: the error must learn what nominal looks like.
        return as_keras_dataset(self._windows(series, self.train_stride, shuffle=training, nominal_only=True))

    def _window_values(self, prediction, target):
        # [B, rows, C (+ conditioning outputs, ignored)] -> the target's channels only
        prediction = prediction.astype(np.float32, copy=False).reshape(*target.shape[:2], -1)[..., :target.shape[2]]
        return np.abs(prediction - target).mean(axis=1)  # [B, C]: mean over the window's (or horizon's) rows

    def _after_training(self, train: Series, validation: Series | None) -> None:
        ref = validation if validation is not None else train
        starts, err = self.window_values(ref)
        keep = None
        if ref.labels is not None:
            keep = ~anomalous_windows(ref.labels, starts, int(self.window) + int(self.horizon))
        self.scorer_ = RowScorer(self.channel_reduction, self.row_reduction).fit(err, keep)

    def _scorer(self) -> RowScorer:
        return self.scorer_

    def _score_both(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        # One prediction pass serves both: the network is the expensive part, not the spreading.
        starts, values = self.window_values(series)
        first, length = self._rows_of(starts)
        n = len(series)
        return (self.scorer_.row_scores(values, first, length, n, series.segments),
                self.scorer_.channel_row_scores(values, first, length, n, series.segments))

    def _state(self) -> dict:
        return {"error_mean": self.scorer_.loc_, "error_std": self.scorer_.scale_}

    def _set_state(self, state) -> None:
        self.scorer_ = RowScorer(self.channel_reduction, self.row_reduction).set_stats(state["error_mean"],
                                                                                       state["error_std"])


class ReconstructionDetector(ErrorWindowDetector):
    """An autoencoder: ``build`` maps [B, window, C] -> [B, window, C] through a ``latent`` bottleneck."""

    _checks = {"latent": POSITIVE_INT}
    target = "self"
    latent: int = 16


class ForecastDetector(ErrorWindowDetector):
    """Predicts the ``horizon`` rows after each window; a window's error belongs to those rows (rows
    before the first prediction take the nearest predicted row's score)."""

    _tags = {"forecaster": True}
    _checks = {"horizon": POSITIVE_INT}  # at least one row to predict (windows.HORIZON also admits 0: no target)
    target = "next"
    horizon: int = 1

    def _rows_of(self, starts):
        return starts + int(self.window), int(self.horizon)
