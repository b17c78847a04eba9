"""Inference: compiled forward, tiling with feathered blending, x8 self-ensemble.

A :class:`Deblurrer` wraps a KPAC Keras model (from :func:`kpac_tf.build_kpac`) and runs
it through one ``tf.function`` with dynamic height and width (traced once per tile
size, never per image), not through ``model.predict``. Images larger than the memory
budget allows are cut into overlapping tiles whose outputs are blended with weights
that ramp linearly across the overlap, so seams do not show.

Images are float32 HWC RGB in [0,1]; results are clipped to [0,1].
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.models import model_config
from kpac_tf.padding import padded_size

# Planning figure for the activation memory of a forward pass, bytes per input pixel
# (float32). Measured about 900 for single 0.25-1 MP passes; peaks grow faster than
# linearly on bigger tiles when ops run in parallel, hence the modest default budget
# (512 MB: 720 px tiles, 1.8 GB peak RSS for a 24 MP photo; 1024 MB gave 4.6 GB).
ACTIVATION_BYTES_PER_PIXEL = 1024
DEFAULT_MEMORY_BUDGET_MB = 512
MIN_TILE = 64


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Where tiles go along one axis: window starts and the window length."""

    starts: tuple[int, ...]
    length: int


def plan_axis(size: int, tile: int, overlap: int) -> TilePlan:
    """Tile starts covering [0, size) with windows of ``tile`` overlapping by >= ``overlap``.

    The last window ends exactly at ``size`` so all windows have the same length
    (one compiled shape); a dimension shorter than ``tile`` is a single window.
    """
    if size <= tile:
        return TilePlan((0,), size)
    stride = max(tile - overlap, 1)
    count = math.ceil((size - tile) / stride) + 1
    starts = np.linspace(0, size - tile, count).round().astype(int)
    return TilePlan(tuple(int(s) for s in starts), tile)


