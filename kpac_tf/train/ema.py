"""An exponential moving average (EMA) of the weights during training.

Keras optimizers keep it when built with ``use_ema=True``: after every update,
``average = decay * average + (1 - decay) * weight`` (the first update sets it to the
weights). It lives in the optimizer, so checkpoints carry it and a resumed run goes on
averaging. kpac-train validates and saves the average (``--ema_decay``); the raw
weights keep training.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import keras
import tensorflow as tf
from absl import logging

__all__ = ["averaging_optimizer", "has_average", "averaged_weights", "use_average"]


def averaging_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer that holds the average (a LossScaleOptimizer's inner one)."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def has_average(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether ``optimizer`` keeps a moving average of the weights."""
    return bool(getattr(averaging_optimizer(optimizer), "use_ema", False))


def use_average(optimizer: keras.optimizers.Optimizer, variables: Sequence) -> None:
    """Overwrite ``variables`` (the model's trainable variables, in the order the
    optimizer was built with) with their moving averages; nothing without one."""
    if has_average(optimizer):
        averaging_optimizer(optimizer).finalize_variable_values(list(variables))
        logging.info("The model now holds the moving average of its weights.")


@contextlib.contextmanager
def averaged_weights(optimizer: keras.optimizers.Optimizer, variables: Sequence,
                     enabled: bool = True) -> Iterator[None]:
    """Inside the block ``variables`` hold their moving averages; the raw weights come
    back after it (also on an exception). A no-op without an average or ``enabled``."""
    if not (enabled and has_average(optimizer)):
        yield
        return
    variables = list(variables)
    raw = [tf.identity(variable.value) for variable in variables]
    averaging_optimizer(optimizer).finalize_variable_values(variables)
    try:
        yield
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)
