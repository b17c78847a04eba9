"""Synthetic defocus blur: a layered thin-lens renderer and a pair generator.

It produces (blurred, sharp) training and test pairs without the DPDD dataset.

Sharp sources:
  * the user's all-in-focus photos (a folder or files, read with
    :func:`kpac_tf.io.read_image`);
  * photographs that ship inside scikit-image, split into a fixed training list
    (:data:`SKIMAGE_TRAIN_SAMPLES`) and a fixed held-out list
    (:data:`SKIMAGE_HELDOUT_SAMPLES`) so evaluation never sees training photos;
  * procedural dead-leaves scenes (:mod:`kpac_tf.data.dead_leaves`).

Depth is a float map in [0, 1] (0 = near, 1 = far) that is linear in inverse
distance (like disparity). Under the thin-lens model the blur-circle radius is
then linear in depth::

    radius(x) = max_radius * |depth(x) - focus| / max_y |depth(y) - focus|

so ``max_radius`` is the largest blur radius in the rendered area and the focus
plane (``depth == focus``) is sharp.

Rendering (:func:`render_defocus_pair`) follows the layered depth-of-field
model: depth is cut into fronto-parallel layers spaced at most ``radius_step``
pixels of blur apart (aligned so the focus plane is a layer; pixels between two
layers are split between them linearly); each layer's premultiplied colour and
alpha are convolved (FFT) with an antialiased disc PSF, optionally mixed with a
Gaussian, and the layers are composited back to front with the "over"
operator, so nearer layers occlude the blur of farther ones, then normalised by
the accumulated alpha. Everything happens in linear light; clipped highlights
are boosted before blurring so they bloom into bokeh discs. Gaussian noise is
added to the blurred image in sRGB.

All images are float32 HWC in [0, 1] (sRGB).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import threading
from collections import OrderedDict
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import scipy.fft
from absl import logging

from kpac_tf.data import dead_leaves as _dl
from kpac_tf import io as kio

__all__ = [
    "SKIMAGE_TRAIN_SAMPLES",
    "SKIMAGE_HELDOUT_SAMPLES",
    "synthetic_config_from_overrides",
    "SyntheticConfig",
    "DefocusPair",
    "SyntheticDefocusSource",
    "disc_psf",
    "srgb_to_linear",
    "linear_to_srgb",
    "jitter_colour",
    "radius_from_depth",
    "render_defocus",
    "render_defocus_pair",
    "render_layers",
    "smooth_depth",
    "slanted_depth",
    "layered_depth",
    "random_depth",
    "load_skimage_sample",
    "make_synthetic_dataset",
    "write_dpdd_layout",
    "read_radius_map",
    "pick_margin",
    "RADIUS_PNG_SCALE",
]

#: scikit-image sample photographs used for training (all load offline).
SKIMAGE_TRAIN_SAMPLES = (
    "astronaut", "camera", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "moon", "grass", "gravel", "cell",
)
#: scikit-image sample photographs kept out of training, for evaluation:
#: an animal with fur, an indoor still life, metal coins (gray), a cluttered
#: scene with its real stereo disparity, and a brick wall texture.
SKIMAGE_HELDOUT_SAMPLES = ("chelsea", "coffee", "coins", "stereo_motorcycle", "brick")
# Left out on purpose: "cat" (the same photo as "chelsea"), "clock" (motion
# blurred), "page" and "text" (shorter than 256 px), binary or drawn images
# (binary_blobs, horse, checkerboard, colorwheel, logo, shepp_logan_phantom),
# tiny ones (lfw_subset, microaneurysms) and samples that need a download.

_PHOTO_SETS = {"skimage-train": SKIMAGE_TRAIN_SAMPLES,
               "skimage-heldout": SKIMAGE_HELDOUT_SAMPLES}


# --------------------------------------------------------------------------- #
# Colour
# --------------------------------------------------------------------------- #
def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light in [0, 1] (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / np.float32(12.92),
                    ((x + np.float32(0.055)) / np.float32(1.055)) ** np.float32(2.4)
                    ).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """Linear light (clipped to [0, 1]) -> sRGB-encoded values in [0, 1] (float32)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    y = np.where(x <= 0.0031308, x * np.float32(12.92),
                 np.float32(1.055) * x ** np.float32(1.0 / 2.4) - np.float32(0.055)
                 ).astype(np.float32)
    y[x >= 1.0] = 1.0  # exact white (the formula gives 1 - 6e-8 in float32)
    return y


