"""A rendered pool's files and its pairs as arrays, decoded in memory or packed on disk.

A pool folder (rendered by :func:`kpac_tf.data.pool.render_pool`) holds one PNG per
image. Training needs the pairs decoded: either all in memory (uint8 images, float16
radius maps: about 1.2 MB per 384x384 pair, 15 GB for 12800 pairs), or packed once
into ``POOL/packed/`` as three ``.npy`` arrays that are memory-mapped, so the operating
system keeps in memory what it can and reads the rest from disk. A packed pool starts
in seconds and holds more pairs than the machine has memory for; it takes the same
space on disk as the decoded pool would take in memory.

Layout of ``POOL/packed/``::

    input.npy    uint8   N x S x S x 3   blurred inputs, sRGB levels 0-255
    target.npy   uint8   N x S x S x 3   sharp targets
    radius.npy   float16 N x S x S x 1   oracle blur radius in pixels
    packed.json  the pool record and the pool indices packed, written last

A pack is used only while it matches the pool (same record and the same complete
pairs); growing the pool makes the next :func:`packed_arrays` pack it again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np
from absl import logging

from kpac_tf.data.dpdd_writer import radius_from_png
from kpac_tf.files import current_umask, write_json
from kpac_tf.images import codec

__all__ = ["ARRAY_KEYS", "FOLDERS", "PACKED", "POOL_RECORD", "complete_indices", "decode_pair",
           "load_pool_arrays", "pack_bytes", "pack_is_current", "pack_pool", "packed_arrays",
           "pool_name", "read_pool_record"]

POOL_RECORD = "pool.json"
PACKED = "packed"
FOLDERS = ("source", "target", "radius")
#: keys of a decoded pair and of the packed arrays, with their dtype and channels
ARRAY_KEYS = {"input": (np.uint8, 3), "target": (np.uint8, 3), "radius": (np.float16, 1)}
_PACK_RECORD = "packed.json"


def pool_name(index: int) -> str:
    """File name of pair ``index`` in each of the pool's folders."""
    return f"p{index:06d}.png"


def read_pool_record(pool_dir: str) -> dict:
    """The ``pool.json`` of a pool folder (ValueError, one line, if there is none)."""
    path = os.path.join(pool_dir, POOL_RECORD)
    if not os.path.isfile(path):
        raise ValueError(f"{pool_dir}: not a rendered pool (no {POOL_RECORD}); render one with "
                         "python -m kpac_tf.tools.render_pool.")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def complete_indices(pool_dir: str, count: int) -> list[int]:
    """Indices below ``count`` whose three files (source, target, radius) all exist."""
    return [i for i in range(int(count))
            if all(os.path.exists(os.path.join(pool_dir, f, pool_name(i))) for f in FOLDERS)]


def decode_pair(pool_dir: str, index: int) -> dict[str, np.ndarray]:
    """Pair ``index``: {"input", "target": uint8 HxWx3 sRGB levels, "radius": float16
    HxWx1 pixels}."""
    source, target, radius = (codec.read_image(os.path.join(pool_dir, f, pool_name(index)))
                              for f in FOLDERS)
    return {"input": np.round(source.rgb * 255.0).astype(np.uint8),
            "target": np.round(target.rgb * 255.0).astype(np.uint8),
            "radius": radius_from_png(radius.rgb)[:, :, None].astype(np.float16)}


def load_pool_arrays(pool_dir: str) -> dict[str, list[np.ndarray]]:
    """Decodes a pool into memory: lists of the arrays of :func:`decode_pair`.

    Only complete pairs are taken, in index order.
    """
    record = read_pool_record(pool_dir)
    arrays: dict[str, list[np.ndarray]] = {key: [] for key in ARRAY_KEYS}
    for index in complete_indices(pool_dir, record["count"]):
        for key, array in decode_pair(pool_dir, index).items():
            arrays[key].append(array)
    if not arrays["input"]:
        raise ValueError(f"{pool_dir}: the pool holds no complete pair.")
    return arrays


def _pack_identity(record: dict, indices: list[int]) -> dict:
    digest = hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()
    return {"record": record, "pairs": len(indices), "indices_sha256": digest}


def pack_bytes(size: int, pairs: int) -> int:
    """Bytes of a pack of ``pairs`` pairs of ``size`` x ``size`` (headers aside)."""
    return pairs * size * size * sum(np.dtype(dtype).itemsize * channels
                                     for dtype, channels in ARRAY_KEYS.values())


