"""Weights: the project's own files, the authors' TensorLayer npz files, bundled presets.

Every format lists the model's arrays in one canonical order, the build order of the
authors' TensorLayer graph (see the KPAC reference): encoder convs (kernel, bias);
per block the shared atrous kernel, sca_dc1..4, sca_c2, sha_c1, sha_c2, cf; then cm_1,
cm_2 and the decoder. Conv kernels are [kh, kw, in, out]; deconv kernels [kh, kw, out,
in], as tf.nn.conv2d_transpose wants them, so no array is ever transposed.

- Own format (``*.weights.npz``): a plain npz (no pickle) with one entry per array,
  named "NNNN:<layer>/<variable>", plus "__config__" (the ModelConfig as JSON), so a
  file can rebuild its own model (:func:`load_model`).
- Authors' format: ``np.savez(path, params=<object array of arrays>)`` as written by
  TensorLayer 1.x. Reading it needs pickle; a restricted unpickler admits numpy arrays
  and nothing else, so a crafted file cannot run code.
- Presets: "kpac-3level" etc. resolve to weights bundled in ``kpac_tf/assets/weights``.
- Training checkpoints: a kpac-train checkpoint prefix (``WORKDIR/checkpoints/ckpt-N``)
  loads the model's variables from it; the run's ``train_record.json`` names the model.
- Averages: :func:`average_weights` takes the mean of several sources of one model
  (checkpoint averaging, as in stochastic weight averaging).
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from pathlib import Path

import keras
import numpy as np
from absl import logging

from kpac_tf.model import layers as kl
from kpac_tf.model.builder import PRESETS, ModelConfig, build_kpac, model_config

OWN_SUFFIX = ".weights.npz"
CONFIG_KEY = "__config__"
ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "weights"
AUTHORS_URL = "https://github.com/HyeongseokSon1/KPAC (folder pretrained/)"


class WeightsMismatchError(ValueError):
    """A weights file does not fit the model (count or shape of an array)."""


class UnsafeWeightsError(ValueError):
    """A weights file's pickle asks for something other than numpy arrays."""


# ---------------------------------------------------------------------------------------
# The canonical order.


def _conv_pair(layer) -> list:
    return [layer.kernel, layer.bias]


def _block_variables(block) -> list:
    if isinstance(block, kl.ResidualBlock):
        return _conv_pair(block.conv1) + _conv_pair(block.conv2)
    variables = list(block.atrous.kernels)
    if block.scale_attention is not None:
        for layer in [*block.scale_attention.hidden, block.scale_attention.head]:
            variables += _conv_pair(layer)
    if block.shape_attention is not None:
        variables += _conv_pair(block.shape_attention.squeeze)
        variables += _conv_pair(block.shape_attention.excite)
    return variables + _conv_pair(block.fusion)


def weight_layout(model: keras.Model) -> list[tuple[str, object]]:
    """(name, variable) pairs of ``model`` in the authors' TensorLayer order."""
    layout = []
    for layer in model.layers:
        if isinstance(layer, (kl.KPACBlock, kl.ResidualBlock)):
            variables = _block_variables(layer)
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            variables = _conv_pair(layer)
        else:
            continue
        layout += [(f"{layer.name}/{v.path.split('/', 1)[-1]}", v) for v in variables]
    return layout


def get_arrays(model: keras.Model) -> list[np.ndarray]:
    """The model's arrays (float32) in canonical order."""
    return [np.asarray(v.numpy(), dtype=np.float32) for _, v in weight_layout(model)]


def set_arrays(model: keras.Model, arrays: list, source: str) -> None:
    """Assign arrays in canonical order, checking count and every shape first.

    Raises WeightsMismatchError naming the first array that does not fit (index,
    layer, expected shape, found shape); nothing is assigned in that case.
    """
    layout = weight_layout(model)
    for index, ((name, variable), array) in enumerate(zip(layout, arrays)):
        expected, found = tuple(variable.shape), tuple(np.shape(array))
        if expected != found:
            raise WeightsMismatchError(
                f"{source}: array {index} ({name}) has shape {found}, the model expects "
                f"{expected}; the file was made for another model variant."
            )
    if len(arrays) != len(layout):
        index = min(len(arrays), len(layout))
        what = (
            f"array {index} ({layout[index][0]}, shape {tuple(layout[index][1].shape)}) is missing"
            if len(arrays) < len(layout)
            else f"it has {len(arrays) - len(layout)} extra array(s) from index {index}"
        )
        raise WeightsMismatchError(
            f"{source}: holds {len(arrays)} arrays, the model has {len(layout)}: {what}; "
            "the file was made for another model variant."
        )
    for (_, variable), array in zip(layout, arrays):
        variable.assign(np.asarray(array, dtype=np.float32))


