"""The serving signatures of a KPAC model: float tensors, encoded image files, attention.

The signature functions built here are what :mod:`kpac_tf.deploy.saved_model` saves for
TF Serving and what :mod:`kpac_tf.deploy.tflite` and :mod:`kpac_tf.deploy.onnx` convert;
they take any height and width (the model pads and crops inside):

``serving_default`` (float tensors)
    inputs ``images`` float32 NHWC [N,H,W,3] in [0,1] (dual-pixel models: ``left``,
    ``right``, ``centre``, the same layout each); output ``deblurred`` float32
    [N,H,W,3] clipped to [0,1].
``encoded`` (image files, for REST clients that send base64)
    input ``image_bytes`` string [N]: PNG (8 or 16-bit) or JPEG files, each of its
    own size (dual-pixel: ``left_bytes``, ``right_bytes``, ``centre_bytes``); output
    ``png_bytes`` string [N]: RGB PNG files with the input's bit depth (JPEG: 8).
    Gray inputs come back as RGB; alpha is dropped. TF Serving's REST API sends and
    returns these as ``{"b64": ...}`` because their names end in ``_bytes``.
``attention`` (optional)
    the float inputs; outputs ``deblurred`` plus ``block{i}_alpha`` [N,h,w,R] (scale
    attention at the block resolution, 1/2**levels of the padded input) and
    ``block{i}_beta`` [N,1,1,48] (shape attention) of every KPAC block.

Bad inputs fail inside the graph with one clear message (TF Serving does not check
shapes itself): wrong rank or channel count, values outside [0,1] (e.g. 0-255 data),
NaN, empty images, dual-pixel views of different sizes, bytes that are not PNG or
JPEG (truncated files fail in TensorFlow's decoder: "Invalid PNG ..."). The encoded
signature does not apply JPEG EXIF orientation (decode on the client to honour it).

Pixel limit: a signature refuses requests above ``max_pixels`` (default
:data:`DEFAULT_MAX_PIXELS`, 16 MP) before any work is done, so one large request cannot
exhaust a shared server's memory (a float32 forward takes about 1 KB per pixel: 16 MP
is about 16 GB). The float signatures count the pixels of the whole batch (N x H x W,
from the tensor's shape); the encoded signature checks each file's width x height from
its PNG or JPEG header before decoding it, and decodes and runs the files of a request
one after the other. Larger photos: tile them on the client (``kpac_tf.inference``'s
planner) or export with a larger limit for a bigger machine.

The converted models (TFLite, ONNX) run the float signature without the checks and the
limit; :func:`converted_input_names` and :func:`named_feeds` are what their runners share.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from kpac_tf.analysis.attention import attention_model
from kpac_tf.images.tensors import (decode_image_tensor, encode_png_tensor,
                                    encoded_image_size_tensor, is_16bit_png_tensor, is_jpeg_tensor,
                                    is_png_tensor)
from kpac_tf.model.builder import DUAL_PIXEL_VIEWS, ModelConfig, model_config

__all__ = [
    "ATTENTION_SIGNATURE",
    "DEFAULT_MAX_PIXELS",
    "ENCODED_SIGNATURE",
    "OUTPUT_KEY",
    "PNG_OUTPUT_KEY",
    "SERVING_SIGNATURE",
    "build_serving_module",
    "check_exportable",
    "check_max_pixels",
    "converted_input_names",
    "float_function",
    "image_spec",
    "input_names",
    "module_for",
    "named_feeds",
]

SERVING_SIGNATURE = "serving_default"
ENCODED_SIGNATURE = "encoded"
ATTENTION_SIGNATURE = "attention"
#: Output key of the float signatures.
OUTPUT_KEY = "deblurred"
#: Output key of the encoded signature (the ``_bytes`` suffix makes TF Serving's REST
#: API return base64).
PNG_OUTPUT_KEY = "png_bytes"
#: Default pixel limit of an export's requests: 16 megapixels (about 16 GB for one
#: float32 forward pass).
DEFAULT_MAX_PIXELS = 16_000_000


def input_names(config: ModelConfig) -> tuple[str, ...]:
    """Names of the float inputs: ("images",) or ("left", "right", "centre")."""
    return DUAL_PIXEL_VIEWS if config.dual_pixel else ("images",)


def build_serving_module(
    model: keras.Model, *, attention: bool = False, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[tf.Module, dict]:
    """A tf.Module holding ``model``'s weights and the concrete signature functions.

    Args:
        model: a KPAC Keras model from :func:`kpac_tf.build_kpac` (single or dual-pixel;
            plain output or ``return_attention=True``).
        attention: add the ``attention`` signature.
        max_pixels: refuse requests above this many pixels (float signatures: N x H x W
            of the batch; encoded: each file's width x height, from its header before
            decoding); None: no limit.

    Returns:
        (module, signatures) ready for ``tf.saved_model.save(module, path,
        signatures=signatures)``.
    """
    config = check_exportable(model)
    max_pixels = check_max_pixels(max_pixels)
    names = input_names(config)
    specs = [image_spec(name) for name in names]
    signatures = {
        SERVING_SIGNATURE: tf.function(
            float_function(model, names, checks=True, max_pixels=max_pixels)
        ).get_concrete_function(*specs),
    }
    encoded, byte_names = _encoded_function(model, names, max_pixels)
    signatures[ENCODED_SIGNATURE] = tf.function(encoded).get_concrete_function(
        *[tf.TensorSpec([None], tf.string, name=name) for name in byte_names]
    )
    if attention:
        if config.block_type != "kpac":
            raise ValueError("The attention signature needs KPAC blocks (block_type='kpac').")
        twin = attention_model(model)
        signatures[ATTENTION_SIGNATURE] = tf.function(
            _attention_function(twin, names, max_pixels)
        ).get_concrete_function(*specs)
    return module_for(signatures), signatures


def float_function(
    model: keras.Model, names: Sequence[str], *, checks: bool, max_pixels: int | None = None
) -> Callable:
    """Python function (named float inputs, NHWC [0,1]) -> {"deblurred": the model's output
    clipped to [0,1]}; ``checks``: attach the graph checks of the float signature."""

    def deblur(*images):
        if checks:
            images = [_check_images(image, name, max_pixels) for image, name in zip(images, names)]
            if len(images) > 1:
                images = _check_same_size(images, names)
        output = model(list(images) if len(images) > 1 else images[0], training=False)
        if isinstance(output, dict):
            output = output["output"]
        return {OUTPUT_KEY: tf.clip_by_value(output, 0.0, 1.0)}

    return deblur


def image_spec(name: str) -> tf.TensorSpec:
    """The spec of one float input: float32 [N, H, W, 3], every size dynamic."""
    return tf.TensorSpec([None, None, None, 3], tf.float32, name=name)


def check_exportable(model: keras.Model) -> ModelConfig:
    """The model's config; ValueError for a model whose inputs an export cannot take."""
    config = model_config(model)
    expected = len(input_names(config))
    if len(model.inputs) != expected:
        raise ValueError(
            f"Model {model.name!r} has {len(model.inputs)} inputs, a {config.levels}-level "
            f"{'dual-pixel ' if config.dual_pixel else ''}KPAC export expects {expected}; "
            "build it without alpha_override."
        )
    return config


