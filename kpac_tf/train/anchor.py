"""An L2 pull toward the weights a continued run started from (L2-SP).

A run continued from trained weights on new data (soft content, say) may drift away
from what the start weights did well where the new data asks for no change. L2-SP
(Li, Grandvalet and Davoine, "Explicit inductive bias for transfer learning with
convolutional networks", ICML 2018) adds ``anchor_weight / 2 * sum((w - w0) ** 2)``
over every trainable weight to the loss, ``w0`` being the start weights. The pull's
gradient is ``anchor_weight * (w - w0)``: it costs nothing to move a weight the data
needs moved by little, and holds back the drift of the rest.

The start weights are read again from ``init_from`` whenever a run starts or resumes,
so they are never part of a checkpoint and a resumed run pulls toward the same point.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

__all__ = ["anchor_penalty", "anchor_variables", "load_anchor"]


def anchor_variables(network: keras.Model) -> list[tf.Variable]:
    """Non-trainable float32 variables shaped as ``network``'s trainable weights, zero
    until :func:`load_anchor` fills them. Create them in the strategy's scope."""
    return [tf.Variable(np.zeros(tuple(v.shape), np.float32), trainable=False,
                        name=f"anchor_{index}")
            for index, v in enumerate(network.trainable_variables)]


def load_anchor(anchor: Sequence[tf.Variable], model_fn: Callable[[], keras.Model],
                init_from: str) -> None:
    """Fills ``anchor`` with the trainable weights of ``init_from`` (anything
    :func:`kpac_tf.model.weights.load_weights` reads), loaded into a scratch
    ``model_fn()`` so the network being trained is not touched."""
    from kpac_tf.model import weights as kweights

    scratch = model_fn()
    kweights.load_weights(scratch, init_from)
    values = scratch.trainable_variables
    if len(values) != len(anchor):
        raise ValueError(f"{init_from}: {len(values)} trainable weights, the network has "
                         f"{len(anchor)}.")
    for variable, value in zip(anchor, values):
        variable.assign(tf.cast(value, tf.float32))


def anchor_penalty(weights: Sequence[tf.Variable], anchor: Sequence[tf.Variable],
                   anchor_weight: float) -> tf.Tensor:
    """``anchor_weight / 2 * sum((w - w0) ** 2)`` over all weights: a float32 scalar."""
    squares = [tf.reduce_sum(tf.square(tf.cast(w, tf.float32) - a)) for w, a in zip(weights, anchor)]
    return tf.constant(0.5 * anchor_weight, tf.float32) * tf.add_n(squares)
