"""Tests for kpac_tf.evaluation.baselines: oracle deconvolution improves on the blurred input.

Pairs come from the project's synthetic defocus renderer, so the baselines' oracle PSF
(the renderer's disc) and radius maps are exactly those the blur was made with.
"""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from kpac_tf.data import depth as kdepth
from kpac_tf.data import render
from kpac_tf.evaluation import baselines as B
from kpac_tf.evaluation import metrics


@pytest.fixture(scope="module")
def sharp() -> np.ndarray:
    return (data.astronaut()[120:216, 180:308] / 255.0).astype(np.float32)  # 96x128 RGB


def _pair(sharp, depth, focus, max_radius, gaussian_mix=0.0):
    """(8-bit blurred input, target, oracle info) rendered by the synthetic generator."""
    pair = render.render_defocus_pair(sharp, depth, focus=focus, max_radius=max_radius,
                                      gaussian_mix=gaussian_mix)
    info = {"mean_radius": pair.mean_radius, "radius_map": pair.radius,
            "gaussian_mix": gaussian_mix}
    return metrics.prepare(pair.blurred, 8).astype(np.float32), pair.sharp, info


@pytest.fixture(scope="module")
def uniform(sharp):
    """Uniform disc blur of radius 3 px everywhere."""
    return _pair(sharp, np.ones(sharp.shape[:2], np.float32), focus=0.0, max_radius=3.0)


@pytest.mark.parametrize("name", ["wiener", "rl", "two_step"])
def test_oracle_deconvolution_beats_identity_on_uniform_disc(uniform, name):
    blurred, target, info = uniform
    assert np.allclose(info["radius_map"], 3.0)
    restored = B.get_baseline(name)(blurred, info)
    assert restored.shape == target.shape and restored.dtype == np.float32
    assert restored.min() >= 0.0 and restored.max() <= 1.0
    gain = metrics.psnr(restored, target) - metrics.psnr(B.identity(blurred, info), target)
    assert gain > 2.0, f"{name}: {gain:.2f} dB over identity"
    # The borders are restored too (the padding keeps the FFT seam out of the image).
    band = np.ones(target.shape[:2], bool)
    band[8:-8, 8:-8] = False
    err = lambda x: np.mean((metrics.prepare(x) - target)[band] ** 2)  # noqa: E731
    assert err(restored) < 0.8 * err(blurred)


def test_deconvolving_in_linear_light_matches_the_renderer(uniform):
    blurred, target, info = uniform
    linear = metrics.psnr(B.Wiener()(blurred, info), target)
    srgb = metrics.psnr(B.Wiener(linear_light=False)(blurred, info), target)
    assert linear > srgb + 1.5, (linear, srgb)


def test_psf_follows_the_gaussian_mix_of_the_pair(sharp):
    blurred, target, info = _pair(sharp, np.ones(sharp.shape[:2], np.float32), 0.0, 3.0,
                                  gaussian_mix=0.3)
    right = metrics.psnr(B.Wiener()(blurred, info), target)
    wrong = metrics.psnr(B.Wiener()(blurred, dict(info, gaussian_mix=0.0)), target)
    assert right > wrong + 1.0, (right, wrong)
    np.testing.assert_allclose(B.Wiener().psf(2.0, info), render.disc_psf(2.0, 0.3),
                               rtol=1e-6)


def test_two_step_uses_the_oracle_map(sharp):
    depth = kdepth.slanted_depth(*sharp.shape[:2], np.random.default_rng(1))
    blurred, target, info = _pair(sharp, depth, focus=float(depth.min()), max_radius=5.0)
    assert info["radius_map"].min() < 0.5 and info["radius_map"].max() > 4.5
    scores = {name: metrics.psnr(B.get_baseline(name)(blurred, info), target)
              for name in ("identity", "wiener", "two_step")}
    assert scores["two_step"] > scores["identity"] + 1.5, scores
    assert scores["two_step"] > scores["wiener"] + 3.0, scores


def test_two_step_with_constant_map_is_wiener(uniform):
    blurred, _, info = uniform
    np.testing.assert_array_equal(B.TwoStep(balance=0.002)(blurred, info),
                                  B.Wiener(balance=0.002)(blurred, info))


def test_two_step_ladder_and_blend_weights():
    step = B.TwoStep(radius_step=0.5, max_levels=16)
    np.testing.assert_allclose(step.ladder(np.array([[1.0, 2.0]])), [1.0, 1.5, 2.0])
    assert len(step.ladder(np.array([[0.0, 40.0]]))) == 16
    results = [np.full((1, 3, 1), v) for v in (0.0, 10.0, 20.0)]
    blended = B._blend(results, np.array([1.0, 2.0, 3.0]), np.array([[1.0, 2.25, 3.0]]))
    np.testing.assert_allclose(blended[..., 0], [[0.0, 12.5, 20.0]])


def test_custom_psf_and_srgb_working_space(uniform):
    blurred, target, info = uniform
    srgb_default = B.Wiener(linear_light=False)(blurred, info)
    radii = []

    def too_wide(radius):  # a deliberately wrong kernel: the disc of twice the radius
        radii.append(radius)
        return B.default_psf(2 * radius, 0.0)

    out = B.Wiener(psf_fn=too_wide, linear_light=False)(blurred, info)
    assert radii == [pytest.approx(3.0, abs=1e-6)]  # called with the oracle radius
    # The same sRGB working space with the right disc restores far better (measured
    # 24.8 against 11.3 dB); an ignored psf_fn would give the sRGB default's pixels.
    assert metrics.psnr(out, target) < metrics.psnr(srgb_default, target) - 10.0
    assert np.abs(out - srgb_default).max() > 0.5
    # The default disc passed as psf_fn gives the sRGB default exactly.
    disc = B.Wiener(psf_fn=lambda r: B.default_psf(r, 0.0), linear_light=False)(blurred, info)
    np.testing.assert_array_equal(disc, srgb_default)


def test_identity_and_tiny_radius_return_the_input(rng):
    img = rng.uniform(-0.1, 1.1, size=(20, 24, 3)).astype(np.float32)
    clipped = np.clip(img, 0, 1)
    np.testing.assert_array_equal(B.identity(img, {}), clipped)
    for name in ("wiener", "rl", "two_step"):
        out = B.get_baseline(name)(img, {"mean_radius": 0.3})
        np.testing.assert_allclose(out, clipped, atol=1e-6)


def test_errors_are_clear(rng):
    img = rng.uniform(size=(20, 24, 3)).astype(np.float32)
    with pytest.raises(KeyError, match="mean_radius"):
        B.get_baseline("wiener")(img, {})
    with pytest.raises(ValueError, match="Unknown baseline"):
        B.get_baseline("blind")
    with pytest.raises(ValueError, match="radius_map shape"):
        B.TwoStep()(img, {"radius_map": np.ones((5, 5))})
    with pytest.raises(TypeError, match="float"):
        B.identity((img * 255).astype(np.uint8), {})
