"""Soft grounds: scenes with no hard edge, drawn in place of dead leaves when asked."""
from __future__ import annotations

import numpy as np
import pytest

from kpac_tf.data import grounds
from kpac_tf.data.pairs import SyntheticDefocusSource, synthetic_config_from_overrides


def _lag_correlation(field: np.ndarray, lag: int) -> float:
    centred = field - field.mean()
    return float(np.mean(centred[:, lag:] * centred[:, :-lag]) / np.mean(centred ** 2))


def test_grain_is_smooth_and_a_few_percent():
    for seed in range(6):
        gain = grounds.grain_field(96, 128, np.random.default_rng(seed))
        assert gain.shape == (96, 128) and gain.dtype == np.float32
        assert abs(float(gain.mean()) - 1.0) < 0.01
        assert 0.025 <= float(gain.std()) <= 0.125
        # Smooth (a sigma of 1-4 px), not pixel noise; gone within a few sigma.
        assert _lag_correlation(gain, 1) > 0.6
        assert _lag_correlation(gain, 24) < 0.3


def test_ripples_are_faint_periodic_waves():
    for seed in range(6):
        gain = grounds.ripple_field(80, 80, np.random.default_rng(seed))
        assert gain.shape == (80, 80) and gain.dtype == np.float32
        assert 0.95 <= float(gain.min()) and float(gain.max()) <= 1.05
        assert float(np.ptp(gain)) > 0.005


@pytest.mark.parametrize("seed", range(4))
def test_a_ground_scene_has_an_opaque_soft_ground_and_nearer_layers_in_front(seed):
    scene = grounds.ground_layers(96, 112, np.random.default_rng(seed), light_gain=2.0)
    layers = scene.rgba.shape[0]
    assert scene.rgba.shape == (layers, 4, 96, 112) and 1 <= layers <= 3
    assert scene.rgba.dtype == np.float32 and scene.depths.dtype == np.float32
    assert np.all(np.diff(scene.depths) <= 0)  # far first
    np.testing.assert_array_equal(scene.rgba[0, 3], 1.0)
    assert float(scene.rgba[:, :3].min()) >= 0.0 and float(scene.rgba[:, :3].max()) <= 2.0
    # Premultiplied: no colour where a layer is transparent.
    assert np.all(scene.rgba[:, :3] <= scene.rgba[:, 3:] * 2.0 + 1e-6)
    composite = scene.composite()
    # No hard edge: neighbouring pixels differ by a small share of the frame's range.
    step = np.abs(np.diff(composite, axis=1)).max() / max(float(np.ptp(composite)), 1e-6)
    assert step < 0.5


def test_a_ground_scene_is_a_function_of_its_seed():
    a = grounds.ground_layers(64, 64, np.random.default_rng(9))
    b = grounds.ground_layers(64, 64, np.random.default_rng(9))
    c = grounds.ground_layers(64, 64, np.random.default_rng(10))
    np.testing.assert_array_equal(a.rgba, b.rgba)
    assert a.rgba.shape != c.rgba.shape or not np.array_equal(a.rgba, c.rgba)


def _sources(*options: str) -> list[str]:
    config = synthetic_config_from_overrides(["sharp_probability=1", *options])
    source = SyntheticDefocusSource(64, photos=None, dead_leaves_fraction=1.0, config=config,
                                    seed=4)
    return [source.pair(index).info["source"] for index in range(8)]


def test_the_generator_draws_grounds_only_when_asked():
    assert set(_sources()) == {"dead_leaves"}
    assert set(_sources("grounds=1")) == {"ground"}
    assert set(_sources("grounds=0.5")) == {"dead_leaves", "ground"}
    with pytest.raises(ValueError, match="probabilities"):
        synthetic_config_from_overrides(["grounds=2"])


def _texture(height: int, width: int, seed: int) -> np.ndarray:
    """A sharp sRGB texture (HxWx3 in [0, 1]): pixel noise around mid-grey."""
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.2 * rng.standard_normal((height, width, 3)), 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_ground_patches_replace_part_of_a_photo_with_soft_ground(seed):
    photo = _texture(96, 96, seed)
    patched = grounds.paste_ground_patches(photo, np.random.default_rng(seed))
    assert patched.shape == photo.shape and patched.dtype == np.float32
    assert 0.0 <= float(patched.min()) and float(patched.max()) <= 1.0
    np.testing.assert_array_equal(photo, _texture(96, 96, seed))  # the input is kept
    # Where the patch lies, the pixel noise of the texture is gone: neighbours differ
    # by a few percent, against about 0.25 on the texture.
    steps = np.abs(np.diff(patched, axis=1)).mean(axis=2)
    covered = steps < 0.05
    assert 0.03 < covered.mean() < 0.97
    assert float(np.abs(np.diff(photo, axis=1)).mean()) > 0.15
    # Its level follows the photo's (0.5-1.5x its mean linear light).
    assert 0.15 < float(patched[:, 1:][covered].mean()) < 0.85


def test_ground_patches_are_a_function_of_the_seed():
    photo = _texture(64, 64, 0)
    a = grounds.paste_ground_patches(photo, np.random.default_rng(3))
    b = grounds.paste_ground_patches(photo, np.random.default_rng(3))
    c = grounds.paste_ground_patches(photo, np.random.default_rng(4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_the_generator_pastes_ground_patches_into_photos_only_when_asked():
    def patched(*options: str) -> list[bool]:
        config = synthetic_config_from_overrides(["sharp_probability=1", *options])
        source = SyntheticDefocusSource(64, photos="skimage:astronaut", dead_leaves_fraction=0.0,
                                        config=config, seed=2)
        return [source.pair(index).info["ground_patches"] for index in range(6)]

    assert set(patched()) == {False}
    assert set(patched("ground_patches=1")) == {True}
    # With no defocus the target and the input share the patch.
    config = synthetic_config_from_overrides(["sharp_probability=1", "ground_patches=1",
                                              "noise_sigma=0"])
    pair = SyntheticDefocusSource(64, photos="skimage:astronaut", dead_leaves_fraction=0.0,
                                  config=config, seed=2).pair(0)
    np.testing.assert_allclose(pair.blurred, pair.sharp, atol=1e-6)
    with pytest.raises(ValueError, match="probabilities"):
        synthetic_config_from_overrides(["ground_patches=-0.5"])
