"""tf.data input pipelines for training and validation, and the ``--data`` specification.

Samples come from a *source* (:mod:`kpac_tf.data.samplers`: image files, the synthetic
defocus generator, pre-rendered pools), which maps an item index to a dict of aligned
HWC images on the [0, 1] scale.

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

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.data import augment
from kpac_tf.data import dpdd
from kpac_tf.data.dpdd import ImagePair
from kpac_tf.data.photos import synthetic_photos
from kpac_tf.data.samplers import (SYNTHETIC_KINDS, FilePairSource, PairSource, SyntheticSource,
                                   make_synthetic_source)
from kpac_tf.images import codec

__all__ = [
    "DataSources",
    "FilePairSource",
    "PairSource",
    "PipelineConfig",
    "SYNTHETIC_KINDS",
    "SyntheticSource",
    "VAL_SEED",
    "make_eval_dataset",
    "make_synthetic_dataset",
    "make_train_dataset",
    "make_synthetic_source",
    "resolve_data",
    "synthetic_photos",
    "sample_index",
    "to_float",
]
# FilePairSource, PairSource, SyntheticSource, SYNTHETIC_KINDS, make_synthetic_source
# (kpac_tf.data.samplers) and synthetic_photos (kpac_tf.data.photos) are re-exported here.

AUTOTUNE = tf.data.AUTOTUNE
_INT64_MAX = np.iinfo(np.int64).max


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
    return {key: tf.cast(image, tf.float32) if key == "radius" else codec.quantize(to_float(image), bit_depth)
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
                sample[key] = codec.quantize(noisy, config.bit_depth)
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



def make_synthetic_dataset(crop_size=256, *, photos="skimage-train",
                           dead_leaves_fraction: float = 0.5, config=None, seed: int = 0,
                           length: Optional[int] = None, start_index: int = 0,
                           with_radius: bool = False, num_parallel_calls: Optional[int] = None,
                           source=None) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of synthetic (blurred, sharp) float32 HxWx3 pairs in [0, 1].

    Element ``i`` is pair ``start_index + i`` of a seeded
    :class:`kpac_tf.data.pairs.SyntheticDefocusSource`, read through the same pipeline
    source as training (:func:`make_synthetic_source`), so the dataset is reproducible
    for a seed whatever the parallelism. Unlike :func:`make_train_dataset` the pairs are
    neither cropped, augmented, quantised nor batched.

    Args:
      crop_size: int or (height, width).
      photos, dead_leaves_fraction, config, seed: see
        :class:`kpac_tf.data.pairs.SyntheticDefocusSource`.
      length: number of pairs, or None for an infinite dataset.
      start_index: first pair index (e.g. to skip pairs already used).
      with_radius: also yield the HxW radius map (float32, pixels) as a third item.
      num_parallel_calls: map parallelism (default ``tf.data.AUTOTUNE``).
      source: use this generator instead of building one from the other arguments.
    """
    from kpac_tf.data.pairs import SyntheticDefocusSource

    if source is None:
        source = SyntheticDefocusSource(crop_size, photos=photos, seed=seed, config=config,
                                        dead_leaves_fraction=dead_leaves_fraction)
    pairs = make_synthetic_source((), generator=source, with_radius=with_radius)
    if length is None:
        indices = tf.data.Dataset.counter(start=start_index, dtype=tf.int64)
    else:
        indices = tf.data.Dataset.range(start_index, start_index + int(length))

    def pair(index):
        sample = pairs.load(index, tf.zeros([2], tf.int64))
        blurred_sharp = (sample["input"], sample["target"])
        return blurred_sharp + ((sample["radius"][:, :, 0],) if with_radius else ())

    return indices.map(pair, num_parallel_calls=num_parallel_calls or AUTOTUNE,
                       deterministic=True)


# ---------------------------------------------------------------------------------------
# From a --data specification to sources.


@dataclasses.dataclass
class DataSources:
    """Training and (optional) validation sources resolved from a --data value."""

    train: PairSource
    val: PairSource | None
    description: str


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


#: Seed of the validation scenes of synthetic and pool data: fixed, so that every run
#: on the same kinds validates on the same scenes whatever its --data_seed.
VAL_SEED = 0


def _synthetic_sources(spec: str, *, crop, val_crop, val_images, dual_pixel, seed,
                       synthetic_options, with_radius, default_val: bool):
    """(train, default validation or None) for ``synthetic[:KINDS]``."""
    from kpac_tf.data.pairs import synthetic_config_from_overrides

    if dual_pixel:
        raise ValueError("The synthetic generator makes single images; dual-pixel needs DPDD data.")
    if crop is None:
        raise ValueError("Synthetic data needs a crop size (--crop).")
    kinds = spec.split(":", 1)[1].split(",") if ":" in spec else list(SYNTHETIC_KINDS)
    config = synthetic_config_from_overrides(synthetic_options)
    train = make_synthetic_source(kinds, crop, seed=seed, config=config, with_radius=with_radius)
    if not default_val:
        return train, None
    return train, make_synthetic_source(kinds, val_crop or crop, seed=VAL_SEED, held_out=True,
                                        num_items=val_images or 16)