# --------------------------------------------------------------------------- #
# Configuration and results
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Random ranges of the synthetic defocus generator (pairs sample uniformly).

    Attributes:
      max_radius: (low, high) largest blur-circle radius of a pair, pixels.
      in_focus_probability: chance that the focus plane lies on the scene (some
        region is sharp); otherwise the focus is anywhere in [0, 1].
      radius_step: blur-radius spacing of the depth layers, pixels.
      max_layers: upper bound on depth layers (the spacing widens when needed).
      gaussian_mix: (low, high) weight of a Gaussian PSF (sigma = radius / 2)
        blended into the disc PSF (lens aberrations).
      highlight_threshold: sRGB value at or above which a channel is clipped.
      highlight_gain: (low, high) factor applied to clipped channels in linear
        light before blurring, so highlights bloom into bright bokeh discs.
      noise_sigma: (low, high) standard deviation of Gaussian noise added to the
        blurred image, in [0, 1] sRGB units.
      depth_models: depth generators used for photos ("layers", "smooth",
        "slant"); photos with a real depth map (stereo_motorcycle) use it.
      dead_leaves_layers: (low, high) number of depth planes of dead-leaves scenes.
      sharp_probability: share of pairs rendered with no defocus at all (only the
        noise differs), which teaches a network to leave in-focus texture alone.
      photo_scale: (low, high) magnification of photo crops (< 1 zooms out: finer
        texture; > 1 zooms in: softer detail), resampled before defocus; whole-photo
        renders ("full") are never rescaled.
      base_blur: (low, high) Gaussian sigma, pixels, of the camera's own in-focus
        softness, applied in linear light to the whole scene before defocus, so the
        sharp target and the in-focus parts of the input share it: a network then
        learns to remove defocus, not to sharpen every soft edge. (0, 0): none.
      photo_colour: share of photo crops whose colours are jittered before defocus
        (see :func:`jitter_colour`), so a few training photos stand for more
        palettes and tones; target and input share the jitter. 0: never.
    """

    max_radius: tuple[float, float] = (1.0, 12.0)
    in_focus_probability: float = 0.8
    radius_step: float = 1.5
    max_layers: int = 10
    gaussian_mix: tuple[float, float] = (0.0, 0.3)
    highlight_threshold: float = 0.97
    highlight_gain: tuple[float, float] = (1.0, 4.0)
    noise_sigma: tuple[float, float] = (0.0, 0.01)
    depth_models: tuple[str, ...] = ("layers", "smooth", "slant")
    dead_leaves_layers: tuple[int, int] = (3, 8)
    sharp_probability: float = 0.0
    photo_scale: tuple[float, float] = (1.0, 1.0)
    base_blur: tuple[float, float] = (0.0, 0.0)
    photo_colour: float = 0.0

    def __post_init__(self):
        for name in ("max_radius", "gaussian_mix", "highlight_gain", "noise_sigma",
                     "dead_leaves_layers", "photo_scale", "base_blur"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"SyntheticConfig.{name} must be (low, high) with low <= high.")
        if self.max_radius[0] < 0 or self.noise_sigma[0] < 0 or self.base_blur[0] < 0:
            raise ValueError("SyntheticConfig radii and noise must be non-negative.")
        if self.max_layers < 4:
            raise ValueError("SyntheticConfig.max_layers must be at least 4.")
        if self.radius_step <= 0:
            raise ValueError("SyntheticConfig.radius_step must be positive.")
        if not all(0.0 <= p <= 1.0 for p in (self.in_focus_probability, self.sharp_probability,
                                             self.photo_colour)):
            raise ValueError("SyntheticConfig probabilities must be in [0, 1].")
        if self.photo_scale[0] <= 0:
            raise ValueError("SyntheticConfig.photo_scale must be positive.")
        unknown = set(self.depth_models) - {"layers", "smooth", "slant"}
        if unknown or not self.depth_models:
            raise ValueError(f"SyntheticConfig.depth_models: unknown {sorted(unknown)}.")


def synthetic_config_from_overrides(overrides: Sequence[str]) -> SyntheticConfig:
    """A :class:`SyntheticConfig` with some fields overridden by "name=value" strings.

    Ranges are written "low:high" (e.g. ``photo_scale=0.6:1.4``), a single number
    for a range means (value, value); ``depth_models`` takes names joined by ":".
    Raises ValueError, naming the valid fields, for an unknown or malformed item.
    """
    fields = {field.name: field for field in dataclasses.fields(SyntheticConfig)}
    defaults = SyntheticConfig()
    values = {}
    for item in overrides:
        item = item.strip()
        if not item:
            continue
        name, sep, text = (part.strip() for part in item.partition("="))
        if not sep or name not in fields:
            raise ValueError(f"Synthetic option {item!r} is not NAME=VALUE with NAME one of "
                             f"{', '.join(fields)}.")
        default = getattr(defaults, name)
        try:
            if name == "depth_models":
                values[name] = tuple(part.strip() for part in text.split(":") if part.strip())
            elif isinstance(default, tuple):
                kind = type(default[0])
                parts = [kind(float(part)) if kind is int else kind(part) for part in text.split(":")]
                if len(parts) == 1:
                    parts = parts * 2
                if len(parts) != 2:
                    raise ValueError
                values[name] = tuple(parts)
            else:
                number = float(text)
                values[name] = int(number) if isinstance(default, int) else number
        except ValueError:
            raise ValueError(f"Synthetic option {item!r}: cannot read {text!r} as "
                             f"{'LOW:HIGH' if isinstance(default, tuple) else 'a number'}.") from None
    return dataclasses.replace(defaults, **values)


@dataclasses.dataclass
class DefocusPair:
    """One synthetic pair.

    Attributes:
      blurred: float32 HxWx3 in [0, 1], the defocused (and noisy) input.
      sharp: float32 HxWx3 in [0, 1], the all-in-focus target.
      radius: float32 HxW, blur-circle radius in pixels at each pixel (the
        oracle defocus map of the pixel's own depth).
      mean_radius: mean of ``radius``.
      info: how the pair was made (source, focus, max_radius, noise_sigma, ...).
    """

    blurred: np.ndarray
    sharp: np.ndarray
    radius: np.ndarray
    mean_radius: float
    info: dict


# --------------------------------------------------------------------------- #
# PSFs and the layered renderer
# --------------------------------------------------------------------------- #
def disc_psf(radius: float, gaussian_mix: float = 0.0, size: Optional[int] = None
             ) -> np.ndarray:
    """An antialiased disc PSF, optionally blended with a Gaussian.

    Each tap is the disc's approximate coverage of that pixel,
    ``clip(radius + 0.5 - distance, 0, 1)``; a radius below 0.5 gives the
    identity (a single tap).

    Args:
      radius: disc radius in pixels (>= 0).
      gaussian_mix: weight in [0, 1] of a Gaussian with sigma = radius / 2.
      size: odd kernel size (default ``2 * ceil(radius + 0.5) + 1``).

    Returns:
      float32 [size, size] kernel summing to 1, centred.
    """
    radius = float(radius)
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}.")
    half = int(math.ceil(radius + 0.5)) if size is None else (int(size) - 1) // 2
    grid = np.arange(-half, half + 1, dtype=np.float64)
    dist = np.hypot(grid[:, None], grid[None, :])
    kernel = np.clip(radius + 0.5 - dist, 0.0, 1.0)
    kernel /= kernel.sum()
    if gaussian_mix > 0 and radius >= 0.5:
        sigma = radius / 2.0
        gauss = np.exp(-0.5 * (dist / sigma) ** 2)
        gauss /= gauss.sum()
        kernel = (1.0 - gaussian_mix) * kernel + gaussian_mix * gauss
    return kernel.astype(np.float32)


def _psf_spectrum(radius: float, gaussian_mix: float, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 of the PSF placed with its centre at the origin of an array of ``shape``."""
    kernel = disc_psf(radius, gaussian_mix)
    half = kernel.shape[0] // 2
    full = np.zeros(shape, np.float32)
    full[:kernel.shape[0], :kernel.shape[1]] = kernel
    full = np.roll(full, (-half, -half), axis=(0, 1))
    return scipy.fft.rfft2(full)


def _is_fast_length(n: int) -> bool:
    for factor in (2, 3, 5):
        while n % factor == 0:
            n //= factor
    return n == 1


def pick_margin(height: int, width: int, min_margin: int, slack: int = 24) -> int:
    """A border width >= ``min_margin`` that makes both padded sizes FFT friendly.

    Looks up to ``slack`` pixels further; falls back to ``min_margin`` (the
    renderer then zero-pads to a fast size, which costs a little more).
    """
    for margin in range(int(min_margin), int(min_margin) + slack + 1):
        if _is_fast_length(height + 2 * margin) and _is_fast_length(width + 2 * margin):
            return margin
    return int(min_margin)


def render_layers(rgba: np.ndarray, radii: Sequence[float], gaussian_mix: float = 0.0,
                  want_sharp: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Blurs and composites premultiplied depth layers (the core of the renderer).

    Convolution is done with FFTs on a zero-padded, FFT-friendly size; pixels
    within the largest radius of the border see missing content (zeros,
    compensated by the alpha normalisation): keep a border at least that wide
    around the area you use.

    Args:
      rgba: float32 [K, 4, H, W], layers ordered far (0) to near; channels 0-2
        linear RGB premultiplied by alpha, channel 3 alpha in [0, 1].
      radii: K blur radii in pixels.
      gaussian_mix: Gaussian weight of the PSF (see :func:`disc_psf`).
      want_sharp: also composite the layers without blur.

    Returns:
      (blurred, sharp): float32 [3, H, W] linear light (not clipped), the
      defocused composite and the all-in-focus composite (None unless
      ``want_sharp``), both normalised by the accumulated alpha.
    """
    rgba = np.asarray(rgba, dtype=np.float32)
    if rgba.ndim != 4 or rgba.shape[1] != 4 or len(radii) != rgba.shape[0]:
        raise ValueError("rgba must be [K, 4, H, W] with one radius per layer.")
    return _composite(lambda k: rgba[k], list(radii), rgba.shape[2], rgba.shape[3],
                      gaussian_mix, want_sharp)


# Layers are transformed in chunks of at most this many float32 values, which
# bounds memory on large images (one chunk holds all layers of a 256x256 crop).
_CHUNK_VALUES = 1 << 24


def _composite(layer: Callable[[int], np.ndarray], radii: list, height: int, width: int,
               gaussian_mix: float, want_sharp: bool):
    """Back-to-front "over" compositing of blurred layers; ``layer(k)`` gives [4, H, W]."""
    shape = (scipy.fft.next_fast_len(height, real=True),
             scipy.fft.next_fast_len(width, real=True))
    chunk = max(1, _CHUNK_VALUES // (4 * shape[0] * shape[1]))
    acc_blur = np.zeros((4, height, width), np.float32)
    acc_sharp = np.zeros((4, height, width), np.float32) if want_sharp else None
    for start in range(0, len(radii), chunk):
        ks = range(start, min(start + chunk, len(radii)))
        layers = {k: layer(k) for k in ks}
        blur = [k for k in ks if radii[k] >= 0.5 and layers[k][3].any()]
        blurred = {}
        if blur:
            # Sizes with large prime factors make the FFT several times slower.
            spectra = scipy.fft.rfft2(np.stack([layers[k] for k in blur]), s=shape,
                                      axes=(-2, -1))
            for n, k in enumerate(blur):
                spectra[n] *= _psf_spectrum(radii[k], gaussian_mix, shape)
            result = scipy.fft.irfft2(spectra, s=shape, axes=(-2, -1), overwrite_x=True)
            blurred = {k: result[n, :, :height, :width] for n, k in enumerate(blur)}
        for k in ks:
            sharp_layer = layers[k]
            current = blurred.get(k, sharp_layer)
            alpha = np.clip(current[3:], 0.0, 1.0)
            acc_blur *= 1.0 - alpha
            acc_blur[:3] += current[:3]
            acc_blur[3:] += alpha
            if want_sharp:
                acc_sharp *= 1.0 - sharp_layer[3:]
                acc_sharp += sharp_layer
    out_blur = np.maximum(acc_blur[:3] / np.maximum(acc_blur[3:], 1e-6), 0.0)
    out_sharp = acc_sharp[:3] / np.maximum(acc_sharp[3:], 1e-6) if want_sharp else None
    return out_blur, out_sharp


def radius_from_depth(depth: np.ndarray, focus: float, max_radius: float) -> np.ndarray:
    """Thin-lens blur radius (pixels) per pixel: linear in |depth - focus|.

    The pixel farthest from the focus plane gets ``max_radius``.
    """
    offset = np.abs(np.asarray(depth, np.float32) - np.float32(focus))
    span = float(offset.max()) if offset.size else 0.0
    if span < 1e-6 or max_radius <= 0:
        return np.zeros_like(offset)
    return (offset * np.float32(max_radius / span)).astype(np.float32)


def _depth_layers(depth: np.ndarray, focus: float, scale: float, radius_step: float,
                  max_layers: int, radius_cap: float) -> tuple[np.ndarray, list[float]]:
    """Splits a depth map into layers with linear ("hat") weights.

    Layers sit at ``focus + j * spacing`` (so the focal plane is a layer); a
    pixel between two layers is shared between them linearly.

    Args:
      depth: HxW depth map.
      focus: focal-plane depth.
      scale: blur radius in pixels per unit of depth.
      radius_step: wanted layer spacing in pixels of radius.
      max_layers: cap on the number of layers (>= 4); the spacing widens.
      radius_cap: largest radius a layer may get (the border width).

    Returns:
      (weights [K, H, W] summing to 1 per pixel, ordered far to near; K radii).
    """
    offset = depth - np.float32(focus)
    if scale * float(np.abs(offset).max()) < 0.5:
        return np.ones((1,) + depth.shape, np.float32), [0.0]
    spacing = radius_step / scale
    extent = float(depth.max() - depth.min())
    spacing = max(spacing, extent / (max(max_layers, 4) - 3))
    position = (offset / np.float32(spacing)).ravel()
    low = int(math.floor(float(position.min())))
    high = int(math.floor(float(position.max()))) + 1
    count = high - low + 1
    floor = np.floor(position)
    frac = (position - floor).astype(np.float32)
    index = (high - floor).astype(np.intp)  # layer of the nearer-in-order (farther) node
    pixels = np.arange(position.size)
    weights = np.zeros((count, position.size), np.float32)
    weights[index, pixels] = 1.0 - frac
    weights[index - 1, pixels] = frac
    used = np.flatnonzero(weights.any(axis=1))
    radii = [min(abs(high - int(k)) * spacing * scale, radius_cap) for k in used]
    return weights[used].reshape((len(used),) + depth.shape), radii


def _boost_highlights(linear: np.ndarray, srgb: np.ndarray, threshold: float, gain: float
                      ) -> np.ndarray:
    if gain <= 1.0:
        return linear
    return np.where(srgb >= threshold, linear * np.float32(gain), linear).astype(np.float32)


def render_defocus_pair(
    sharp: np.ndarray,
    depth: np.ndarray,
    *,
    focus: float,
    max_radius: float,
    margin: Union[int, tuple[int, int], None] = None,
    radius_step: float = 1.0,
    max_layers: int = 16,
    gaussian_mix: float = 0.0,
    highlight_threshold: float = 0.97,
    highlight_gain: float = 1.0,
    noise_sigma: float = 0.0,
    rng: Optional[np.random.Generator] = None,
) -> DefocusPair:
    """Renders spatially varying defocus of a sharp image with a depth map.

    Args:
      sharp: float HxWx3 sRGB in [0, 1] (all in focus).
      depth: float HxW in [0, 1], 0 near, 1 far, linear in inverse distance.
      focus: depth of the focal plane.
      max_radius: blur radius (pixels) of the pixel farthest from the focal plane.
      margin: border (int, or (y, x)) already included in ``sharp``/``depth``
        that is cut from the outputs (real content beyond the kept area); it
        should be at least ``max_radius + 1``. None: the inputs are
        reflect-padded internally and nothing is cut.
      radius_step, max_layers: depth-layer spacing in blur radius and its cap.
      gaussian_mix: Gaussian weight of the PSF in [0, 1].
      highlight_threshold, highlight_gain: channels with sRGB value >=
        threshold are multiplied by gain in linear light before blurring (the
        sharp output is the same scene, clipped).
      noise_sigma: Gaussian noise std added to the blurred image (sRGB units).
      rng: generator for the noise.

    Returns:
      A :class:`DefocusPair` (``radius`` is the thin-lens radius of each pixel).
    """
    sharp = np.asarray(sharp, np.float32)
    depth = np.asarray(depth, np.float32)
    if sharp.ndim != 3 or sharp.shape[2] != 3 or depth.shape != sharp.shape[:2]:
        raise ValueError(
            f"sharp must be HxWx3 and depth HxW of the same size, got {sharp.shape} "
            f"and {depth.shape}.")
    if max_radius < 0:
        raise ValueError(f"max_radius must be >= 0, got {max_radius}.")
    if margin is None:
        pad_y = pad_x = pick_margin(sharp.shape[0], sharp.shape[1],
                                    int(math.ceil(max_radius)) + 2)
        pads = ((pad_y, pad_y), (pad_x, pad_x))
        sharp_in = np.pad(sharp, pads + ((0, 0),), mode="symmetric")
        depth_in = np.pad(depth, pads, mode="symmetric")
    else:
        pad_y, pad_x = (int(margin), int(margin)) if np.isscalar(margin) else map(int, margin)
        sharp_in, depth_in = sharp, depth
    # The radius law uses the depth range of the kept area; the border (which
    # only feeds blur into the kept area) may not exceed its own width.
    height, width = depth_in.shape[0] - 2 * pad_y, depth_in.shape[1] - 2 * pad_x
    if height < 1 or width < 1 or pad_y < 0 or pad_x < 0:
        raise ValueError(f"margin {margin} does not fit a {depth_in.shape} input.")
    window = (slice(pad_y, pad_y + height), slice(pad_x, pad_x + width))
    kept = depth_in[window]
    span = float(np.abs(kept - np.float32(focus)).max())
    scale = max_radius / span if span > 1e-6 else 0.0
    radius_cap = max(float(max_radius), min(pad_y, pad_x) - 1.0)
    weights, radii = _depth_layers(depth_in, focus, scale, radius_step, max_layers, radius_cap)
    radius = np.minimum(np.abs(kept - np.float32(focus)) * np.float32(scale),
                        np.float32(radius_cap)).astype(np.float32)
    linear = srgb_to_linear(sharp_in)
    boosted = _boost_highlights(linear, sharp_in, highlight_threshold, highlight_gain)
    channel_first = boosted.transpose(2, 0, 1)

    def layer(k: int) -> np.ndarray:
        rgba = np.empty((4,) + depth_in.shape, np.float32)
        np.multiply(channel_first, weights[k], out=rgba[:3])
        rgba[3] = weights[k]
        return rgba

    blurred_lin, _ = _composite(layer, radii, depth_in.shape[0], depth_in.shape[1],
                                gaussian_mix, want_sharp=False)
    crop = (slice(None),) + window
    blurred = linear_to_srgb(blurred_lin[crop].transpose(1, 2, 0))
    target = sharp_in[window]
    if highlight_gain > 1.0:
        # The hat weights sum to 1, so the in-focus composite is the boosted image;
        # the sharp target is the same bright scene, clipped.
        target = np.where(target >= highlight_threshold, linear_to_srgb(boosted[window]),
                          target)
    blurred = _add_noise(blurred, noise_sigma, rng)
    return DefocusPair(blurred=blurred, sharp=np.array(target, np.float32, copy=True),
                       radius=np.ascontiguousarray(radius),
                       mean_radius=float(radius.mean()),
                       info={"focus": float(focus), "max_radius": float(max_radius),
                             "layers": len(radii), "gaussian_mix": float(gaussian_mix),
                             "highlight_gain": float(highlight_gain),
                             "noise_sigma": float(noise_sigma)})


def render_defocus(sharp: np.ndarray, depth: np.ndarray, *, focus: float, max_radius: float,
                   **kwargs) -> np.ndarray:
    """Like :func:`render_defocus_pair` but returns only the blurred image (HxWx3 [0, 1])."""
    return render_defocus_pair(sharp, depth, focus=focus, max_radius=max_radius,
                               **kwargs).blurred


def _soften(image: np.ndarray, sigma: float, channel_axis: int) -> np.ndarray:
    """Gaussian blur of every channel (sigma in pixels), float32, edges reflected."""
    from scipy import ndimage

    sigmas = [sigma] * image.ndim
    sigmas[channel_axis] = 0.0
    return ndimage.gaussian_filter(np.asarray(image, np.float32), sigmas, mode="reflect")


def _add_noise(image: np.ndarray, sigma: float, rng: Optional[np.random.Generator]
               ) -> np.ndarray:
    image = np.ascontiguousarray(image, np.float32)
    if sigma > 0:
        rng = rng if rng is not None else np.random.default_rng()
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(image, 0.0, 1.0)


# --------------------------------------------------------------------------- #
# Depth maps
# --------------------------------------------------------------------------- #
def _normalise(field: np.ndarray, low: float, high: float) -> np.ndarray:
    field = field - field.min()
    peak = float(field.max())
    field = field / peak if peak > 0 else field
    return (np.float32(low) + field * np.float32(high - low)).astype(np.float32)


def _random_range(rng: np.random.Generator) -> tuple[float, float]:
    extent = rng.uniform(0.3, 1.0)
    low = rng.uniform(0.0, 1.0 - extent)
    return low, low + extent


def smooth_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random depth field (sum of low-frequency waves), float32 HxW in [0, 1]."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    field = np.zeros((height, width), np.float32)
    for _ in range(4):
        freq = rng.uniform(0.2, 2.0)
        theta = rng.uniform(0.0, 2.0 * math.pi)
        phase = rng.uniform(0.0, 2.0 * math.pi)
        field += np.float32(rng.uniform(0.3, 1.0) / freq) * np.cos(
            np.float32(2.0 * math.pi * freq) * (xs * np.float32(math.cos(theta))
                                                + ys * np.float32(math.sin(theta)))
            + np.float32(phase))
    return _normalise(field, *_random_range(rng))


def slanted_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A slanted plane (e.g. a floor or a wall seen at an angle), float32 HxW in [0, 1]."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    theta = rng.uniform(0.0, 2.0 * math.pi)
    field = xs * np.float32(math.cos(theta)) + ys * np.float32(math.sin(theta))
    return _normalise(field, *_random_range(rng))


def layered_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Fronto-parallel objects over a background: a background (smooth or slanted)
    with 1-4 large dead-leaves shapes at constant nearer depths, float32 HxW."""
    scene = _dl.dead_leaves_layers(height, width, rng, num_layers=int(rng.integers(2, 6)),
                                   coverage=0.8, r_min=0.08 * min(height, width),
                                   r_max=0.45 * min(height, width), max_shapes=4,
                                   light_probability=0.0)
    background = (smooth_depth if rng.random() < 0.5 else slanted_depth)(height, width, rng)
    background = 0.5 + 0.5 * background
    depth = background
    for k in range(1, scene.rgba.shape[0]):
        alpha = scene.rgba[k, 3]
        level = np.float32(rng.uniform(0.0, 0.6))
        depth = depth + (alpha >= 0.5) * (level - depth)
    return depth.astype(np.float32)


def random_depth(height: int, width: int, rng: np.random.Generator,
                 models: Sequence[str] = ("layers", "smooth", "slant")) -> tuple[np.ndarray, str]:
    """A depth map from a randomly chosen model; returns (depth HxW in [0, 1], model name)."""
    model = models[int(rng.integers(len(models)))]
    makers = {"layers": layered_depth, "smooth": smooth_depth, "slant": slanted_depth}
    return makers[model](height, width, rng), model


# --------------------------------------------------------------------------- #
# Photo sources
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def load_skimage_sample(name: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Loads a scikit-image sample photo: (rgb float32 HxWx3 [0, 1], depth or None).

    ``stereo_motorcycle`` comes with its depth from the stereo disparity
    (normalised to [0, 1], 0 near, holes filled from the nearest valid pixel).
    """
    import skimage.data
    from scipy import ndimage

    if name not in SKIMAGE_TRAIN_SAMPLES + SKIMAGE_HELDOUT_SAMPLES:
        raise ValueError(f"unknown scikit-image sample '{name}'; choose one of "
                         f"{', '.join(SKIMAGE_TRAIN_SAMPLES + SKIMAGE_HELDOUT_SAMPLES)}.")
    depth = None
    if name == "stereo_motorcycle":
        image, _, disparity = skimage.data.stereo_motorcycle()
        valid = np.isfinite(disparity)
        index = ndimage.distance_transform_edt(~valid, return_distances=False,
                                               return_indices=True)
        disparity = disparity[tuple(index)]
        depth = _normalise(-disparity.astype(np.float32), 0.0, 1.0)
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]
    scale = 65535.0 if image.dtype == np.uint16 else 255.0 if image.dtype == np.uint8 else 1.0
    rgb = np.ascontiguousarray(image.astype(np.float32) / np.float32(scale))
    rgb.setflags(write=False)
    if depth is not None:
        depth.setflags(write=False)
    return rgb, depth


@dataclasses.dataclass(frozen=True)
class _Photo:
    name: str
    load: Callable[[], tuple[np.ndarray, Optional[np.ndarray]]]


def _load_file(path: str, max_side: Optional[int]) -> tuple[np.ndarray, None]:
    rgb = kio.read_image(path).rgb
    if max_side and max(rgb.shape[:2]) > max_side:
        from skimage.transform import rescale

        rgb = rescale(rgb, max_side / max(rgb.shape[:2]), channel_axis=-1,
                      anti_aliasing=True, preserve_range=True).astype(np.float32)
    return rgb, None


def _resolve_photos(photos, max_side: Optional[int]) -> list[_Photo]:
    """Turns a photo spec (set names, folders, files) into loaders."""
    if photos is None:
        return []
    if isinstance(photos, (str, os.PathLike)):
        photos = [photos]
    result = []
    for spec in photos:
        spec = os.fspath(spec)
        if spec in _PHOTO_SETS:
            result += [_Photo(name, functools.partial(load_skimage_sample, name))
                       for name in _PHOTO_SETS[spec]]
        elif spec.startswith("skimage:"):
            name = spec.split(":", 1)[1]
            load_skimage_sample(name)  # validates the name
            result.append(_Photo(name, functools.partial(load_skimage_sample, name)))
        elif os.path.isdir(spec):
            files = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                           if kio.is_image_file(os.path.join(spec, f)))
            if not files:
                raise ValueError(f"{spec}: no PNG, JPEG, TIFF or BMP photos in this folder.")
            result += [_Photo(f, functools.partial(_load_file, f, max_side)) for f in files]
        elif os.path.isfile(spec):
            result.append(_Photo(spec, functools.partial(_load_file, spec, max_side)))
        else:
            raise ValueError(
                f"{spec}: not a folder, an image file, 'skimage-train' or 'skimage-heldout'.")
    return result


class _PhotoCache:
    """A small thread-safe LRU cache of decoded photos."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, photo: _Photo):
        with self._lock:
            if photo.name in self._items:
                self._items.move_to_end(photo.name)
                return self._items[photo.name]
        value = photo.load()
        with self._lock:
            self._items[photo.name] = value
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return value


def _random_window(image: np.ndarray, depth: Optional[np.ndarray], height: int, width: int,
                   rng: np.random.Generator):
    """A random height x width window (symmetric padding when the image is smaller)."""
    pad_y = max(0, height - image.shape[0])
    pad_x = max(0, width - image.shape[1])
    if pad_y or pad_x:
        pads = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2))
        image = np.pad(image, pads + ((0, 0),), mode="symmetric")
        depth = None if depth is None else np.pad(depth, pads, mode="symmetric")
    y = int(rng.integers(0, image.shape[0] - height + 1))
    x = int(rng.integers(0, image.shape[1] - width + 1))
    image = image[y:y + height, x:x + width]
    depth = None if depth is None else depth[y:y + height, x:x + width]
    return image, depth


def _scaled_window(image: np.ndarray, depth: Optional[np.ndarray], height: int, width: int,
                   photo_scale: tuple[float, float], rng: np.random.Generator):
    """A random window magnified by a factor drawn from ``photo_scale``, resampled to
    height x width (anti-aliased when shrinking; depth bilinear)."""
    if tuple(photo_scale) == (1.0, 1.0):  # no draw: the default stream is unchanged
        return _random_window(image, depth, height, width, rng)
    from skimage.transform import resize

    magnification = float(rng.uniform(*photo_scale))
    source_h = max(1, int(round(height / magnification)))
    source_w = max(1, int(round(width / magnification)))
    image, depth = _random_window(image, depth, source_h, source_w, rng)
    if (source_h, source_w) != (height, width):
        image = resize(image, (height, width, 3), order=1, anti_aliasing=magnification < 1.0,
                       preserve_range=True).astype(np.float32)
        image = np.clip(image, 0.0, 1.0)
        if depth is not None:
            depth = resize(depth, (height, width), order=1, anti_aliasing=False,
                           preserve_range=True).astype(np.float32)
    return image, depth


#: Rec. 709 luma weights, for desaturating toward gray.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def jitter_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random recolouring of an sRGB HWC image in [0, 1] (float32 in [0, 1] out).

    Shuffles the channels, scales the saturation by a factor in [0, 1.5] (0: gray;
    gray images stay gray) and applies a tone curve x ** g with g in [2/3, 3/2].
    Edges stay where they are, so the defocus rendered from the result is as valid
    as from the original.
    """
    image = np.asarray(image, np.float32)[..., rng.permutation(3)]
    gray = (image @ _LUMA)[..., None]
    image = np.clip(gray + np.float32(rng.uniform(0.0, 1.5)) * (image - gray), 0.0, 1.0)
    return (image ** np.float32(np.exp(rng.uniform(np.log(2 / 3), np.log(1.5))))).astype(np.float32)


def _augment(image: np.ndarray, depth: Optional[np.ndarray], rng: np.random.Generator):
    """Random horizontal flip (depth follows). Vertical flips would put skies below."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
        depth = None if depth is None else depth[:, ::-1]
    return image, depth


# --------------------------------------------------------------------------- #
# The pair generator
# --------------------------------------------------------------------------- #
def _as_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = (int(v) for v in size)
    return height, width


class SyntheticDefocusSource:
    """An infinite, seeded stream of synthetic (blurred, sharp) pairs.

    Pair ``i`` depends only on ``(seed, i)``, so any index can be regenerated
    and parallel readers produce the same data.

    Args:
      crop_size: output size, int or (height, width).
      photos: photo sources: "skimage-train", "skimage-heldout",
        "skimage:<name>", folders or image files (a list mixes them); None for
        dead-leaves scenes only.
      dead_leaves_fraction: share of pairs rendered from dead-leaves scenes
        (forced to 1 when there are no photos).
      config: random ranges, see :class:`SyntheticConfig`.
      seed: stream seed.
      crops_per_photo: consecutive indices that share one photo (large folders
        decode fewer files); default 1 when every photo fits the cache, else 8.
      cache_size: decoded photos kept in memory.
      max_photo_side: user photos larger than this are downscaled on load (so a
        crop shows a scene, not a texture); None keeps the full size.
    """

    def __init__(self, crop_size=256, *, photos="skimage-train",
                 dead_leaves_fraction: float = 0.5, config: Optional[SyntheticConfig] = None,
                 seed: int = 0, crops_per_photo: Optional[int] = None, cache_size: int = 32,
                 max_photo_side: Optional[int] = 1680):
        self.height, self.width = _as_size(crop_size)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}.")
        self.config = config or SyntheticConfig()
        self.seed = int(seed)
        self.photos = _resolve_photos(photos, max_photo_side)
        self.dead_leaves_fraction = 1.0 if not self.photos else float(dead_leaves_fraction)
        if not 0.0 <= self.dead_leaves_fraction <= 1.0:
            raise ValueError("dead_leaves_fraction must be in [0, 1].")
        self._cache = _PhotoCache(cache_size)
        if crops_per_photo is None:
            crops_per_photo = 1 if len(self.photos) <= cache_size else 8
        self.crops_per_photo = max(1, int(crops_per_photo))

    def __iter__(self) -> Iterator[DefocusPair]:
        index = 0
        while True:
            yield self.pair(index)
            index += 1

    def pair(self, index: int, size=None, photo: Optional[int] = None,
             dead_leaves: Optional[bool] = None) -> DefocusPair:
        """Pair number ``index`` (deterministic).

        Args:
          index: non-negative pair index.
          size: output size override (int or (height, width)); ``"full"``
            renders whole photos (dead-leaves scenes are then 512x512).
          photo: force this photo (index into ``self.photos``).
          dead_leaves: True forces a dead-leaves scene, False a photo; None
            draws with ``dead_leaves_fraction``.
        """
        index = int(index)
        if index < 0:
            raise ValueError(f"pair index must be >= 0, got {index}.")
        rng = np.random.default_rng([self.seed, index])
        draw = rng.random()
        if dead_leaves is None:
            dead_leaves = photo is None and (not self.photos
                                             or draw < self.dead_leaves_fraction)
        if not dead_leaves and not self.photos:
            raise ValueError("this source has no photos; pass photos=... to use them.")
        if not dead_leaves:
            if photo is None:
                block = np.random.default_rng([self.seed, index // self.crops_per_photo, 7])
                photo = int(block.integers(len(self.photos)))
            return self._photo_pair(rng, self.photos[photo], size)
        return self._dead_leaves_pair(rng, size)

    # -- sampling helpers --------------------------------------------------- #
    def _common(self, rng: np.random.Generator) -> dict:
        c = self.config
        params = {
            "max_radius": float(rng.uniform(*c.max_radius)),
            "gaussian_mix": float(rng.uniform(*c.gaussian_mix)),
            "highlight_gain": float(rng.uniform(*c.highlight_gain)),
            "noise_sigma": float(rng.uniform(*c.noise_sigma)),
        }
        # Drawn only when enabled, so the default stream stays what it always was.
        if c.sharp_probability > 0.0 and rng.random() < c.sharp_probability:
            params["max_radius"] = 0.0
        return params

    def _base_blur(self, rng: np.random.Generator) -> float:
        """Sigma of this pair's in-focus softness (drawn only when enabled)."""
        low, high = self.config.base_blur
        return float(rng.uniform(low, high)) if high > 0.0 else 0.0

    def _focus(self, rng: np.random.Generator, depth: np.ndarray) -> float:
        if rng.random() < self.config.in_focus_probability:
            y = int(rng.integers(depth.shape[0]))
            x = int(rng.integers(depth.shape[1]))
            return float(depth[y, x])
        return float(rng.uniform(0.0, 1.0))

    def _photo_pair(self, rng: np.random.Generator, photo: _Photo, size) -> DefocusPair:
        params = self._common(rng)
        image, depth = self._cache.get(photo)
        full = isinstance(size, str) and size == "full"
        if full:
            height, width = image.shape[:2]
        else:
            height, width = _as_size(size) if size is not None else (self.height, self.width)
        margin = pick_margin(height, width, int(math.ceil(params["max_radius"])) + 2)
        my = mx = margin
        if full:
            pads = ((my, my), (mx, mx))
            image = np.pad(image, pads + ((0, 0),), mode="symmetric")
            depth = None if depth is None else np.pad(depth, pads, mode="symmetric")
        else:
            image, depth = _scaled_window(image, depth, height + 2 * my, width + 2 * mx,
                                          self.config.photo_scale, rng)
            image, depth = _augment(image, depth, rng)
            # Drawn only when enabled, so the default stream stays what it always was.
            if self.config.photo_colour > 0.0 and rng.random() < self.config.photo_colour:
                image = jitter_colour(image, rng)
        softness = self._base_blur(rng)
        if softness > 0.0:
            image = linear_to_srgb(_soften(srgb_to_linear(image), softness, channel_axis=2))
        model = "real"
        if depth is None:
            depth, model = random_depth(image.shape[0], image.shape[1], rng,
                                        self.config.depth_models)
        focus = self._focus(rng, depth[my:my + height, mx:mx + width])
        pair = render_defocus_pair(
            np.ascontiguousarray(image), np.ascontiguousarray(depth), focus=focus,
            margin=margin, radius_step=self.config.radius_step,
            max_layers=self.config.max_layers,
            highlight_threshold=self.config.highlight_threshold, rng=rng, **params)
        pair.info.update(source=os.path.basename(photo.name), depth_model=model,
                         base_blur=softness)
        return pair

    def _dead_leaves_pair(self, rng: np.random.Generator, size) -> DefocusPair:
        c = self.config
        params = self._common(rng)
        if size is None:
            height, width = self.height, self.width
        elif isinstance(size, str):
            height, width = 512, 512
        else:
            height, width = _as_size(size)
        my = mx = pick_margin(height, width, int(math.ceil(params["max_radius"])) + 2)
        num_layers = int(rng.integers(c.dead_leaves_layers[0], c.dead_leaves_layers[1] + 1))
        # Clipped highlights of a dead-leaves scene are its light sources: they get
        # the highlight gain directly (linear value > 1, clipped in the sharp image).
        scene = _dl.dead_leaves_layers(height + 2 * my, width + 2 * mx, rng,
                                       num_layers=num_layers,
                                       light_gain=max(1.0, params["highlight_gain"]))
        depths = scene.depths
        if rng.random() < c.in_focus_probability:
            focus = float(depths[int(rng.integers(len(depths)))])
        else:
            focus = float(rng.uniform(0.0, 1.0))
        span = float(np.max(np.abs(depths - focus)))
        scale = params["max_radius"] / span if span > 1e-6 else 0.0
        radii = [float(abs(d - focus) * scale) for d in depths]
        rgba = scene.rgba
        blurred_lin, sharp_lin = render_layers(rgba, radii, params["gaussian_mix"])
        softness = self._base_blur(rng)
        if softness > 0.0:  # the camera's softness acts on the final image, focused or not
            blurred_lin = _soften(blurred_lin, softness, channel_axis=0)
            sharp_lin = _soften(sharp_lin, softness, channel_axis=0)
        crop = (slice(my, my + height), slice(mx, mx + width))
        blurred = linear_to_srgb(blurred_lin[(slice(None),) + crop].transpose(1, 2, 0))
        sharp = linear_to_srgb(sharp_lin[(slice(None),) + crop].transpose(1, 2, 0))
        radius = np.asarray(radii, np.float32)[scene.visible_layer()[crop]]
        blurred = _add_noise(blurred, params["noise_sigma"], rng)
        info = {"source": "dead_leaves", "depth_model": "dead_leaves", "focus": focus,
                "layers": num_layers, "base_blur": softness, **params}
        return DefocusPair(blurred=blurred, sharp=np.ascontiguousarray(sharp), radius=radius,
                           mean_radius=float(radius.mean()), info=info)


# --------------------------------------------------------------------------- #
# tf.data and files
# --------------------------------------------------------------------------- #
def make_synthetic_dataset(crop_size=256, *, photos="skimage-train",
                           dead_leaves_fraction: float = 0.5,
                           config: Optional[SyntheticConfig] = None, seed: int = 0,
                           length: Optional[int] = None, start_index: int = 0,
                           with_radius: bool = False, num_parallel_calls: Optional[int] = None,
                           source: Optional[SyntheticDefocusSource] = None):
    """A ``tf.data.Dataset`` of synthetic (blurred, sharp) float32 HxWx3 pairs in [0, 1].

    Element ``i`` is pair ``start_index + i`` of a :class:`SyntheticDefocusSource`,
    so the dataset is reproducible for a seed whatever the parallelism.

    Args:
      crop_size: int or (height, width).
      photos, dead_leaves_fraction, config, seed: see :class:`SyntheticDefocusSource`.
      length: number of pairs, or None for an infinite dataset.
      start_index: first pair index (e.g. to skip pairs already used).
      with_radius: also yield the HxW radius map (float32, pixels) as a third item.
      num_parallel_calls: map parallelism (default ``tf.data.AUTOTUNE``).
      source: use this source instead of building one from the other arguments.
    """
    import tensorflow as tf

    if source is None:
        source = SyntheticDefocusSource(crop_size, photos=photos,
                                        dead_leaves_fraction=dead_leaves_fraction,
                                        config=config, seed=seed)
    height, width = source.height, source.width
    if length is None:
        indices = tf.data.Dataset.counter(start=start_index, dtype=tf.int64)
    else:
        indices = tf.data.Dataset.range(start_index, start_index + int(length))

    def _make(index):
        pair = source.pair(int(index))
        if with_radius:
            return pair.blurred, pair.sharp, pair.radius
        return pair.blurred, pair.sharp

    def _map(index):
        types = [tf.float32] * (3 if with_radius else 2)
        outputs = tf.numpy_function(_make, [index], types, stateful=False)
        outputs[0].set_shape([height, width, 3])
        outputs[1].set_shape([height, width, 3])
        if with_radius:
            outputs[2].set_shape([height, width])
        return tuple(outputs)

    return indices.map(_map, num_parallel_calls=num_parallel_calls or tf.data.AUTOTUNE,
                       deterministic=True)


#: Radius maps are stored as 16-bit gray PNGs: radius_px = value * RADIUS_PNG_SCALE.
RADIUS_PNG_SCALE = 0.001


def write_dpdd_layout(out_dir, count: int, split: str = "test", *,
                      photos="skimage-heldout", dead_leaves_fraction: float = 0.0,
                      size=None, bit_depth: int = 16, seed: int = 2021,
                      config: Optional[SyntheticConfig] = None,
                      save_radius: bool = True) -> dict:
    """Writes synthetic pairs in the DPDD folder layout.

    Files: ``{out_dir}/{split}_c/source/synth_NNNN.png`` (blurred input),
    ``{split}_c/target/synth_NNNN.png`` (sharp target), optionally
    ``{split}_c/radius/synth_NNNN.png`` (16-bit gray, radius in pixels =
    value * 0.001, see :func:`read_radius_map`) and ``{split}_c/synthetic.json``
    with per-image metadata (source, mean radius, focus, noise, ...).

    Args:
      out_dir: dataset root (created if missing).
      count: number of pairs.
      split: "train", "val" or "test" (any name works).
      photos: photo sources (see :class:`SyntheticDefocusSource`); photo pairs
        cycle through the photos in order.
      dead_leaves_fraction: share of dead-leaves pairs.
      size: None renders whole photos (dead-leaves scenes are 512x512); an int
        or (height, width) takes random crops of that size.
      bit_depth: 16 (like DPDD) or 8.
      seed: generator seed.
      config: random ranges.
      save_radius: also write the oracle radius maps.

    Returns:
      The metadata dictionary written to ``synthetic.json``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}.")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}.")
    source = SyntheticDefocusSource(size if size is not None else 256, photos=photos,
                                    dead_leaves_fraction=dead_leaves_fraction,
                                    config=config, seed=seed)
    root = os.path.join(os.fspath(out_dir), f"{split}_c")
    folders = {"source": os.path.join(root, "source"), "target": os.path.join(root, "target")}
    if save_radius:
        folders["radius"] = os.path.join(root, "radius")
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    choose = np.random.default_rng([seed, 99])
    images = {}
    photo_counter = 0
    for i in range(count):
        use_leaves = not source.photos or choose.random() < source.dead_leaves_fraction
        photo = None
        if not use_leaves:
            photo = photo_counter % len(source.photos)
            photo_counter += 1
        pair = source.pair(i, size=size if size is not None else "full", photo=photo,
                           dead_leaves=use_leaves)
        name = f"synth_{i:04d}.png"
        kio.write_image(os.path.join(folders["source"], name), pair.blurred, bit_depth=bit_depth)
        kio.write_image(os.path.join(folders["target"], name), pair.sharp, bit_depth=bit_depth)
        if save_radius:
            encoded = np.clip(pair.radius / RADIUS_PNG_SCALE / 65535.0, 0.0, 1.0)
            kio.write_image(os.path.join(folders["radius"], name), encoded, bit_depth=16,
                            grayscale=True)
        images[name] = {k: v for k, v in pair.info.items()}
        images[name].update(mean_radius=pair.mean_radius,
                            height=int(pair.sharp.shape[0]), width=int(pair.sharp.shape[1]))
        logging.info("synthetic %s %d/%d: %s, mean radius %.2f px", split, i + 1, count,
                     images[name]["source"], pair.mean_radius)
    metadata = {"generator": "kpac_tf.data.synthetic", "split": split, "seed": seed,
                "bit_depth": bit_depth, "radius_png_scale": RADIUS_PNG_SCALE,
                "config": dataclasses.asdict(source.config), "images": images}
    tmp = os.path.join(root, ".synthetic.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(root, "synthetic.json"))
    return metadata


def read_radius_map(path) -> np.ndarray:
    """Reads a radius map written by :func:`write_dpdd_layout`: float32 HxW, pixels."""
    data = kio.read_image(path)
    return (data.rgb[:, :, 0] * np.float32(65535.0 * RADIUS_PNG_SCALE)).astype(np.float32)
