"""tf.data input pipelines for training and validation.

A *source* maps an item index to one sample: a dict of aligned HWC images (``"input"``
and ``"target"``, or ``"left"``, ``"right"``, ``"centre"`` and ``"target"`` for
dual-pixel data), uint8 / uint16 / float32 on the [0, 1] scale. Sources: image files
(:class:`FilePairSource`, DPDD or any folder pair, optionally cached in memory) and
procedural scenes (:class:`SyntheticSource`, the synthetic defocus generator).

The training stream is indexed: sample ``k`` of the run (counted over the global
batch, ``k = step * global_batch + position``) is a pure function of ``(seed, k)``:
which image (a fresh seeded permutation of the items every epoch), the crop window,
flips/rotations and noise all come from stateless random ops keyed by ``k``. So

- the pipeline is deterministic whatever the parallelism (``deterministic=True``
  keeps the order of the parallel map),
- resuming at step ``s`` just starts the stream at ``k = s * global_batch``: the data
  position is the step, nothing else needs checkpointing,
- with several input pipelines (multi-worker) each takes its own slice of every
  global batch, and the samples of a step do not depend on how many there are.

Elements: ``(inputs, target)`` with ``inputs`` [B,h,w,3] float32 in [0, 1] (a tuple
``(left, right, centre)`` for dual-pixel data) and ``target`` [B,h,w,3]; evaluation
elements add a weight [B] (1 for a real image, 0 for the padding that evens out the
last global batch).
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf import io as kio
from kpac_tf.data import augment
from kpac_tf.data import dpdd
from kpac_tf.data.dpdd import ImagePair, describe_pairs

__all__ = [
    "DataSources",
    "FilePairSource",
    "PairSource",
    "PipelineConfig",
    "SyntheticSource",
    "make_eval_dataset",
    "make_train_dataset",
    "make_synthetic_source",
    "resolve_data",
    "synthetic_photos",
    "sample_index",
    "to_float",
]

AUTOTUNE = tf.data.AUTOTUNE
_INT64_MAX = np.iinfo(np.int64).max


# ---------------------------------------------------------------------------------------
# Sources.


class PairSource(abc.ABC):
    """Maps an item index to one sample (dict of aligned HWC images on the [0,1] scale).

    Attributes:
        num_items: number of distinct items (files), or None for a procedural source
            where every index is a new scene.
        dual_pixel: samples carry "left", "right", "centre" instead of "input".
    """

    num_items: int | None = None
    dual_pixel: bool = False
    #: samples also carry "radius": the oracle blur radius, float32 HxWx1 in pixels
    #: (synthetic and pooled pairs), which the training loss uses to weight in-focus
    #: pixels.
    with_radius: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        """Image keys of a sample: inputs first, then "target" (then "radius" if any)."""
        inputs = augment.DUAL_PIXEL_KEYS if self.dual_pixel else augment.INPUT_KEYS
        return inputs + ("target",) + (("radius",) if self.with_radius else ())

    @abc.abstractmethod
    def load(self, item: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """The sample for ``item`` (int64 scalar); ``seed`` [2] for procedural sources."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A short description for logs and run records."""


