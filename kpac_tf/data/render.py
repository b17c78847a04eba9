"""The layered thin-lens defocus renderer.

Depth is a float32 HxW map in [0, 1] (0 = near, 1 = far) that is linear in inverse
distance (like disparity). Under the thin-lens model the blur-circle radius is then
linear in depth (:func:`radius_from_depth`, the one radius law of the project)::

    radius(x) = max_radius * |depth(x) - focus| / max_y |depth(y) - focus|

so ``max_radius`` is the largest blur radius in the rendered area and the focus plane
(``depth == focus``) is sharp.

Rendering (:func:`render_defocus_pair`) follows the layered depth-of-field model: depth
is cut into fronto-parallel layers spaced at most ``radius_step`` pixels of blur apart
(aligned so the focus plane is a layer; pixels between two layers are split between
them linearly); each layer's premultiplied colour and alpha are convolved (FFT) with an
antialiased disc PSF, optionally mixed with a Gaussian, and the layers are composited
back to front with the "over" operator, so nearer layers occlude the blur of farther
ones, then normalised by the accumulated alpha. Everything happens in linear light;
clipped highlights are boosted before blurring so they bloom into bokeh discs. Gaussian
noise is added to the blurred image in sRGB.

Images are float32 HWC in [0, 1] (sRGB) unless a docstring says linear light or CHW.
NumPy and SciPy only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence, Union

import numpy as np
import scipy.fft

from kpac_tf.images.colour import linear_to_srgb, srgb_to_linear

__all__ = [
    "DefocusPair",
    "add_noise",
    "disc_psf",
    "pick_margin",
    "radius_from_depth",
    "radius_scale",
    "render_defocus",
    "render_defocus_pair",
    "render_layers",
    "soften",
]


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
# The radius law
# --------------------------------------------------------------------------- #
def radius_scale(depth: np.ndarray, focus: float, max_radius: float) -> float:
    """Blur radius in pixels per unit of ``|depth - focus|``: the thin-lens law scaled so
    that the depth farthest from the focal plane gets ``max_radius`` (0 when every
    depth lies on the focal plane or ``max_radius <= 0``)."""
    offset = np.abs(np.asarray(depth, np.float32) - np.float32(focus))
    span = float(offset.max()) if offset.size else 0.0
    return max_radius / span if span > 1e-6 and max_radius > 0 else 0.0


def radius_from_depth(depth: np.ndarray, focus: float, max_radius: float,
                      cap: Optional[float] = None) -> np.ndarray:
    """Thin-lens blur radius (pixels, float32, the shape of ``depth``) per depth value:
    linear in ``|depth - focus|``, ``max_radius`` at the depth farthest from the focal
    plane (:func:`radius_scale`), and at most ``cap`` when given."""
    offset = np.abs(np.asarray(depth, np.float32) - np.float32(focus))
    radius = offset * np.float32(radius_scale(depth, focus, max_radius))
    if cap is not None:
        radius = np.minimum(radius, np.float32(cap))
    return radius.astype(np.float32)


# --------------------------------------------------------------------------- #
# PSFs and FFT sizes
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


# --------------------------------------------------------------------------- #
# Compositing blurred layers
# --------------------------------------------------------------------------- #
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


def _blur_chunk(layers: dict, radii: list, shape: tuple[int, int], height: int, width: int,
                gaussian_mix: float) -> dict:
    """The blurred [4, H, W] of every layer in ``layers`` that needs blurring (FFT)."""
    blur = [k for k in layers if radii[k] >= 0.5 and layers[k][3].any()]
    if not blur:
        return {}
    # Sizes with large prime factors make the FFT several times slower.
    spectra = scipy.fft.rfft2(np.stack([layers[k] for k in blur]), s=shape, axes=(-2, -1))
    for n, k in enumerate(blur):
        spectra[n] *= _psf_spectrum(radii[k], gaussian_mix, shape)
    result = scipy.fft.irfft2(spectra, s=shape, axes=(-2, -1), overwrite_x=True)
    return {k: result[n, :, :height, :width] for n, k in enumerate(blur)}


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
        blurred = _blur_chunk(layers, radii, shape, height, width, gaussian_mix)
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


def _depth_layers(depth: np.ndarray, focus: float, scale: float, radius_step: float,
                  max_layers: int, radius_cap: float) -> tuple[np.ndarray, list[float]]:
    """Splits a depth map into layers with linear ("hat") weights.

    Layers sit at ``focus + j * spacing`` (so the focal plane is a layer); a
    pixel between two layers is shared between them linearly.

    Args:
      depth: HxW depth map.
      focus: focal-plane depth.
      scale: blur radius in pixels per unit of depth (:func:`radius_scale`).
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