def _pool_sources(spec: str, *, crop, val_crop, val_images, dual_pixel, seed,
                  synthetic_options, with_radius, default_val: bool):
    """(train, default validation or None) for ``pool:DIR[@N][,DIR[@N]...]``."""
    from kpac_tf.data import pool

    if dual_pixel or synthetic_options:
        raise ValueError("A pool holds rendered single-image pairs: no dual-pixel, no --synthetic_options.")
    try:
        entries = pool.parse_pool_list(spec.split(":", 1)[1])
    except ValueError as error:
        raise ValueError(f"--data={spec}: {error}") from None
    train = pool.PoolSource([folder for folder, _ in entries], with_radius=with_radius,
                            weights=[weight for _, weight in entries])
    if not default_val:
        return train, None
    return train, make_synthetic_source(train.kinds, val_crop or crop or 256, seed=VAL_SEED,
                                        held_out=True, num_items=val_images or 16,
                                        dead_leaves_fraction=train.dead_leaves_share)


def _file_sources(spec: str, *, val_images, dual_pixel, bit_depth, cache, default_val: bool):
    """(train, default validation or None) for a DPDD root or a folder pair."""
    if dpdd.is_dpdd_root(spec):
        train = FilePairSource(dpdd.list_dpdd(spec, "train", dual_pixel=dual_pixel),
                               cache=cache, cache_bits=bit_depth)
        if default_val and tf.io.gfile.isdir(spec.rstrip("/") + "/val_c"):
            return train, FilePairSource(_limit(dpdd.list_dpdd(spec, "val", dual_pixel=dual_pixel),
                                                val_images))
        return train, None
    pairs = _folder_pairs(spec, dual_pixel)
    if pairs is None:
        raise ValueError(
            f"--data={spec} is neither a DPDD folder (with train_c/), a folder with source/ "
            "and target/, SOURCE_DIR,TARGET_DIR, nor synthetic[:KINDS]."
        )
    return FilePairSource(pairs, cache=cache, cache_bits=bit_depth), None


def _val_source(val_spec: str, *, val_images, dual_pixel) -> PairSource | None:
    """The validation source a ``--val_data`` value names (None for "none")."""
    val_spec = val_spec.strip()
    if val_spec.lower() == "none":
        return None
    if dpdd.is_dpdd_root(val_spec):
        pairs = dpdd.list_dpdd(val_spec, "val", dual_pixel=dual_pixel)
    else:
        pairs = _folder_pairs(val_spec, dual_pixel)
        if pairs is None:
            raise ValueError(
                f"--val_data={val_spec} is neither a DPDD folder, a folder with source/ and "
                "target/, SOURCE_DIR,TARGET_DIR, nor none."
            )
    return FilePairSource(_limit(pairs, val_images))


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
        deadleaves, skimage, photos=DIR, or a folder of sharp photos); ``synthetic``
        means ``synthetic:deadleaves,skimage``. Validation: ``val_images`` (default 16)
        held-out scenes.
      - ``pool:DIR[@N][,DIR[@N]...]``: one or more pools of pre-rendered synthetic
        pairs (:mod:`kpac_tf.data.pool`), drawn in proportion to their pair counts
        times their weights N (default 1);
        validation: held-out scenes of the kinds the pools were rendered from.
      Synthetic and pool validation scenes do not depend on ``seed`` (:data:`VAL_SEED`),
      so runs with different seeds are validated on the same scenes.
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
    default_val = val_spec is None
    generated = dict(crop=crop, val_crop=val_crop, val_images=val_images, dual_pixel=dual_pixel,
                     seed=seed, synthetic_options=synthetic_options, with_radius=with_radius,
                     default_val=default_val)
    if spec == "synthetic" or spec.startswith("synthetic:"):
        train, val = _synthetic_sources(spec, **generated)
    elif spec.startswith("pool:"):
        train, val = _pool_sources(spec, **generated)
    elif synthetic_options:
        raise ValueError("--synthetic_options apply to --data=synthetic only.")
    else:
        train, val = _file_sources(spec, val_images=val_images, dual_pixel=dual_pixel,
                                   bit_depth=bit_depth, cache=cache, default_val=default_val)
    if not default_val:
        val = _val_source(val_spec, val_images=val_images, dual_pixel=dual_pixel)
    logging.info("Training data: %s; validation: %s.", train.describe(),
                 val.describe() if val is not None else "none")
    return DataSources(train=train, val=val, description=spec)
