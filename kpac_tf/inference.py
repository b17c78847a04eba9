"""Inference: compiled forward, tiling with feathered blending, x8 self-ensemble.

A :class:`Deblurrer` wraps a KPAC Keras model (from :func:`kpac_tf.build_kpac`) and runs
it through one ``tf.function`` with dynamic height and width (traced once per tile
size, never per image), not through ``model.predict``. Images larger than the memory
budget allows are cut into overlapping tiles whose outputs are blended with weights
that ramp linearly across the overlap, so seams do not show.

Images are float32 HWC RGB in [0,1], or the uint8/uint16 samples a file stores
(scaled by 1/255 or 1/65535 one tile at a time, so a whole photo is never held in
float32 twice); results are float32 HWC clipped to [0,1]. Tiled results are blended
in place in the one output array: the blending weights are separable, so their sum is
the product of two 1-D sums and needs no whole-image weight map.

Precision: ``precision="auto"`` (the default) runs bfloat16 where the CPU has AMX-BF16
and float32 elsewhere (AVX512-BF16 alone has not shown an inference gain; without
either, bfloat16 is emulated and slower); "float32" and "bfloat16" force one. The
bfloat16 route is a copy of the model built under the ``mixed_bfloat16`` Keras policy
with the float32 weights copied in: the input padding, the residual addition and the
crop stay float32, so the residual base is the exact input and the result is float32
(16-bit output stays meaningful). Unlike mixed-precision training, the last conv runs
in bfloat16 too (its float32 copy of a 96-channel full-resolution input would cost
more memory than all the rest; 0.2 dB PSNR against float32, 74.4 instead of 74.6 dB
on chelsea with the bundled 3-level weights). The policy is set only while the copy is
built; nothing global stays changed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable, Iterator, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.images.codec import to_unit_float
from kpac_tf.model.builder import build_kpac, model_config
from kpac_tf.model.padding import padded_size
from kpac_tf.model.precision import fast_bfloat16

# Planning figure for the activation memory of a forward pass, bytes per input pixel
# (float32). Measured about 900 for single 0.25-1 MP passes; peaks grow faster than
# linearly on bigger tiles when ops run in parallel, hence the modest default budget
# (512 MB: 720 px tiles, 1.8 GB peak RSS for a 24 MP photo; 1024 MB gave 4.6 GB).
ACTIVATION_BYTES_PER_PIXEL = 1024
# The same figure per precision. One 3-level pass at 1024x1024 peaked at 914 bytes per
# pixel above the idle process in float32 and 537 in bfloat16 (the copy below; 954 if
# the last conv stays float32, as its 96-channel input is then cast back to float32 at
# full resolution), hence 1024 * 537 / 914.
ACTIVATION_BYTES_PER_PIXEL_BY_PRECISION = {
    "float32": ACTIVATION_BYTES_PER_PIXEL,
    "bfloat16": 600,
}
DEFAULT_MEMORY_BUDGET_MB = 512
MIN_TILE = 64
# Rows normalised at a time after tiled blending (bounds the temporary weight array).
_NORMALISE_ROWS = 256
#: Values of ``Deblurrer(precision=...)``.
PRECISIONS = ("auto", "float32", "bfloat16")


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


def tile_size_for_budget(
    memory_budget_mb: float, multiple: int = 8, precision: str = "float32"
) -> int:
    """Largest square tile side (a multiple of ``multiple``) whose forward pass fits.

    ``precision``: "float32" or "bfloat16" (smaller activations, larger tiles).
    """
    if precision not in ACTIVATION_BYTES_PER_PIXEL_BY_PRECISION:
        raise ValueError(f"precision must be float32 or bfloat16 here, got {precision!r}.")
    pixels = memory_budget_mb * 2**20 / ACTIVATION_BYTES_PER_PIXEL_BY_PRECISION[precision]
    side = int(math.sqrt(max(pixels, 1))) // multiple * multiple
    return max(side, MIN_TILE)


def smallest_tile_for_overlap(overlap: int, multiple: int = 8) -> int:
    """The smallest tile side (a multiple of ``multiple``, at least MIN_TILE) that is more
    than twice ``overlap``, as blending needs."""
    return max(MIN_TILE, padded_size(2 * int(overlap) + 2, multiple))


def check_tiling(tile_size: int | None, overlap: int, memory_budget_mb: float, multiple: int = 8,
                 precision: str = "float32") -> int:
    """The tile side for these settings; a ValueError that names the setting at fault
    (and a value that works) when they do not fit together.

    ``tile_size`` None: the side comes from ``memory_budget_mb`` (see
    :func:`tile_size_for_budget`); else it is ``tile_size`` rounded up to ``multiple``.
    A tile must be more than twice ``overlap``.
    """
    if overlap < 0:
        raise ValueError(f"The tile overlap must be 0 px or more, got {overlap}.")
    smallest = smallest_tile_for_overlap(overlap, multiple)
    if tile_size is not None:
        if tile_size < MIN_TILE:
            raise ValueError(f"The tile size must be at least {MIN_TILE} px, got {tile_size}.")
        tile = int(padded_size(int(tile_size), multiple))
        if overlap >= tile // 2:
            rounded = f" ({tile} px once rounded up to a multiple of {multiple})" if tile != tile_size else ""
            raise ValueError(
                f"A tile size of {tile_size} px{rounded} is too small for a tile overlap of {overlap} px "
                f"(tiles must be more than twice the overlap): use tiles of at least {smallest} px, "
                f"or an overlap under {tile // 2} px.")
        return tile
    bytes_per_pixel = ACTIVATION_BYTES_PER_PIXEL_BY_PRECISION.get(precision, ACTIVATION_BYTES_PER_PIXEL)
    needed = math.ceil(smallest * smallest * bytes_per_pixel / 2**20)
    if not (math.isfinite(memory_budget_mb) and memory_budget_mb > 0):
        raise ValueError(f"The memory budget must be a positive number of MB, got {memory_budget_mb:g}; "
                         f"{needed} MB is the smallest that works with a tile overlap of {overlap} px "
                         f"(tiles of {smallest} px).")
    tile = tile_size_for_budget(memory_budget_mb, multiple, precision)
    if overlap >= tile // 2:
        raise ValueError(
            f"A memory budget of {memory_budget_mb:g} MB gives tiles of {tile} px, too small for a tile "
            f"overlap of {overlap} px (tiles must be more than twice the overlap): give a budget of at "
            f"least {needed} MB (tiles of {smallest} px), or an overlap under {tile // 2} px.")
    return tile


def resolve_precision(precision: str = "auto") -> tuple[str, str]:
    """("float32" or "bfloat16", the reason in words) for a ``precision`` setting.

    "auto" picks bfloat16 only on CPUs with AMX-BF16 (see :mod:`kpac_tf.cpu`).

    Raises:
        ValueError: ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}."
        )
    if precision != "auto":
        return precision, f"precision={precision} was asked for"
    fast, reason = fast_bfloat16(include_avx512=False)
    return ("bfloat16" if fast else "float32"), reason


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    """Set the global Keras dtype policy for the ``with`` body only."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _compute_dtype(model: keras.Model) -> str:
    """The compute dtype of the model's first KPAC/residual block (its interior)."""
    for layer in model.layers:
        if layer.name.startswith("block"):
            return layer.compute_dtype
    return model.compute_dtype


