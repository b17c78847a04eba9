"""KPAC as TFLite: the float signature converted with dynamic shapes, and a runner.

:func:`convert_to_tflite` converts the ``serving_default`` signature of
:mod:`kpac_tf.deploy.signatures` (batch, height and width stay -1; the interpreter
resizes per call), without the graph checks and the pixel limit (TFLite has no assert
op); :class:`TFLiteDeblurrer` runs the result on float32 NHWC batches in [0,1].
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.deploy.signatures import (OUTPUT_KEY, SERVING_SIGNATURE, check_exportable,
                                       converted_input_names, float_function, image_spec,
                                       input_names, module_for, named_feeds)

__all__ = ["TFLiteDeblurrer", "convert_to_tflite"]


def convert_to_tflite(model: keras.Model) -> bytes:
    """The float signature of ``model`` as a TFLite flatbuffer with dynamic shapes.

    Inputs as in ``serving_default`` (batch, height and width are -1 in the model; the
    interpreter resizes them per call); output ``deblurred`` clipped to [0,1]. The graph
    checks are left out (TFLite has no assert op); the interpreter checks ranks and
    channel counts when it resizes.
    """
    config = check_exportable(model)
    names = input_names(config)
    function = tf.function(float_function(model, names, checks=False)).get_concrete_function(
        *[image_spec(name) for name in names]
    )
    module = module_for({SERVING_SIGNATURE: function})
    with tempfile.TemporaryDirectory(prefix="kpac_tflite_") as folder:
        tf.saved_model.save(module, folder, signatures={SERVING_SIGNATURE: function})
        converter = tf.lite.TFLiteConverter.from_saved_model(
            folder, signature_keys=[SERVING_SIGNATURE]
        )
        flatbuffer = converter.convert()
    logging.info("Converted %s to TFLite (%.1f MB).", model.name, len(flatbuffer) / 2**20)
    return flatbuffer


class TFLiteDeblurrer:
    """Runs a TFLite model from :func:`convert_to_tflite` on NHWC float batches.

    Args:
        model: the flatbuffer bytes or a ``.tflite`` path.
        num_threads: CPU threads (default: all cores).
    """

    def __init__(self, model: bytes | str | os.PathLike, num_threads: int | None = None):
        content = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self._interpreter = _interpreter_class()(
                model_content=bytes(content), num_threads=num_threads or os.cpu_count()
            )
        self._runner = self._interpreter.get_signature_runner(SERVING_SIGNATURE)
        self.input_names = converted_input_names(self._runner.get_input_details(), "TFLite",
                                                "tflite.convert_to_tflite")

    def __call__(self, *images: np.ndarray) -> np.ndarray:
        """Deblur: float32 NHWC [N,H,W,3] in [0,1] (dual-pixel: left, right, centre)
        -> float32 [N,H,W,3] clipped to [0,1]."""
        return self._runner(**named_feeds(self.input_names, images))[OUTPUT_KEY]


def _interpreter_class():
    try:  # the maintained home of the interpreter, if installed
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError:
        return tf.lite.Interpreter
