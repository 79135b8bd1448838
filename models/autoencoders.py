"""Reconstruction autoencoders over windows of rows (the user's notebooks, section 7.3, and the
Keras time-series anomaly-detection example), each a :class:`~models.window.ReconstructionDetector`.

Every ``build`` maps [B, window, C] -> [B, window, C] for any ``window`` and channel count; the
base class trains on nominal windows and turns the reconstruction error into row scores. A class
declares only the parameters it adds (or whose default it changes); the base checks them all.
Written against Keras 3 only (``import keras``), so TensorFlow, JAX and PyTorch backends all work;
``keras`` is imported inside ``build`` so importing this module (the registry does) stays light.

Differences from the notebooks, on purpose:
- no hard-coded window (they used 5 or 7 rows, the Keras example 288);
- dropout as ``Dropout`` layers between recurrent layers, never ``recurrent_dropout`` (which
  disables the cuDNN kernel on GPU and is slow everywhere); no L2 kernel regulariser;
- ``TimeDistributed(Dense(C))`` is written ``Dense(C)`` on the last axis: the same layer, same
  weights, without the per-step wrapper;
- ``conv_ae`` pads the window to a multiple of its total stride and crops the output back.
"""
from __future__ import annotations

from models.base import POSITIVE_INT
from models.registry import register
from models.window import ReconstructionDetector


def _lstm(keras, units: int, return_sequences: bool, bidirectional: bool, name: str):
    layer = keras.layers.LSTM(int(units), return_sequences=return_sequences, name=name)
    return keras.layers.Bidirectional(layer, name=f"bi_{name}") if bidirectional else layer


def _dropout(keras, x, rate: float, name: str):
    return keras.layers.Dropout(float(rate), name=name)(x) if rate > 0 else x


@register("dense_ae")
class DenseAE(ReconstructionDetector):
    """Per-row dense autoencoder (notebook 7.3.1), applied to every row of the window.

    Dense(units) -> Dropout -> Dense(latent) bottleneck -> Dense(units) -> Dropout -> Dense(C), all on
    the channel axis, so each row is reconstructed from itself only; the window just sets how many
    rows one error (and so one score) averages.
    """

    latent: int = 8
    units: int = 16
    dropout: float = 0.2

    def build(self, n_channels: int):
        import keras

        inputs = keras.Input(shape=(self.window, n_channels), name="window")
        x = keras.layers.Dense(self.units, activation="relu", name="enc")(inputs)
        x = _dropout(keras, x, self.dropout, "enc_dropout")
        x = keras.layers.Dense(self.latent, activation="relu", name="bottleneck")(x)
        x = keras.layers.Dense(self.units, activation="relu", name="dec")(x)
        x = _dropout(keras, x, self.dropout, "dec_dropout")
        outputs = keras.layers.Dense(n_channels, name="reconstruction")(x)
        return keras.Model(inputs, outputs, name=self.name)


class _RecurrentAE(ReconstructionDetector):
    """(Bi)LSTM(units, sequences) -> (Bi)LSTM(latent) -> RepeatVector(window) -> (Bi)LSTM(units) -> Dense(C)."""

    bidirectional = False

    def build(self, n_channels: int):
        import keras

        inputs = keras.Input(shape=(self.window, n_channels), name="window")
        x = _lstm(keras, self.units, True, self.bidirectional, "enc_lstm")(inputs)
        x = _dropout(keras, x, self.dropout, "enc_dropout")
        return self._bottleneck_and_decoder(keras, inputs, x, n_channels)

    def _bottleneck_and_decoder(self, keras, inputs, x, n_channels: int):
        """(Bi)LSTM(latent) -> RepeatVector(window) -> (Bi)LSTM(units) -> Dropout -> Dense(C)."""
        bi = self.bidirectional
        z = _lstm(keras, self.latent, False, bi, "latent_lstm")(x)
        x = keras.layers.RepeatVector(self.window, name="repeat")(z)
        x = _lstm(keras, self.units, True, bi, "dec_lstm")(x)
        x = _dropout(keras, x, self.dropout, "dec_dropout")
        outputs = keras.layers.Dense(n_channels, name="reconstruction")(x)
        return keras.Model(inputs, outputs, name=self.name)


@register("lstm_ae")
class LSTMAE(_RecurrentAE):
    """LSTM autoencoder (notebook 7.3.2)."""


@register("bilstm_ae")
class BiLSTMAE(_RecurrentAE):
    """Bidirectional LSTM autoencoder (notebook 7.3.3): every LSTM wrapped in Bidirectional."""

    bidirectional = True


class _AttentionAE(_RecurrentAE):
    """Convolution -> (Bi)LSTM(units, sequences) -> LayerNorm -> dot-product self-attention, concatenated
    with its input -> (Bi)LSTM(latent) -> RepeatVector(window) -> (Bi)LSTM(units) -> Dense(C).

    ``filters``/``kernel_size`` set the convolution in front; subclasses define ``_features``.
    """

    _checks = {"filters": POSITIVE_INT, "kernel_size": POSITIVE_INT}
    filters: int = 32
    kernel_size: int = 3

    def _features(self, keras, inputs, n_channels: int):
        raise NotImplementedError

    def build(self, n_channels: int):
        import keras

        inputs = keras.Input(shape=(self.window, n_channels), name="window")
        x = self._features(keras, inputs, n_channels)
        x = _lstm(keras, self.units, True, self.bidirectional, "seq_lstm")(x)
        x = keras.layers.LayerNormalization(name="norm")(x)
        attended = keras.layers.Attention(name="self_attention")([x, x])  # query = value = the sequence
        x = keras.layers.Concatenate(name="context")([x, attended])
        x = _dropout(keras, x, self.dropout, "context_dropout")
        return self._bottleneck_and_decoder(keras, inputs, x, n_channels)