def bfloat16_copy(model: keras.Model, float32_last_conv: bool = False) -> keras.Model:
    """``model`` rebuilt under ``mixed_bfloat16`` with its float32 weights copied in.

    Same inputs and outputs (float32 NHWC in [0,1]); the interior runs in bfloat16, the
    padding, residual addition and crop in float32, and the last conv in float32 only
    if ``float32_last_conv`` (as training does). A model that already runs in bfloat16
    is returned as it is.
    """
    from kpac_tf.model.weights import get_arrays, set_arrays

    if _compute_dtype(model) == "bfloat16":
        return model
    config = model_config(model)
    with _dtype_policy("mixed_bfloat16"):
        twin = build_kpac(
            config,
            return_attention=isinstance(model.output, dict),
            float32_last_conv=float32_last_conv,
            name=f"{model.name}_bfloat16",
        )
    set_arrays(twin, get_arrays(model), f"model {model.name!r}")
    return twin


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
        precision: "auto" (bfloat16 on CPUs with AMX-BF16, float32 elsewhere),
            "float32" or "bfloat16"; see :func:`resolve_precision`. Inputs and outputs
            are float32 in [0,1] either way.

    Attributes:
        precision: the precision that runs, "float32" or "bfloat16".
        precision_reason: why, in words (also logged).
        model: the model that runs (a bfloat16 copy of the given one in bfloat16).
    """

    def __init__(
        self,
        model: keras.Model,
        tile_size: int | None = None,
        overlap: int = 128,
        memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
        ensemble: bool = False,
        precision: str = "auto",
    ):
        self.config = model_config(model)
        self.precision, self.precision_reason = resolve_precision(precision)
        self.model = model if self.precision == "float32" else bfloat16_copy(model)
        _log_precision(self.precision, self.precision_reason, precision)
        self.overlap = int(overlap)
        self.ensemble = bool(ensemble)
        self.tile_size = check_tiling(tile_size, self.overlap, memory_budget_mb,
                                      self.config.multiple, self.precision)
        self.tile_only_when_needed = tile_size is None
        views = 3 if self.config.dual_pixel else 1
        spec = tf.TensorSpec([None, None, None, 3], tf.float32)
        running = self.model
        self._forward = tf.function(
            lambda *images: running(list(images) if views > 1 else images[0], training=False),
            input_signature=[spec] * views,
        )

    # -- public API ------------------------------------------------------------------

    def deblur(self, image: np.ndarray) -> np.ndarray:
        """Deblur one RGB image, HWC float32 in [0,1] (or uint8/uint16 samples, e.g.
        ``ImageData.stored_rgb``) -> float32 HWC in [0,1]."""
        if self.config.dual_pixel:
            raise ValueError("This is a dual-pixel model: call deblur_dual(left, right, centre).")
        return self._run([_check_image(image, "image")])

    def deblur_dual(self, left: np.ndarray, right: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """Deblur with a dual-pixel model: left/right views and the centre (combined) image,
        each HWC float32 in [0,1] (or uint8/uint16 samples) of the same size -> float32
        HWC in [0,1]."""
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
        total = np.zeros(views[-1].shape[:2] + (3,), np.float32)
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
        tensors = [tf.convert_to_tensor(to_unit_float(v)[np.newaxis]) for v in views]
        return np.clip(self._forward(*tensors)[0].numpy(), 0.0, 1.0)

    def _run_tiled(self, views: Sequence[np.ndarray]) -> np.ndarray:
        height, width = views[0].shape[:2]
        rows = plan_axis(height, self.tile_size, self.overlap)
        cols = plan_axis(width, self.tile_size, self.overlap)
        logging.info(
            "Tiling %dx%d into %d tiles of %dx%d (overlap %d).",
            height, width, len(rows.starts) * len(cols.starts), rows.length, cols.length, self.overlap,
        )
        row_weights, row_sum = _axis_weights(rows, height, self.overlap)
        col_weights, col_sum = _axis_weights(cols, width, self.overlap)
        total = np.zeros((height, width, 3), np.float32)
        for top, row_w in zip(rows.starts, row_weights):
            for left, col_w in zip(cols.starts, col_weights):
                window = (slice(top, top + rows.length), slice(left, left + cols.length))
                tile = self._forward_numpy([v[window] for v in views])
                tile *= (row_w[:, None] * col_w[None, :])[..., None]
                total[window] += tile
        # The weight of a pixel summed over tiles is row_sum[y] * col_sum[x].
        for top in range(0, height, _NORMALISE_ROWS):
            band = slice(top, top + _NORMALISE_ROWS)
            total[band] /= (row_sum[band, None] * col_sum[None, :])[..., None]
        return total


def _axis_weights(plan: TilePlan, size: int, ramp: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each window's feather weights along one axis, and their sum over the axis."""
    weights = [feather_weights(plan.length, ramp, start > 0, start + plan.length < size)
               for start in plan.starts]
    total = np.zeros(size, np.float32)
    for start, w in zip(plan.starts, weights):
        total[start:start + plan.length] += w
    return weights, total


def _log_precision(precision: str, reason: str, asked: str) -> None:
    logging.info("Inference precision: %s (%s).", precision, reason)
    if asked == "bfloat16":
        fast, why = fast_bfloat16(include_avx512=False)
        if not fast:
            logging.warning("bfloat16 was forced although %s; it may be slower than float32.", why)


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    """An HxWx3 image as float32 in [0,1], or kept as uint8/uint16 samples (no copy)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be an HxWx3 RGB array, got shape {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {image.shape}).")
    if image.dtype in (np.uint8, np.uint16):
        return image
    return np.ascontiguousarray(image, dtype=np.float32)
