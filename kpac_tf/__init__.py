"""kpac_tf: KPAC single-image defocus deblurring in TensorFlow 2 / Keras 3.

Images are float32 HWC (NHWC in batches) in [0,1] at every public entry point; the
network works in [-1,1] inside, like the authors' graph.

The names below are imported lazily, so numpy-only submodules such as
``kpac_tf.analysis.inverse_kernels`` load without TensorFlow.
"""
from __future__ import annotations

import importlib
import os

# TensorFlow's own CPU convolution kernels cannot compute the gradients of dilated
# convolutions ("Current CPU implementations do not yet support dilation rates larger
# than 1"); its oneDNN kernels can, and are faster. TensorFlow turns oneDNN on by itself
# only on some CPUs, and reads this variable once, when it loads: set it before
# TensorFlow is imported (kpac_tf.model.layers also falls back to a form every kernel can
# differentiate when oneDNN is off).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

_EXPORTS = {
    "PRESETS": "kpac_tf.model.builder",
    "ModelConfig": "kpac_tf.model.builder",
    "analytic_macs": "kpac_tf.model.complexity",
    "build_kpac": "kpac_tf.model.builder",
    "count_parameters": "kpac_tf.model.complexity",
    "load_model": "kpac_tf.model.weights",
    "load_weights": "kpac_tf.model.weights",
    "save_weights": "kpac_tf.model.weights",
    "Deblurrer": "kpac_tf.inference",
    "read_image": "kpac_tf.images.codec",
    "write_image": "kpac_tf.images.codec",
    "ImageError": "kpac_tf.images.codec",
    "make_synthetic_dataset": "kpac_tf.data.pipeline",
    "KPACTrainer": "kpac_tf.train.loop",
    "train": "kpac_tf.train.loop",
    "export_saved_model": "kpac_tf.deploy.saved_model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kpac_tf' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
