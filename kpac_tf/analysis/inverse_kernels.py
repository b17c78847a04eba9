"""Inverse-kernel mathematics behind KPAC (paper Sec. 3, supplementary B-E).

Everything here is plain NumPy/SciPy on single 2-D kernels and HW / HWC float
images (values nominally in [0, 1]; deblurred results may leave that range and are
never clipped here).

Conventions
-----------
* A kernel is a 2-D float array whose centre is the index ``(h // 2, w // 2)`` (the
  ``numpy.fft.fftshift`` convention); odd sizes are recommended.
* Blur kernels are normalised to sum 1. Every scaling operation preserves the sum
  ("normalised scaling": values are multiplied by ``1 / s**2`` when the support grows
  by ``s`` in each direction), so a scaled inverse kernel keeps its DC gain.
* :func:`wiener_inverse` implements Eq. 9,
  ``k_dag = F^-1( conj(F(k)) / (|F(k)|^2 + eps) )``, on an explicit support size.
* :func:`upsample_fourier` implements Eq. 8 (zero padding of the centred spectrum).
  With it Eq. 10 holds exactly: the Wiener inverse of the upsampled kernel equals the
  upsampled Wiener inverse (odd kernel sizes, same ``eps``).
* :func:`upsample_lanczos` is the spatial Lanczos resampling used in Sec. 3.2 and
  :func:`dilate` is the atrous (dilated) version of a kernel, which inserts zeros
  between taps and keeps the tap values.
* :func:`convolve` is a true 2-D convolution ('same' output size) computed with FFTs
  after padding the image by the kernel radius; ``boundary`` selects the padding
  (``'symmetric'`` mirror with the edge pixel repeated, ``'reflect'``, ``'edge'``,
  ``'constant'`` zeros, or ``'wrap'`` which makes it an exact circular convolution).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Sequence

import numpy as np
from scipy import ndimage, optimize, signal

from kpac_tf.evaluation.metrics import signal_psnr as psnr  # noqa: F401 - the Sec. 3 scripts score with it

_BOUNDARIES = ("symmetric", "reflect", "edge", "constant", "wrap")


# --------------------------------------------------------------------------- sizes


def odd_size(extent: float) -> int:
    """Smallest odd integer >= ``extent`` (at least 1)."""
    n = max(1, int(np.ceil(extent - 1e-9)))
    return n if n % 2 == 1 else n + 1


def scaled_size(base_size: int, scale: float) -> int:
    """Odd support that covers ``base_size`` taps stretched by ``scale``.

    A base support of ``n`` taps spans offsets ``[-(n-1)/2, (n-1)/2]``; after scaling
    the span is ``scale`` times larger. For integer ``scale`` this is
    ``scale * (n - 1) + 1``, the size of :func:`dilate` ``(kernel, scale)``.
    """
    half = int(np.floor(scale * (base_size - 1) / 2 + 1e-9))
    return 2 * half + 1


def center_pad(kernel: np.ndarray, size: int | Sequence[int]) -> np.ndarray:
    """Zero-pad (or centre-crop) a 2-D kernel to ``size`` keeping its centre index.

    Raises ValueError if cropping would drop non-zero taps.
    """
    kernel = np.asarray(kernel)
    out_shape = _pair(size)
    out = np.zeros(out_shape, dtype=kernel.dtype)
    src_slices, dst_slices = [], []
    for n_in, n_out in zip(kernel.shape, out_shape):
        c_in, c_out = n_in // 2, n_out // 2
        lo = min(c_in, c_out)
        hi = min(n_in - c_in, n_out - c_out)
        src_slices.append(slice(c_in - lo, c_in + hi))
        dst_slices.append(slice(c_out - lo, c_out + hi))
    kept = kernel[tuple(src_slices)]
    dropped = np.abs(kernel).sum() - np.abs(kept).sum()
    if dropped > 1e-12 * max(1.0, float(np.abs(kernel).sum())):
        raise ValueError(
            f"Support {out_shape} is smaller than the kernel's non-zero taps "
            f"(kernel {kernel.shape}); pass a larger size."
        )
    out[tuple(dst_slices)] = kept
    return out


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if np.isscalar(size):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


# --------------------------------------------------------------------- kernels


def disc_kernel(radius: float, scale: float = 1.0, size: int | None = None,
                supersample: int = 8) -> np.ndarray:
    """Anti-aliased uniform disc (defocus / circle-of-confusion) kernel, sum 1.

    Args:
      radius: disc radius in pixels at scale 1.
      scale: multiplies the radius (the blur "size" s of the paper).
      size: odd support; default the smallest odd size that holds the disc.
      supersample: sub-samples per pixel and axis used for the area coverage.
    """
    r = float(radius) * float(scale)
    if r <= 0:
        raise ValueError("The disc radius times the scale must be positive.")
    n = size if size is not None else odd_size(2 * r + 1)
    c = n // 2
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    offsets = np.arange(n) - c
    coords = (offsets[:, None] + sub[None, :]).reshape(-1)
    inside = (coords[:, None] ** 2 + coords[None, :] ** 2) <= r * r
    coverage = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    if coverage.sum() == 0:  # radius far below a pixel: a delta
        coverage[c, c] = 1.0
    return coverage / coverage.sum()


def gaussian_kernel(sigma: float, scale: float = 1.0, size: int | None = None) -> np.ndarray:
    """Sampled isotropic Gaussian kernel with std ``sigma * scale`` pixels, sum 1."""
    sd = float(sigma) * float(scale)
    if sd <= 0:
        raise ValueError("The Gaussian sigma times the scale must be positive.")
    n = size if size is not None else odd_size(2 * np.ceil(4 * sd) + 1)  # +-4 sigma
    x = np.arange(n) - n // 2
    g = np.exp(-0.5 * (x / sd) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def make_kernel(kind: str, scale: float = 1.0, base: float = 2.0,
                size: int | None = None) -> np.ndarray:
    """Blur kernel of ``kind`` 'disc' (radius ``base``) or 'gaussian' (sigma ``base``)
    at ``scale``; sum 1."""
    if kind == "disc":
        return disc_kernel(base, scale, size)
    if kind == "gaussian":
        return gaussian_kernel(base, scale, size)
    raise ValueError(f"Unknown kernel kind {kind!r}; use 'disc' or 'gaussian'.")


def normalize_kernel(kernel: np.ndarray) -> np.ndarray:
    """Return ``kernel / kernel.sum()`` (float64); raises if the sum is ~0."""
    kernel = np.asarray(kernel, dtype=np.float64)
    total = kernel.sum()
    if abs(total) < 1e-12:
        raise ValueError("The kernel sums to zero; a blur kernel must have a positive sum.")
    return kernel / total


# -------------------------------------------------------------- Wiener inverse


def wiener_inverse(kernel: np.ndarray, eps: float = 1e-2,
                   size: int | Sequence[int] | None = None) -> np.ndarray:
    """Wiener inverse kernel (Eq. 9) on a ``size`` support (default: the kernel's).

    The kernel is zero-padded (centred) to ``size``, transformed with a DFT of that
    size, inverted as ``conj(K) / (|K|^2 + eps)`` and transformed back, so the result
    is the inverse of the kernel for *circular* convolution on that support (its tails
    wrap around when the support is too small). Returns a real (size, size) kernel
    centred like the input.
    """
    if eps < 0:
        raise ValueError("eps must be >= 0.")
    kernel = np.asarray(kernel, dtype=np.float64)
    if size is not None:
        kernel = center_pad(kernel, size)
    spectrum = np.fft.fft2(np.fft.ifftshift(kernel))
    power = np.abs(spectrum) ** 2
    if eps == 0 and np.min(power) == 0:
        raise ValueError("The kernel's spectrum has zeros; use eps > 0.")
    inverse = np.conj(spectrum) / (power + eps)
    return np.fft.fftshift(np.real(np.fft.ifft2(inverse)))


# -------------------------------------------------------------------- scaling


def _fourier_resize_axis(spec: np.ndarray, new_n: int, axis: int) -> np.ndarray:
    """Zero-pad a centred (fftshifted) spectrum along ``axis`` to ``new_n`` bins.

    For an even input length the Nyquist bin is split evenly between -N/2 and +N/2
    so the interpolated kernel stays real.
    """
    n = spec.shape[axis]
    if new_n < n:
        raise ValueError("Fourier upsampling cannot shrink a kernel; use scale >= 1.")
    spec = np.moveaxis(spec, axis, 0)
    out = np.zeros((new_n,) + spec.shape[1:], dtype=complex)
    c_in, c_out = n // 2, new_n // 2
    out[c_out - c_in: c_out - c_in + n] = spec
    if n % 2 == 0 and new_n > n:
        nyquist = spec[0] / 2  # frequency -n/2 after fftshift
        out[c_out - c_in] = nyquist
        out[c_out + c_in] = nyquist
    return np.moveaxis(out, 0, axis)


def upsample_fourier(kernel: np.ndarray, scale: float) -> np.ndarray:
    """Upsample a kernel by ``scale`` by zero-padding its spectrum (Eq. 8).

    The output support is ``scale * n`` per axis (must be an integer). Because the
    inverse DFT of the larger size divides by the larger size, the values shrink by
    ``1 / scale**2`` and the sum (the DC coefficient) is preserved exactly.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    new_shape = []
    for n in kernel.shape:
        m = scale * n
        if abs(m - round(m)) > 1e-6:
            raise ValueError(
                f"scale * support must be an integer for Fourier upsampling "
                f"({scale} * {n} = {m}); pick a support size that makes it one."
            )
        new_shape.append(int(round(m)))
    spec = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(kernel)))
    for axis, m in enumerate(new_shape):
        spec = _fourier_resize_axis(spec, m, axis)
    out = np.fft.ifft2(np.fft.ifftshift(spec))
    return np.fft.fftshift(np.real(out))


