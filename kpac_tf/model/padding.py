"""The one padding helper: pad NHWC images to a multiple of the network's stride, crop back.

KPAC's encoder halves the resolution two (2-level) or three (3-level) times and its
decoder doubles it back, so the padded height and width must be multiples of 4 or 8.
Padding mirrors the image at its bottom and right edges ('symmetric': the edge row is
repeated), computed with an index gather so that it works for any size, even when the
pad is larger than the image. Used by the model itself, by tiled inference and by
export, so all of them pad the same way.
"""
from __future__ import annotations

import keras
import tensorflow as tf


def padded_size(size, multiple: int):
    """Smallest multiple of ``multiple`` that is >= ``size`` (int or scalar tensor)."""
    return (size + multiple - 1) // multiple * multiple


def _mirror_indices(size: tf.Tensor, total: tf.Tensor) -> tf.Tensor:
    """Indices 0..total-1 mapped into [0, size) by symmetric reflection at the end."""
    index = tf.range(total)
    period = 2 * size
    folded = index % period
    return tf.where(folded < size, folded, period - 1 - folded)


def pad_to_multiple(x: tf.Tensor, multiple: int = 8) -> tuple[tf.Tensor, tuple]:
    """Pad NHWC ``x`` at the bottom/right so H and W are multiples of ``multiple``.

    Returns ``(padded, (height, width))`` with the original size (scalar tensors), for
    :func:`crop_to`. Values are copied from the image (symmetric mirror), never zeros.
    """
    shape = tf.shape(x)
    height, width = shape[1], shape[2]
    x = tf.gather(x, _mirror_indices(height, padded_size(height, multiple)), axis=1)
    x = tf.gather(x, _mirror_indices(width, padded_size(width, multiple)), axis=2)
    return x, (height, width)


def crop_to(x: tf.Tensor, height, width) -> tf.Tensor:
    """The top-left ``height`` x ``width`` window of NHWC ``x``."""
    return x[:, :height, :width, :]


@keras.saving.register_keras_serializable(package="kpac_tf")
class PadToMultiple(keras.layers.Layer):
    """Keras layer: NHWC image in [0,1] -> padded network input in [-1,1] (x * 2 - 1)."""

    def __init__(self, multiple: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, image):
        padded, _ = pad_to_multiple(image, self.multiple)
        return padded * 2.0 - 1.0

    def compute_output_shape(self, input_shape):
        def pad(size):
            return None if size is None else padded_size(size, self.multiple)

        return (input_shape[0], pad(input_shape[1]), pad(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(multiple=self.multiple)
        return config


@keras.saving.register_keras_serializable(package="kpac_tf")
class CropToImage(keras.layers.Layer):
    """Keras layer: (network output in [-1,1], reference image) -> output cropped to the
    reference's H and W and mapped to [0,1] ((y + 1) / 2). Not clipped."""

    def call(self, inputs):
        net_output, reference = inputs
        shape = tf.shape(reference)
        return (crop_to(net_output, shape[1], shape[2]) + 1.0) * 0.5

    def compute_output_shape(self, input_shape):
        return input_shape[1]
