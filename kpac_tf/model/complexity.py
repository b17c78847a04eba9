"""Model size and arithmetic cost: parameter counts and multiply-accumulates.

Counts come from a model built by :func:`kpac_tf.model.builder.build_kpac`, so they follow
the one model definition.
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from kpac_tf.model import layers as kl
from kpac_tf.model.builder import ModelConfig, build_kpac

__all__ = ["analytic_macs", "count_parameters"]


def count_parameters(model: keras.Model) -> int:
    """Number of trainable scalars of ``model``."""
    return int(sum(int(tf.size(w)) for w in model.trainable_weights))


def _conv_macs(kernel_shape: Sequence[int], out_pixels: int) -> int:
    kh, kw, cin, cout = (int(s) for s in kernel_shape)
    return out_pixels * kh * kw * cin * cout


def _block_macs(layer: kl.KPACBlock) -> int:
    """Multiply-accumulates of one KPAC block (atrous branches, attentions, fusion)."""
    _, h, w, _ = layer.input.shape
    pixels = h * w
    total = sum(_conv_macs(layer.atrous.kernel_for(i).shape, pixels)
                for i in range(len(layer.dilations)))
    if layer.scale_attention is not None:
        for sub in [*layer.scale_attention.hidden, layer.scale_attention.head]:
            total += _conv_macs(sub.kernel.shape, pixels)
    if layer.shape_attention is not None:
        for sub in (layer.shape_attention.squeeze, layer.shape_attention.excite):
            total += _conv_macs(sub.kernel.shape, 1)
    return total + _conv_macs(layer.fusion.kernel.shape, pixels)


def analytic_macs(config: ModelConfig | str, height: int, width: int) -> int:
    """Multiply-accumulates of all convolutions and deconvolutions for one HxW image.

    Counts every conv/deconv weight tap once per output (conv) or input (deconv) pixel,
    at the padded network size; activations, attention products and the padding
    are not counted.
    """
    model = build_kpac(config, input_shape=(height, width))
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, _ = layer.input.shape
            kh, kw, cout, cin = layer.kernel.shape
            total += h * w * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, _ = layer.output.shape
            total += _conv_macs(layer.kernel.shape, h * w)
        elif isinstance(layer, kl.KPACBlock):
            total += _block_macs(layer)
        elif isinstance(layer, kl.ResidualBlock):
            _, h, w, _ = layer.input.shape
            for sub in (layer.conv1, layer.conv2):
                total += _conv_macs(sub.kernel.shape, h * w)
    return int(total)
