"""Pipeline samplers: sources that each map an item index to one sample of aligned images
(not to be confused with :mod:`kpac_tf.data.photos`, the photo sources of the renderer).

A sample is a dict of HWC images on the [0, 1] scale (uint8, uint16 or float32):
``"input"`` and ``"target"``, or ``"left"``, ``"right"``, ``"centre"`` and ``"target"``
for dual-pixel data, plus ``"radius"`` (float32 HxWx1, pixels) when a source carries
oracle blur radius maps. Sources: image files (:class:`FilePairSource`, DPDD or any
folder pair, optionally cached in memory), procedural scenes (:class:`SyntheticSource`;
:func:`make_synthetic_source` for the synthetic defocus generator) and pre-rendered
pools (:class:`kpac_tf.data.pool.PoolSource`). :mod:`kpac_tf.data.pipeline` turns a
source into tf.data streams.
"""
from __future__ import annotations

import abc
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.data import augment
from kpac_tf.data.dpdd import ImagePair, describe_pairs
from kpac_tf.files import error_line
from kpac_tf.images.formats import sniff_format
from kpac_tf.images.tensors import TENSOR_FORMATS, decode_image_tensor

__all__ = [
    "SYNTHETIC_KINDS",
    "FilePairSource",
    "PairSource",
    "SyntheticSource",
    "make_synthetic_source",
]

AUTOTUNE = tf.data.AUTOTUNE

#: Scene kinds of the synthetic generator ("synthetic:deadleaves,skimage").
SYNTHETIC_KINDS = ("deadleaves", "skimage")
#: Offset between the generator seeds of training and validation scenes.
_VAL_SEED_OFFSET = 1_000_003


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
    :func:`kpac_tf.images.tensors.decode_image_tensor` (16-bit PNGs keep 16 bits).

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
                    tf.round(decode_image_tensor(tf.io.read_file(p), 3) * levels),
                    tf.as_dtype(dtype),
                ),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
            try:
                cache[key] = [np.asarray(image) for image in decoded.as_numpy_iterator()]
            except tf.errors.OpError as error:
                raise ValueError(f"Cannot decode the {key} images for the cache: "
                                 f"{error_line(error)}") from None
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
            key: decode_image_tensor(tf.io.read_file(tf.gather(tf.constant(paths), item)), 3)
            for key, paths in self._paths.items()
        }


def _check_headers(paths: Sequence[str]) -> None:
    """ValueError listing files that are not PNG/JPEG/BMP/GIF images (first bytes, the
    formats :func:`kpac_tf.images.tensors.decode_image_tensor` reads), so broken files fail at
    start-up rather than hours into a run."""
    bad = []
    for path in paths:
        try:
            with tf.io.gfile.GFile(path, "rb") as stream:
                head = stream.read(12)
        except tf.errors.OpError:
            head = b""
        if sniff_format(head) not in TENSOR_FORMATS:
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
        size: side of the generated images, or (height, width).
        name: description for logs.
        num_items: None for an endless stream (training: item k is scene k), or a
            count for a fixed validation set.
        seed_offset: added to the item index to form the generator seed, so
            training and validation scenes never coincide.
    """

    def __init__(self, generate: Callable[[int], dict], size: int | tuple[int, int], *,
                 name: str = "synthetic",
                 num_items: int | None = None, seed_offset: int = 0, with_radius: bool = False):
        self.generate = generate
        self.with_radius = bool(with_radius)
        self.height, self.width = (int(size), int(size)) if np.isscalar(size) else map(int, size)
        self.name = name
        self.num_items = num_items
        self.seed_offset = int(seed_offset)

    def describe(self) -> str:
        count = "endless" if self.num_items is None else f"{self.num_items} scenes"
        return f"{self.name} ({count}, {self.height}x{self.width})"

    def load(self, item: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        keys = list(self.keys)
        generate, offset = self.generate, self.seed_offset

        def make(index):
            sample = generate(int(index) + offset)
            return tuple(np.asarray(sample[key], dtype=np.float32) for key in keys)

        images = tf.numpy_function(make, [item], [tf.float32] * len(keys), stateful=False)
        out = {}
        for key, image in zip(keys, images):
            image.set_shape([self.height, self.width, 1 if key == "radius" else 3])
            out[key] = image
        return out


def make_synthetic_source(kinds: Sequence[str] = SYNTHETIC_KINDS, size: int | tuple[int, int] = 256,
                          *, seed: int = 0, held_out: bool = False, num_items: int | None = None,
                          config=None, with_radius: bool = False, generator=None,
                          dead_leaves_fraction: float = 0.5) -> SyntheticSource:
    """Synthetic defocus pairs (:mod:`kpac_tf.data.pairs`) as a pipeline source: the one
    way training, validation and :func:`kpac_tf.data.pipeline.make_synthetic_dataset`
    reach the generator. Item ``i`` is pair ``i`` of the seeded generator.

    Args:
        kinds: scene kinds, see :func:`kpac_tf.data.photos.synthetic_photos`. Dead leaves
            and photos are mixed by ``dead_leaves_fraction`` (half and half by default);
            photos are drawn uniformly from all photo sources together.
        size: side of the generated pairs (the training crop), or (height, width).
        seed: generator seed (validation adds a fixed offset, so scenes never repeat).
        held_out: validation scenes (held-out photos, other seeds).
        num_items: None for an endless training stream, or the validation count.
        config: renderer ranges (:class:`kpac_tf.data.pairs.SyntheticConfig`);
            None: the defaults.
        with_radius: samples carry the oracle radius map ("radius").
        generator: use this :class:`kpac_tf.data.pairs.SyntheticDefocusSource` instead of
            building one from ``kinds``, ``size``, ``seed``, ``held_out``, ``config`` and
            ``dead_leaves_fraction``.
        dead_leaves_fraction: share of dead-leaves scenes when the kinds name photos too.
    """
    from kpac_tf.data.pairs import synthetic_generator

    kinds = [k.strip() for k in kinds if k.strip()]
    if generator is None:
        generator = synthetic_generator(kinds, size, held_out=held_out, config=config,
                                        seed=seed + (_VAL_SEED_OFFSET if held_out else 0),
                                        dead_leaves_fraction=dead_leaves_fraction)

    def generate(index: int) -> dict:
        pair = generator.pair(index)
        return {"input": pair.blurred, "target": pair.sharp, "radius": pair.radius[:, :, None]}

    name = " ".join(["synthetic", "+".join(kinds)] if kinds else ["synthetic"])
    name += " (held out)" if held_out else ""
    return SyntheticSource(generate, (generator.height, generator.width), name=name,
                           num_items=num_items, with_radius=with_radius)