# --------------------------------------------------------------------------- #
# A sharp image and its depth map -> a defocus pair
# --------------------------------------------------------------------------- #
def _with_margin(sharp: np.ndarray, depth: np.ndarray, margin, max_radius: float):
    """(sharp, depth, pad_y, pad_x): the inputs with their border (reflect-padded here
    when ``margin`` is None), and the border widths."""
    if margin is None:
        pad_y = pad_x = pick_margin(sharp.shape[0], sharp.shape[1],
                                    int(math.ceil(max_radius)) + 2)
        pads = ((pad_y, pad_y), (pad_x, pad_x))
        return (np.pad(sharp, pads + ((0, 0),), mode="symmetric"),
                np.pad(depth, pads, mode="symmetric"), pad_y, pad_x)
    pad_y, pad_x = (int(margin), int(margin)) if np.isscalar(margin) else map(int, margin)
    return sharp, depth, pad_y, pad_x


def _framed_inputs(sharp: np.ndarray, depth: np.ndarray, margin: Union[int, tuple[int, int], None],
                   max_radius: float) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice], float]:
    """Checked float32 inputs with their border (given or reflect-padded), the window of
    the kept area and the largest radius the border can feed (ValueError on bad shapes,
    a negative radius or a margin that does not fit)."""
    sharp = np.asarray(sharp, np.float32)
    depth = np.asarray(depth, np.float32)
    if sharp.ndim != 3 or sharp.shape[2] != 3 or depth.shape != sharp.shape[:2]:
        raise ValueError(
            f"sharp must be HxWx3 and depth HxW of the same size, got {sharp.shape} "
            f"and {depth.shape}.")
    if max_radius < 0:
        raise ValueError(f"max_radius must be >= 0, got {max_radius}.")
    sharp_in, depth_in, pad_y, pad_x = _with_margin(sharp, depth, margin, max_radius)
    # The radius law uses the depth range of the kept area; the border (which
    # only feeds blur into the kept area) may not exceed its own width.
    height, width = depth_in.shape[0] - 2 * pad_y, depth_in.shape[1] - 2 * pad_x
    if height < 1 or width < 1 or pad_y < 0 or pad_x < 0:
        raise ValueError(f"margin {margin} does not fit a {depth_in.shape} input.")
    window = (slice(pad_y, pad_y + height), slice(pad_x, pad_x + width))
    return sharp_in, depth_in, window, max(float(max_radius), min(pad_y, pad_x) - 1.0)


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
    sharp_in, depth_in, window, radius_cap = _framed_inputs(sharp, depth, margin, max_radius)
    kept = depth_in[window]
    weights, radii = _depth_layers(depth_in, focus, radius_scale(kept, focus, max_radius),
                                   radius_step, max_layers, radius_cap)
    radius = radius_from_depth(kept, focus, max_radius, cap=radius_cap)
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
    blurred = linear_to_srgb(blurred_lin[(slice(None),) + window].transpose(1, 2, 0))
    target = sharp_in[window]
    if highlight_gain > 1.0:
        # The hat weights sum to 1, so the in-focus composite is the boosted image;
        # the sharp target is the same bright scene, clipped.
        target = np.where(target >= highlight_threshold, linear_to_srgb(boosted[window]),
                          target)
    blurred = add_noise(blurred, noise_sigma, rng)
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


# --------------------------------------------------------------------------- #
# Camera softness and sensor noise
# --------------------------------------------------------------------------- #
def soften(image: np.ndarray, sigma: float, channel_axis: int) -> np.ndarray:
    """Gaussian blur of every channel (sigma in pixels), float32, edges reflected."""
    from scipy import ndimage

    sigmas = [sigma] * image.ndim
    sigmas[channel_axis] = 0.0
    return ndimage.gaussian_filter(np.asarray(image, np.float32), sigmas, mode="reflect")


def add_noise(image: np.ndarray, sigma: float, rng: Optional[np.random.Generator]
              ) -> np.ndarray:
    """``image`` (float32 in [0, 1]) plus Gaussian noise of std ``sigma``, clipped to [0, 1]."""
    image = np.ascontiguousarray(image, np.float32)
    if sigma > 0:
        rng = rng if rng is not None else np.random.default_rng()
        image = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(image, 0.0, 1.0)