def check_max_pixels(max_pixels: int | None) -> int | None:
    """``max_pixels`` as an int (None stays None); ValueError unless a positive integer."""
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or int(max_pixels) != max_pixels or max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive integer (or None for no limit), got {max_pixels!r}."
        )
    return int(max_pixels)


def module_for(functions: dict) -> tf.Module:
    """A module that tracks exactly the variables the functions capture (not the Keras
    objects), so the SavedModel loads without kpac_tf and converts to TFLite."""
    module = tf.Module()
    variables = {}
    for function in functions.values():
        for variable in function.variables:
            variables[id(variable)] = variable
    module.model_variables = list(variables.values())
    return module


def converted_input_names(available, kind: str, converter: str) -> tuple[str, ...]:
    """The KPAC input names of a converted model (in input order); ValueError when its
    inputs are not a KPAC model's."""
    available = set(available)
    names = tuple(n for n in ("images", *DUAL_PIXEL_VIEWS) if n in available)
    if set(names) != available:
        raise ValueError(
            f"Not a KPAC {kind} model: its inputs are {sorted(available)}; convert one "
            f"with kpac_tf.deploy.{converter}."
        )
    return names


def named_feeds(input_names: Sequence[str], images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs of a converted model by name: float32 NHWC [N,H,W,3] arrays, checked."""
    if len(images) != len(input_names):
        raise ValueError(
            f"This model takes {len(input_names)} input(s) "
            f"({', '.join(input_names)}), got {len(images)}."
        )
    feeds = {}
    for name, image in zip(input_names, images):
        array = np.ascontiguousarray(image, dtype=np.float32)
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"{name} must be shaped [N, H, W, 3], got {array.shape}.")
        feeds[name] = array
    return feeds


# ---------------------------------------------------------------------------------------
# Input checks (graph mode).


def _runtime_rank(tensor: tf.Tensor) -> tf.Tensor:
    """The rank of ``tensor`` counted from its runtime shape, in a way graph
    optimisation cannot replace by the static rank of the input spec."""
    return tf.reduce_sum(tf.cast(tf.shape(tensor) >= 0, tf.int32))


def _limit_message(template: str, values: Sequence[tf.Tensor], max_pixels: int) -> tf.Tensor:
    """The over-limit message as a string tensor (``{}`` in ``template`` take ``values``)."""
    advice = (
        f" exceeds the pixel limit of this export ({max_pixels} pixels, max_pixels); tile "
        "larger photos on the client or export again with a larger --max_pixels"
    )
    return tf.strings.format(template + advice, values)


def _pixel_check(images: tf.Tensor, name: str, max_pixels: int | None) -> list:
    """[] or the check that the batch N x H x W stays within ``max_pixels``."""
    if not max_pixels:
        return []
    shape = tf.cast(tf.shape(images), tf.int64)
    pixels = shape[0] * shape[1] * shape[2]
    message = _limit_message(
        f"{name}: a batch of {{}} image(s) of {{}}x{{}} pixels ({{}} in all)",
        [shape[0], shape[2], shape[1], pixels], max_pixels,
    )
    return [tf.debugging.Assert(pixels <= max_pixels, [message])]


def _check_images(images: tf.Tensor, name: str, max_pixels: int | None = None) -> tf.Tensor:
    """``images`` with runtime checks attached: NHWC, 3 channels, non-empty, in [0,1],
    at most ``max_pixels`` in the batch (None: no limit).

    The static input spec already says [N, H, W, 3], but TF Serving does not check
    shapes against it, so the checks are repeated in the graph.
    """
    rank = _runtime_rank(images)
    rank_check = tf.debugging.Assert(
        tf.equal(rank, 4),
        [f"{name} must be a batch of images shaped [N, H, W, 3]; got a tensor of rank", rank],
    )
    with tf.control_dependencies([rank_check]):
        images = tf.identity(images)
        shape = tf.shape(images)
        checks = [
            tf.debugging.assert_equal(
                shape[3], 3,
                message=f"{name} must have 3 channels (RGB) in its last axis, shape [N, H, W, 3]",
            ),
            tf.debugging.assert_positive(
                shape[1:3], message=f"{name} must be at least 1 pixel high and wide"
            ),
            tf.debugging.Assert(
                # NaN fails both comparisons, so this also rejects NaN.
                tf.reduce_all(tf.logical_and(images >= 0.0, images <= 1.0)),
                [f"{name} must hold finite values in [0, 1] (divide 8-bit data by 255); "
                 "found min and max:", tf.reduce_min(images), tf.reduce_max(images)],
            ),
            *_pixel_check(images, name, max_pixels),
        ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def _check_same_size(tensors: Sequence[tf.Tensor], names: Sequence[str]) -> list[tf.Tensor]:
    """Dual-pixel views must share one shape."""
    reference = tf.shape(tensors[0])
    checks = [
        tf.debugging.assert_equal(
            tf.shape(tensor), reference,
            message=f"{names[0]} and {name} must have the same shape (one dual-pixel capture)",
        )
        for tensor, name in zip(tensors[1:], names[1:])
    ]
    with tf.control_dependencies(checks):
        return [tf.identity(tensor) for tensor in tensors]


def _decode(
    encoded: tf.Tensor, name: str, max_pixels: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """(float32 HWC [0,1] RGB image, True if a 16-bit PNG) of one encoded file, refused
    before decoding when its header says it has more than ``max_pixels`` pixels."""
    is_png = is_png_tensor(encoded)
    is_jpeg = is_jpeg_tensor(encoded)
    check = tf.debugging.Assert(
        tf.logical_or(is_png, is_jpeg),
        [f"{name} must hold a PNG (8 or 16-bit) or JPEG file; these bytes are neither."],
    )
    with tf.control_dependencies([check]):
        encoded_checked = tf.identity(encoded)
    if max_pixels:
        height, width = encoded_image_size_tensor(encoded_checked)
        message = _limit_message(
            f"{name}: an image of {{}}x{{}} pixels ({{}})", [width, height, height * width],
            max_pixels,
        )
        size_check = tf.debugging.Assert(height * width <= max_pixels, [message])
        with tf.control_dependencies([size_check]):
            encoded_checked = tf.identity(encoded_checked)
    image = decode_image_tensor(encoded_checked)
    sixteen = is_16bit_png_tensor(encoded)
    return image, sixteen


def _encode(image01: tf.Tensor, sixteen: tf.Tensor) -> tf.Tensor:
    """RGB PNG string of a float HWC image in [0,1], 16-bit if ``sixteen`` else 8-bit."""
    return tf.cond(
        sixteen,
        lambda: encode_png_tensor(image01, bit_depth=16),
        lambda: encode_png_tensor(image01, bit_depth=8),
    )


# ---------------------------------------------------------------------------------------
# Signature functions.


def _attention_function(
    model: keras.Model, names: Sequence[str], max_pixels: int | None = None
) -> Callable:
    def attention(*images):
        images = [_check_images(image, name, max_pixels) for image, name in zip(images, names)]
        if len(images) > 1:
            images = _check_same_size(images, names)
        outputs = model(list(images) if len(images) > 1 else images[0], training=False)
        result = {OUTPUT_KEY: tf.clip_by_value(outputs["output"], 0.0, 1.0)}
        result.update({key: value for key, value in outputs.items() if key != "output"})
        return result

    return attention


def _encoded_function(
    model: keras.Model, names: Sequence[str], max_pixels: int | None = None
) -> tuple[Callable, list[str]]:
    """(function of the string inputs -> {"png_bytes": ...}, the input names)."""
    byte_names = [f"{name}_bytes" if name != "images" else "image_bytes" for name in names]

    def deblur_one(encoded):
        decoded = [_decode(item, name, max_pixels) for item, name in zip(encoded, byte_names)]
        images = [image[tf.newaxis] for image, _ in decoded]
        if len(images) > 1:
            images = _check_same_size(images, byte_names)
        output = model(list(images) if len(images) > 1 else images[0], training=False)
        if isinstance(output, dict):
            output = output["output"]
        # The bit depth follows the centre (or only) image.
        return _encode(tf.clip_by_value(output[0], 0.0, 1.0), decoded[-1][1])

    def deblur(*encoded):
        checks = [
            tf.debugging.Assert(
                tf.equal(_runtime_rank(item), 1),
                [f"{name} must be a list (1-D tensor) of encoded images; got rank",
                 _runtime_rank(item)],
            )
            for item, name in zip(encoded, byte_names)
        ]
        checks += [
            tf.debugging.assert_equal(
                tf.size(item), tf.size(encoded[0]),
                message=f"{byte_names[0]} and {name} must list the same number of images",
            )
            for item, name in zip(encoded[1:], byte_names[1:])
        ]
        with tf.control_dependencies(checks):
            encoded = tuple(tf.identity(item) for item in encoded)
        png = tf.map_fn(  # one file at a time: the pixel limit bounds the memory
            deblur_one,
            encoded,
            fn_output_signature=tf.TensorSpec([], tf.string),
            parallel_iterations=1,
        )
        return {PNG_OUTPUT_KEY: png}

    return deblur, byte_names