def _write_pack(folder: str, pool_dir: str, indices: list[int], size: int) -> None:
    """Writes the three arrays into ``folder`` (plain writes: a full disk raises OSError)."""
    streams = {key: open(os.path.join(folder, f"{key}.npy"), "wb") for key in ARRAY_KEYS}
    try:
        for key, (dtype, channels) in ARRAY_KEYS.items():
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                      "fortran_order": False, "shape": (len(indices), size, size, channels)}
            np.lib.format.write_array_header_2_0(streams[key], header)
        for done, index in enumerate(indices, 1):
            for key, array in decode_pair(pool_dir, index).items():
                if array.shape[:2] != (size, size):
                    raise ValueError(f"{pool_dir}: pair {index} is {array.shape[1]}x"
                                     f"{array.shape[0]}, not {size}x{size} like the pool.")
                streams[key].write(np.ascontiguousarray(array).tobytes())
            if done % 1000 == 0:
                logging.info("Pool %s: %d/%d pairs packed.", pool_dir, done, len(indices))
        for stream in streams.values():
            stream.flush()
            os.fsync(stream.fileno())
    finally:
        for stream in streams.values():
            stream.close()


def pack_pool(pool_dir: str) -> str:
    """Decodes the pool's complete pairs into ``POOL/packed/`` (replacing an old pack).

    The arrays are written into a temporary folder that replaces the old pack only
    once complete, so a killed or failed pack leaves no half-written arrays behind.

    Returns:
      The packed folder.

    Raises:
      ValueError: no complete pair, a pair of another size, or too little disk space.
      OSError: the pool folder cannot be written.
    """
    record = read_pool_record(pool_dir)
    indices = complete_indices(pool_dir, record["count"])
    if not indices:
        raise ValueError(f"{pool_dir}: the pool holds no complete pair.")
    size = int(record["size"])
    needed = pack_bytes(size, len(indices))
    free = shutil.disk_usage(pool_dir).free
    if free < needed + (1 << 28):
        raise ValueError(f"{pool_dir}: packing {len(indices)} pairs needs {needed / 2**30:.1f} GB "
                         f"of disk, {free / 2**30:.1f} GB free.")
    temporary = tempfile.mkdtemp(prefix=f".{PACKED}-", dir=pool_dir)
    try:
        os.chmod(temporary, 0o777 & ~current_umask())  # mkdtemp makes it private
        _write_pack(temporary, pool_dir, indices, size)
        write_json(os.path.join(temporary, _PACK_RECORD), _pack_identity(record, indices))
        final = os.path.join(pool_dir, PACKED)
        if os.path.isdir(final):
            shutil.rmtree(final)
        os.replace(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    logging.info("Pool %s: %d pairs packed (%.1f GB).", pool_dir, len(indices), needed / 2**30)
    return final


def _open_pack(pool_dir: str, identity: dict) -> Optional[dict[str, np.ndarray]]:
    """The memory-mapped arrays of ``POOL/packed/`` if it matches ``identity``, else None."""
    folder = os.path.join(pool_dir, PACKED)
    try:
        with open(os.path.join(folder, _PACK_RECORD), encoding="utf-8") as f:
            if json.load(f) != json.loads(json.dumps(identity)):
                return None
        arrays = {key: np.load(os.path.join(folder, f"{key}.npy"), mmap_mode="r")
                  for key in ARRAY_KEYS}
    except (OSError, ValueError):
        return None
    pairs = identity["pairs"]
    if any(len(array) != pairs for array in arrays.values()):
        return None
    return arrays


def _current_identity(pool_dir: str) -> dict:
    record = read_pool_record(pool_dir)
    return _pack_identity(record, complete_indices(pool_dir, record["count"]))


def pack_is_current(pool_dir: str) -> bool:
    """Whether ``POOL/packed/`` holds exactly the pool's complete pairs."""
    return _open_pack(pool_dir, _current_identity(pool_dir)) is not None


def packed_arrays(pool_dir: str) -> dict[str, np.ndarray]:
    """The pool's pairs as memory-mapped arrays (N x S x S x C, keys of
    :data:`ARRAY_KEYS`), packing the pool first if it has no pack or an outdated one.

    Raises:
      ValueError / OSError: as :func:`pack_pool`, when a pack has to be written.
    """
    identity = _current_identity(pool_dir)
    arrays = _open_pack(pool_dir, identity)
    if arrays is None:
        logging.info("Pool %s: packing %d pairs into %s/ (once).", pool_dir, identity["pairs"],
                     PACKED)
        pack_pool(pool_dir)
        arrays = _open_pack(pool_dir, identity)
        if arrays is None:
            raise ValueError(f"{pool_dir}: the pool changed while it was being packed; start again.")
    return arrays