def lanczos(x: np.ndarray, a: int = 3) -> np.ndarray:
    """Lanczos window ``sinc(x) sinc(x / a)`` for ``|x| < a``, else 0."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x) < a, np.sinc(x) * np.sinc(x / a), 0.0)


def _lanczos_matrix(n_in: int, n_out: int, scale: float, a: int) -> np.ndarray:
    """(n_out, n_in) interpolation weights mapping centred offsets u -> u / scale.

    Each row is divided by the sum of the Lanczos weights over *all* integer taps (the
    input extended with zeros), so a constant is reproduced exactly and, for integer
    scales, every input tap spreads a total weight of exactly ``scale`` per axis.
    """
    u = (np.arange(n_out) - n_out // 2) / scale
    lo, hi = -(n_in // 2), n_in - n_in // 2
    j = np.arange(lo, hi)
    j_all = np.arange(lo - 2 * a - 1, hi + 2 * a + 1)  # every tap within reach of any row
    norm = lanczos(u[:, None] - j_all[None, :], a).sum(axis=1, keepdims=True)
    return lanczos(u[:, None] - j[None, :], a) / norm


def lanczos_size(n: int, scale: float, a: int = 3) -> int:
    """Odd support holding every non-zero tap of :func:`upsample_lanczos` of ``n`` taps."""
    half = int(np.ceil(scale * ((n - 1) / 2 + a) - 1e-9)) - 1
    return 2 * half + 1


def upsample_lanczos(kernel: np.ndarray, scale: float, a: int = 3,
                     size: int | None = None, normalize: bool = True) -> np.ndarray:
    """Resample a kernel to ``scale`` times its extent with separable Lanczos-``a``.

    The output tap at centred offset ``u`` is the Lanczos interpolation (input taken as
    zero outside its support) at ``u / scale``. ``size`` defaults to
    :func:`lanczos_size`, which keeps the interpolation footprint of the edge taps.
    With ``normalize`` the values are multiplied by ``1 / scale**2`` (normalised
    scaling), so the sum is preserved: exactly for integer scales, to interpolation
    accuracy otherwise.
    """
    if scale <= 0:
        raise ValueError("scale must be positive.")
    kernel = np.asarray(kernel, dtype=np.float64)
    h, w = kernel.shape
    out_h = size if size is not None else lanczos_size(h, scale, a)
    out_w = size if size is not None else lanczos_size(w, scale, a)
    rows = _lanczos_matrix(h, out_h, scale, a)
    cols = _lanczos_matrix(w, out_w, scale, a)
    out = rows @ kernel @ cols.T
    if normalize:
        out = out / (scale * scale)
    return out


def dilate(kernel: np.ndarray, rate: int) -> np.ndarray:
    """Atrous version of a kernel: ``rate - 1`` zeros between taps, values unchanged.

    An ``n x n`` kernel becomes ``(rate (n - 1) + 1)`` square with tap ``(i, j)`` at
    ``(rate i, rate j)``; the centre stays the centre for odd ``n`` and the sum is kept.
    """
    if int(rate) != rate or rate < 1:
        raise ValueError("The dilation rate must be a positive integer.")
    rate = int(rate)
    kernel = np.asarray(kernel)
    h, w = kernel.shape
    out = np.zeros((rate * (h - 1) + 1, rate * (w - 1) + 1), dtype=kernel.dtype)
    out[::rate, ::rate] = kernel
    return out


# -------------------------------------------------------- kernels over scales

FAMILIES = ("analytic", "lanczos", "fourier")


@dataclasses.dataclass(frozen=True)
class ScaledKernels:
    """A blur kernel over scales ``s`` and the inverse kernels the paper compares.

    Attributes:
      base_kernel: the scale-1 blur kernel (2-D, odd size, normalised to sum 1).
      eps: Wiener regularisation of Eq. 9 (relative to a unit DC gain).
      support: odd support of the scale-1 inverse kernel; the inverse at scale ``s``
        uses ``scaled_size(support, s)`` ('fourier': ``s * support``).
      family: how the blur at scale ``s`` is made from the base: 'analytic' (the
        constructor re-rendered at scale ``s``; needs ``kind`` and ``base``),
        'lanczos' (:func:`upsample_lanczos`) or 'fourier' (:func:`upsample_fourier`
        of the base zero-padded to ``support``; needs ``s * support`` integral).
      kind: 'disc' or 'gaussian' for the analytic family.
      base: disc radius or Gaussian sigma at scale 1 (pixels) for 'analytic'.
    """

    base_kernel: np.ndarray
    eps: float = 1e-2
    support: int = 41
    family: str = "lanczos"
    kind: str | None = None
    base: float | None = None

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"Unknown family {self.family!r}; use one of {FAMILIES}.")
        if self.family == "analytic" and (self.kind is None or self.base is None):
            raise ValueError("The analytic family needs kind and base; "
                             "use ScaledKernels.analytic().")
        if self.support % 2 == 0 or max(self.base_kernel.shape) > self.support:
            raise ValueError("support must be odd and at least the base kernel's size.")

    @classmethod
    def analytic(cls, kind: str, base: float, eps: float = 1e-2,
                 support: int = 41) -> "ScaledKernels":
        """Family of :func:`make_kernel` ``(kind, s, base)`` kernels."""
        return cls(make_kernel(kind, 1.0, base), eps, support, "analytic", kind, base)

    def inverse_support(self, scale: float) -> int:
        """Support of the inverse kernel at ``scale``."""
        if self.family == "fourier":
            return int(round(scale * self.support))
        return scaled_size(self.support, scale)

    def blur(self, scale: float) -> np.ndarray:
        """Blur kernel at ``scale`` (sum 1 up to interpolation error)."""
        if self.family == "analytic":
            return make_kernel(self.kind, scale, self.base)
        if self.family == "lanczos":
            return upsample_lanczos(self.base_kernel, scale)
        return upsample_fourier(center_pad(self.base_kernel, self.support), scale)

    def inverse(self, scale: float) -> np.ndarray:
        """Wiener inverse (Eq. 9) of :meth:`blur` ``(scale)`` on :meth:`inverse_support`."""
        kernel = self.blur(scale)
        size = max(self.inverse_support(scale), max(kernel.shape))
        return wiener_inverse(kernel, self.eps, size=size)

    @functools.cached_property
    def base_inverse(self) -> np.ndarray:
        """Wiener inverse of the scale-1 kernel on ``support``."""
        return wiener_inverse(self.base_kernel, self.eps, size=self.support)

    def upsampled_inverse(self, scale: float, method: str = "lanczos") -> np.ndarray:
        """The scale-1 inverse kernel upsampled to ``scale`` ('lanczos' or 'fourier')."""
        if method == "lanczos":
            return upsample_lanczos(self.base_inverse, scale)
        if method == "fourier":
            return upsample_fourier(self.base_inverse, scale)
        raise ValueError(f"Unknown method {method!r}; use 'lanczos' or 'fourier'.")

    def dilated_inverse(self, scale: int) -> np.ndarray:
        """The scale-1 inverse kernel dilated by the integer ``scale`` (atrous)."""
        return dilate(self.base_inverse, scale)


# ---------------------------------------------------------------- convolution


def convolve(image: np.ndarray, kernel: np.ndarray, boundary: str = "symmetric") -> np.ndarray:
    """2-D convolution of an HW or HWC float image with a kernel, 'same' size.

    The image is padded by the kernel radius with ``boundary`` ('symmetric',
    'reflect', 'edge', 'constant' or 'wrap' as in ``numpy.pad``), convolved with FFTs
    and cropped back, so the output has the input's shape. 'wrap' gives exact
    circular convolution. Channels are filtered independently. Returns float64.
    """
    if boundary not in _BOUNDARIES:
        raise ValueError(f"Unknown boundary {boundary!r}; use one of {_BOUNDARIES}.")
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    if image.ndim not in (2, 3) or kernel.ndim != 2:
        raise ValueError("Pass an HW or HWC image and a 2-D kernel.")
    kh, kw = kernel.shape
    # Centre tap (kh // 2, kw // 2) must land on the output pixel: for even sizes the
    # padding is one smaller before than after.
    pad = [(kh - 1 - kh // 2, kh // 2), (kw - 1 - kw // 2, kw // 2)]
    if image.ndim == 3:
        pad.append((0, 0))
        kernel = kernel[:, :, None]
    padded = np.pad(image, pad, mode=boundary)
    return signal.fftconvolve(padded, kernel, mode="valid", axes=(0, 1))


# ------------------------------------------------------------- Eq. 5 blending


def blend(x1: np.ndarray, x2: np.ndarray, alpha: float | np.ndarray = 0.5) -> np.ndarray:
    """Eq. 5 with fixed weights: ``alpha * x1 + (1 - alpha) * x2`` (alpha scalar or
    broadcastable per-pixel map)."""
    return alpha * np.asarray(x1) + (1 - alpha) * np.asarray(x2)


def combine(sources: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """``sum_i weights[i] * sources[i]``; weights of shape (n,) or (n, H, W)."""
    weights = np.asarray(weights, dtype=np.float64)
    out = np.zeros_like(np.asarray(sources[0], dtype=np.float64))
    for i, src in enumerate(sources):
        w = weights[i]
        if w.ndim == 2 and out.ndim == 3:
            w = w[:, :, None]
        out = out + w * src
    return out


def nnls_weights(sources: Sequence[np.ndarray], target: np.ndarray, mode: str = "global",
                 window: int = 1) -> np.ndarray:
    """Non-negative least-squares weights so that ``sum_i w_i sources[i] ~ target``.

    Args:
      sources: n arrays (HW or HWC), e.g. the results deblurred at scales s1 and s2.
      target: array of the same shape, e.g. the result deblurred at scale s.
      mode: 'global' gives shape (n,) weights fitted over all pixels and channels
        (``scipy.optimize.nnls`` on the QR-reduced system). 'pixel' gives (n, H, W)
        weights, each fitted over the ``window x window`` neighbourhood and all
        channels of its pixel (exact NNLS by active-set enumeration; n <= 6).
      window: neighbourhood size for mode='pixel' (odd; 1 = the pixel alone); at the
        image border the window is mirrored with the edge pixel repeated.
    """
    srcs = [np.asarray(s, dtype=np.float64) for s in sources]
    target = np.asarray(target, dtype=np.float64)
    if any(s.shape != target.shape for s in srcs):
        raise ValueError("All sources must have the target's shape.")
    n = len(srcs)
    if mode == "global":
        a = np.stack([s.reshape(-1) for s in srcs], axis=1)
        q, r = np.linalg.qr(a, mode="reduced")
        weights, _ = optimize.nnls(r, q.T @ target.reshape(-1))
        return weights
    if mode != "pixel":
        raise ValueError(f"Unknown mode {mode!r}; use 'global' or 'pixel'.")
    if n > 6:
        raise ValueError("Per-pixel NNLS supports at most 6 sources.")
    if window < 1 or window % 2 == 0:
        raise ValueError("window must be a positive odd integer.")

    def local_sum(x: np.ndarray) -> np.ndarray:
        if x.ndim == 3:
            x = x.sum(axis=2)
        if window == 1:
            return x
        return ndimage.uniform_filter(x, size=window, mode="reflect") * window * window

    gram = np.empty(target.shape[:2] + (n, n))
    rhs = np.empty(target.shape[:2] + (n,))
    for i in range(n):
        rhs[..., i] = local_sum(srcs[i] * target)
        for j in range(i, n):
            gram[..., i, j] = gram[..., j, i] = local_sum(srcs[i] * srcs[j])
    return np.moveaxis(_nnls_normal_equations(gram, rhs), -1, 0)


def _nnls_normal_equations(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Batched exact NNLS from normal equations (..., n, n), (..., n).

    The NNLS optimum is the unconstrained least-squares solution restricted to its
    support, so the best non-negative candidate over all supports is the optimum.
    """
    n = rhs.shape[-1]
    best = np.zeros(rhs.shape)
    best_obj = np.zeros(rhs.shape[:-1])  # objective w'Gw - 2b'w of w = 0
    for k in range(1, n + 1):
        for subset in itertools.combinations(range(n), k):
            idx = np.array(subset)
            g = gram[..., idx[:, None], idx[None, :]]
            b = rhs[..., idx]
            w = np.einsum("...ij,...j->...i", np.linalg.pinv(g), b)
            obj = np.einsum("...i,...ij,...j->...", w, g, w) - 2 * np.einsum("...i,...i->...", b, w)
            ok = np.all(w >= 0, axis=-1) & (obj < best_obj - 1e-15 * np.abs(best_obj))
            full = np.zeros(rhs.shape)
            full[..., idx] = w
            best = np.where(ok[..., None], full, best)
            best_obj = np.where(ok, obj, best_obj)
    return best


# ------------------------------------------------------------------- measures


def approximation_accuracy(x_hat: np.ndarray, x_ref: np.ndarray, min_ref: float = 1e-2) -> float:
    """Approximation accuracy ``1 - MAE(1, x_hat / x_ref)`` as a fraction (1 = exact).

    Pixels where ``|x_ref| < min_ref`` are left out to keep the ratio finite (in [0,1]
    images these are near-black pixels); raises ValueError if none remain.
    """
    x_hat = np.asarray(x_hat, dtype=np.float64)
    x_ref = np.asarray(x_ref, dtype=np.float64)
    if x_hat.shape != x_ref.shape:
        raise ValueError("x_hat and x_ref must have the same shape.")
    mask = np.abs(x_ref) >= min_ref
    if not np.any(mask):
        raise ValueError("Every reference value is below min_ref; lower min_ref.")
    ratio = x_hat[mask] / x_ref[mask]
    return float(1.0 - np.mean(np.abs(1.0 - ratio)))
