"""A pool of pre-rendered synthetic defocus pairs on disk, for fast training.

Rendering a defocus pair costs several times a CPU training step, and on a small
machine the renderer runs on the same cores as the step. A pool renders pairs once,
larger than the training crop, and training then takes random crops, flips and
rotations of them (:class:`PoolSource`), so the input pipeline costs a crop and a
copy per sample.

Layout of a pool folder::

    POOL/source/p000000.png   blurred input, 8-bit sRGB
    POOL/target/p000000.png   sharp target, 8-bit sRGB
    POOL/radius/p000000.png   oracle blur radius, 16-bit gray (pixels = value * 0.001)
    POOL/pool.json            how it was rendered (kinds, size, seed, options, count)
    POOL/packed/              the decoded pairs as memory-mapped arrays, written by the
                              first training run (:mod:`kpac_tf.data.pool_arrays`)

Pair ``i`` of a pool is pair ``i`` of the seeded synthetic stream
(:func:`kpac_tf.data.pairs.synthetic_generator`), so a pool can be grown
later (``render_pool`` skips the files already there) and rebuilt identically.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.data.dpdd_writer import write_pair_files
from kpac_tf.data.pairs import SyntheticConfig, SyntheticDefocusSource, scene_mix
from kpac_tf.data.pool_arrays import (FOLDERS, POOL_RECORD, complete_indices, load_pool_arrays,
                                      packed_arrays, pool_name, read_pool_record)
from kpac_tf.data.samplers import PairSource
from kpac_tf.files import write_json

__all__ = ["POOL_RECORD", "PoolSource", "load_pool_arrays", "parse_pool_list", "read_pool_record",
           "render_pool"]

# Worker state of the render processes (one SyntheticDefocusSource each).
_WORKER: dict = {}


def _init_worker(settings: dict) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _WORKER["source"] = SyntheticDefocusSource(
        settings["size"], photos=settings["photos"] or None,
        dead_leaves_fraction=settings["dead_leaves_fraction"],
        config=SyntheticConfig(**settings["config"]), seed=settings["seed"],
        crops_per_photo=settings["crops_per_photo"])
    _WORKER["folders"] = {k: os.path.join(settings["out_dir"], k) for k in FOLDERS}


def _render_one(index: int) -> float:
    pair = _WORKER["source"].pair(index)
    write_pair_files(_WORKER["folders"], pool_name(index), pair)
    return pair.mean_radius


def _config_dict(config: SyntheticConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def _render_all(todo: list[int], settings: dict, workers: int) -> None:
    """Renders the pairs ``todo`` into the pool folder, in ``workers`` processes."""
    if workers <= 1:
        _init_worker(settings)
        for done, index in enumerate(todo, 1):
            _render_one(index)
            if done % 100 == 0:
                logging.info("Pool: %d/%d rendered.", done, len(todo))
        return
    # One thread per worker: threaded FFTs in every process oversubscribe the cores.
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(workers, initializer=_init_worker, initargs=(settings,))
    if saved is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = saved
    chunksize = max(4, settings["crops_per_photo"])
    with pool:
        for done, _ in enumerate(pool.imap_unordered(_render_one, todo, chunksize=chunksize), 1):
            if done % 100 == 0:
                logging.info("Pool: %d/%d rendered.", done, len(todo))


def render_pool(out_dir: str, count: int, *, kinds: Sequence[str], size: int = 384,
                dead_leaves_fraction: float = 0.2, config: Optional[SyntheticConfig] = None,
                seed: int = 0, crops_per_photo: int = 4, workers: int = 1) -> dict:
    """Renders pairs ``0..count-1`` of the synthetic stream into a pool folder.

    Pairs whose three files already exist are skipped, so an interrupted render or a
    larger ``count`` continues where the folder stands. A pool keeps its settings:
    rendering into a pool made with other settings raises ValueError.

    Args:
      out_dir: the pool folder.
      count: number of pairs the pool should hold.
      size: side of every rendered pair (larger than the training crop).
      kinds: synthetic scene kinds (:func:`kpac_tf.data.photos.synthetic_photos`:
        deadleaves, skimage, photos=DIR, folders); training photos only.
      dead_leaves_fraction: share of dead-leaves scenes when ``kinds`` has both
        (0 without "deadleaves", 1 without photos).
      config: renderer ranges; None: the defaults.
      seed: stream seed.
      crops_per_photo: consecutive pairs cut from one photo (decoding a photo costs
        more than rendering a pair; each worker renders runs of consecutive pairs).
      workers: render processes.

    Returns:
      The pool record (also written to ``pool.json``).
    """
    config = config or SyntheticConfig()
    photos, fraction = scene_mix(kinds, dead_leaves_fraction=dead_leaves_fraction)
    settings = {"size": int(size), "photos": photos, "dead_leaves_fraction": float(fraction),
                "config": dataclasses.asdict(config), "seed": int(seed), "out_dir": out_dir,
                "crops_per_photo": int(crops_per_photo)}
    record_path = os.path.join(out_dir, POOL_RECORD)
    fixed = {"kinds": [k.strip() for k in kinds if k.strip()], "size": settings["size"],
             "dead_leaves_fraction": settings["dead_leaves_fraction"],
             "config": _config_dict(config), "seed": settings["seed"],
             "crops_per_photo": settings["crops_per_photo"]}
    if os.path.exists(record_path):
        old = read_pool_record(out_dir)
        # A field added to the renderer since the pool was made was at its default then.
        old["config"] = {**_config_dict(SyntheticConfig()), **dict(old.get("config") or {})}
        changed = [k for k in fixed if json.loads(json.dumps(old.get(k))) != json.loads(json.dumps(fixed[k]))]
        if changed:
            raise ValueError(f"{out_dir} was rendered with other settings ({', '.join(changed)}); "
                             "use a new folder.")
    for folder in FOLDERS:
        os.makedirs(os.path.join(out_dir, folder), exist_ok=True)
    done = set(complete_indices(out_dir, count))
    todo = [i for i in range(count) if i not in done]
    logging.info("Pool %s: %d of %d pairs to render with %d worker(s).", out_dir, len(todo), count,
                 workers)
    photo_count = len(SyntheticDefocusSource(8, photos=photos).photos) if photos else 0
    record = dict(fixed, count=int(count), photo_count=photo_count)
    # Written before rendering too, so that a render killed half-way still guards its
    # settings when it is resumed (loading takes only the complete pairs).
    write_json(record_path, record)
    if todo:
        _render_all(todo, settings, workers)
    return record


def _open_pool(pool_dir: str, packed: bool) -> tuple[str, dict]:
    """(storage, arrays) of one pool: its memory-mapped pack, or its pairs decoded into
    memory when ``packed`` is False or the pool cannot be packed."""
    arrays = None
    storage = "memory"
    if packed:
        try:
            arrays = packed_arrays(pool_dir)
            storage = "packed"
        except (OSError, ValueError) as error:
            logging.warning("Pool %s is decoded into memory: it cannot be packed (%s).",
                            pool_dir, error)
    if arrays is None:
        arrays = load_pool_arrays(pool_dir)
    megabytes = sum(item.nbytes for values in arrays.values() for item in values) / 2**20
    logging.info("Pool %s: %d pairs, %s (%.0f MB).", pool_dir, len(arrays["input"]), storage,
                 megabytes)
    return storage, arrays


def parse_pool_list(text: str) -> list[tuple[str, int]]:
    """(folder, weight) for each entry of a comma-separated pool list ``DIR[@N],...``.

    ``DIR@N`` (N a whole number >= 1) counts that pool's pairs N times, so it is drawn N
    times as often as its pair count alone would draw it; a plain ``DIR`` has weight 1.
    Raises ValueError, naming the entry, for an empty entry or a weight that is not a
    whole number >= 1.
    """
    entries = []
    for entry in (part.strip() for part in text.split(",")):
        folder, _, weight = entry.rpartition("@") if "@" in entry else (entry, "@", "1")
        if not folder:
            raise ValueError(f"Name each pool folder, separated by commas: {text!r}.")
        if not weight.isdigit() or int(weight) < 1:
            raise ValueError(f"Pool weight {entry!r}: write DIR@N with N a whole number >= 1.")
        entries.append((folder, int(weight)))
    return entries


class PoolSource(PairSource):
    """One or more rendered pools as a training source; the pipeline crops, flips and
    rotates their pairs.

    Several pools (for example one rendered with larger blur, or from other photos)
    train as one: their pairs are numbered one pool after the other and drawn
    uniformly, so each pool's share of the samples is its share of the pairs, times its
    weight. Pools may differ in pair size.

    Args:
      pool_dir: the pool folder, or a sequence of pool folders.
      weights: one whole number >= 1 per folder (default all 1): a pool of weight N is
        numbered N times over, so an epoch draws each of its pairs N times.
      with_radius: samples carry "radius" (float32 HxWx1, pixels).
      packed: read the pairs from each pool's memory-mapped pack
        (:func:`kpac_tf.data.pool_arrays.packed_arrays`; written by the first run,
        it takes the decoded pool's size on disk), so a pool larger than memory
        trains and a run starts in seconds. False, or a pool that cannot be packed
        (a read-only folder, too little disk): all pairs decoded into memory
        (uint8 images, float16 radius maps).
    """

    def __init__(self, pool_dir: str | Sequence[str], *, with_radius: bool = False,
                 packed: bool = True, weights: Optional[Sequence[int]] = None):
        self.pool_dirs = [pool_dir] if isinstance(pool_dir, str) else list(pool_dir)
        if not self.pool_dirs or len(set(self.pool_dirs)) != len(self.pool_dirs):
            raise ValueError(f"Give each pool folder once: {', '.join(self.pool_dirs) or 'none'}.")
        self.weights = [1] * len(self.pool_dirs) if weights is None else [int(w) for w in weights]
        if len(self.weights) != len(self.pool_dirs) or min(self.weights) < 1:
            raise ValueError(f"Give one whole weight >= 1 per pool folder, not {weights}.")
        self.records = [read_pool_record(folder) for folder in self.pool_dirs]
        self.kinds = list(dict.fromkeys(kind for record in self.records for kind in record["kinds"]))
        self.with_radius = bool(with_radius)
        self._parts = [_open_pool(folder, packed) for folder in self.pool_dirs]
        self.storage = "+".join(dict.fromkeys(storage for storage, _ in self._parts))
        self._sizes = [len(arrays["input"]) for _, arrays in self._parts]
        self._drawn = [size * weight for size, weight in zip(self._sizes, self.weights)]
        self._starts = np.cumsum([0] + self._drawn)
        self.num_items = int(self._starts[-1])

    @property
    def dead_leaves_share(self) -> float:
        """Share of dead-leaves scenes among all the pools' pairs, as they were rendered
        (validation draws its held-out scenes in the same share)."""
        shares = [float(record["dead_leaves_fraction"]) for record in self.records]
        return float(np.dot(shares, self._drawn) / max(self.num_items, 1))

    def describe(self) -> str:
        pools = [f"pool {folder} ({count} pairs of {record['size']}x{record['size']} from "
                 f"{'+'.join(record['kinds'])}{f', weight {weight}' if weight > 1 else ''})"
                 for folder, count, record, weight
                 in zip(self.pool_dirs, self._sizes, self.records, self.weights)]
        return " + ".join(pools)

    def _pair_arrays(self, index: int) -> dict:
        """The arrays of global pair ``index`` (pools numbered one after the other, a
        pool of weight N N times over)."""
        part = int(np.searchsorted(self._starts, index, side="right")) - 1
        arrays = self._parts[part][1]
        local = (index - int(self._starts[part])) % self._sizes[part]
        return {key: arrays[key][local] for key in arrays}

    def load(self, item: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        del seed
        keys = list(self.keys)
        dtypes = [tf.float16 if key == "radius" else tf.uint8 for key in keys]

        def fetch(index):
            pair = self._pair_arrays(int(index))
            return tuple(np.asarray(pair[key]) for key in keys)

        images = tf.numpy_function(fetch, [item], dtypes, stateful=False)
        return {key: tf.ensure_shape(image, [None, None, 1 if key == "radius" else 3])
                for key, image in zip(keys, images)}
