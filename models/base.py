"""The estimator shape shared by every detector, and the machinery of Keras window models.

scikit-learn style: the constructor stores hyperparameters only; ``fit`` returns self; fitted state
ends in ``_``; ``score`` returns one float32 score per row, aligned to the series' ids.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import numpy as np

from telemetry.errors import TelemetryError
from telemetry.series import Series
from telemetry.windows import REDUCTIONS, WindowBatches, as_keras_dataset, spread_to_rows, window_starts

CHANNEL_REDUCTIONS = ("max", "mean")


class Detector:
    """Base of every member. Subclasses define ``fit`` and ``score`` (and state save/load)."""

    name = "detector"
    tags = {"needs_labels": False, "forecaster": False, "windowed": False, "keras": False}

    # -- parameters, scikit-learn style -------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict:
        return {p: getattr(self, p) for p in self.param_names()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- the contract ---------------------------------------------------------------------------
    def fit(self, fit: Series, validation: Series | None = None, callbacks=None) -> "Detector":
        raise NotImplementedError

    def score(self, series: Series) -> np.ndarray:
        raise NotImplementedError

    # -- persistence: params.json + whatever the subclass stores ---------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "params.json").write_text(json.dumps({"name": self.name, "params": self.get_params()}, indent=1,
                                                          default=lambda o: o.item() if hasattr(o, "item") else str(o)))
        self._save_state(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Detector":
        from models.registry import get

        path = Path(path)
        meta = json.loads((path / "params.json").read_text())
        klass = get(meta["name"])
        if not issubclass(klass, cls):
            raise TelemetryError(f"{path}: holds a saved {meta['name']!r}, not a {cls.name!r}")
        est = klass(**meta["params"])
        est._load_state(path)
        return est

    def _save_state(self, path: Path) -> None:
        raise NotImplementedError

    def _load_state(self, path: Path) -> None:
        raise NotImplementedError

    def _check_fitted(self):
        if not getattr(self, "fitted_", False):
            raise TelemetryError(f"{self.name}: call fit before score")


class WindowModel(Detector):
    """A Keras model over windows of ``window`` rows of all channels.

    Subclasses implement ``build(n_channels) -> keras.Model``. ``target`` is ``"self"`` for
    autoencoders (reconstruct the window) or ``"next"`` for forecasters (predict the next
    ``horizon`` rows). Training uses only fully nominal windows when labels are known.

    Scoring: per-window, per-channel mean absolute error; each channel standardised by the mean/std
    of its error over the validation split's nominal windows (so channels weigh alike); aggregated
    over channels by ``channel_reduction`` (max or mean); spread back to rows by ``row_reduction``
    over the windows covering each row (forecasters: over the rows each window predicted).
    """

    tags = {"needs_labels": False, "forecaster": False, "windowed": True, "keras": True}
    target = "self"

    def __init__(self, window: int = 32, latent: int = 16, units: int = 64, dropout: float = 0.1,
                 learning_rate: float = 1e-3, batch_size: int = 256, epochs: int = 5, train_stride: int = 1,
                 score_stride: int = 1, channel_reduction: str = "max", row_reduction: str = "mean",
                 seed: int = 0, verbose: int = 0):
        self.window = window
        self.latent = latent
        self.units = units
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.train_stride = train_stride
        self.score_stride = score_stride
        self.channel_reduction = channel_reduction
        self.row_reduction = row_reduction
        self.seed = seed
        self.verbose = verbose

    # -- subclasses ------------------------------------------------------------------------------
    def build(self, n_channels: int):
        raise NotImplementedError

    horizon = 0  # rows predicted after the window (forecasters set 1 or more)

    # -- training --------------------------------------------------------------------------------
    def _validate_params(self, n_rows: int):
        for name in ("window", "batch_size", "train_stride", "score_stride"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise TelemetryError(f"{self.name}: {name} must be a positive integer, got {v!r}")
        if not isinstance(self.epochs, (int, np.integer)) or self.epochs < 0:
            raise TelemetryError(f"{self.name}: epochs must be >= 0, got {self.epochs!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise TelemetryError(f"{self.name}: dropout must be in [0, 1), got {self.dropout!r}")
        if self.channel_reduction not in CHANNEL_REDUCTIONS:
            raise TelemetryError(f"{self.name}: channel_reduction must be max or mean, got {self.channel_reduction!r}")
        if self.row_reduction not in REDUCTIONS:
            raise TelemetryError(f"{self.name}: row_reduction must be mean or max, got {self.row_reduction!r}")
        if self.window + self.horizon > n_rows:
            raise TelemetryError(f"{self.name}: window {self.window} is longer than the series ({n_rows} rows)")

    def _batches(self, series: Series, stride: int, nominal_only: bool, shuffle: bool, target):
        starts = window_starts(len(series), self.window, stride, self.horizon, series.labels,
                               nominal_only=nominal_only and series.labels is not None)
        if len(starts) == 0:
            raise TelemetryError(f"{self.name}: the {series.source} series has no fully nominal window of {self.window} rows to train on")
        return WindowBatches(series.values, self.window, starts, self.batch_size, target=target,
                             horizon=max(self.horizon, 1), shuffle=shuffle, seed=self.seed)

    def fit(self, fit: Series, validation: Series | None = None, callbacks=None,
            initial_epoch: int = 0, initial_weights: str | None = None) -> "WindowModel":
        """Train on the nominal windows of ``fit``; ``validation`` gives the validation loss and the
        per-channel error statistics. ``initial_weights``/``initial_epoch`` continue a checkpointed run.
        """
        import keras

        self._validate_params(len(fit))
        if validation is not None:
            self._validate_params(len(validation))
        keras.utils.set_random_seed(int(self.seed))
        self.n_channels_ = fit.n_channels
        self.channels_ = list(fit.channels)
        self.model_ = self.build(fit.n_channels)
        self.model_.compile(optimizer=keras.optimizers.Adam(learning_rate=float(self.learning_rate)), loss="mse")
        if initial_weights:
            self.model_.load_weights(initial_weights)
        train = self._batches(fit, self.train_stride, nominal_only=True, shuffle=True, target=self.target)
        val = None
        if validation is not None:
            vb = self._batches(validation, max(self.train_stride, 1), nominal_only=True, shuffle=False, target=self.target)
            val = as_keras_dataset(vb)
        self.history_ = {}
        if self.epochs > initial_epoch:
            hist = self.model_.fit(as_keras_dataset(train), validation_data=val, epochs=int(self.epochs),
                                   initial_epoch=int(initial_epoch), callbacks=list(callbacks or []),
                                   verbose=self.verbose)
            self.history_ = {k: [float(x) for x in v] for k, v in hist.history.items()}
        ref = validation if validation is not None else fit
        err = self.window_errors(ref)[1]
        if ref.labels is not None:
            nominal = self._nominal_windows(ref)
            err = err[nominal] if nominal.any() else err
        self.error_mean_ = err.mean(axis=0).astype(np.float32)
        self.error_std_ = np.maximum(err.std(axis=0), 1e-6).astype(np.float32)
        self.fitted_ = True
        return self

    def _nominal_windows(self, series: Series) -> np.ndarray:
        starts = window_starts(len(series), self.window, self.score_stride, self.horizon)
        c = np.concatenate([[0], np.cumsum(series.labels, dtype=np.int64)])
        return c[starts + self.window + self.horizon] == c[starts]

    # -- scoring ---------------------------------------------------------------------------------
    def window_errors(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        """(window starts, per-window per-channel mean absolute error [n_windows, C]), batch by batch."""
        if series.n_channels != self.n_channels_:
            raise TelemetryError(f"{self.name}: fitted on {self.n_channels_} channels, got {series.n_channels}")
        self._validate_params(len(series))
        batches = self._batches(series, self.score_stride, nominal_only=False, shuffle=False, target=self.target)
        out = np.empty((len(batches.starts), series.n_channels), dtype=np.float32)
        for i in range(len(batches)):
            x, y = batches[i]
            pred = np.asarray(self.model_.predict_on_batch(x), dtype=np.float32).reshape(y.shape)
            out[i * batches.batch_size: i * batches.batch_size + len(x)] = np.abs(pred - y).mean(axis=1)
        return batches.starts, out

    def score(self, series: Series) -> np.ndarray:
        self._check_fitted()
        starts, err = self.window_errors(series)
        z = (err - self.error_mean_) / self.error_std_
        per_window = z.max(axis=1) if self.channel_reduction == "max" else z.mean(axis=1)
        if self.target == "next":  # a forecast error belongs to the rows it predicted
            first, length = starts + self.window, self.horizon
        else:
            first, length = starts, self.window
        return spread_to_rows(per_window, first, length, len(series), how=self.row_reduction)

    # -- persistence -------------------------------------------------------------------------------
    def _save_state(self, path: Path) -> None:
        self._check_fitted()
        self.model_.save_weights(str(path / "model.weights.h5"))
        np.savez(path / "state.npz", error_mean=self.error_mean_, error_std=self.error_std_,
                 n_channels=self.n_channels_, channels=np.array(self.channels_))

    def _load_state(self, path: Path) -> None:
        st = np.load(path / "state.npz")
        self.n_channels_ = int(st["n_channels"])
        self.channels_ = [str(c) for c in st["channels"]]
        self.error_mean_, self.error_std_ = st["error_mean"], st["error_std"]
        self.model_ = self.build(self.n_channels_)
        self.model_.load_weights(str(path / "model.weights.h5"))
        self.fitted_ = True