def feather_weights(length: int, ramp: int, taper_start: bool, taper_end: bool) -> np.ndarray:
    """1-D blending weights: 1 inside, a linear ramp over ``ramp`` pixels at tapered ends.

    Image borders are not tapered (no other tile covers them). Never zero, so every
    pixel keeps a defined weighted mean.
    """
    weights = np.ones(length, np.float32)
    if ramp <= 0:
        return weights
    ramp = min(ramp, length // 2) or 1
    rise = (np.arange(ramp, dtype=np.float32) + 0.5) / ramp
    if taper_start:
        weights[:ramp] = np.minimum(weights[:ramp], rise)
    if taper_end:
        weights[length - ramp :] = np.minimum(weights[length - ramp :], rise[::-1])
    return weights


def tile_size_for_budget(memory_budget_mb: float, multiple: int = 8) -> int:
    """Largest square tile side (a multiple of ``multiple``) whose forward pass fits."""
    pixels = memory_budget_mb * 2**20 / ACTIVATION_BYTES_PER_PIXEL
    side = int(math.sqrt(max(pixels, 1))) // multiple * multiple
    return max(side, MIN_TILE)


# The 8 dihedral transforms for the self-ensemble: (forward, inverse) on HWC arrays.
def _dihedral(k: int, flip: bool) -> tuple[Callable, Callable]:
    def forward(x):
        x = np.flip(x, axis=1) if flip else x
        return np.rot90(x, k, axes=(0, 1))

    def inverse(x):
        x = np.rot90(x, -k, axes=(0, 1))
        return np.flip(x, axis=1) if flip else x

    return forward, inverse


ENSEMBLE_TRANSFORMS = [_dihedral(k, flip) for flip in (False, True) for k in range(4)]


class Deblurrer:
    """Deblur images of any size with a KPAC model.

    Args:
        model: a model from :func:`kpac_tf.build_kpac` (single-image or dual-pixel).
        tile_size: tile side in pixels; None picks it from ``memory_budget_mb`` and tiles
            only images that do not fit whole.
        overlap: pixels shared by neighbouring tiles (blended with a linear ramp).
        memory_budget_mb: memory allowed for one forward pass's activations.
        ensemble: average the 8 flips/rotations (x8 slower).
    """

    def __init__(
        self,
        model: keras.Model,
        tile_size: int | None = None,
        overlap: int = 128,
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        ensemble: bool = False,
    ):
        self.model = model
        self.config = model_config(model)
        self.overlap = int(overlap)
        self.ensemble = bool(ensemble)
        multiple = self.config.multiple
        if tile_size is None:
            self.tile_size = tile_size_for_budget(memory_budget_mb, multiple)
            self.tile_only_when_needed = True
        else:
            if tile_size < MIN_TILE:
                raise ValueError(f"tile_size must be at least {MIN_TILE} pixels, got {tile_size}.")
            self.tile_size = int(padded_size(int(tile_size), multiple))
            self.tile_only_when_needed = False
        if self.overlap < 0 or self.overlap >= self.tile_size // 2:
            raise ValueError(
                f"overlap must be in [0, {self.tile_size // 2}) for tiles of {self.tile_size} px, "
                f"got {overlap}."
            )
        views = 3 if self.config.dual_pixel else 1
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        self._forward = tf.function(
            lambda *images: model(list(images) if views > 1 else images[0], training=False),
            input_signature=[spec] * views,
        )

    # -- public API ------------------------------------------------------------------

    def deblur(self, image: np.ndarray) -> np.ndarray:
        """Deblur one RGB image, float32 HWC in [0,1] -> float32 HWC in [0,1]."""
        if self.config.dual_pixel:
            raise ValueError("This is a dual-pixel model: call deblur_dual(left, right, centre).")
        return self._run([_check_image(image, "image")])

    def deblur_dual(self, left: np.ndarray, right: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Deblur with a dual-pixel model: left/right views and the centre (combined) image,
        each float32 HWC in [0,1] of the same size -> float32 HWC in [0,1]."""
        if not self.config.dual_pixel:
            raise ValueError("This is a single-image model: call deblur(image).")
        views = [_check_image(v, name) for v, name in ((left, "left"), (right, "right"), (centre, "centre"))]
        if len({v.shape for v in views}) != 1:
            raise ValueError(f"left, right and centre differ in size: {[v.shape for v in views]}.")
        return self._run(views)

    def needs_tiling(self, height: int, width: int) -> bool:
        """Whether an image of this size is processed in tiles."""
        if not self.tile_only_when_needed:
            return height > self.tile_size or width > self.tile_size
        padded = padded_size(height, self.config.multiple) * padded_size(width, self.config.multiple)
        return padded > self.tile_size**2

    # -- internals -------------------------------------------------------------------

    def _run(self, views: Sequence[np.ndarray]) -> np.ndarray:
        if not self.ensemble:
            return self._run_once(views)
        total = np.zeros(views[-1].shape, np.float32)
        for forward, inverse in ENSEMBLE_TRANSFORMS:
            transformed = [np.ascontiguousarray(forward(v)) for v in views]
            total += inverse(self._run_once(transformed))
        return np.clip(total / len(ENSEMBLE_TRANSFORMS), 0.0, 1.0)

    def _run_once(self, views: Sequence[np.ndarray]) -> np.ndarray:
        height, width = views[0].shape[:2]
        if not self.needs_tiling(height, width):
            return self._forward_numpy([v for v in views])
        return self._run_tiled(views)

    def _forward_numpy(self, views: Sequence[np.ndarray]) -> np.ndarray:
        tensors = [tf.convert_to_tensor(v[np.newaxis]) for v in views]
        return np.clip(self._forward(*tensors)[0].numpy(), 0.0, 1.0)

    def _run_tiled(self, views: Sequence[np.ndarray]) -> np.ndarray:
        height, width = views[0].shape[:2]
        rows = plan_axis(height, self.tile_size, self.overlap)
        cols = plan_axis(width, self.tile_size, self.overlap)
        logging.info(
            "Tiling %dx%d into %d tiles of %dx%d (overlap %d).",
            height, width, len(rows.starts) * len(cols.starts), rows.length, cols.length, self.overlap,
        )
        total = np.zeros((height, width, 3), np.float32)
        weight_sum = np.zeros((height, width, 1), np.float32)
        for top in rows.starts:
            row_w = feather_weights(rows.length, self.overlap, top > 0, top + rows.length < height)
            for left in cols.starts:
                col_w = feather_weights(cols.length, self.overlap, left > 0, left + cols.length < width)
                window = (slice(top, top + rows.length), slice(left, left + cols.length))
                tile = self._forward_numpy([v[window] for v in views])
                weights = (row_w[:, None] * col_w[None, :])[..., None]
                total[window] += tile * weights
                weight_sum[window] += weights
        total /= weight_sum
        return total


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be an HxWx3 RGB array, got shape {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {image.shape}).")
    return np.ascontiguousarray(image, dtype=np.float32)
