"""The LSTM forecaster (Telemanom style): predict the next rows, score the prediction error.

Hundman et al. 2018 ("Detecting Spacecraft Anomalies Using LSTMs and Nonparametric Dynamic
Thresholding") use two stacked LSTM layers of 80 units with dropout 0.3 over a window of 250 rows,
predicting the rows that follow. Here one model predicts every channel of the next ``horizon``
rows from a window of all channels.

Training, scoring and persistence are :class:`models.window.ForecastDetector`'s: trained on windows
whose inputs and targets are fully nominal; a window's error is the per-channel mean absolute error
over the rows it predicted, standardised by the validation split's nominal errors, reduced over
channels, and spread back to the rows it predicted.
"""
from __future__ import annotations

from models.registry import register
from models.window import ForecastDetector


@register("lstm_forecaster")
class LSTMForecaster(ForecastDetector):
    """LSTM(units, sequences) -> Dropout -> LSTM(units) -> Dropout -> Dense(horizon*C) -> Reshape.

    Defaults follow Telemanom (window 250, 80 units, dropout 0.3).
    """

    window: int = 250
    units: int = 80
    dropout: float = 0.3

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
