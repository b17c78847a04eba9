"""Tests for kpac_tf.analysis.inverse_kernels: the paper's Sec. 3 inverse-kernel mathematics."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, optimize

from kpac_tf.analysis import inverse_kernels as ik


def _random_kernel(rng, size=9):
    k = rng.random((size, size)) * ik.disc_kernel(size / 2 - 0.5, size=size)
    return k / k.sum()


def _smooth_image(rng, shape):
    """A natural-ish test image in [0, 1]: smoothed noise plus edges."""
    x = ndimage.gaussian_filter(rng.random(shape), sigma=(1.5, 1.5) + (0,) * (len(shape) - 2))
    x[shape[0] // 3: shape[0] // 2] += 0.3
    x = (x - x.min()) / (x.max() - x.min())
    return x


# ------------------------------------------------------------------ Eq. 10


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("eps", [1e-3, 1e-1])
def test_eq10_inverse_of_upsampled_equals_upsampled_inverse(rng, scale, eps):
    k = _random_kernel(rng, 9)
    inverse_of_upsampled = ik.wiener_inverse(ik.upsample_fourier(k, scale), eps)
    upsampled_inverse = ik.upsample_fourier(ik.wiener_inverse(k, eps), scale)
    assert inverse_of_upsampled.shape == (9 * scale, 9 * scale)
    np.testing.assert_allclose(inverse_of_upsampled, upsampled_inverse,
                               atol=1e-12 * np.abs(upsampled_inverse).max())


def test_eq10_fails_for_lanczos_but_approximately_holds(rng):
    """Lanczos resampling is not an ideal low-pass: Eq. 10 is only approximate with it."""
    k = ik.gaussian_kernel(1.0, size=9)
    a = ik.wiener_inverse(ik.upsample_lanczos(k, 3), 1e-2)
    b = ik.upsample_lanczos(ik.wiener_inverse(k, 1e-2), 3)
    rel = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert rel == pytest.approx(0.0815, abs=0.005)  # measured 0.08146; 2e-15 for the Fourier family


def test_scaled_kernels_fourier_family_obeys_eq10():
    fam = ik.ScaledKernels(ik.disc_kernel(1.5), eps=1e-2, support=15, family="fourier")
    np.testing.assert_allclose(fam.inverse(3), fam.upsampled_inverse(3, "fourier"), atol=1e-13)
    assert fam.inverse(3).shape == (45, 45)


# ------------------------------------------------------------ Wiener inverse


def test_wiener_inverse_deconvolves_circular_blur(rng):
    x = _smooth_image(rng, (64, 64, 3))
    k = ik.gaussian_kernel(0.8, size=7)  # no spectral zeros: invertible
    y = ik.convolve(x, k, boundary="wrap")
    assert ik.psnr(y, x) < 35
    exact = ik.convolve(y, ik.wiener_inverse(k, eps=1e-10, size=(64, 64)), boundary="wrap")
    assert ik.psnr(exact, x) > 40
    regularised = ik.convolve(y, ik.wiener_inverse(k, eps=1e-1, size=(64, 64)), boundary="wrap")
    assert ik.psnr(regularised, x) < ik.psnr(exact, x) - 10


def test_wiener_inverse_spectrum_is_eq9():
    k = ik.disc_kernel(2.0)
    eps = 1e-2
    inv = ik.wiener_inverse(k, eps, size=21)
    spec_k = np.fft.fft2(np.fft.ifftshift(ik.center_pad(k, 21)))
    spec_inv = np.fft.fft2(np.fft.ifftshift(inv))
    np.testing.assert_allclose(spec_inv, np.conj(spec_k) / (np.abs(spec_k) ** 2 + eps), atol=1e-12)
    assert inv.sum() == pytest.approx(1 / (1 + eps))  # DC gain of a sum-1 kernel


def test_wiener_inverse_rejects_too_small_support():
    with pytest.raises(ValueError, match="larger size"):
        ik.wiener_inverse(ik.disc_kernel(4.0), size=5)


# ------------------------------------------------------------------ scaling


@pytest.mark.parametrize("scale", [2, 3, 5])
def test_upsampling_keeps_kernel_sum(rng, scale):
    k = _random_kernel(rng, 11)
    assert ik.upsample_fourier(k, scale).sum() == pytest.approx(1.0, abs=1e-12)
    assert ik.dilate(k, scale).sum() == pytest.approx(1.0, abs=1e-12)
    lanczos = ik.upsample_lanczos(k, scale)
    assert lanczos.sum() == pytest.approx(1.0, abs=1e-12)
    assert ik.upsample_lanczos(k, scale + 0.5).sum() == pytest.approx(1.0, abs=1e-2)
    # Without the 1/s^2 normalisation the sum grows by s^2.
    raw = ik.upsample_lanczos(k, scale, normalize=False)
    assert raw.sum() == pytest.approx(scale ** 2, rel=1e-12)


def test_fourier_upsampling_matches_wider_gaussian():
    g = ik.gaussian_kernel(2.0, size=41)
    up = ik.upsample_fourier(g, 3)
    np.testing.assert_allclose(up, ik.gaussian_kernel(6.0, size=123), atol=1e-9)


def test_lanczos_upsampling_matches_wider_gaussian():
    up = ik.upsample_lanczos(ik.gaussian_kernel(2.0, size=41), 2.5)
    ref = ik.gaussian_kernel(5.0, size=up.shape[0])
    assert np.abs(up - ref).max() < 1e-2 * ref.max()


def test_fourier_upsampling_requires_integer_support():
    with pytest.raises(ValueError, match="integer"):
        ik.upsample_fourier(np.ones((5, 5)) / 25, 1.5)


@pytest.mark.parametrize("rate", [1, 2, 4])
def test_dilation_keeps_taps_on_the_rate_grid(rng, rate):
    k = rng.normal(size=(5, 5))
    d = ik.dilate(k, rate)
    assert d.shape == (rate * 4 + 1,) * 2
    np.testing.assert_array_equal(d[::rate, ::rate], k)
    mask = np.zeros_like(d, dtype=bool)
    mask[::rate, ::rate] = True
    assert np.all(d[~mask] == 0)
    assert d[d.shape[0] // 2, d.shape[1] // 2] == k[2, 2]  # centre stays the centre
    assert d.sum() == pytest.approx(k.sum())


def test_dilation_rejects_fractional_rate():
    with pytest.raises(ValueError):
        ik.dilate(np.ones((3, 3)), 1.5)


# ------------------------------------------------------------------ kernels


def test_disc_kernel_area_and_scale():
    for scale in (1.0, 2.5):
        k = ik.disc_kernel(3.0, scale)
        assert k.sum() == pytest.approx(1.0)
        r = 3.0 * scale
        assert k.shape[0] == ik.odd_size(2 * r + 1)
        # Coverage-weighted area equals pi r^2 to sub-pixel accuracy.
        assert (k / k.max()).sum() == pytest.approx(np.pi * r * r, rel=0.02)
        c = k.shape[0] // 2
        assert np.allclose(k, k.T) and k[c, c] == k.max()


def test_gaussian_kernel_std():
    k = ik.gaussian_kernel(1.5, scale=2.0)
    x = np.arange(k.shape[0]) - k.shape[0] // 2
    var = (k.sum(axis=0) * x ** 2).sum()
    assert np.sqrt(var) == pytest.approx(3.0, rel=2e-3)


# -------------------------------------------------------------- convolution


@pytest.mark.parametrize("size", [(5, 5), (4, 6)])
def test_convolve_keeps_shape_and_centred_delta_is_identity(rng, size):
    x = rng.random((20, 17, 3))
    delta = np.zeros(size)
    delta[size[0] // 2, size[1] // 2] = 1
    for boundary in ("symmetric", "wrap", "constant"):
        out = ik.convolve(x, delta, boundary=boundary)
        assert out.shape == x.shape
        np.testing.assert_allclose(out, x, atol=1e-12)
    assert ik.convolve(x[..., 0], delta).shape == (20, 17)


def test_convolve_is_a_true_convolution_with_centre_at_half_size(rng):
    x = np.zeros((15, 15))
    x[7, 7] = 1
    k = rng.random((5, 5))
    np.testing.assert_allclose(ik.convolve(x, k, boundary="constant")[5:10, 5:10], k, atol=1e-12)
    shift = np.zeros((3, 3))
    shift[1, 2] = 1  # true convolution moves content towards +x
    moved = ik.convolve(x, shift, boundary="constant")
    assert moved[7, 8] == pytest.approx(1.0)


def test_convolve_wrap_is_circular(rng):
    x = rng.random((16, 16))
    k = _random_kernel(rng, 5)
    k_spec = np.fft.fft2(np.fft.ifftshift(ik.center_pad(k, 16)))
    spectral = np.real(np.fft.ifft2(np.fft.fft2(x) * k_spec))
    np.testing.assert_allclose(ik.convolve(x, k, boundary="wrap"), spectral, atol=1e-12)


# ------------------------------------------------------------ Eq. 5 blends


@pytest.fixture
def sources(rng):
    x1 = _smooth_image(rng, (32, 32, 3))
    x2 = _smooth_image(rng, (32, 32, 3))
    target = 0.7 * x1 + 0.2 * x2 + 0.02 * rng.normal(size=x1.shape)
    return x1, x2, target


def test_global_nnls_weights_are_nonnegative_and_beat_alpha(sources):
    x1, x2, target = sources
    w = ik.nnls_weights([x1, x2], target, mode="global")
    assert w.shape == (2,) and np.all(w >= 0)
    np.testing.assert_allclose(w, [0.7, 0.2], atol=0.03)
    mse = lambda a: np.mean((a - target) ** 2)  # noqa: E731
    assert mse(ik.combine([x1, x2], w)) <= mse(ik.blend(x1, x2, 0.5))
    # A target that needs a negative weight gets a clipped, still optimal, one.
    w_neg = ik.nnls_weights([x1, x2], x1 - 0.8 * x2, mode="global")
    assert np.all(w_neg >= 0) and w_neg[1] == 0


@pytest.mark.parametrize("window", [1, 3])
def test_pixel_nnls_matches_scipy_and_beats_alpha_everywhere(sources, rng, window):
    x1, x2, target = sources
    target = target - 0.4 * x2 * (rng.random(x2.shape[:2])[..., None] > 0.5)  # some negatives
    w = ik.nnls_weights([x1, x2], target, mode="pixel", window=window)
    assert w.shape == (2, 32, 32) and np.all(w >= 0)
    assert np.any(w == 0)  # the constraint is active somewhere
    r = window // 2
    pad = lambda a: np.pad(a, ((r, r), (r, r), (0, 0)), mode="symmetric")  # noqa: E731
    p1, p2, pt = pad(x1), pad(x2), pad(target)
    for i, j in [(0, 0), (5, 9), (16, 16), (31, 30), (20, 3)]:
        sl = (slice(i, i + window), slice(j, j + window))
        a = np.stack([p1[sl].ravel(), p2[sl].ravel()], axis=1)
        ref, _ = optimize.nnls(a, pt[sl].ravel())
        obj = lambda v: np.sum((a @ v - pt[sl].ravel()) ** 2)  # noqa: E731
        assert obj(w[:, i, j]) <= obj(ref) + 1e-10
        assert obj(w[:, i, j]) <= obj(np.array([0.5, 0.5])) + 1e-12
    # Per-pixel weights fit at least as well as global ones.
    wg = ik.nnls_weights([x1, x2], target, mode="global")
    err = lambda v: np.mean((ik.combine([x1, x2], v) - target) ** 2)  # noqa: E731
    assert err(w) <= err(wg) + 1e-12


def test_nnls_rejects_bad_arguments(sources):
    x1, x2, target = sources
    with pytest.raises(ValueError):
        ik.nnls_weights([x1, x2[:-1]], target)
    with pytest.raises(ValueError):
        ik.nnls_weights([x1, x2], target, mode="pixel", window=2)


# ---------------------------------------------------------------- measures


def test_accuracy_is_one_for_perfect_and_measures_relative_error(rng):
    x = rng.random((16, 16, 3)) * 0.9 + 0.1
    assert ik.approximation_accuracy(x, x) == pytest.approx(1.0)
    assert ik.approximation_accuracy(0.9 * x, x) == pytest.approx(0.9)
    assert ik.approximation_accuracy(1.05 * x, x) == pytest.approx(0.95)


def test_accuracy_guards_small_references():
    ref = np.array([0.0, 1e-9, 0.5, 1.0])
    x_hat = np.array([0.3, 0.2, 0.5, 0.5])
    assert ik.approximation_accuracy(x_hat, ref, min_ref=1e-2) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="min_ref"):
        ik.approximation_accuracy(x_hat[:2], ref[:2])


def test_psnr_values():
    a = np.zeros((4, 4))
    assert ik.psnr(a, a) == float("inf")
    assert ik.psnr(a, a + 0.1) == pytest.approx(20.0)


# ------------------------------------------------- the paper's observations


def test_dilated_inverse_approximates_upsampled_inverse(rng):
    """Fig. 4 / Fig. 14 in miniature: on a blurred smooth image, deblurring with the dilated
    scale-1 inverse kernel is close to deblurring with the upsampled one."""
    x = _smooth_image(rng, (96, 96))
    fam = ik.ScaledKernels.analytic("gaussian", 1.0, eps=1e-2, support=15)
    y = ik.convolve(x, fam.blur(3))
    dilated = ik.convolve(y, fam.dilated_inverse(3))
    upsampled = ik.convolve(y, fam.upsampled_inverse(3, "lanczos"))
    direct = ik.convolve(y, fam.inverse(3))
    assert ik.psnr(dilated, upsampled) > 40
    assert ik.psnr(dilated, direct) > 40
    assert ik.psnr(direct, x) > ik.psnr(y, x) + 1  # deblurring actually helps
