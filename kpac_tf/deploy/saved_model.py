"""Export KPAC for TF Serving: a SavedModel with named signatures, in TF Serving's layout.

A SavedModel written here needs only TensorFlow to load (no kpac_tf, no Keras objects:
it tracks the weights as plain variables and saves concrete functions), takes any
height and width, and has the signatures of :mod:`kpac_tf.deploy.signatures`
(``serving_default``, ``encoded``, optionally ``attention``) with their pixel limit.

:func:`export_saved_model` writes TF Serving's layout ``<export_dir>/<model_name>/
<version>/`` atomically: everything goes into a hidden sibling folder first, renamed
to the version number only when complete, and an existing version is never replaced.
Beside the SavedModel it can write the TFLite model (``assets.extra/model.tflite``,
:mod:`kpac_tf.deploy.tflite`) and the ONNX model (``model.onnx``, the ``onnx`` extra:
:mod:`kpac_tf.deploy.onnx`); ``assets.extra/kpac_export.json`` records what was
exported. OpenVINO reads the ONNX file (``openvino.Core().read_model``) or the
SavedModel itself (``openvino.convert_model``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf
from absl import logging

from kpac_tf.deploy.onnx import convert_to_onnx, require_onnx_converter
from kpac_tf.deploy.signatures import (DEFAULT_MAX_PIXELS, build_serving_module, check_exportable,
                                       check_max_pixels)
from kpac_tf.deploy.tflite import convert_to_tflite
from kpac_tf.files import current_umask
from kpac_tf.model.builder import ModelConfig

__all__ = ["METADATA_FILE", "ONNX_FILE", "TFLITE_FILE", "export_saved_model", "next_version"]

#: Written into ``<version>/assets.extra/`` (TF Serving ignores that folder).
METADATA_FILE = "kpac_export.json"
#: Written into ``<version>/assets.extra/`` by ``export_saved_model(..., tflite=True)``.
TFLITE_FILE = "model.tflite"
#: Written beside ``saved_model.pb`` by ``export_saved_model(..., onnx=True)``.
ONNX_FILE = "model.onnx"

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


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
        model: a KPAC Keras model (see
            :func:`kpac_tf.deploy.signatures.build_serving_module`).
        export_dir: TF Serving's model base path's parent (created if missing).
        model_name: folder name, also the name TF Serving serves it under.
        version: positive integer; default: one more than the largest existing version.
        attention: add the ``attention`` signature.
        tflite: also write ``assets.extra/model.tflite`` (float signature, dynamic shapes).
        onnx: also write ``model.onnx`` beside ``saved_model.pb`` (float signature,
            dynamic shapes; needs the ``onnx`` extra, see
            :func:`kpac_tf.deploy.onnx.convert_to_onnx`).
        weights_source: recorded in ``assets.extra/kpac_export.json`` (file name only).
        max_pixels: the signatures' pixel limit (see
            :func:`kpac_tf.deploy.signatures.build_serving_module`); None: no limit.
            Recorded in the metadata. TFLite and ONNX have no limit.

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
    config = check_exportable(model)
    max_pixels = check_max_pixels(max_pixels)
    if onnx:
        require_onnx_converter()
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


def next_version(model_dir: str | os.PathLike) -> int:
    """1 + the largest integer-named folder in ``model_dir`` (1 if none)."""
    model_dir = Path(model_dir)
    versions = [
        int(entry.name)
        for entry in (model_dir.iterdir() if model_dir.is_dir() else [])
        if entry.name.isdigit() and entry.is_dir()
    ]
    return max(versions, default=0) + 1


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
