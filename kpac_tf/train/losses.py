"""Training losses: the pixel loss (MAE as in the paper, or MSE) and the VGG19 perceptual
loss of the paper.

Images are float NHWC in [0, 1] (RGB). Every loss returns one value per example
(shape [N]) so the trainer can average over the *global* batch under a distribution
strategy (``tf.nn.compute_average_loss``).

Perceptual loss (Johnson et al. 2016, used by KPAC with weight 7e-4): the distance
between VGG19 ``block4_conv4`` features (the paper's conv4_4, after its ReLU) of the
output and of the target. Inputs go through the Caffe preprocessing the authors' VGG
code uses (and ``keras.applications.vgg19.preprocess_input``): scale to [0, 255],
RGB -> BGR, subtract the ImageNet channel means. The extractor is VGG19 truncated after
block4_conv4; block 5 is never run.
"""
from __future__ import annotations

import os

import keras
import tensorflow as tf
from absl import logging

from kpac_tf.files import error_line

__all__ = [
    "CAFFE_BGR_MEAN",
    "FEATURE_DISTANCES",
    "PIXEL_LOSSES",
    "PERCEPTUAL_LAYER",
    "PerceptualLoss",
    "VGGWeightsError",
    "build_vgg19_features",
    "caffe_preprocess",
    "check_pixel_loss",
    "mae",
    "pixel_loss",
]

#: ImageNet channel means in BGR order on the [0, 255] scale (Caffe VGG).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
#: The paper's conv4_4.
PERCEPTUAL_LAYER = "block4_conv4"
#: Feature distances: "squared" (mean squared error, Johnson et al.) or "absolute" (L1).
FEATURE_DISTANCES = ("squared", "absolute")
#: Pixel losses: "mae" (mean absolute error, the paper's) or "mse" (mean squared error,
#: the distance PSNR scores).
PIXEL_LOSSES = ("mae", "mse")


class VGGWeightsError(RuntimeError):
    """The ImageNet VGG19 weights needed by the perceptual loss are not available."""


def check_pixel_loss(kind: str) -> str:
    """``kind`` if it is one of :data:`PIXEL_LOSSES`, else ValueError."""
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"pixel_loss must be one of {', '.join(PIXEL_LOSSES)}, got {kind!r}.")
    return kind


def pixel_loss(y_true: tf.Tensor, y_pred: tf.Tensor, kind: str = "mae",
               weight: tf.Tensor | None = None) -> tf.Tensor:
    """Pixel loss per example: [N,H,W,C] x2 -> [N] (float32).

    kind: "mae" (mean absolute error) or "mse" (mean squared error), over images in [0, 1].
    weight: per-pixel weights [N,H,W,1] (broadcast over channels; None: all 1); the
        result is the mean of weight * error, not normalised by the weights' sum.
    """
    check_pixel_loss(kind)
    diff = tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)
    error = tf.abs(diff) if kind == "mae" else tf.square(diff)
    if weight is not None:
        error = tf.cast(weight, tf.float32) * error
    return tf.reduce_mean(error, axis=[1, 2, 3])


def mae(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Mean absolute error per example: [N,H,W,C] x2 -> [N] (float32)."""
    return pixel_loss(y_true, y_pred, "mae")


def caffe_preprocess(images: tf.Tensor) -> tf.Tensor:
    """[0, 1] RGB NHWC -> Caffe VGG input: [0, 255], BGR, ImageNet mean subtracted."""
    bgr = tf.reverse(images, axis=[-1]) * 255.0
    return bgr - tf.constant(CAFFE_BGR_MEAN, dtype=bgr.dtype)


def _load_imagenet_vgg19() -> keras.Model:
    try:
        return keras.applications.VGG19(include_top=False, weights="imagenet")
    except Exception as error:  # keras raises a bare Exception on "URL fetch failure"
        raise VGGWeightsError(
            "The perceptual loss needs the ImageNet VGG19 weights, which could not be "
            f"downloaded ({type(error).__name__}: {error_line(error)[:160]}); "
            "pass --vgg19_weights=PATH to a local copy of "
            "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, or set the perceptual "
            "weight to 0."
        ) from None


def build_vgg19_features(weights: str | None = "imagenet", layer: str = PERCEPTUAL_LAYER) -> keras.Model:
    """VGG19 truncated after ``layer`` (frozen), taking Caffe-preprocessed NHWC input of
    any size.

    Args:
        weights: "imagenet" (keras.applications downloads them on first use and caches
            them), a path to the Keras "notop" VGG19 weights file, or None for random
            weights (tests only).
        layer: the output layer name (default block4_conv4).

    Raises:
        VGGWeightsError: ImageNet weights requested but not downloadable, or the file
            given cannot be loaded.
        FileNotFoundError: ``weights`` is a path that does not exist.
    """
    if weights == "imagenet":
        full = _load_imagenet_vgg19()
    elif weights is None:
        full = keras.applications.VGG19(include_top=False, weights=None)
    else:
        path = os.fspath(weights)
        if not tf.io.gfile.exists(path):
            raise FileNotFoundError(
                f"VGG19 weights file {path} does not exist; pass --vgg19_weights=PATH to "
                "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5."
            )
        try:
            full = keras.applications.VGG19(include_top=False, weights=path)
        except Exception as error:
            raise VGGWeightsError(
                f"Could not load VGG19 weights from {path} ({type(error).__name__}: "
                f"{error_line(error)[:160]}); give the Keras 'notop' VGG19 file "
                "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5."
            ) from None
    features = keras.Model(full.input, full.get_layer(layer).output, name=f"vgg19_{layer}")
    features.trainable = False
    logging.info("Perceptual loss: VGG19 up to %s (weights: %s).", layer, weights or "random")
    return features


class PerceptualLoss:
    """Per-example distance between VGG19 features of prediction and target.

    Args:
        weights: see :func:`build_vgg19_features`.
        distance: "squared" (mean squared feature difference, the default, as Johnson
            et al.) or "absolute" (mean absolute difference).
        layer: VGG19 layer (default block4_conv4).

    Call with ``(y_true, y_pred)``, both [N,H,W,3] in [0, 1]; returns [N] float32.
    Gradients flow into ``y_pred`` only. Build it inside the distribution strategy's
    scope so the VGG variables are placed like the model's.
    """

    def __init__(self, weights: str | None = "imagenet", distance: str = "squared",
                 layer: str = PERCEPTUAL_LAYER):
        if distance not in FEATURE_DISTANCES:
            raise ValueError(
                f"Unknown feature distance {distance!r}; choose one of {', '.join(FEATURE_DISTANCES)}."
            )
        self.distance = distance
        self.layer = layer
        self.extractor = build_vgg19_features(weights, layer)

    def features(self, images: tf.Tensor) -> tf.Tensor:
        """VGG features (float32) of [0, 1] RGB NHWC images."""
        return tf.cast(self.extractor(caffe_preprocess(images), training=False), tf.float32)

    def __call__(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        y_pred = tf.cast(y_pred, tf.float32)
        y_true = tf.cast(y_true, tf.float32)
        batch = tf.shape(y_pred)[0]
        both = self.features(tf.concat([y_pred, tf.stop_gradient(y_true)], axis=0))
        pred_features, true_features = both[:batch], tf.stop_gradient(both[batch:])
        diff = pred_features - true_features
        per_element = tf.square(diff) if self.distance == "squared" else tf.abs(diff)
        return tf.reduce_mean(per_element, axis=[1, 2, 3])
