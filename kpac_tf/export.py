"""Export KPAC for TF Serving (SavedModel with named signatures) and TFLite.

A SavedModel written here needs only TensorFlow to load (no kpac_tf, no Keras objects:
it tracks the weights as plain variables and saves concrete functions), takes any
height and width (the model pads and crops inside), and has these signatures:

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

Pixel limit: an export refuses requests above ``max_pixels`` (default
:data:`DEFAULT_MAX_PIXELS`, 16 MP) before any work is done, so one large request cannot
exhaust a shared server's memory (a float32 forward takes about 1 KB per pixel: 16 MP
is about 16 GB). The float signatures count the pixels of the whole batch (N x H x W,
from the tensor's shape); the encoded signature checks each file's width x height from
its PNG or JPEG header before decoding it, and decodes and runs the files of a request
one after the other. Larger photos: tile them on the client (``kpac_tf.inference``'s
planner) or export with a larger limit for a bigger machine.

:func:`convert_to_onnx` (the ``onnx`` extra: tf2onnx, onnxruntime) converts the float
signature to ONNX with dynamic batch, height and width; ``export_saved_model(...,
onnx=True)`` writes it beside ``saved_model.pb`` as ``model.onnx``, and
:class:`OnnxDeblurrer` runs it in ONNX Runtime. OpenVINO reads the same file
(``openvino.Core().read_model``) or the SavedModel itself (``openvino.convert_model``).

:func:`export_saved_model` writes TF Serving's layout ``<export_dir>/<model_name>/
<version>/`` atomically: everything goes into a hidden sibling folder first, renamed
to the version number only when complete, and an existing version is never replaced.
:func:`convert_to_tflite` converts the float signature with dynamic shapes (batch,
height and width stay -1; the interpreter resizes per call), and
:class:`TFLiteDeblurrer` runs the result.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.analysis import attention_model
from kpac_tf.io import (
    current_umask,
    decode_image_tensor,
    encode_png_tensor,
    encoded_image_size_tensor,
    is_16bit_png_tensor,
    is_jpeg_tensor,
    is_png_tensor,
)
from kpac_tf.models import DUAL_PIXEL_VIEWS, ModelConfig, model_config

__all__ = [
    "ATTENTION_SIGNATURE",
    "DEFAULT_MAX_PIXELS",
    "ENCODED_SIGNATURE",
    "METADATA_FILE",
    "ONNX_FILE",
    "ONNX_INSTALL_HINT",
    "OnnxDeblurrer",
    "SERVING_SIGNATURE",
    "TFLiteDeblurrer",
    "build_serving_module",
    "convert_to_onnx",
    "convert_to_tflite",
    "export_saved_model",
    "input_names",
    "next_version",
    "onnx_available",
]

SERVING_SIGNATURE = "serving_default"
ENCODED_SIGNATURE = "encoded"
ATTENTION_SIGNATURE = "attention"
#: Output key of the float signatures.
OUTPUT_KEY = "deblurred"
#: Output key of the encoded signature (the ``_bytes`` suffix makes TF Serving's REST
#: API return base64).
PNG_OUTPUT_KEY = "png_bytes"
#: Written into ``<version>/assets.extra/`` (TF Serving ignores that folder).
METADATA_FILE = "kpac_export.json"
TFLITE_FILE = "model.tflite"
#: Written beside ``saved_model.pb`` by ``export_saved_model(..., onnx=True)``.
ONNX_FILE = "model.onnx"
#: What to install for ONNX export and ONNX Runtime.
ONNX_INSTALL_HINT = "pip install 'kpac_tf[onnx]' (tf2onnx and onnxruntime)"
#: ONNX opset of :func:`convert_to_onnx`.
ONNX_OPSET = 17
#: Default pixel limit of an export's requests: 16 megapixels (about 16 GB for one
#: float32 forward pass).
DEFAULT_MAX_PIXELS = 16_000_000

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def input_names(config: ModelConfig) -> tuple[str, ...]:
    """Names of the float inputs: ("images",) or ("left", "right", "centre")."""
    return DUAL_PIXEL_VIEWS if config.dual_pixel else ("images",)


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


def _image_spec(name: str) -> tf.TensorSpec:
    return tf.TensorSpec([None, None, None, 3], tf.float32, name=name)


def _float_function(
    model: keras.Model, names: Sequence[str], *, checks: bool, max_pixels: int | None = None
) -> Callable:
    """Python function (named float inputs) -> {"deblurred": clipped output}."""

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


def _check_exportable(model: keras.Model) -> ModelConfig:
    config = model_config(model)
    expected = len(input_names(config))
    if len(model.inputs) != expected:
        raise ValueError(
            f"Model {model.name!r} has {len(model.inputs)} inputs, a {config.levels}-level "
            f"{'dual-pixel ' if config.dual_pixel else ''}KPAC export expects {expected}; "
            "build it without alpha_override."
        )
    return config


def _check_max_pixels(max_pixels: int | None) -> int | None:
    if max_pixels is None:
        return None
    if isinstance(max_pixels, bool) or int(max_pixels) != max_pixels or max_pixels < 1:
        raise ValueError(
            f"max_pixels must be a positive integer (or None for no limit), got {max_pixels!r}."
        )
    return int(max_pixels)


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
    config = _check_exportable(model)
    max_pixels = _check_max_pixels(max_pixels)
    names = input_names(config)
    specs = [_image_spec(name) for name in names]
    signatures = {
        SERVING_SIGNATURE: tf.function(
            _float_function(model, names, checks=True, max_pixels=max_pixels)
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
    return _module_for(signatures), signatures


def _module_for(functions: dict) -> tf.Module:
    """A module that tracks exactly the variables the functions capture (not the Keras
    objects), so the SavedModel loads without kpac_tf and converts to TFLite."""
    module = tf.Module()
    variables = {}
    for function in functions.values():
        for variable in function.variables:
            variables[id(variable)] = variable
    module.model_variables = list(variables.values())
    return module


# ---------------------------------------------------------------------------------------
# TF Serving layout.


def next_version(model_dir: str | os.PathLike) -> int:
    """1 + the largest integer-named folder in ``model_dir`` (1 if none)."""
    model_dir = Path(model_dir)
    versions = [
        int(entry.name)
        for entry in (model_dir.iterdir() if model_dir.is_dir() else [])
        if entry.name.isdigit() and entry.is_dir()
    ]
    return max(versions, default=0) + 1


def _metadata(
    config: ModelConfig, signatures: dict, weights_source: str | None, max_pixels: int | None
) -> dict:
    from kpac_tf import __version__

    def describe(function) -> dict:
        inputs = {
            spec.name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
            for spec in function.structured_input_signature[0]
        }
        outputs = {
            key: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()}
            for key, spec in function.structured_outputs.items()
        }
        return {"inputs": inputs, "outputs": outputs}

    return {
        "format": 1,
        "kpac_tf_version": __version__,
        "config": config.to_dict(),
        "weights": weights_source,
        "signatures": {name: describe(fn) for name, fn in signatures.items()},
        "value_range": "[0, 1]",
        "layout": "NHWC",
        "max_pixels": max_pixels,
    }


def _version_folder(export_dir: str | os.PathLike, model_name: str,
                    version: int | None) -> tuple[Path, int, Path]:
    """(model folder (created), version, version folder) for an export; ValueError for a
    bad name or version, FileExistsError when the version folder exists."""
    if not _NAME_PATTERN.match(model_name):
        raise ValueError(
            f"Model name {model_name!r} is not usable as a folder name; use letters, digits, "
            "'_', '-' or '.', starting with a letter or digit."
        )
    if version is not None and (isinstance(version, bool) or int(version) < 1):
        raise ValueError(f"Version must be a positive integer, got {version!r}.")
    model_dir = Path(export_dir) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = int(version) if version is not None else next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(
            f"{final} already exists and is never replaced; pick another version or leave "
            "it out to use the next free number."
        )
    return model_dir, version, final


def export_saved_model(
    model: keras.Model,
    export_dir: str | os.PathLike,
    model_name: str = "kpac",
    version: int | None = None,
    *,
    attention: bool = False,
    tflite: bool = False,
    onnx: bool = False,
    weights_source: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Path:
    """Write ``model`` as ``<export_dir>/<model_name>/<version>/`` for TF Serving.

    Args:
        model: a KPAC Keras model (see :func:`build_serving_module`).
        export_dir: TF Serving's model base path's parent (created if missing).
        model_name: folder name, also the name TF Serving serves it under.
        version: positive integer; default: one more than the largest existing version.
        attention: add the ``attention`` signature.
        tflite: also write ``assets.extra/model.tflite`` (float signature, dynamic shapes).
        onnx: also write ``model.onnx`` beside ``saved_model.pb`` (float signature,
            dynamic shapes; needs the ``onnx`` extra, see :func:`convert_to_onnx`).
        weights_source: recorded in ``assets.extra/kpac_export.json`` (file name only).
        max_pixels: the signatures' pixel limit (see :func:`build_serving_module`);
            None: no limit. Recorded in the metadata. TFLite and ONNX have no limit.

    Returns:
        The version folder.

    Raises:
        FileExistsError: the version folder exists (it is never replaced).
        ValueError: bad ``model_name``, ``version`` or ``max_pixels``, or a model that
            cannot be exported.
        ImportError: ``onnx=True`` without tf2onnx (the message says what to install);
            raised before anything is written.
    """
    model_dir, version, final = _version_folder(export_dir, model_name, version)
    config = _check_exportable(model)
    max_pixels = _check_max_pixels(max_pixels)
    if onnx:
        _require_onnx_converter()
    module, signatures = build_serving_module(model, attention=attention, max_pixels=max_pixels)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=model_dir))
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it private; a server may run as another user
        tf.saved_model.save(module, str(staging), signatures=signatures)
        extra = staging / "assets.extra"
        extra.mkdir(exist_ok=True)
        source = Path(weights_source).name if weights_source else None
        (extra / METADATA_FILE).write_text(
            json.dumps(_metadata(config, signatures, source, max_pixels), indent=2) + "\n"
        )
        if tflite:
            (extra / TFLITE_FILE).write_bytes(convert_to_tflite(model))
        if onnx:
            (staging / ONNX_FILE).write_bytes(convert_to_onnx(model))
        if final.exists():
            raise FileExistsError(
                f"{final} was created while exporting; it is not replaced (export again "
                "to get the next free version)."
            )
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logging.info("Exported %s (signatures: %s) to %s.", model.name, ", ".join(signatures), final)
    return final


# ---------------------------------------------------------------------------------------
# TFLite.


def convert_to_tflite(model: keras.Model) -> bytes:
    """The float signature of ``model`` as a TFLite flatbuffer with dynamic shapes.

    Inputs as in ``serving_default`` (batch, height and width are -1 in the model; the
    interpreter resizes them per call); output ``deblurred`` clipped to [0,1]. The graph
    checks are left out (TFLite has no assert op); the interpreter checks ranks and
    channel counts when it resizes.
    """
    config = _check_exportable(model)
    names = input_names(config)
    function = tf.function(_float_function(model, names, checks=False)).get_concrete_function(
        *[_image_spec(name) for name in names]
    )
    module = _module_for({SERVING_SIGNATURE: function})
    with tempfile.TemporaryDirectory(prefix="kpac_tflite_") as folder:
        tf.saved_model.save(module, folder, signatures={SERVING_SIGNATURE: function})
        converter = tf.lite.TFLiteConverter.from_saved_model(
            folder, signature_keys=[SERVING_SIGNATURE]
        )
        flatbuffer = converter.convert()
    logging.info("Converted %s to TFLite (%.1f MB).", model.name, len(flatbuffer) / 2**20)
    return flatbuffer


def _interpreter_class():
    try:  # the maintained home of the interpreter, if installed
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError:
        return tf.lite.Interpreter


def _runtime_input_names(available, kind: str, converter: str) -> tuple[str, ...]:
    """The KPAC input names of a converted model (in input order); ValueError when its
    inputs are not a KPAC model's."""
    available = set(available)
    names = tuple(n for n in ("images", *DUAL_PIXEL_VIEWS) if n in available)
    if set(names) != available:
        raise ValueError(
            f"Not a KPAC {kind} model: its inputs are {sorted(available)}; convert one "
            f"with kpac_tf.export.{converter}."
        )
    return names


