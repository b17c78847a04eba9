"""Convert the LPIPS v0.1 linear heads (.pth) of the `lpips` package into npz, without torch.

The PyPI package `lpips` (BSD-2-Clause, Zhang et al. 2018) ships its calibrated 1x1
"linear" heads as small PyTorch checkpoints, ``lpips/weights/v0.1/{alex,vgg}.pth``.
They use PyTorch's legacy (pre-zip) serialisation: a run of pickles (magic number,
protocol version, system info, the state dict, the list of storage keys) followed by
each storage's raw bytes (an int64 element count, then little-endian float32 data).

This script reads them with a restricted unpickler that admits only
``collections.OrderedDict`` and placeholders for ``torch._utils._rebuild_tensor_v2`` and
``torch.FloatStorage``; nothing else in the file can be constructed, so reading runs no
code from it. It writes ``kpac_tf/assets/lpips/{net}.npz`` with arrays ``lin0 .. lin4``
of shape [C] (float32; the 1x1 conv weight of head k, bias-free), and
``heads_manifest.json`` with the sha256 of each source .pth and, per head, its shape,
the sha256 of its float32 little-endian bytes and its sum (used by the tests).

Usage (the wheel is fetched with pip; torch is not needed):

    pip download --no-deps lpips==0.1.4 -d lpips_wheel
    python3 experiments/assets/convert_lpips_heads.py --wheel=lpips_wheel/lpips-0.1.4-py3-none-any.whl
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from absl import flags

from kpac_tf.cli import runner

_ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "kpac_tf", "assets", "lpips")

FLAGS = flags.FLAGS
flags.DEFINE_string("wheel", None, "The lpips wheel (.whl) fetched by pip.")
flags.DEFINE_string("out", _ASSETS, "Folder for {alex,vgg}.npz and heads_manifest.json.",
                    allow_override=True)  # other scripts' --out, when tests import several

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_NETS = ("alex", "vgg")
_CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}


@dataclass
class _Storage:
    key: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorStub:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorStub(storage, int(storage_offset), tuple(size), tuple(stride))


class _FloatStorageTag:
    """Stands in for torch.FloatStorage in the pickle (only float32 is admitted)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _Storage]):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module: str, name: str):
        allowed = {
            ("collections", "OrderedDict"): OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
            ("torch", "FloatStorage"): _FloatStorageTag,
        }
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return allowed[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid[:5]
        if storage_type is not _FloatStorageTag:
            raise pickle.UnpicklingError("only float32 storages are supported")
        if key not in self._storages:
            self._storages[key] = _Storage(str(key), int(numel))
        return self._storages[key]


def read_legacy_pth(raw: bytes) -> dict[str, np.ndarray]:
    """Parse a legacy-format PyTorch state dict of float32 tensors into numpy arrays."""
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}

    def load() -> Any:
        return _RestrictedUnpickler(f, storages).load()

    magic = load()
    if magic != _LEGACY_MAGIC:
        raise ValueError("not a legacy PyTorch checkpoint (bad magic number)")
    protocol = load()
    if protocol != 1001:
        raise ValueError(f"unsupported checkpoint protocol {protocol}")
    sys_info = load()
    if not sys_info.get("little_endian", False):
        raise ValueError("big-endian checkpoints are not supported")
    state = load()
    keys = load()
    for key in keys:
        storage = storages[key]
        (count,) = struct.unpack("<q", f.read(8))
        if count != storage.numel:
            raise ValueError(f"storage {key}: header says {count}, pickle says {storage.numel}")
        storage.data = np.frombuffer(f.read(4 * count), dtype="<f4").copy()
    if f.read():
        raise ValueError("trailing bytes after the last storage")
    out: dict[str, np.ndarray] = {}
    for name, stub in state.items():
        flat = stub.storage.data
        arr = np.lib.stride_tricks.as_strided(
            flat[stub.offset:], shape=stub.size, strides=tuple(4 * s for s in stub.stride))
        out[name] = np.array(arr, dtype=np.float32)
    return out


def convert(pth_bytes: bytes, net: str) -> dict[str, np.ndarray]:
    """Map ``lin{k}.model.1.weight`` [1, C, 1, 1] to ``lin{k}`` [C]."""
    state = read_legacy_pth(pth_bytes)
    heads = {}
    for k, channels in enumerate(_CHANNELS[net]):
        w = state[f"lin{k}.model.1.weight"]
        if w.shape != (1, channels, 1, 1):
            raise ValueError(f"{net} lin{k}: unexpected shape {w.shape}")
        heads[f"lin{k}"] = w.reshape(channels)
    return heads


def digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr, dtype="<f4").tobytes()).hexdigest()


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not FLAGS.wheel:
        raise runner.usage_error("--wheel is required (the lpips wheel fetched by pip).")
    if not os.path.isfile(FLAGS.wheel):
        raise runner.setup_error(f"--wheel={FLAGS.wheel}: file not found.")
    runner.check_output_dir(FLAGS.out, "--out")
    os.makedirs(FLAGS.out, exist_ok=True)
    manifest: dict[str, Any] = {"source": os.path.basename(FLAGS.wheel), "version": "0.1"}
    with zipfile.ZipFile(FLAGS.wheel) as wheel:
        for net in _NETS:
            raw = wheel.read(f"lpips/weights/v0.1/{net}.pth")
            heads = convert(raw, net)
            np.savez(os.path.join(FLAGS.out, f"{net}.npz"), **heads)
            manifest[net] = {
                "pth_sha256": hashlib.sha256(raw).hexdigest(),
                "heads": {k: {"shape": list(v.shape), "sha256": digest(v),
                              "sum": float(v.astype(np.float64).sum())}
                          for k, v in heads.items()},
            }
    with open(os.path.join(FLAGS.out, "heads_manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)
        fh.write("\n")
    print(f"wrote {', '.join(f'{net}.npz' for net in _NETS)} and heads_manifest.json into {FLAGS.out}")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("convert_lpips_heads.py", main)
