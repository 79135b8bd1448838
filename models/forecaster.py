"""The LSTM forecaster (Telemanom style): predict the next rows, score the prediction error.

Hundman et al. 2018 ("Detecting Spacecraft Anomalies Using LSTMs and Nonparametric Dynamic
Thresholding") use two stacked LSTM layers of 80 units with dropout 0.3 over a window of 250 rows,
predicting the rows that follow. Here one model predicts every channel of the next ``horizon``
rows from a window of all channels.

Training, scoring and persistence are :class:`models.base.WindowModel`'s ``target="next"`` path:
trained on windows whose inputs and targets are fully nominal; a window's error is the per-channel
mean absolute error over the rows it predicted, standardised by the validation split's nominal
errors, reduced over channels, and spread back to the rows it predicted (rows before the first
prediction take the nearest predicted row's score).
"""
from __future__ import annotations

import numpy as np

from models.base import WindowModel
from models.registry import register
from telemetry.errors import TelemetryError


@register("lstm_forecaster")
class LSTMForecaster(WindowModel):
    """LSTM(units, sequences) -> Dropout -> LSTM(units) -> Dropout -> Dense(horizon*C) -> Reshape.

    Parameters are :class:`WindowModel`'s (``latent`` excepted: a forecaster has no bottleneck)
    plus ``horizon``, the number of rows predicted after each window. Defaults follow Telemanom
    (window 250, 80 units, dropout 0.3).
    """

    tags = {"needs_labels": False, "forecaster": True, "windowed": True, "keras": True}
    target = "next"

    def __init__(self, window: int = 250, units: int = 80, dropout: float = 0.3, horizon: int = 1,
                 learning_rate: float = 1e-3, batch_size: int = 256, epochs: int = 5, train_stride: int = 1,
                 score_stride: int = 1, channel_reduction: str = "max", row_reduction: str = "mean",
                 seed: int = 0, verbose: int = 0):
        super().__init__(window=window, units=units, dropout=dropout, learning_rate=learning_rate,
                         batch_size=batch_size, epochs=epochs, train_stride=train_stride,
                         score_stride=score_stride, channel_reduction=channel_reduction,
                         row_reduction=row_reduction, seed=seed, verbose=verbose)
        self.horizon = horizon  # instance attribute shadows WindowModel.horizon = 0

    def _validate_params(self, n_rows: int):
        for name in ("horizon", "units"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise TelemetryError(f"{self.name}: {name} must be a positive integer, got {v!r}")
        super()._validate_params(n_rows)

    def build(self, n_channels: int):
        import keras
        from keras import layers

        inputs = keras.Input(shape=(int(self.window), n_channels), name="window")
        x = layers.LSTM(int(self.units), return_sequences=True, name="lstm_1")(inputs)
        x = layers.Dropout(float(self.dropout), name="dropout_1")(x)
        x = layers.LSTM(int(self.units), name="lstm_2")(x)
        x = layers.Dropout(float(self.dropout), name="dropout_2")(x)
        x = layers.Dense(int(self.horizon) * n_channels, name="next_rows")(x)
        outputs = layers.Reshape((int(self.horizon), n_channels), name="forecast")(x)
        return keras.Model(inputs, outputs, name="lstm_forecaster")