def _feeds(input_names: Sequence[str], images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
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
        self.input_names = _runtime_input_names(self._runner.get_input_details(), "TFLite",
                                                "convert_to_tflite")

    def __call__(self, *images: np.ndarray) -> np.ndarray:
        """Deblur: float32 NHWC [N,H,W,3] in [0,1] (dual-pixel: left, right, centre)
        -> float32 [N,H,W,3] clipped to [0,1]."""
        return self._runner(**_feeds(self.input_names, images))[OUTPUT_KEY]


# ---------------------------------------------------------------------------------------
# ONNX (the optional ``onnx`` extra).


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


def _require_onnx_converter():
    try:
        import tf2onnx  # noqa: F401
    except ImportError as error:
        raise ImportError(f"ONNX export needs tf2onnx: {ONNX_INSTALL_HINT}.") from error
    return tf2onnx


def convert_to_onnx(model: keras.Model, opset: int = ONNX_OPSET) -> bytes:
    """The float signature of ``model`` as an ONNX model (serialised protobuf bytes).

    Inputs as in ``serving_default`` (float32 NHWC in [0,1], batch, height and width
    dynamic); output ``deblurred`` clipped to [0,1]. The graph checks and the pixel
    limit are left out, as for TFLite: the runtime serving the file sets its own
    limits.

    Raises:
        ImportError: tf2onnx is missing (the message says what to install).
    """
    tf2onnx = _require_onnx_converter()
    config = _check_exportable(model)
    names = input_names(config)
    function = tf.function(_float_function(model, names, checks=False))
    proto, _ = tf2onnx.convert.from_function(
        function, input_signature=[_image_spec(name) for name in names], opset=opset
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
        self.input_names = _runtime_input_names([i.name for i in self._session.get_inputs()],
                                                "ONNX", "convert_to_onnx")

    def __call__(self, *images: np.ndarray) -> np.ndarray:
        """Deblur: float32 NHWC [N,H,W,3] in [0,1] (dual-pixel: left, right, centre)
        -> float32 [N,H,W,3] clipped to [0,1]."""
        return self._session.run([OUTPUT_KEY], _feeds(self.input_names, images))[0]
