"""Soft content in training scenes: illumination, cast shadows, shaded leaves, tone."""
from __future__ import annotations

import numpy as np
import pytest

from kpac_tf.data import relight
from kpac_tf.data.pairs import SyntheticDefocusSource, synthetic_config_from_overrides


def _penumbra_width(profile: np.ndarray) -> float:
    """10-90% width, pixels, of a monotonic edge profile."""
    low, high = profile.min(), profile.max()
    norm = (profile - low) / (high - low)
    if norm[0] > norm[-1]:
        norm = norm[::-1]
    return float(np.argmax(norm >= 0.9) - np.argmax(norm >= 0.1))


@pytest.mark.parametrize("width", [3.0, 12.0, 60.0])
def test_shadow_edge_has_the_asked_penumbra(width):
    """A half-plane's softened edge has the 10-90% width asked for."""
    mask = np.zeros((8, 400), np.float32)
    mask[:, 200:] = 1.0
    row = relight.soft_edge(mask, width)[4]
    assert abs(_penumbra_width(row) - width) <= 0.1 * width + 1.0


def test_shadow_field_darkens_by_25_to_75_percent_per_shadow(rng):
    for _ in range(5):
        gain = relight.shadow_field(64, 96, rng)
        assert gain.dtype == np.float32 and gain.max() <= 1.0 + 1e-6
        assert 0.25 ** 3 - 1e-6 <= gain.min() <= 0.75 + 1e-6


def test_illumination_is_smooth_and_bounded(rng):
    for _ in range(6):
        gain = relight.illumination_field(96, 128, rng)
        assert gain.shape == (96, 128) and gain.dtype == np.float32
        assert 0.19 <= gain.min() and gain.max() <= 1.51
        # Smooth: no neighbour step above 3% of the range.
        assert np.abs(np.diff(gain, axis=1)).max() <= 0.06 * max(np.ptp(gain), 1e-3) + 1e-3


def test_relight_only_draws_when_enabled_and_keeps_range(rng):
    image = rng.random((48, 64, 3), dtype=np.float32)
    untouched = np.random.default_rng(5)
    out = relight.relight(image, untouched, illumination=0.0, shadows=0.0, tones=0.0)
    np.testing.assert_array_equal(out, image)
    assert untouched.random() == np.random.default_rng(5).random()  # nothing drawn
    lit = relight.relight(image, np.random.default_rng(6), illumination=1.0, shadows=1.0,
                          tones=0.0)
    assert lit.shape == image.shape and 0.0 <= lit.min() and lit.max() <= 1.0
    assert np.abs(lit - image).mean() > 0.01


def _blotch_scale(field: np.ndarray) -> float:
    """Distance (px) at which the field's autocorrelation along rows falls below 1/2."""
    centred = field - field.mean()
    for lag in range(1, 40):
        if np.mean(centred[:, lag:] * centred[:, :-lag]) < 0.5 * np.mean(centred ** 2):
            return float(lag)
    return 40.0


def test_mottle_is_soft_blotches_of_a_few_percent():
    scales = []
    for seed in range(8):
        gain = relight.mottle_field(128, 160, np.random.default_rng(seed))
        assert gain.shape == (128, 160) and gain.dtype == np.float32
        assert abs(float(gain.mean()) - 1.0) < 0.01
        assert 0.03 <= float(gain.std()) <= 0.13
        scales.append(_blotch_scale(gain))
    # Blotches 2-10 px across: soft (not pixel noise), yet not a smooth illumination.
    assert min(scales) >= 1 and max(scales) <= 8 and len(set(scales)) > 1


def test_relight_mottles_only_when_asked():
    image = np.full((64, 64, 3), 0.5, np.float32)
    plain = relight.relight(image, np.random.default_rng(3), illumination=0.0, shadows=0.0,
                            tones=0.0, mottle=0.0)
    np.testing.assert_array_equal(plain, image)
    mottled = relight.relight(image, np.random.default_rng(3), illumination=0.0, shadows=0.0,
                              tones=0.0, mottle=1.0)
    assert 0.01 < float(mottled.std()) < 0.1


