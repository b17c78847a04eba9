"""Classical baselines for synthetic defocus data where the true blur is known.

Every baseline is a callable ``(blurred, info) -> restored``: ``blurred`` is a float
HWC image in [0, 1], ``info`` a mapping with the oracle blur of that image:

- ``"mean_radius"``: the mean disc radius in pixels (float);
- ``"radius_map"``: per-pixel disc radius in pixels, [H, W] or [H, W, 1] (the sign,
  if any, is ignored: front and back focus blur alike);
- optionally ``"gaussian_mix"``: the Gaussian share of the synthetic PSF (see
  :func:`kpac_tf.data.render.disc_psf`), 0 if absent;
- optionally ``"noise_sigma"``: the std of the noise added to the blurred image
  ([0,1] sRGB units); the Wiener-based baselines then use a regularisation weight of
  at least this value (the best weight grew about like it in our tests).

The result is float32 HWC in [0, 1]. The baselines are:

- ``identity``: the blurred input itself (the "input" row of a table);
- ``wiener``: Wiener deconvolution (``skimage.restoration.wiener``, Laplacian
  regulariser) with the oracle disc of the mean radius;
- ``rl``: Richardson-Lucy (``skimage.restoration.richardson_lucy``) with that disc;
- ``two_step``: the classic two-step approach with an oracle defocus map: the image is
  deconvolved (Wiener) with a ladder of radii spanning the map, and each pixel takes
  the linear blend of the two results whose radii bracket its oracle radius (see
  :class:`TwoStep`).

Boundaries: the image is mirror-padded by two kernel widths (plus 8 pixels) and
cropped back afterwards. For the FFT-based Wiener filter, which treats the image as
periodic, the padding band is also cross-faded into its circular blur by the PSF (an
"edge taper"), so the wrap-around seam does not ring into the image. Channels are
deconvolved independently.

The PSF is the synthetic generator's (:func:`kpac_tf.data.render.disc_psf` with the
image's ``gaussian_mix``) unless a ``psf_fn(radius) -> 2-D kernel summing to 1`` is
passed, so the oracle kernel is exactly the one the data were rendered with. The
generator blurs in linear light, so by default the baselines deconvolve in linear
light too (sRGB decoded before, encoded after; ``linear_light=False`` works on the
sRGB values directly).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.signal import fftconvolve
from skimage import restoration

from kpac_tf.images.colour import linear_to_srgb, srgb_to_linear

__all__ = [
    "Baseline",
    "PSFFunction",
    "BASELINE_NAMES",
    "identity",
    "Wiener",
    "RichardsonLucy",
    "TwoStep",
    "get_baseline",
    "default_psf",
]

Baseline = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]
PSFFunction = Callable[[float], np.ndarray]

BASELINE_NAMES = ("identity", "wiener", "rl", "two_step")
_MIN_RADIUS = 0.5  # below this a disc covers one pixel: no deconvolution


def default_psf(radius: float, gaussian_mix: float = 0.0) -> np.ndarray:
    """The synthetic generator's anti-aliased disc PSF of ``radius`` pixels (sum 1)."""
    from kpac_tf.data.render import disc_psf  # imported lazily: only needed for the default

    return np.asarray(disc_psf(radius, gaussian_mix=gaussian_mix), np.float64)