class _Conv1DAttentionAE(_AttentionAE):
    def _features(self, keras, inputs, n_channels):
        return keras.layers.Conv1D(self.filters, self.kernel_size, padding="same", activation="relu",
                                   name="conv")(inputs)


@register("conv_lstm_attention_ae")
class ConvLSTMAttentionAE(_Conv1DAttentionAE):
    """Conv1D-LSTM + attention autoencoder (notebook 7.3.4)."""


@register("conv_bilstm_attention_ae")
class ConvBiLSTMAttentionAE(_Conv1DAttentionAE):
    """Conv1D-BiLSTM + attention autoencoder (notebook 7.3.5): every LSTM bidirectional."""

    bidirectional = True


@register("conv2d_lstm_attention_ae")
class Conv2DLSTMAttentionAE(_AttentionAE):
    """Conv2D-LSTM + attention autoencoder (notebook 7.3.6).

    The window is treated as a one-channel image of ``window`` x ``C`` pixels (time x channel), so
    the kernels also mix neighbouring channels (channel order matters); two Conv2D layers
    (``filters // 2`` then ``filters``, ``kernel_size`` square, same padding) keep the image size,
    and each time step's C x filters features are flattened into one vector for the LSTM.
    """

    def _features(self, keras, inputs, n_channels):
        k = (self.kernel_size, self.kernel_size)
        x = keras.layers.Reshape((self.window, n_channels, 1), name="as_image")(inputs)
        x = keras.layers.Conv2D(max(self.filters // 2, 1), k, padding="same", activation="relu", name="conv2d_1")(x)
        x = keras.layers.Conv2D(self.filters, k, padding="same", activation="relu", name="conv2d_2")(x)
        return keras.layers.Reshape((self.window, n_channels * self.filters), name="per_step")(x)


@register("conv_ae")
class ConvAE(ReconstructionDetector):
    """The Keras example's convolutional autoencoder, for any window length.

    Conv1D(units, kernel_size, strides) -> Dropout -> Conv1D(latent, kernel_size, strides) ->
    Conv1DTranspose(latent, strides) -> Dropout -> Conv1DTranspose(units, strides) ->
    Conv1DTranspose(C, stride 1). The window is zero-padded at its end to the next multiple of
    ``strides**2`` inside the model and the output cropped back, so output length == window.
    Defaults are the example's: filters 32/16, kernel 7, strides 2, dropout 0.2.
    """

    _checks = {"kernel_size": POSITIVE_INT, "strides": POSITIVE_INT}
    units: int = 32
    dropout: float = 0.2
    kernel_size: int = 7
    strides: int = 2

    def build(self, n_channels: int):
        import keras

        conv = dict(kernel_size=self.kernel_size, strides=self.strides, padding="same", activation="relu")
        total = self.strides ** 2
        pad = -self.window % total
        inputs = keras.Input(shape=(self.window, n_channels), name="window")
        x = keras.layers.ZeroPadding1D((0, pad), name="pad")(inputs) if pad else inputs
        x = keras.layers.Conv1D(self.units, name="conv_1", **conv)(x)
        x = _dropout(keras, x, self.dropout, "enc_dropout")
        x = keras.layers.Conv1D(self.latent, name="conv_2", **conv)(x)
        x = keras.layers.Conv1DTranspose(self.latent, name="deconv_1", **conv)(x)
        x = _dropout(keras, x, self.dropout, "dec_dropout")
        x = keras.layers.Conv1DTranspose(self.units, name="deconv_2", **conv)(x)
        x = keras.layers.Conv1DTranspose(n_channels, self.kernel_size, padding="same", name="reconstruction")(x)
        outputs = keras.layers.Cropping1D((0, pad), name="crop")(x) if pad else x
        return keras.Model(inputs, outputs, name=self.name)


@register("deep_lstm_ae")
class DeepLSTMAE(ReconstructionDetector):
    """The Keras example notebook's deep LSTM autoencoder, widths scaled from ``units``.

    Encoder LSTM(units) -> Dropout -> LSTM(units // 2) -> Dropout -> LSTM(latent) (64-32-16 with the
    defaults); RepeatVector(window); decoder LSTM(units // 2) -> Dropout -> LSTM(units) -> Dense(C).
    The example used relu LSTMs; these keep tanh (stable, and the cuDNN kernel on GPU).
    """

    def build(self, n_channels: int):
        import keras

        half = max(self.units // 2, 1)
        inputs = keras.Input(shape=(self.window, n_channels), name="window")
        x = keras.layers.LSTM(self.units, return_sequences=True, name="enc_lstm_1")(inputs)
        x = _dropout(keras, x, self.dropout, "enc_dropout_1")
        x = keras.layers.LSTM(half, return_sequences=True, name="enc_lstm_2")(x)
        x = _dropout(keras, x, self.dropout, "enc_dropout_2")
        z = keras.layers.LSTM(self.latent, name="latent_lstm")(x)
        x = keras.layers.RepeatVector(self.window, name="repeat")(z)
        x = keras.layers.LSTM(half, return_sequences=True, name="dec_lstm_1")(x)
        x = _dropout(keras, x, self.dropout, "dec_dropout")
        x = keras.layers.LSTM(self.units, return_sequences=True, name="dec_lstm_2")(x)
        outputs = keras.layers.Dense(n_channels, name="reconstruction")(x)
        return keras.Model(inputs, outputs, name=self.name)


AUTOENCODERS = ("dense_ae", "lstm_ae", "bilstm_ae", "conv_lstm_attention_ae", "conv_bilstm_attention_ae",
                "conv2d_lstm_attention_ae", "conv_ae", "deep_lstm_ae")
