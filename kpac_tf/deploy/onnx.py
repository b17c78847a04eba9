"""KPAC as ONNX (the optional ``onnx`` extra: tf2onnx, onnxruntime).

:func:`convert_to_onnx` converts the ``serving_default`` signature of
:mod:`kpac_tf.deploy.signatures` with dynamic batch, height and width, without the graph
checks and the pixel limit (the runtime serving the file sets its own limits);
:class:`OnnxDeblurrer` runs the result in ONNX Runtime on float32 NHWC batches in [0,1].
OpenVINO reads the same file (``openvino.Core().read_model``).
"""
from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.deploy.signatures import (OUTPUT_KEY, check_exportable, converted_input_names,
                                       float_function, image_spec, input_names, named_feeds)

__all__ = ["ONNX_INSTALL_HINT", "ONNX_OPSET", "OnnxDeblurrer", "convert_to_onnx", "onnx_available",
           "require_onnx_converter"]

#: What to install for ONNX export and ONNX Runtime.
ONNX_INSTALL_HINT = "pip install 'kpac_tf[onnx]' (tf2onnx and onnxruntime)"
#: ONNX opset of :func:`convert_to_onnx`.
ONNX_OPSET = 17


def onnx_available() -> tuple[bool, str]:
    """(tf2onnx and onnxruntime import, what is missing and how to install it)."""
    missing = []
    for module in ("tf2onnx", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if not missing:
        return True, "tf2onnx and onnxruntime are installed"
    return False, f"{' and '.join(missing)} not installed: {ONNX_INSTALL_HINT}"


def convert_to_onnx(model: keras.Model, opset: int = ONNX_OPSET) -> bytes:
    """The float signature of ``model`` as an ONNX model (serialised protobuf bytes).

    Inputs as in ``serving_default`` (float32 NHWC in [0,1], batch, height and width
    dynamic); output ``deblurred`` clipped to [0,1]. The graph checks and the pixel
    limit are left out, as for TFLite: the runtime serving the file sets its own
    limits.

    Raises:
        ImportError: tf2onnx is missing (the message says what to install).
    """
    tf2onnx = require_onnx_converter()
    config = check_exportable(model)
    names = input_names(config)
    function = tf.function(float_function(model, names, checks=False))
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=[image_spec(name) for name in names], opset=opset
    )
    data = proto.SerializeToString()
    logging.info("Converted %s to ONNX opset %d (%.1f MB).", model.name, opset, len(data) / 2**20)
    return data


class OnnxDeblurrer:
    """Runs an ONNX model from :func:`convert_to_onnx` in ONNX Runtime (CPU).

    Args:
        model: the ONNX bytes or a ``.onnx`` path.
        num_threads: intra-op threads (default: ONNX Runtime's choice, all cores).
    """

    def __init__(self, model: bytes | str | os.PathLike, num_threads: int | None = None):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(f"Running ONNX models needs onnxruntime: {ONNX_INSTALL_HINT}.") from error
        content = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        self._session = onnxruntime.InferenceSession(
            bytes(content), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = converted_input_names([i.name for i in self._session.get_inputs()],
                                                "ONNX", "onnx.convert_to_onnx")

    def __call__(self, *images: np.ndarray) -> np.ndarray:
        """Deblur: float32 NHWC [N,H,W,3] in [0,1] (dual-pixel: left, right, centre)
        -> float32 [N,H,W,3] clipped to [0,1]."""
        return self._session.run([OUTPUT_KEY], named_feeds(self.input_names, images))[0]


def require_onnx_converter():
    """The tf2onnx module; ImportError saying what to install when it is missing."""
    try:
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise ImportError(f"ONNX export needs tf2onnx: {ONNX_INSTALL_HINT}.") from error
    return tf2onnx