# ---------------------------------------------------------------------------------------
# Safe reading of the authors' pickled npz.


def _allowed_globals() -> dict:
    from numpy.lib import format as _  # noqa: F401  (ensures numpy core is loaded)

    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore
    allowed = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
        allowed[(module, "scalar")] = scalar
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals needed to rebuild numpy arrays."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        key = (module, name)
        if key not in self._allowed:
            raise UnsafeWeightsError(
                f"{self._source}: refused to load: its pickle asks for {module}.{name}, "
                "but a weights file may only contain numpy arrays."
            )
        return self._allowed[key]


def _read_npy_member(archive: zipfile.ZipFile, member: str, source: str) -> np.ndarray:
    """Read one .npy member; object arrays go through the restricted unpickler."""
    with archive.open(member) as handle:
        data = handle.read()
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        _, _, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        _, _, dtype = np.lib.format.read_array_header_2_0(stream)
    if not dtype.hasobject:
        return np.load(io.BytesIO(data), allow_pickle=False)
    array = _ArraysOnlyUnpickler(stream, source).load()
    if not isinstance(array, np.ndarray):
        raise UnsafeWeightsError(f"{source}: {member} does not hold a numpy array.")
    return array


def read_authors_npz(path: str | os.PathLike) -> list[np.ndarray]:
    """The arrays of a TensorLayer ``save_npz`` file, in file order (float32).

    Raises FileNotFoundError, UnsafeWeightsError (pickle asking for anything but numpy
    arrays; nothing is executed), or ValueError for a file that is not such an npz.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such weights file; download the authors' npz files from {AUTHORS_URL}."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            if "params.npy" not in archive.namelist():
                raise ValueError(
                    f"{path}: not a TensorLayer weights file (no 'params' entry; found "
                    f"{', '.join(archive.namelist()) or 'nothing'})."
                )
            params = _read_npy_member(archive, "params.npy", str(path))
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not an npz file ({error}).") from error
    arrays = list(params) if params.dtype.hasobject else [params]
    for index, array in enumerate(arrays):
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{path}: entry {index} of 'params' is not a float array.")
    return [np.asarray(a, dtype=np.float32) for a in arrays]


def import_authors_npz(model: keras.Model, path: str | os.PathLike) -> None:
    """Load the authors' released npz (single_2level/single_3level/dual) into ``model``."""
    arrays = read_authors_npz(path)
    set_arrays(model, arrays, str(path))
    logging.info("Imported %d arrays from the authors' file %s.", len(arrays), path)


def export_authors_npz(model: keras.Model, path: str | os.PathLike) -> None:
    """Write ``model``'s weights in the authors' TensorLayer npz layout."""
    arrays = get_arrays(model)
    params = np.empty(len(arrays), dtype=object)
    for index, array in enumerate(arrays):
        params[index] = array
    _atomic_savez(Path(path), {"params": params})


# ---------------------------------------------------------------------------------------
# The project's own format.


def _atomic_savez(path: Path, entries: dict) -> None:
    """np.savez into ``path`` (its folder created), complete or absent
    (:func:`kpac_tf.files.atomic_write`)."""
    from kpac_tf.files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: np.savez(stream, **entries))