@pytest.mark.parametrize("seed", range(3))
def test_tone_variants_stay_in_range(seed):
    image = np.random.default_rng(seed).random((32, 32, 3), dtype=np.float32)
    out = relight.tone(image, np.random.default_rng(seed))
    assert out.shape == image.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and not np.allclose(out, image)


def test_shaded_layers_keep_alpha_and_change_colour(rng):
    rgba = np.concatenate([np.full((3, 3, 20, 30), 0.5, np.float32),
                           rng.random((3, 1, 20, 30), dtype=np.float32)], axis=1)
    out = relight.shade_layers(rgba, rng)
    np.testing.assert_array_equal(out[:, 3], rgba[:, 3])
    assert np.ptp(out[0, 0]) > 0.05  # flat colour became a gradient
    assert np.ptp(rgba[0, 0]) == 0.0   # the input is not modified


def test_generator_with_soft_content_is_deterministic_and_default_unchanged():
    options = ["illumination=1", "shadows=1", "shaded_leaves=1", "tones=0.5", "mottle=0.5",
               "sharp_probability=1"]
    soft = SyntheticDefocusSource(64, photos="skimage:astronaut", dead_leaves_fraction=0.5,
                                  config=synthetic_config_from_overrides(options), seed=2)
    plain = SyntheticDefocusSource(64, photos="skimage:astronaut", dead_leaves_fraction=0.5,
                                   config=synthetic_config_from_overrides(["sharp_probability=1"]),
                                   seed=2)
    for index in range(4):
        a, b = soft.pair(index), soft.pair(index)
        np.testing.assert_array_equal(a.sharp, b.sharp)
        # With no defocus, the input is the (relit) target plus noise.
        assert np.abs(a.blurred - a.sharp).mean() < 0.02
        assert np.abs(a.sharp - plain.pair(index).sharp).mean() > 0.005
    with pytest.raises(ValueError, match="probabilities"):
        synthetic_config_from_overrides(["shadows=1.5"])


def _stamp_folder(tmp_path, rng) -> str:
    from PIL import Image

    folder = tmp_path / "stamps" / "train"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:60, 0:50]
    alpha = ((((yy - 30) / 28.0) ** 2 + ((xx - 25) / 23.0) ** 2) < 1) * 255
    for k in range(2):
        rgb = np.full((60, 50, 3), 40 + 150 * k)
        Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8)).save(folder / f"s{k}.png")
    return str(tmp_path / "stamps")


def test_stamps_are_pasted_nearer_than_what_they_cover(tmp_path, rng):
    from kpac_tf.data.stamps import StampSet, composite_stamps

    stamps = StampSet(_stamp_folder(tmp_path, rng) + "/train")
    image = np.full((80, 90, 3), 0.5, np.float32)
    depth = np.full((80, 90), 0.8, np.float32)
    out, new_depth = composite_stamps(image, depth, np.random.default_rng(1), stamps,
                                      count=(2, 2))
    changed = new_depth < 0.8
    assert changed.any() and (new_depth >= 0).all()
    # Where the depth changed, the colour is (all but a few edge pixels) a stamp's.
    assert np.mean(np.abs(out[changed] - 0.5).max(axis=-1) > 0.1) > 0.95
    np.testing.assert_array_equal(out[new_depth == 0.8][:, 0] > 0, True)
    with pytest.raises(ValueError, match="missing"):
        StampSet(str(tmp_path / "nowhere"))


def test_generator_pastes_stamps_only_when_enabled(tmp_path, rng):
    folder = _stamp_folder(tmp_path, rng)
    config = synthetic_config_from_overrides(["stamps=1", f"stamp_dir={folder}",
                                              "sharp_probability=1"])
    source = SyntheticDefocusSource(64, photos="skimage:astronaut", config=config, seed=1)
    pair = source.pair(0)
    assert pair.info["depth_model"].endswith("+stamps")
    with pytest.raises(ValueError, match="stamp_split must be one of train, val, heldout"):
        SyntheticDefocusSource(64, photos="skimage:astronaut", config=config, stamp_split="test")
    with pytest.raises(ValueError, match="stamp_dir"):
        synthetic_config_from_overrides(["stamps=0.5"])