class FilePairSource(PairSource):
    """Image pairs on disk (see :mod:`kpac_tf.data.dpdd`), decoded in the graph by
    :func:`kpac_tf.io.decode_image_tensor` (16-bit PNGs keep 16 bits).

    Args:
        pairs: the pairs; dual-pixel if they carry left/right views.
        cache: decode every image once up front and keep it in memory (as uint8 for
            ``cache_bits=8``, uint16 for 16: DPDD's 350 training pairs take about 4 GB
            at 8 bits); otherwise files are read and decoded for every sample.
        cache_bits: storage precision of the cache (the pipeline's bit depth).
    """

    def __init__(self, pairs: Sequence[ImagePair], *, cache: bool = False, cache_bits: int = 8):
        pairs = list(pairs)
        if not pairs:
            raise ValueError("No image pairs were given; check the data path.")
        self.pairs = pairs
        self.num_items = len(pairs)
        self.dual_pixel = pairs[0].dual_pixel
        columns = {
            "input": [p.source for p in pairs],
            "centre": [p.source for p in pairs],
            "left": [p.left for p in pairs],
            "right": [p.right for p in pairs],
            "target": [p.target for p in pairs],
        }
        self._paths = {key: columns[key] for key in self.keys}
        _check_headers([path for paths in self._paths.values() for path in paths])
        self._cache: dict[str, list[np.ndarray]] | None = None
        if cache:
            self._cache = self._decode_all(cache_bits)

    def describe(self) -> str:
        cached = ", cached" if self._cache is not None else ""
        return f"{describe_pairs(self.pairs)}{cached}"

    def _decode_all(self, bits: int) -> dict[str, list[np.ndarray]]:
        dtype = np.uint8 if bits == 8 else np.uint16
        levels = 255.0 if bits == 8 else 65535.0
        cache: dict[str, list[np.ndarray]] = {}
        for key, paths in self._paths.items():
            files = tf.data.Dataset.from_tensor_slices(paths)
            decoded = files.map(
                lambda p: tf.cast(
                    tf.round(kio.decode_image_tensor(tf.io.read_file(p), 3) * levels),
                    tf.as_dtype(dtype),
                ),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
            try:
                cache[key] = [np.asarray(image) for image in decoded.as_numpy_iterator()]
            except tf.errors.OpError as error:
                raise ValueError(f"Cannot decode the {key} images for the cache: "
                                 f"{error.message.splitlines()[0]}") from None
        megabytes = sum(a.nbytes for images in cache.values() for a in images) / 2**20
        logging.info("Cached %d images in memory (%.0f MB).", self.num_items * len(cache), megabytes)
        return cache

    def load(self, item: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        del seed
        if self._cache is not None:
            cache = self._cache
            keys = list(self.keys)
            dtype = tf.as_dtype(cache[keys[0]][0].dtype)

            def fetch(index):
                return tuple(cache[key][int(index)] for key in keys)

            images = tf.numpy_function(fetch, [item], [dtype] * len(keys), stateful=False)
            out = {}
            for key, image in zip(keys, images):
                image.set_shape([None, None, 3])
                out[key] = image
            return out
        return {
            key: kio.decode_image_tensor(tf.io.read_file(tf.gather(tf.constant(paths), item)), 3)
            for key, paths in self._paths.items()
        }


_MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")


def _check_headers(paths: Sequence[str]) -> None:
    """ValueError listing files that are not PNG/JPEG/BMP/GIF images (first bytes),
    so broken files fail at start-up rather than hours into a run."""
    bad = []
    for path in paths:
        try:
            with tf.io.gfile.GFile(path, "rb") as stream:
                head = stream.read(8)
        except tf.errors.OpError:
            head = b""
        if not any(head.startswith(magic) for magic in _MAGICS):
            bad.append(path)
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise ValueError(f"{len(bad)} file(s) are not readable PNG/JPEG/BMP/GIF images: {shown}; "
                         "replace or remove them.")


class SyntheticSource(PairSource):
    """Procedural pairs from a NumPy generator (e.g. the synthetic defocus renderer).

    Args:
        generate: ``generate(seed: int) -> dict`` of float32 HWC arrays in [0, 1] with
            the keys of this source ("input"/"target"), all ``size`` x ``size``; it must
            be a pure function of ``seed``.
        size: side of the generated images.
        name: description for logs.
        num_items: None for an endless stream (training: item k is scene k), or a
            count for a fixed validation set.
        seed_offset: added to the item index to form the generator seed, so
            training and validation scenes never coincide.
    """

    def __init__(self, generate: Callable[[int], dict], size: int, *, name: str = "synthetic",
                 num_items: int | None = None, seed_offset: int = 0, with_radius: bool = False):
        self.generate = generate
        self.with_radius = bool(with_radius)
        self.size = int(size)
        self.name = name
        self.num_items = num_items
        self.seed_offset = int(seed_offset)

    def describe(self) -> str:
        count = "endless" if self.num_items is None else f"{self.num_items} scenes"
        return f"{self.name} ({count}, {self.size}x{self.size})"

    def load(self, item: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        keys = list(self.keys)
        generate, offset = self.generate, self.seed_offset

        def make(index):
            sample = generate(int(index) + offset)
            return tuple(np.asarray(sample[key], dtype=np.float32) for key in keys)

        images = tf.numpy_function(make, [item], [tf.float32] * len(keys), stateful=False)
        out = {}
        for key, image in zip(keys, images):
            image.set_shape([self.size, self.size, 1 if key == "radius" else 3])
            out[key] = image
        return out


# ---------------------------------------------------------------------------------------
# Sample construction.


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """How training samples are made.

    crop: side of the random square crop (paper: 512); None keeps whole images.
    flip_rot: random flips and 90-degree rotations (flips only for dual-pixel data).
    noise_sigma_max: additive Gaussian noise on the inputs, sigma ~ U[0, this]
        (paper Appendix G: 0.03); 0 disables it.
    bit_depth: 8 (the paper) rounds every image to 8-bit levels; 16 keeps 16-bit data.
    seed: the stream's seed.
    deterministic: keep element order under parallel decoding (the content of each
        sample is determined by its index either way).
    num_parallel_calls, prefetch: tf.data tuning (None: AUTOTUNE).
    nan_at_step: test hook: the inputs of this training step (1-based) are NaN.
    """

    crop: int | None = 512
    flip_rot: bool = False
    noise_sigma_max: float = 0.0
    bit_depth: int = 8
    seed: int = 0
    deterministic: bool = True
    num_parallel_calls: int | None = None
    prefetch: int | None = None
    nan_at_step: int | None = None

    def __post_init__(self):
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}.")
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"crop must be positive, got {self.crop}.")
        if not 0.0 <= self.noise_sigma_max <= 1.0:
            raise ValueError(f"noise_sigma_max must be in [0, 1], got {self.noise_sigma_max}.")


def to_float(image: tf.Tensor) -> tf.Tensor:
    """uint8 / uint16 / float image -> float32 in [0, 1]."""
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    if image.dtype == tf.uint16:
        return tf.cast(image, tf.float32) / 65535.0
    return tf.cast(image, tf.float32)


def sample_index(local: tf.Tensor, *, global_batch: int, pipeline_id: int, num_pipelines: int) -> tf.Tensor:
    """Global sample index ``k`` of the ``local``-th sample of one input pipeline.

    Each step consumes ``global_batch`` samples; pipeline ``p`` of ``P`` owns the slice
    ``[p * L, (p + 1) * L)`` of every step (``L = global_batch / P``).
    """
    per_pipeline = global_batch // num_pipelines
    step = local // per_pipeline
    return step * global_batch + pipeline_id * per_pipeline + local % per_pipeline


def _item_for(k: tf.Tensor, num_items: int | None, seed: int) -> tf.Tensor:
    """Item of sample ``k``: a seeded permutation of the items per epoch (or ``k``)."""
    if num_items is None:
        return k
    epoch = k // num_items
    keys = tf.random.stateless_uniform([num_items], seed=tf.stack([tf.constant(2 * seed + 1, tf.int64), epoch]))
    return tf.cast(tf.gather(tf.argsort(keys), k % num_items), tf.int64)


def _pack(sample: dict[str, tf.Tensor], dual_pixel: bool):
    inputs = tuple(sample[k] for k in augment.DUAL_PIXEL_KEYS) if dual_pixel else sample["input"]
    return inputs, sample["target"]


def _to_pixels(sample: dict[str, tf.Tensor], bit_depth: int) -> dict[str, tf.Tensor]:
    """Images to float32 [0,1] at ``bit_depth`` levels; a "radius" map stays in pixels."""
    return {key: tf.cast(image, tf.float32) if key == "radius" else kio.quantize(to_float(image), bit_depth)
            for key, image in sample.items()}


def _check_batching(global_batch: int, per_replica_batch: int, num_pipelines: int) -> None:
    if global_batch % num_pipelines:
        raise ValueError(
            f"The global batch {global_batch} does not split over {num_pipelines} input "
            "pipelines; use a batch size divisible by the number of workers."
        )
    if (global_batch // num_pipelines) % per_replica_batch:
        raise ValueError(
            f"The per-replica batch {per_replica_batch} does not divide the "
            f"{global_batch // num_pipelines} samples of a pipeline per step."
        )


def _options(deterministic: bool) -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = deterministic
    return options


def make_train_dataset(
    source: PairSource,
    config: PipelineConfig,
    *,
    per_replica_batch: int,
    global_batch: int | None = None,
    pipeline_id: int = 0,
    num_pipelines: int = 1,
    start_step: int = 0,
) -> tf.data.Dataset:
    """The endless training stream of one input pipeline, starting at ``start_step``.

    Args:
        source: where samples come from.
        config: crops, augmentation, bit depth, seed.
        per_replica_batch: batch size of each element.
        global_batch: samples per training step over all replicas (default:
            ``per_replica_batch``, i.e. one replica).
        pipeline_id, num_pipelines: this pipeline among all (multi-worker input).
        start_step: number of steps already taken (resume position).

    Returns:
        Dataset of ``(inputs, target)``; inputs [B,h,w,3] float32 in [0, 1] or a
        (left, right, centre) tuple; target [B,h,w,3]. Sources with radius maps give
        ``(inputs, target, radius)``, radius [B,h,w,1] float32 in pixels.
    """
    global_batch = global_batch or per_replica_batch
    _check_batching(global_batch, per_replica_batch, num_pipelines)
    per_pipeline = global_batch // num_pipelines
    seed = int(config.seed)
    dual = source.dual_pixel
    input_keys = augment.DUAL_PIXEL_KEYS if dual else augment.INPUT_KEYS

    def make_sample(local):
        k = sample_index(local, global_batch=global_batch, pipeline_id=pipeline_id,
                         num_pipelines=num_pipelines)
        seeds = augment.split_seed(tf.stack([tf.constant(2 * seed, tf.int64), k]), 4)
        raw = source.load(_item_for(k, source.num_items, seed), seeds[0])
        if config.crop is not None:
            raw = augment.random_crop(raw, config.crop, seeds[1])
        sample = _to_pixels(raw, config.bit_depth)
        if config.flip_rot:
            sample = augment.random_dihedral(sample, seeds[2], rotate=not dual, dual_pixel=dual)
        if config.noise_sigma_max > 0:
            noise_seeds = augment.split_seed(seeds[3], len(input_keys))
            for index, key in enumerate(input_keys):
                noisy = augment.add_gaussian_noise(sample[key], config.noise_sigma_max, noise_seeds[index])
                sample[key] = kio.quantize(noisy, config.bit_depth)
        if config.nan_at_step is not None:
            poisoned = tf.equal(k // global_batch + 1, config.nan_at_step)
            for key in input_keys:
                sample[key] = tf.where(poisoned, tf.fill(tf.shape(sample[key]), np.nan), sample[key])
        if "radius" in sample:
            return (*_pack(sample, dual), sample["radius"])
        return _pack(sample, dual)

    start = int(start_step) * per_pipeline
    dataset = tf.data.Dataset.range(start, _INT64_MAX)
    dataset = dataset.map(make_sample, num_parallel_calls=config.num_parallel_calls or AUTOTUNE,
                          deterministic=config.deterministic)
    dataset = dataset.batch(per_replica_batch, drop_remainder=True)
    dataset = dataset.prefetch(config.prefetch or AUTOTUNE)
    return dataset.with_options(_options(config.deterministic))


def make_eval_dataset(
    source: PairSource,
    *,
    crop: int | None,
    bit_depth: int = 8,
    per_replica_batch: int = 1,
    global_batch: int | None = None,
    pipeline_id: int = 0,
    num_pipelines: int = 1,
) -> tf.data.Dataset:
    """A finite, deterministic pass over every item of ``source`` (centre crops).

    The pass is padded to a whole number of global batches by repeating items with
    weight 0, so every replica runs the same number of steps.

    Returns:
        Dataset of ``(inputs, target, weight)``; weight [B] float32 (1 real, 0 padding).
        ``crop=None`` keeps whole images (then images of different sizes need
        ``per_replica_batch=1``).
    """
    if not source.num_items:
        raise ValueError("An evaluation source needs a finite number of items.")
    global_batch = global_batch or per_replica_batch
    _check_batching(global_batch, per_replica_batch, num_pipelines)
    per_pipeline = global_batch // num_pipelines
    total = math.ceil(source.num_items / global_batch) * global_batch
    num_items = source.num_items
    dual = source.dual_pixel

    def make_sample(local):
        k = sample_index(local, global_batch=global_batch, pipeline_id=pipeline_id,
                         num_pipelines=num_pipelines)
        item = k % num_items
        raw = source.load(item, tf.stack([tf.constant(0, tf.int64), item]))
        if crop is not None:
            raw = augment.center_crop(raw, crop)
        raw.pop("radius", None)
        sample = _to_pixels(raw, bit_depth)
        inputs, target = _pack(sample, dual)
        return inputs, target, tf.cast(k < num_items, tf.float32)

    dataset = tf.data.Dataset.range(total // global_batch * per_pipeline)
    dataset = dataset.map(make_sample, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.batch(per_replica_batch, drop_remainder=True)
    return dataset.prefetch(AUTOTUNE).with_options(_options(True))


# ---------------------------------------------------------------------------------------
# From a --data specification to sources.

#: Scene kinds of the synthetic generator ("synthetic:deadleaves,skimage").
SYNTHETIC_KINDS = ("deadleaves", "skimage")
#: Offset between the generator seeds of training and validation scenes.
_VAL_SEED_OFFSET = 1_000_003


@dataclasses.dataclass
class DataSources:
    """Training and (optional) validation sources resolved from a --data value."""

    train: PairSource
    val: PairSource | None
    description: str


def synthetic_photos(kinds: Sequence[str], held_out: bool = False) -> tuple[list[str], bool]:
    """(photo sources, dead leaves wanted) for synthetic scene kinds.

    Kinds: "deadleaves"; "skimage" (scikit-image's training list, or its held-out
    list when ``held_out``); "photos=DIR" for a folder made by
    ``experiments/fetch_training_photos.py`` (``DIR/train``, or ``DIR/val`` when
    ``held_out``); or any folder / file of all-in-focus photos.
    """
    kinds = [k.strip() for k in kinds if k.strip()]
    if not kinds:
        raise ValueError("Name at least one synthetic scene kind, e.g. synthetic:deadleaves,skimage.")
    photos: list[str] = []
    dead_leaves = False
    for kind in kinds:
        if kind.lower().replace("_", "").replace("-", "") == "deadleaves":
            dead_leaves = True
        elif kind.lower() == "skimage":
            photos.append("skimage-heldout" if held_out else "skimage-train")
        elif kind.startswith("photos="):
            root = kind.split("=", 1)[1]
            folder = tf.io.gfile.join(root, "val" if held_out else "train")
            if not tf.io.gfile.isdir(folder):
                raise ValueError(f"{kind}: {folder} is missing; make the folder with "
                                 "experiments/fetch_training_photos.py --out=DIR.")
            photos.append(folder)
        elif tf.io.gfile.exists(kind):
            photos.append(kind)
        else:
            raise ValueError(
                f"Unknown synthetic scene kind {kind!r}; use deadleaves, skimage, photos=DIR or a "
                "folder of sharp photos."
            )
    return photos, dead_leaves


def make_synthetic_source(kinds: Sequence[str] = SYNTHETIC_KINDS, size: int = 256, *, seed: int = 0,
                          held_out: bool = False, num_items: int | None = None,
                          config=None, with_radius: bool = False) -> SyntheticSource:
    """Synthetic defocus pairs (:mod:`kpac_tf.data.synthetic`) as a pipeline source.

    Args:
        kinds: scene kinds, see :func:`synthetic_photos`. Dead leaves and photos
            are mixed half and half; photos are drawn uniformly from all photo
            sources together.
        size: side of the generated pairs (the training crop).
        seed: generator seed (validation adds a fixed offset, so scenes never repeat).
        held_out: validation scenes (held-out photos, other seeds).
        num_items: None for an endless training stream, or the validation count.
        config: renderer ranges (:class:`kpac_tf.data.synthetic.SyntheticConfig`);
            None: the defaults.
        with_radius: samples carry the oracle radius map ("radius").
    """
    from kpac_tf.data import synthetic

    kinds = [k.strip() for k in kinds if k.strip()]
    photos, dead_leaves = synthetic_photos(kinds, held_out)
    fraction = 0.5 if (dead_leaves and photos) else (1.0 if dead_leaves else 0.0)
    generator_seed = seed + (_VAL_SEED_OFFSET if held_out else 0)
    generator = synthetic.SyntheticDefocusSource(
        size, photos=photos or None, dead_leaves_fraction=fraction, seed=generator_seed,
        config=config,
    )

    def generate(index: int) -> dict:
        pair = generator.pair(index)
        return {"input": pair.blurred, "target": pair.sharp, "radius": pair.radius[:, :, None]}

    name = "synthetic " + "+".join(kinds) + (" (held out)" if held_out else "")
    return SyntheticSource(generate, size, name=name, num_items=num_items, with_radius=with_radius)


def _limit(pairs: list[ImagePair], count: int | None) -> list[ImagePair]:
    return pairs[:count] if count else pairs


def _folder_pairs(spec: str, dual_pixel: bool) -> list[ImagePair] | None:
    """Pairs for "SOURCE_DIR,TARGET_DIR" or a folder with source/ and target/ inside."""
    if "," in spec:
        source_dir, target_dir = (part.strip() for part in spec.split(",", 1))
        if dual_pixel:
            raise ValueError("Dual-pixel training needs the DPDD layout (left/right view folders).")
        return dpdd.list_folder_pairs(source_dir, target_dir)
    inner = [spec.rstrip("/") + "/source", spec.rstrip("/") + "/target"]
    if all(tf.io.gfile.isdir(path) for path in inner):
        if dual_pixel:
            raise ValueError("Dual-pixel training needs the DPDD layout (left/right view folders).")
        return dpdd.list_folder_pairs(*inner)
    return None


def resolve_data(
    spec: str,
    *,
    crop: int | None,
    val_spec: str | None = None,
    val_crop: int | None = None,
    val_images: int | None = None,
    dual_pixel: bool = False,
    bit_depth: int = 8,
    cache: bool = False,
    seed: int = 0,
    synthetic_options: Sequence[str] = (),
    with_radius: bool = False,
) -> DataSources:
    """Training and validation sources for a ``--data`` value.

    ``spec``:
      - ``synthetic`` or ``synthetic:KIND[,KIND...]``: synthetic defocus (KIND:
        deadleaves, skimage, or a folder of sharp photos); ``synthetic`` means
        ``synthetic:deadleaves,skimage``. Validation: ``val_images`` (default 16)
        held-out scenes.
      - ``pool:DIR``: a pool of pre-rendered synthetic pairs
        (:mod:`kpac_tf.data.pool`); validation: held-out scenes of the kinds the
        pool was rendered from.
      - a DPDD root (``train_c/`` ...): the train split; validation: the val split.
      - ``SOURCE_DIR,TARGET_DIR`` or a folder holding ``source/`` and ``target/``.

    ``val_spec`` overrides validation ("none" disables it; otherwise a DPDD root (its
    val split) or a folder pair). ``val_images`` keeps the first N validation items.
    ``synthetic_options`` ("NAME=VALUE" fields of the renderer's SyntheticConfig) change
    the synthetic training pairs only; validation scenes keep the defaults, so runs
    with different options stay comparable. ``with_radius``: synthetic and pooled
    training samples carry their radius maps (for an in-focus loss weight).
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("--data is empty; give a DPDD folder, SOURCE_DIR,TARGET_DIR or synthetic.")
    val: PairSource | None = None
    if spec == "synthetic" or spec.startswith("synthetic:"):
        if dual_pixel:
            raise ValueError("The synthetic generator makes single images; dual-pixel needs DPDD data.")
        if crop is None:
            raise ValueError("Synthetic data needs a crop size (--crop).")
        kinds = spec.split(":", 1)[1].split(",") if ":" in spec else list(SYNTHETIC_KINDS)
        from kpac_tf.data.synthetic import synthetic_config_from_overrides

        config = synthetic_config_from_overrides(synthetic_options)
        train = make_synthetic_source(kinds, crop, seed=seed, config=config, with_radius=with_radius)
        if val_spec is None:
            val = make_synthetic_source(kinds, val_crop or crop, seed=seed, held_out=True,
                                        num_items=val_images or 16)
    elif spec.startswith("pool:"):
        from kpac_tf.data import pool

        if dual_pixel or synthetic_options:
            raise ValueError("A pool holds rendered single-image pairs: no dual-pixel, no --synthetic_options.")
        train = pool.PoolSource(spec.split(":", 1)[1], with_radius=with_radius)
        if val_spec is None:
            val = make_synthetic_source(train.kinds, val_crop or crop or 256, seed=seed, held_out=True,
                                        num_items=val_images or 16)
    elif synthetic_options:
        raise ValueError("--synthetic_options apply to --data=synthetic only.")
    elif dpdd.is_dpdd_root(spec):
        train = FilePairSource(dpdd.list_dpdd(spec, "train", dual_pixel=dual_pixel),
                               cache=cache, cache_bits=bit_depth)
        if val_spec is None and tf.io.gfile.isdir(spec.rstrip("/") + "/val_c"):
            val = FilePairSource(_limit(dpdd.list_dpdd(spec, "val", dual_pixel=dual_pixel), val_images))
    else:
        pairs = _folder_pairs(spec, dual_pixel)
        if pairs is None:
            raise ValueError(
                f"--data={spec} is neither a DPDD folder (with train_c/), a folder with source/ "
                "and target/, SOURCE_DIR,TARGET_DIR, nor synthetic[:KINDS]."
            )
        train = FilePairSource(pairs, cache=cache, cache_bits=bit_depth)
    if val_spec is not None and val_spec.strip().lower() != "none":
        val_spec = val_spec.strip()
        if dpdd.is_dpdd_root(val_spec):
            pairs = dpdd.list_dpdd(val_spec, "val", dual_pixel=dual_pixel)
        else:
            pairs = _folder_pairs(val_spec, dual_pixel)
            if pairs is None:
                raise ValueError(
                    f"--val_data={val_spec} is neither a DPDD folder, a folder with source/ and "
                    "target/, SOURCE_DIR,TARGET_DIR, nor none."
                )
        val = FilePairSource(_limit(pairs, val_images))
    logging.info("Training data: %s; validation: %s.", train.describe(),
                 val.describe() if val is not None else "none")
    return DataSources(train=train, val=val, description=spec)