def save_weights(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save ``model``'s weights and config in the project's format (``*.weights.npz``)."""
    path = Path(path)
    if not path.name.endswith(OWN_SUFFIX):
        path = path.with_name(path.name + OWN_SUFFIX)
    entries = {
        f"{index:04d}:{name}": np.asarray(variable.numpy(), dtype=np.float32)
        for index, (name, variable) in enumerate(weight_layout(model))
    }
    entries[CONFIG_KEY] = np.array(json.dumps(model_config(model).to_dict()))
    _atomic_savez(path, entries)
    return path


def read_own_weights(path: str | os.PathLike) -> tuple[ModelConfig, list[np.ndarray]]:
    """(config, arrays in canonical order) of a project weights file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file.")
    try:
        with np.load(path, allow_pickle=False) as data:
            if CONFIG_KEY not in data.files:
                raise ValueError(f"{path}: not a kpac_tf weights file (no {CONFIG_KEY} entry).")
            config = ModelConfig(**json.loads(str(data[CONFIG_KEY])))
            names = sorted(name for name in data.files if name != CONFIG_KEY)
            arrays = [data[name] for name in names]
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(f"{path}: not a readable weights file ({error}).") from error
    return config, arrays


# ---------------------------------------------------------------------------------------
# kpac-train checkpoints.


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TensorFlow checkpoint prefix (``PREFIX.index`` exists)."""
    return Path(f"{path}.index").is_file()


def checkpoint_config(prefix: str | os.PathLike) -> ModelConfig:
    """The model of a kpac-train checkpoint ``WORKDIR/checkpoints/ckpt-N``, from the run's
    ``WORKDIR/train_record.json`` (written when the run first stops)."""
    record_path = Path(prefix).parent.parent / "train_record.json"
    try:
        return ModelConfig(**json.loads(record_path.read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{prefix}: cannot tell its model, {record_path} is missing or has no model entry "
            f"({type(error).__name__}); pass the model configuration (--preset) explicitly."
        ) from None


_CHECKPOINT_KEY = "optimizer/_trainable_variables/{}/.ATTRIBUTES/VARIABLE_VALUE"
_OPTIMIZER_VARIABLE = re.compile(r"^optimizer/_variables/(\d+)/\.ATTRIBUTES/VARIABLE_VALUE$")


def _average_keys(stored: dict, count: int) -> list[str] | None:
    """The keys of the moving averages of a checkpoint's ``count`` model variables, in
    model order, or None if its optimizer keeps none. Adam holds two moments per
    variable; one built with ``use_ema`` also an average per variable, created first."""
    indices = sorted(int(match.group(1)) for name in stored if (match := _OPTIMIZER_VARIABLE.match(name)))
    if len(indices) != 3 * count:
        return None
    return [f"optimizer/_variables/{index}/.ATTRIBUTES/VARIABLE_VALUE" for index in indices[:count]]


def restore_checkpoint(model: keras.Model, prefix: str | os.PathLike) -> None:
    """Load the model variables of a kpac-train checkpoint into ``model`` (its optimizer
    moments and counters are ignored); of a run with ``--ema_decay``, their moving
    averages, which that run validates and saves as its weights.

    A kpac-train checkpoint reaches the model's variables through its optimizer, which
    holds them, in ``model.trainable_variables`` order, as ``_trainable_variables``
    (the KPAC blocks' variables are reachable from nowhere else), so they are read by
    that key. Every shape is checked first: a checkpoint of another model variant is a
    WeightsMismatchError and nothing is assigned.
    """
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(f"{prefix}: not a readable checkpoint ({str(error).splitlines()[0][:160]}).") from None
    stored = reader.get_variable_to_shape_map()
    if _CHECKPOINT_KEY.format(0) not in stored:
        raise ValueError(f"{prefix}: not a kpac-train checkpoint (it holds no optimizer with the "
                         "model's variables).")
    _check_checkpoint_shapes(model, prefix, stored)
    variables = model.trainable_variables
    keys = _average_keys(stored, len(variables))
    if keys is None or any(tuple(stored[key]) != tuple(v.shape) for key, v in zip(keys, variables)):
        keys = [_CHECKPOINT_KEY.format(index) for index in range(len(variables))]
        what = "model variables"
    else:
        what = "model variables' moving averages"
    for key, variable in zip(keys, variables):
        variable.assign(reader.get_tensor(key))
    logging.info("Restored the %d %s of checkpoint %s.", len(variables), what, prefix)


def _check_checkpoint_shapes(model: keras.Model, prefix: str | os.PathLike, stored: dict) -> None:
    """Raise WeightsMismatchError, naming the first variable that does not fit, unless the
    checkpoint's model variables (``stored``: key to shape) fit ``model`` one for one."""
    count = sum(name.startswith("optimizer/_trainable_variables/") for name in stored)
    for index, variable in enumerate(model.trainable_variables):
        found = stored.get(_CHECKPOINT_KEY.format(index))
        if found is None or tuple(found) != tuple(variable.shape):
            what = "is missing" if found is None else f"has shape {tuple(found)}"
            raise WeightsMismatchError(
                f"{prefix}: variable {index} ({variable.path}) {what}, the model expects "
                f"{tuple(variable.shape)}; the checkpoint was made for another model variant."
            )
    if count != len(model.trainable_variables):
        raise WeightsMismatchError(
            f"{prefix}: holds {count} model variables, the model has {len(model.trainable_variables)}; "
            "the checkpoint was made for another model variant."
        )


def average_weights(sources: list, config: ModelConfig | str | None = None) -> keras.Model:
    """A model holding the element-wise mean of the weights of ``sources`` (presets, own
    files, authors' files or checkpoints of one model variant; ``config`` as in
    :func:`load_model`). Every source must fit the model of the first."""
    if not sources:
        raise ValueError("Nothing to average: give at least one weights source.")
    model = load_model(sources[0], config)
    total = [array.astype(np.float64) for array in get_arrays(model)]
    for source in sources[1:]:
        load_weights(model, source)
        for accumulated, array in zip(total, get_arrays(model)):
            accumulated += array
    set_arrays(model, [array / len(sources) for array in total], "the average")
    logging.info("Averaged the weights of %d sources.", len(sources))
    return model


#: The authors' released file for each preset.
AUTHORS_FILES = {"kpac-2level": "single_2level.npz", "kpac-3level": "single_3level.npz",
                 "kpac-dual": "dual.npz"}


def bundled_weights_path(preset: str) -> Path:
    """Path of the weights bundled for ``preset`` (may not exist)."""
    return ASSETS_DIR / f"{preset}{OWN_SUFFIX}"


def bundled_presets() -> list[str]:
    """The presets whose weights ship with the package."""
    return sorted(name for name in PRESETS if bundled_weights_path(name).is_file())


def _resolve(source: str | os.PathLike) -> tuple[str, Path]:
    """('own' | 'authors' | 'checkpoint', path) for a preset name, a file path or a
    checkpoint prefix."""
    if isinstance(source, str) and source in PRESETS:
        path = bundled_weights_path(source)
        if not path.is_file():
            shipped = ", ".join(bundled_presets()) or "none"
            raise FileNotFoundError(
                f"No weights are bundled for {source!r}: only {shipped} ships weights. Use the "
                f"authors' {AUTHORS_FILES.get(source, 'npz')} from {AUTHORS_URL}, or train your own "
                f"(kpac-train --preset={source}), and pass that file as the weights."
            )
        return "own", path
    path = Path(source)
    if is_checkpoint(path):
        return "checkpoint", path
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such weights file; give a preset name ({', '.join(PRESETS)}), "
            f"a *{OWN_SUFFIX} file, a kpac-train checkpoint (WORKDIR/checkpoints/ckpt-N) or an "
            f"authors' npz from {AUTHORS_URL}."
        )
    if path.name.endswith(OWN_SUFFIX):
        return "own", path
    if path.suffix == ".npz":
        with zipfile.ZipFile(path) as archive:
            own = f"{CONFIG_KEY}.npy" in archive.namelist()
        return ("own" if own else "authors"), path
    raise ValueError(f"{path}: unknown weights format (expected *{OWN_SUFFIX} or an authors' .npz).")


def load_weights(model: keras.Model, source: str | os.PathLike) -> None:
    """Load weights into ``model`` from a preset name, an own file or an authors' npz."""
    kind, path = _resolve(source)
    if kind == "authors":
        import_authors_npz(model, path)
        return
    if kind == "checkpoint":
        restore_checkpoint(model, path)
        return
    config, arrays = read_own_weights(path)
    if config != model_config(model):
        logging.warning("%s was saved from %s, loading into %s.", path, config, model_config(model))
    set_arrays(model, arrays, str(path))
    logging.info("Loaded %d arrays from %s.", len(arrays), path)


def load_model(source: str | os.PathLike, config: ModelConfig | str | None = None, **build_kwargs) -> keras.Model:
    """Build the right model for ``source`` and load it.

    ``source``: a preset name (its bundled weights), a project weights file (its stored
    config is used) or an authors' npz (give ``config``, e.g. "kpac-2level"; by default
    the preset whose array count and first shape fit is chosen).
    """
    kind, path = _resolve(source)
    if kind == "own":
        stored, _ = read_own_weights(path)
        model = build_kpac(config or stored, **build_kwargs)
    elif kind == "checkpoint":
        model = build_kpac(config or checkpoint_config(path), **build_kwargs)
    else:
        model = build_kpac(config or _guess_authors_preset(path), **build_kwargs)
    load_weights(model, path)
    return model


def _guess_authors_preset(path: Path) -> str:
    arrays = read_authors_npz(path)
    if len(arrays) == 58:
        return "kpac-2level"
    if len(arrays) == 66:
        return "kpac-dual" if arrays[0].shape[2] == 6 else "kpac-3level"
    raise WeightsMismatchError(
        f"{path}: holds {len(arrays)} arrays, which fits no preset (2-level: 58, 3-level and "
        "dual: 66); pass the model configuration explicitly."
    )
