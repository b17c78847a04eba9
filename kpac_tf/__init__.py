"""kpac_tf: KPAC single-image defocus deblurring in TensorFlow 2 / Keras 3.

Images are float32 HWC (NHWC in batches) in [0,1] at every public entry point; the
network works in [-1,1] inside, like the authors' graph.
"""
from kpac_tf.models import PRESETS, ModelConfig, analytic_macs, build_kpac, count_parameters
from kpac_tf.weights import load_model, load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "ModelConfig",
    "analytic_macs",
    "build_kpac",
    "count_parameters",
    "load_model",
    "load_weights",
    "save_weights",
]