class _Deconvolver:
    """Shared set-up: the PSF for an image and the working colour space."""

    def __init__(self, psf_fn: PSFFunction | None, linear_light: bool):
        self.psf_fn = psf_fn
        self.linear_light = bool(linear_light)

    def psf(self, radius: float, info: Mapping[str, Any] | None = None) -> np.ndarray:
        if self.psf_fn is not None:
            return np.asarray(self.psf_fn(radius), np.float64)
        mix = float((info or {}).get("gaussian_mix", 0.0) or 0.0)
        return default_psf(radius, mix)

    def to_working(self, img: np.ndarray) -> np.ndarray:
        if not self.linear_light:
            return img
        return srgb_to_linear(img).astype(np.float64)

    def from_working(self, img: np.ndarray) -> np.ndarray:
        if not self.linear_light:
            return img
        return linear_to_srgb(img).astype(np.float64)

    def deconvolve(self, img: np.ndarray, radius: float,
                   info: Mapping[str, Any] | None = None) -> np.ndarray:
        """Deconvolve float64 HWC ``img`` (working space) with the disc of ``radius``."""
        raise NotImplementedError

    def __call__(self, blurred: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        """Restore ``blurred`` (HWC [0,1]) with the oracle disc of the mean radius."""
        img = self.to_working(_check_image(blurred))
        out = self.deconvolve(img, _mean_radius(info), info)
        return _to_output(self.from_working(out))


def _check_image(blurred: np.ndarray) -> np.ndarray:
    img = np.asarray(blurred)
    if img.ndim != 3:
        raise ValueError(f"Baselines take HWC images, got shape {img.shape}.")
    if not np.issubdtype(img.dtype, np.floating):
        raise TypeError(f"Baselines take float images in [0,1], got dtype {img.dtype}.")
    return np.clip(img.astype(np.float64), 0.0, 1.0)


def _mean_radius(info: Mapping[str, Any]) -> float:
    if "mean_radius" in info and info["mean_radius"] is not None:
        return abs(float(info["mean_radius"]))
    if info.get("radius_map") is not None:
        return float(np.mean(np.abs(info["radius_map"])))
    raise KeyError("This baseline needs the oracle blur: info must hold 'mean_radius' "
                   "or 'radius_map'.")


def _pad_width(psf: np.ndarray) -> int:
    return 2 * max(psf.shape) + 8


def _circular_otf(psf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """rfft2 of ``psf`` placed on a ``shape`` grid with its centre at the origin."""
    kh, kw = psf.shape
    grid = np.zeros(shape)
    grid[:kh, :kw] = psf
    grid = np.roll(grid, (-(kh // 2), -(kw // 2)), axis=(0, 1))
    return np.fft.rfft2(grid)


def _edge_taper(padded: np.ndarray, psf: np.ndarray, width: int) -> np.ndarray:
    """Cross-fade the outer ``width`` pixels of a 2-D image into its circular blur.

    Near the array's edges the result is the image circularly convolved with the PSF,
    which is exactly what a periodic deconvolution assumes, so the wrap-around seam no
    longer rings into the interior. The inner part (the real image) is untouched.
    """
    h, w = padded.shape

    def ramp(n: int) -> np.ndarray:
        a = np.ones(n)
        t = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width) + 0.5) / width)
        a[:width], a[-width:] = t, t[::-1]
        return a

    alpha = ramp(h)[:, None] * ramp(w)[None, :]
    blurred = np.fft.irfft2(np.fft.rfft2(padded) * _circular_otf(psf, (h, w)), s=(h, w))
    return alpha * padded + (1.0 - alpha) * blurred


def _deconvolve(img: np.ndarray, psf: np.ndarray,
                per_channel: Callable[[np.ndarray, np.ndarray], np.ndarray],
                taper: bool) -> np.ndarray:
    """Mirror-pad, deconvolve each channel of HWC ``img`` with ``psf``, crop back.

    ``taper`` cross-fades the padding into its circular blur first (for FFT methods).
    """
    p = _pad_width(psf)
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="symmetric")
    channels = []
    for c in range(img.shape[2]):
        ch = padded[:, :, c]
        if taper:
            ch = _edge_taper(ch, psf, p)
        channels.append(per_channel(ch, psf))
    return np.stack(channels, axis=-1)[p:-p, p:-p]


def _to_output(img: np.ndarray) -> np.ndarray:
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def identity(blurred: np.ndarray, info: Mapping[str, Any] | None = None) -> np.ndarray:
    """The blurred input, clipped to [0, 1] (float32 HWC)."""
    return _to_output(_check_image(blurred))


class Wiener(_Deconvolver):
    """Wiener deconvolution with the oracle disc of the mean radius.

    Args:
      balance: regularisation weight of skimage's Wiener filter (Laplacian prior);
        larger is smoother. The default (0.001) is a compromise for uniform disc blur
        of radius 2-8 px on 8-bit, noise-free synthetic pairs (within 1 dB PSNR of
        the best of 0.0003-0.03 on two test photos); raise it for noisy inputs.
      psf_fn: radius (pixels) -> 2-D kernel summing to 1; default the generator's PSF.
      linear_light: deconvolve in linear light (the generator blurs there).
    """

    def __init__(self, balance: float = 0.001, psf_fn: PSFFunction | None = None,
                 linear_light: bool = True):
        super().__init__(psf_fn, linear_light)
        self.balance = float(balance)

    def balance_for(self, info: Mapping[str, Any] | None) -> float:
        """The regularisation weight for an image: at least its noise sigma, if known."""
        sigma = float((info or {}).get("noise_sigma", 0.0) or 0.0)
        return max(self.balance, sigma)

    def deconvolve(self, img: np.ndarray, radius: float,
                   info: Mapping[str, Any] | None = None) -> np.ndarray:
        """Deconvolve float64 HWC ``img`` (working space) with the disc of ``radius``."""
        if radius < _MIN_RADIUS:
            return img
        balance = self.balance_for(info)
        return _deconvolve(img, self.psf(radius, info), lambda ch, k: restoration.wiener(
            ch, k, balance, clip=False), taper=True)


class RichardsonLucy(_Deconvolver):
    """Richardson-Lucy deconvolution with the oracle disc of the mean radius.

    Args:
      num_iter: iterations (more sharpens more and amplifies noise).
      psf_fn: radius (pixels) -> 2-D kernel summing to 1; default the generator's PSF.
      linear_light: deconvolve in linear light (the generator blurs there).
    """

    def __init__(self, num_iter: int = 30, psf_fn: PSFFunction | None = None,
                 linear_light: bool = True):
        super().__init__(psf_fn, linear_light)
        self.num_iter = int(num_iter)

    def deconvolve(self, img: np.ndarray, radius: float,
                   info: Mapping[str, Any] | None = None) -> np.ndarray:
        """Deconvolve float64 HWC ``img`` (working space) with the disc of ``radius``."""
        if radius < _MIN_RADIUS:
            return img
        return _deconvolve(img, self.psf(radius, info), lambda ch, k: restoration.richardson_lucy(
            ch, k, num_iter=self.num_iter, clip=False), taper=False)


class TwoStep:
    """Spatially varying non-blind deconvolution with the oracle defocus map.

    The image is Wiener-deconvolved with radii ``r_0 < r_1 < ...`` spaced at most
    ``radius_step`` apart over the range of the map (radius 0 is the input itself);
    a pixel with oracle radius r in [r_i, r_i+1] gets the linear blend of those two
    results. Before deconvolving at r_i, pixels sharper than r_i-1 (whose result at
    this level is not used) are blurred by the r_i disc, feathered over one disc width,
    so that their fine detail does not ring across the image. With a constant map this
    is :class:`Wiener` at that radius.

    Args:
      radius_step: largest spacing of the radius ladder, pixels.
      max_levels: cap on the number of deconvolutions per image.
      balance: as for :class:`Wiener`; the default (0.005) is larger because blur
        discontinuities at depth edges fit no single disc and ring otherwise (on
        slanted and layered synthetic scenes 0.003-0.01 scored best).
      psf_fn, linear_light: as for :class:`Wiener`.
    """

    def __init__(self, radius_step: float = 0.5, max_levels: int = 16, balance: float = 0.005,
                 psf_fn: PSFFunction | None = None, linear_light: bool = True):
        if radius_step <= 0 or max_levels < 2:
            raise ValueError("radius_step must be positive and max_levels at least 2.")
        self.radius_step = float(radius_step)
        self.max_levels = int(max_levels)
        self.wiener = Wiener(balance=balance, psf_fn=psf_fn, linear_light=linear_light)

    def ladder(self, radius_map: np.ndarray) -> np.ndarray:
        """The radii used for a map: evenly spaced from its minimum to its maximum."""
        lo, hi = float(radius_map.min()), float(radius_map.max())
        if hi - lo < 1e-6:
            return np.array([lo])
        n = min(self.max_levels, max(2, math.ceil((hi - lo) / self.radius_step) + 1))
        return np.linspace(lo, hi, n)

    def __call__(self, blurred: np.ndarray, info: Mapping[str, Any]) -> np.ndarray:
        w = self.wiener
        img = w.to_working(_check_image(blurred))
        rmap = info.get("radius_map")
        if rmap is None:
            return _to_output(w.from_working(w.deconvolve(img, _mean_radius(info), info)))
        rmap = np.abs(np.asarray(rmap, np.float64))
        if rmap.ndim == 3:
            rmap = rmap[..., 0]
        if rmap.shape != img.shape[:2]:
            raise ValueError(f"radius_map shape {rmap.shape} does not match the image "
                             f"{img.shape[:2]}.")
        radii = self.ladder(rmap)
        if len(radii) == 1:
            return _to_output(w.from_working(w.deconvolve(img, float(radii[0]), info)))
        results = []
        for i, r in enumerate(radii):
            # Pixels sharper than this level's support would ring when deconvolved with
            # the larger disc: blur them by that disc first (their result is not used).
            lo = radii[i - 1] if i > 0 else -np.inf
            sharper = rmap < lo
            level_input = img
            if r >= _MIN_RADIUS and sharper.any():
                psf = w.psf(float(r), info)
                weight = _feather(sharper, psf)[..., None]
                level_input = (1 - weight) * img + weight * _convolve(img, psf)
            results.append(w.deconvolve(level_input, float(r), info))
        return _to_output(w.from_working(_blend(results, radii, rmap)))


def _convolve(img: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``img`` (HWC) convolved with ``psf``, mirror boundaries."""
    p = _pad_width(psf)
    padded = np.pad(img, ((p, p), (p, p), (0, 0)), mode="symmetric")
    out = np.stack([fftconvolve(padded[:, :, c], psf, mode="same")
                    for c in range(img.shape[2])], axis=-1)
    return out[p:-p, p:-p]


def _feather(mask: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Weights in [0, 1]: 1 on a boolean [H, W] mask, fading out over one PSF width."""
    p = _pad_width(psf)
    padded = np.pad(mask.astype(np.float64), p, mode="symmetric")
    soft = fftconvolve(padded, psf, mode="same")[p:-p, p:-p]
    return np.where(mask, 1.0, np.clip(soft, 0.0, 1.0))


def _blend(results: Sequence[np.ndarray], radii: np.ndarray, rmap: np.ndarray) -> np.ndarray:
    """Per pixel, interpolate linearly between the results of the bracketing radii."""
    if len(radii) == 1:
        return results[0]
    idx = np.clip(np.searchsorted(radii, rmap, side="right") - 1, 0, len(radii) - 2)
    t = np.clip((rmap - radii[idx]) / (radii[idx + 1] - radii[idx]), 0.0, 1.0)[..., None]
    out = np.zeros_like(results[0])
    for i in range(len(radii) - 1):
        sel = (idx == i)[..., None]
        out += np.where(sel, (1 - t) * results[i] + t * results[i + 1], 0.0)
    return out


def get_baseline(name: str, psf_fn: PSFFunction | None = None, **kwargs) -> Baseline:
    """A baseline by name ("identity", "wiener", "rl", "two_step"), keyword options passed on
    (e.g. ``balance``, ``num_iter``, ``linear_light``)."""
    if name == "identity":
        return identity
    if name == "wiener":
        return Wiener(psf_fn=psf_fn, **kwargs)
    if name == "rl":
        return RichardsonLucy(psf_fn=psf_fn, **kwargs)
    if name == "two_step":
        return TwoStep(psf_fn=psf_fn, **kwargs)
    raise ValueError(f"Unknown baseline {name!r}; choose one of {', '.join(BASELINE_NAMES)}.")
