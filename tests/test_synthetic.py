"""Tests for the synthetic defocus renderer, dead-leaves scenes and the pair generator."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from kpac_tf.data import dead_leaves as dl
from kpac_tf.data import depth as kdepth
from kpac_tf.data import dpdd_writer as kdpdd_writer
from kpac_tf.data import pairs as kpairs
from kpac_tf.data import photos as kphotos
from kpac_tf.data import pipeline as kpipeline
from kpac_tf.data import render as krender
from kpac_tf.images import codec
from kpac_tf.images import colour as kcolour


def _high_frequency_energy(image: np.ndarray, cutoff: float = 0.15) -> float:
    """Mean spectral power of the gray image above ``cutoff`` cycles/pixel."""
    gray = image.mean(axis=-1)
    gray = gray - gray.mean()
    power = np.abs(np.fft.rfft2(gray)) ** 2
    fy = np.fft.fftfreq(gray.shape[0])[:, None]
    fx = np.fft.rfftfreq(gray.shape[1])[None, :]
    return float(power[np.hypot(fy, fx) > cutoff].sum() / gray.size)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return dl.dead_leaves_image(96, 96, seed=7)


def test_srgb_linear_round_trip():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(kcolour.linear_to_srgb(kcolour.srgb_to_linear(x)), x, atol=2e-6)
    assert kcolour.srgb_to_linear(np.float32(0.5)) == pytest.approx(0.21404, abs=1e-4)


def test_disc_psf_is_normalised_and_radius_zero_is_identity():
    for radius in (0.0, 0.3, 1.0, 2.5, 7.0):
        for mix in (0.0, 0.3):
            kernel = krender.disc_psf(radius, mix)
            assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
            assert kernel.shape[0] % 2 == 1 and np.all(kernel >= 0)
            np.testing.assert_allclose(kernel, kernel.T, atol=1e-7)
    np.testing.assert_array_equal(krender.disc_psf(0.0), [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    big = krender.disc_psf(5.0)
    centre = big.shape[0] // 2
    assert big[centre, centre + 4] == big[centre, centre]  # flat inside (a disc, not a bump)
    assert big[centre, centre + 6] == 0


def test_radius_zero_is_identity(scene, rng):
    depth = kdepth.smooth_depth(96, 96, rng)
    pair = krender.render_defocus_pair(scene, depth, focus=0.4, max_radius=0.0)
    np.testing.assert_allclose(pair.blurred, scene, atol=1e-5)
    np.testing.assert_array_equal(pair.sharp, scene)
    assert pair.mean_radius == 0.0


def test_larger_radius_removes_more_high_frequencies(scene):
    depth = np.ones(scene.shape[:2], np.float32)
    energies = [_high_frequency_energy(
        krender.render_defocus(scene, depth, focus=0.0, max_radius=r)) for r in (0, 1, 2, 4, 8)]
    assert all(a > b for a, b in zip(energies, energies[1:])), energies
    assert energies[-1] < 0.2 * energies[0]


def test_radius_follows_the_thin_lens_law(scene):
    depth = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (96, 1))
    pair = krender.render_defocus_pair(scene, depth, focus=0.25, max_radius=6.0)
    np.testing.assert_allclose(pair.radius, 6.0 * np.abs(depth - 0.25) / 0.75, atol=1e-5)
    assert pair.radius.max() == pytest.approx(6.0)
    assert pair.mean_radius == pytest.approx(float(pair.radius.mean()))
    # each band of columns matches a uniform blur of its own radius best
    flat = np.ones_like(depth)
    for column in (48, 80):
        band = (slice(None), slice(column - 3, column + 4))
        expected = pair.radius[0, column]
        errors = {r: np.abs(pair.blurred[band] - krender.render_defocus(
            scene, flat, focus=0.0, max_radius=r)[band]).mean()
            for r in (expected - 1.5, expected, expected + 1.5)}
        assert min(errors, key=errors.get) == expected, errors


def test_near_sharp_object_occludes_blurred_background():
    size = 128
    background = dl.dead_leaves_image(size, size, seed=2)
    foreground = dl.dead_leaves_image(size, size, seed=3)
    yy, xx = np.mgrid[:size, :size]
    inside = (np.abs(yy - 64) < 24) & (np.abs(xx - 64) < 24)
    sharp = np.where(inside[..., None], foreground, background).astype(np.float32)
    depth = np.where(inside, 0.1, 0.9).astype(np.float32)
    pair = krender.render_defocus_pair(sharp, depth, focus=0.1, max_radius=8.0)
    # every pixel of the in-focus object, up to its very edge, stays exactly sharp
    np.testing.assert_allclose(pair.blurred[inside], sharp[inside], atol=1e-5)
    far = ~((np.abs(yy - 64) < 34) & (np.abs(xx - 64) < 34))
    assert np.abs(pair.blurred - sharp)[far].mean() > 0.03
    # the opposite focus blurs the object over the (now sharp) background
    reverse = krender.render_defocus_pair(sharp, depth, focus=0.9, max_radius=8.0)
    ring = (np.abs(yy - 64) < 28) & (np.abs(xx - 64) < 28) & ~inside
    assert np.abs(reverse.blurred - sharp)[ring].mean() > 0.02
    np.testing.assert_allclose(reverse.blurred[far], sharp[far], atol=1e-5)


def test_highlights_bloom_into_discs():
    sharp = np.full((64, 64, 3), 0.2, np.float32)
    sharp[32, 32] = 1.0  # a clipped point light
    depth = np.ones((64, 64), np.float32)
    plain = krender.render_defocus_pair(sharp, depth, focus=0.0, max_radius=6.0)
    bloom = krender.render_defocus_pair(sharp, depth, focus=0.0, max_radius=6.0,
                                        highlight_gain=20.0)
    # the boosted light spreads into a bright disc of about the blur radius
    assert bloom.blurred[32, 36, 0] > plain.blurred[32, 36, 0] + 0.1
    assert bloom.blurred[32, 36, 0] > 0.45  # 20 / (pi 6^2) + 0.033 linear -> 0.49 sRGB
    assert bloom.blurred[32, 41, 0] == pytest.approx(0.2, abs=1e-4)  # outside the disc
    np.testing.assert_array_equal(bloom.sharp, sharp)  # target: the same scene, clipped


def test_noise_is_added_to_the_blurred_image_only(scene, rng):
    depth = np.zeros(scene.shape[:2], np.float32)
    pair = krender.render_defocus_pair(scene, depth, focus=0.0, max_radius=0.0, noise_sigma=0.02,
                                       rng=rng)
    residual = (pair.blurred - scene)[(scene > 0.1) & (scene < 0.9)]
    assert residual.std() == pytest.approx(0.02, rel=0.1)
    np.testing.assert_array_equal(pair.sharp, scene)


def test_dead_leaves_has_high_frequency_content_and_layers():
    rng = np.random.default_rng(0)
    scene = dl.dead_leaves_layers(128, 128, rng, num_layers=5)
    assert scene.rgba.shape == (5, 4, 128, 128) and scene.rgba.dtype == np.float32
    assert np.all(scene.rgba[0, 3] == 1.0)  # opaque background
    assert np.all(np.diff(scene.depths) < 0)  # far to near
    visible = scene.visible_layer()
    assert len(np.unique(visible)) == 5  # every layer shows somewhere
    image = dl.dead_leaves_image(128, 128, seed=0)
    assert image.min() >= 0 and image.max() <= 1
    # dead leaves keep far more energy above 0.15 cycles/px than a natural photo
    photo = kphotos.load_skimage_sample("chelsea")[0][:128, :128]
    assert _high_frequency_energy(image) > 3 * _high_frequency_energy(photo)
    assert _high_frequency_energy(image) > 5e-3
    np.testing.assert_array_equal(image, dl.dead_leaves_image(128, 128, seed=0))
    assert not np.array_equal(image, dl.dead_leaves_image(128, 128, seed=1))


def test_dead_leaves_light_sources_exceed_white():
    scene = dl.dead_leaves_layers(96, 96, np.random.default_rng(1), num_layers=3,
                                  light_probability=1.0, light_gain=5.0)
    colors = scene.rgba[:, :3]
    assert colors.max() == pytest.approx(5.0)
    plain = dl.dead_leaves_layers(96, 96, np.random.default_rng(1), num_layers=3)
    assert plain.rgba[:, :3].max() <= 1.0


def test_power_law_sizes():
    sizes = dl.sample_power_law(np.random.default_rng(0), 20000, 4.0, 100.0, 3.0)
    assert sizes.min() >= 4.0 and sizes.max() <= 100.0
    # density r^-3 on [4, 100]: P(r < 8) = (4^-2 - 8^-2) / (4^-2 - 100^-2) = 0.7512
    assert np.mean(sizes < 8.0) == pytest.approx(0.7512, abs=0.015)


@pytest.mark.parametrize("maker", [kdepth.smooth_depth, kdepth.slanted_depth, kdepth.layered_depth])
def test_depth_models_are_in_range(maker, rng):
    depth = maker(40, 50, rng)
    assert depth.shape == (40, 50) and depth.dtype == np.float32
    assert depth.min() >= 0 and depth.max() <= 1 and np.ptp(depth) > 0.05


def test_pairs_are_deterministic_in_range_and_varied():
    source = kpairs.SyntheticDefocusSource(64, seed=11)
    pairs = [source.pair(i) for i in range(8)]
    again = kpairs.SyntheticDefocusSource(64, seed=11).pair(5)
    np.testing.assert_array_equal(again.blurred, pairs[5].blurred)
    np.testing.assert_array_equal(again.sharp, pairs[5].sharp)
    other = kpairs.SyntheticDefocusSource(64, seed=12).pair(5)
    assert not np.array_equal(other.blurred, pairs[5].blurred)
    sources = set()
    for pair in pairs:
        for image in (pair.blurred, pair.sharp):
            assert image.shape == (64, 64, 3) and image.dtype == np.float32
            assert image.min() >= 0 and image.max() <= 1
        assert pair.radius.shape == (64, 64) and pair.radius.min() >= 0
        assert pair.radius.max() <= pair.info["max_radius"] + 1e-4
        sources.add(pair.info["source"])
    assert "dead_leaves" in sources and len(sources) >= 3
    assert set(sources) - {"dead_leaves"} <= set(kphotos.SKIMAGE_TRAIN_SAMPLES)


def test_training_and_heldout_photos_are_disjoint_real_photos():
    assert not set(kphotos.SKIMAGE_TRAIN_SAMPLES) & set(kphotos.SKIMAGE_HELDOUT_SAMPLES)
    assert 4 <= len(kphotos.SKIMAGE_HELDOUT_SAMPLES) <= 6
    for name in kphotos.SKIMAGE_HELDOUT_SAMPLES + kphotos.SKIMAGE_TRAIN_SAMPLES:
        rgb, depth = kphotos.load_skimage_sample(name)
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 256
        assert rgb.dtype == np.float32 and 0 <= rgb.min() and rgb.max() <= 1
        assert len(np.unique(rgb[::4, ::4, 0])) > 32  # a photograph, not a binary mask
    _, depth = kphotos.load_skimage_sample("stereo_motorcycle")
    assert depth is not None and np.all(np.isfinite(depth))


def test_user_photo_folder(tmp_path, rng):
    photo = np.clip(rng.random((80, 90, 3)), 0, 1)
    codec.write_image(tmp_path / "a.png", photo, bit_depth=16)
    (tmp_path / "notes.txt").write_text("ignored")
    source = kpairs.SyntheticDefocusSource(48, photos=tmp_path, dead_leaves_fraction=0.0, seed=0)
    pair = source.pair(0)
    assert pair.info["source"] == "a.png"
    assert pair.sharp.shape == (48, 48, 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no PNG"):
        kpairs.SyntheticDefocusSource(48, photos=empty)


def test_tf_dataset_is_reproducible_and_matches_the_source():
    import tensorflow as tf

    dataset = kpipeline.make_synthetic_dataset(32, seed=3, length=4, with_radius=True)
    assert dataset.element_spec[0].shape == (32, 32, 3)
    assert dataset.element_spec[0].dtype == tf.float32
    first = [[t.numpy() for t in element] for element in dataset]
    second = [[t.numpy() for t in element]
              for element in kpipeline.make_synthetic_dataset(32, seed=3, length=4, with_radius=True,
                                                              num_parallel_calls=1)]
    assert len(first) == 4
    source = kpairs.SyntheticDefocusSource(32, seed=3)
    for index, (a, b) in enumerate(zip(first, second)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a[0], source.pair(index).blurred)
    infinite = kpipeline.make_synthetic_dataset(32, seed=3)
    assert len(list(infinite.take(2))) == 2


def test_write_dpdd_layout(tmp_path):
    meta = kdpdd_writer.write_dpdd_layout(tmp_path, 3, split="val", size=(40, 56), seed=1,
                                          dead_leaves_fraction=0.5)
    root = tmp_path / "val_c"
    sources = sorted(os.listdir(root / "source"))
    assert sources == sorted(os.listdir(root / "target")) == sorted(os.listdir(root / "radius"))
    assert len(sources) == 3
    saved = json.loads((root / "synthetic.json").read_text())
    assert saved["images"].keys() == meta["images"].keys() == set(sources)
    for name in sources:
        blurred = codec.read_image(root / "source" / name)
        sharp = codec.read_image(root / "target" / name)
        assert blurred.bit_depth == sharp.bit_depth == 16
        assert blurred.rgb.shape == sharp.rgb.shape == (40, 56, 3)
        radius = kdpdd_writer.read_radius_map(root / "radius" / name)
        assert radius.mean() == pytest.approx(saved["images"][name]["mean_radius"], abs=1e-3)
        if saved["images"][name]["mean_radius"] > 1.0:
            assert np.abs(blurred.rgb - sharp.rgb).mean() > 1e-3
    held = {saved["images"][n]["source"] for n in sources} - {"dead_leaves"}
    assert held <= set(kphotos.SKIMAGE_HELDOUT_SAMPLES)


def test_write_dpdd_layout_full_photos_8bit(tmp_path):
    kdpdd_writer.write_dpdd_layout(tmp_path, 1, split="test", bit_depth=8, save_radius=False,
                                   photos="skimage:coins")
    data = codec.read_image(tmp_path / "test_c" / "source" / "synth_0000.png")
    assert data.bit_depth == 8 and data.rgb.shape == (303, 384, 3)
    assert not (tmp_path / "test_c" / "radius").exists()


def test_config_validation():
    with pytest.raises(ValueError):
        kpairs.SyntheticConfig(max_radius=(5.0, 1.0))
    with pytest.raises(ValueError):
        kpairs.SyntheticConfig(depth_models=("cubes",))
    with pytest.raises(ValueError):
        krender.render_defocus_pair(np.zeros((4, 4, 3)), np.zeros((5, 4)), focus=0, max_radius=1)


def test_config_overrides_parse_ranges_numbers_and_names():
    config = kpairs.synthetic_config_from_overrides(
        ["sharp_probability=0.2", "photo_scale=0.5:1.5", "max_radius=3", "max_layers=6",
         "depth_models=layers:slant", " "])
    assert config.sharp_probability == 0.2 and config.photo_scale == (0.5, 1.5)
    assert config.max_radius == (3.0, 3.0) and config.max_layers == 6
    assert config.depth_models == ("layers", "slant")
    assert config.in_focus_probability == kpairs.SyntheticConfig().in_focus_probability
    assert kpairs.synthetic_config_from_overrides([]) == kpairs.SyntheticConfig()
    for bad, message in [("clouds=1", "NAME=VALUE with NAME one of"), ("photo_scale", "NAME=VALUE"),
                         ("photo_scale=a:b", "cannot read 'a:b' as LOW:HIGH"),
                         ("photo_scale=1:2:3", "LOW:HIGH"), ("max_radius=5:1", "low <= high"),
                         ("sharp_probability=1.5", "in \\[0, 1\\]"), ("photo_scale=0:1", "positive")]:
        with pytest.raises(ValueError, match=message):
            kpairs.synthetic_config_from_overrides([bad])


def test_sharp_pairs_differ_only_by_noise():
    config = kpairs.SyntheticConfig(sharp_probability=1.0, noise_sigma=(0.0, 0.0))
    source = kpairs.SyntheticDefocusSource(48, seed=5, config=config)
    for index in range(4):  # dead leaves and photos, highlights included
        pair = source.pair(index)
        assert pair.info["max_radius"] == 0.0 and pair.radius.max() == 0.0
        np.testing.assert_allclose(pair.blurred, pair.sharp, atol=2e-3)
    # Off by default, and the default stream does not change when it is off.
    default = kpairs.SyntheticDefocusSource(48, seed=5).pair(3)
    explicit = kpairs.SyntheticDefocusSource(48, seed=5, config=kpairs.SyntheticConfig(
        sharp_probability=0.0, photo_scale=(1.0, 1.0))).pair(3)
    np.testing.assert_array_equal(default.blurred, explicit.blurred)
    assert default.info["max_radius"] > 0


def test_photo_scale_zooms_photo_crops(tmp_path):
    # A vertical grating with a 16-pixel period: its period in the crops follows the zoom.
    columns = 0.5 + 0.4 * np.sin(2 * np.pi * np.arange(600) / 16.0)
    codec.write_image(tmp_path / "grating.png", np.repeat(np.tile(columns, (600, 1))[..., None], 3, -1),
                      bit_depth=16)

    def period(scale: float) -> float:
        config = kpairs.SyntheticConfig(photo_scale=(scale, scale), sharp_probability=1.0)
        source = kpairs.SyntheticDefocusSource(128, photos=str(tmp_path / "grating.png"), seed=2,
                                               config=config)
        row = source.pair(0, dead_leaves=False).sharp[64, :, 0]
        spectrum = np.abs(np.fft.rfft(row - row.mean()))
        return 128 / float(np.argmax(spectrum))

    assert period(1.0) == pytest.approx(16, rel=0.1)
    assert period(0.5) == pytest.approx(8, rel=0.1)
    assert period(2.0) == pytest.approx(32, rel=0.1)
    full = kpairs.SyntheticDefocusSource(64, photos="skimage:coins", seed=2,
                                         config=kpairs.SyntheticConfig(photo_scale=(0.5, 0.5)))
    assert full.pair(0, size="full", dead_leaves=False).sharp.shape == (303, 384, 3)  # not rescaled


def test_base_blur_softens_target_and_input_alike():
    def pairs(sigma: float):
        config = kpairs.SyntheticConfig(sharp_probability=1.0, noise_sigma=(0.0, 0.0),
                                        base_blur=(sigma, sigma))
        source = kpairs.SyntheticDefocusSource(64, photos="skimage:astronaut", seed=4, config=config)
        return [source.pair(i, dead_leaves=(i % 2 == 0)) for i in range(4)]

    def detail(image):
        return float(np.abs(np.diff(image, axis=1)).mean())

    for crisp, soft in zip(pairs(0.0), pairs(1.5)):
        assert soft.info["base_blur"] == 1.5 and crisp.info["base_blur"] == 0.0
        np.testing.assert_allclose(soft.blurred, soft.sharp, atol=2e-3)  # in focus: same softness
        assert detail(soft.sharp) < 0.8 * detail(crisp.sharp)
    with pytest.raises(ValueError, match="non-negative"):
        kpairs.SyntheticConfig(base_blur=(-1.0, 1.0))


def test_jitter_colour_keeps_range_edges_and_gray():
    rng = np.random.default_rng(0)
    image = kpairs.SyntheticDefocusSource(64, photos="skimage:astronaut", seed=1).pair(
        0, dead_leaves=False).sharp
    gray = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2)
    for _ in range(8):
        out = kphotos.jitter_colour(image, rng)
        assert out.shape == image.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        # A monotone tone curve of a recoloured image: edges stay where they were.
        edges = np.abs(np.diff(image.mean(axis=2), axis=1)) > 0.1
        moved = np.abs(np.diff(out.mean(axis=2), axis=1))
        assert moved[edges].mean() > 2 * moved[~edges].mean()
        g = kphotos.jitter_colour(gray, rng)
        np.testing.assert_allclose(g[..., 0], g[..., 1], atol=1e-6)
        np.testing.assert_allclose(g[..., 0], g[..., 2], atol=1e-6)
    assert not np.allclose(kphotos.jitter_colour(image, rng), image, atol=0.02)


def test_photo_colour_recolours_photo_crops_only():
    def first_pairs(share: float):
        config = kpairs.SyntheticConfig(photo_colour=share, sharp_probability=1.0,
                                        noise_sigma=(0.0, 0.0))
        source = kpairs.SyntheticDefocusSource(48, photos="skimage:astronaut", seed=3, config=config)
        return source.pair(0, dead_leaves=False), source.pair(1, dead_leaves=True)

    (plain, leaves), (jittered, leaves_on) = first_pairs(0.0), first_pairs(1.0)
    np.testing.assert_array_equal(leaves.sharp, leaves_on.sharp)  # dead leaves untouched
    assert np.abs(plain.sharp - jittered.sharp).mean() > 0.02
    np.testing.assert_allclose(jittered.blurred, jittered.sharp, atol=2e-3)  # shared by both
    default = kpairs.SyntheticDefocusSource(48, photos="skimage:astronaut", seed=3).pair(2)
    explicit = kpairs.SyntheticDefocusSource(48, photos="skimage:astronaut", seed=3,
                                             config=kpairs.SyntheticConfig(photo_colour=0.0)).pair(2)
    np.testing.assert_array_equal(default.blurred, explicit.blurred)
    assert kpairs.synthetic_config_from_overrides(["photo_colour=0.8"]).photo_colour == 0.8
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        kpairs.SyntheticConfig(photo_colour=1.5)


def test_one_radius_law_for_pixels_and_layers(scene):
    from kpac_tf.data import render

    depth = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (96, 1))
    pair = krender.render_defocus_pair(scene, depth, focus=0.25, max_radius=6.0)
    np.testing.assert_array_equal(pair.radius, render.radius_from_depth(depth, 0.25, 6.0))
    assert render.radius_scale(depth, 0.25, 6.0) == pytest.approx(6.0 / 0.75)
    layers = np.array([0.9, 0.5, 0.25], np.float32)  # dead-leaves layer depths, far to near
    np.testing.assert_allclose(render.radius_from_depth(layers, 0.5, 4.0), [4.0, 0.0, 2.5])
    np.testing.assert_allclose(render.radius_from_depth(layers, 0.5, 4.0, cap=3.0), [3.0, 0.0, 2.5])
    assert not render.radius_from_depth(np.full((3, 3), 0.4, np.float32), 0.4, 5.0).any()


def test_the_synthetic_names_live_in_their_own_modules():
    """The former re-export module kpac_tf.data.synthetic is gone: each of its names is
    imported from the module that defines it (and exports it in ``__all__``)."""
    import importlib

    homes = {
        "kpac_tf.images.colour": ["srgb_to_linear", "linear_to_srgb"],
        "kpac_tf.data.render": ["DefocusPair", "disc_psf", "pick_margin", "radius_from_depth",
                                "render_defocus", "render_defocus_pair", "render_layers"],
        "kpac_tf.data.depth": ["layered_depth", "random_depth", "slanted_depth", "smooth_depth"],
        "kpac_tf.data.photos": ["SKIMAGE_HELDOUT_SAMPLES", "SKIMAGE_TRAIN_SAMPLES", "jitter_colour",
                                "load_skimage_sample"],
        "kpac_tf.data.pairs": ["SyntheticConfig", "SyntheticDefocusSource",
                               "synthetic_config_from_overrides"],
        "kpac_tf.data.dpdd_writer": ["RADIUS_PNG_SCALE", "read_radius_map", "write_dpdd_layout"],
        "kpac_tf.data.pipeline": ["make_synthetic_dataset"],
    }
    for module_name, names in homes.items():
        module = importlib.import_module(module_name)
        for name in names:
            value = getattr(module, name)
            home = getattr(value, "__module__", module_name)
            assert home == module_name or name in getattr(module, "__all__", ()), (module_name, name)
    assert kcolour.srgb_to_linear is importlib.import_module("kpac_tf.images.colour").srgb_to_linear
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("kpac_tf.data.synthetic")
