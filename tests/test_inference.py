"""Deblurrer: tiling geometry, tiled == whole, self-ensemble, dual-pixel, compiled once."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import skimage.transform

from kpac_tf import build_kpac
from kpac_tf.inference import (
    ENSEMBLE_TRANSFORMS,
    Deblurrer,
    feather_weights,
    plan_axis,
    tile_size_for_budget,
)


def _psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((a - b) ** 2))


def _photo(height, width):
    image = skimage.transform.resize(skimage.data.astronaut(), (height, width), anti_aliasing=True)
    return image.astype(np.float32)


def _strong_residual_model(preset="kpac-3level", seed=0):
    """Random weights with the last conv scaled up so the residual is far from zero."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_kpac(preset)
    last = model.get_layer("d2_2")
    last.kernel.assign(last.kernel.numpy() * 3)
    return model


@pytest.mark.parametrize("size,tile,overlap", [(1000, 256, 64), (256, 256, 64), (100, 256, 64), (513, 128, 32)])
def test_plan_axis_covers_with_equal_windows(size, tile, overlap):
    plan = plan_axis(size, tile, overlap)
    assert plan.starts[0] == 0 and plan.starts[-1] + plan.length == size
    assert plan.length == min(size, tile)
    gaps = np.diff(plan.starts)
    assert np.all(plan.length - gaps >= overlap)  # every neighbour pair overlaps enough


def test_feather_weights_ramp_only_between_tiles():
    weights = feather_weights(10, 4, taper_start=True, taper_end=False)
    np.testing.assert_allclose(weights[:4], [0.125, 0.375, 0.625, 0.875])
    assert np.all(weights[4:] == 1)
    assert np.all(feather_weights(10, 4, False, False) == 1)


def test_tile_size_follows_the_memory_budget():
    assert tile_size_for_budget(1024) == 1024
    assert tile_size_for_budget(256) == 512
    assert tile_size_for_budget(0.01) == 64


def test_tiled_and_whole_image_agree_on_1024x768():
    model = _strong_residual_model()
    image = _photo(768, 1024)
    whole = Deblurrer(model, memory_budget_mb=4096).deblur(image)
    tiler = Deblurrer(model, tile_size=512, overlap=128)
    assert tiler.needs_tiling(768, 1024)
    tiled = tiler.deblur(image)
    assert np.mean(np.abs(whole - image)) > 0.05  # the network really changes the image
    assert _psnr(tiled, whole) >= 50.0


def test_automatic_tiling_kicks_in_for_a_small_budget():
    model = _strong_residual_model("kpac-2level")
    image = _photo(200, 300)
    deblurrer = Deblurrer(model, memory_budget_mb=0.01, overlap=16)
    assert deblurrer.tile_size == 64 and deblurrer.needs_tiling(200, 300)
    result = deblurrer.deblur(image)
    assert result.shape == image.shape and result.dtype == np.float32
    assert result.min() >= 0 and result.max() <= 1
    assert _psnr(result, Deblurrer(model).deblur(image)) > 30


def test_one_trace_for_many_sizes(rng):
    deblurrer = Deblurrer(build_kpac("kpac-2level"))
    for height, width in [(17, 33), (40, 40), (9, 70)]:
        assert deblurrer.deblur(rng.random((height, width, 3), dtype=np.float32)).shape == (height, width, 3)
    assert deblurrer._forward.experimental_get_tracing_count() == 1


def test_ensemble_transforms_invert(rng):
    array = rng.random((5, 7, 3))
    outputs = [forward(array) for forward, _ in ENSEMBLE_TRANSFORMS]
    assert len({o.tobytes() for o in outputs}) == 8  # eight distinct views
    for (forward, inverse) in ENSEMBLE_TRANSFORMS:
        np.testing.assert_array_equal(inverse(forward(array)), array)


def test_ensemble_averages_and_keeps_an_identity_model_exact():
    model = _strong_residual_model("kpac-2level")
    image = _photo(48, 80)
    plain = Deblurrer(model).deblur(image)
    ensembled = Deblurrer(model, ensemble=True).deblur(image)
    assert ensembled.shape == image.shape
    assert np.abs(ensembled - plain).max() > 1e-4
    last = model.get_layer("d2_2")
    last.kernel.assign(np.zeros(last.kernel.shape, np.float32))
    last.bias.assign(np.zeros(last.bias.shape, np.float32))
    np.testing.assert_allclose(Deblurrer(model, ensemble=True).deblur(image), image, atol=1e-6)


def test_dual_pixel_deblurrer(rng):
    deblurrer = Deblurrer(build_kpac("kpac-dual"), tile_size=64, overlap=16)
    views = [rng.random((70, 90, 3), dtype=np.float32) for _ in range(3)]
    assert deblurrer.deblur_dual(*views).shape == (70, 90, 3)
    with pytest.raises(ValueError, match="dual-pixel model"):
        deblurrer.deblur(views[0])
    with pytest.raises(ValueError, match="differ in size"):
        deblurrer.deblur_dual(views[0], views[1], views[2][:50])


def test_bad_arrays_are_rejected(rng):
    deblurrer = Deblurrer(build_kpac("kpac-2level"))
    with pytest.raises(ValueError, match="HxWx3"):
        deblurrer.deblur(rng.random((10, 10)))
    with pytest.raises(ValueError, match="empty"):
        deblurrer.deblur(np.zeros((0, 10, 3), np.float32))
    with pytest.raises(ValueError, match="overlap"):
        Deblurrer(build_kpac("kpac-2level"), tile_size=64, overlap=40)
