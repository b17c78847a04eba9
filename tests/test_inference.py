"""Deblurrer: tiling geometry, tiled == whole, self-ensemble, dual-pixel, compiled once,
precision (float32, bfloat16, auto)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import skimage.data
import skimage.transform
import tensorflow as tf

from kpac_tf import build_kpac, cpu
from kpac_tf.inference import (
    ENSEMBLE_TRANSFORMS,
    Deblurrer,
    feather_weights,
    plan_axis,
    resolve_precision,
    tile_size_for_budget,
)
from kpac_tf.model import precision as kprecision


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
    # 64-pixel tiles are small for the 2-level model's receptive field: measured 37.8 dB
    # against the whole-image pass (the 512-pixel tiles above reach 50 dB).
    assert _psnr(result, Deblurrer(model).deblur(image)) > 37.0


def test_stored_integer_samples_give_the_float_results_exactly():
    """uint8/uint16 samples (a file's stored precision) are scaled tile by tile to the
    same floats the image reader gives, so results match the float input bit for bit,
    whole and tiled; tiled blending equals a per-pixel weighted mean of the tiles."""
    model = _strong_residual_model("kpac-2level")
    photo = _photo(120, 168)
    for levels, dtype in ((255, np.uint8), (65535, np.uint16)):
        samples = np.round(photo * levels).astype(dtype)
        floats = samples.astype(np.float32) * np.float32(1.0 / levels)
        for deblurrer in (Deblurrer(model), Deblurrer(model, tile_size=64, overlap=16)):
            np.testing.assert_array_equal(deblurrer.deblur(samples), deblurrer.deblur(floats))
    tiler = Deblurrer(model, tile_size=64, overlap=16)
    rows, cols = plan_axis(120, 64, 16), plan_axis(168, 64, 16)
    total, weights = np.zeros((120, 168, 3)), np.zeros((120, 168, 1))
    for top in rows.starts:
        for left in cols.starts:
            window = (slice(top, top + 64), slice(left, left + 64))
            w = np.outer(feather_weights(64, 16, top > 0, top + 64 < 120),
                         feather_weights(64, 16, left > 0, left + 64 < 168))[..., None]
            total[window] += tiler.deblur(photo[window]) * w
            weights[window] += w
    np.testing.assert_allclose(tiler.deblur(photo), total / weights, atol=2e-6)


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


def _dihedral_views() -> list[tuple]:
    """The 8 flips/rotations written out here (not taken from the module under test)."""
    views = []
    for flip in (False, True):
        for k in range(4):
            views.append((lambda x, k=k, flip=flip: np.rot90(x[:, ::-1] if flip else x, k),
                          lambda y, k=k, flip=flip: (lambda z: z[:, ::-1] if flip else z)(np.rot90(y, -k))))
    return views


def test_ensemble_averages_and_keeps_an_identity_model_exact():
    model = _strong_residual_model("kpac-2level")
    image = _photo(48, 80)
    plain = Deblurrer(model, precision="float32").deblur(image)
    ensembled = Deblurrer(model, ensemble=True, precision="float32").deblur(image)
    assert ensembled.shape == image.shape
    # The mean over the 8 transforms of the model's clipped output, mapped back.
    outputs = []
    for forward, inverse in _dihedral_views():
        view = np.ascontiguousarray(forward(image))[np.newaxis]
        outputs.append(inverse(np.clip(model(view, training=False).numpy()[0], 0.0, 1.0)))
    want = np.clip(np.mean(outputs, axis=0), 0.0, 1.0)
    assert np.abs(outputs[1] - outputs[0]).max() > 0.05  # the views really differ
    np.testing.assert_allclose(ensembled, want, atol=1e-5)
    assert np.abs(ensembled - plain).max() > 1e-3
    last = model.get_layer("d2_2")
    last.kernel.assign(np.zeros(last.kernel.shape, np.float32))
    last.bias.assign(np.zeros(last.bias.shape, np.float32))
    np.testing.assert_allclose(Deblurrer(model, ensemble=True).deblur(image), image, atol=1e-6)


def test_dual_pixel_deblurrer():
    model = _strong_residual_model("kpac-dual")
    centre = _photo(96, 128)
    views = [np.roll(centre, 2, axis=1), np.roll(centre, -2, axis=1), centre]  # left, right, centre
    deblurrer = Deblurrer(model, tile_size=64, overlap=24)
    assert deblurrer.needs_tiling(96, 128)
    tiled = deblurrer.deblur_dual(*views)
    whole = Deblurrer(model, memory_budget_mb=4096).deblur_dual(*views)
    assert tiled.shape == (96, 128, 3)
    assert np.mean(np.abs(whole - centre)) > 0.05  # the network really changes the image
    assert _psnr(tiled, whole) >= 50.0  # measured 51.6 dB
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


# ---------------------------------------------------------------------------------------
# Precision.


def test_float32_precision_is_the_plain_compiled_forward(rng):
    model = _strong_residual_model("kpac-2level")
    image = rng.random((37, 53, 3), dtype=np.float32)
    deblurrer = Deblurrer(model, precision="float32")
    assert deblurrer.precision == "float32" and deblurrer.model is model
    # What the Deblurrer ran before it had a precision setting.
    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    want = np.clip(forward(tf.constant(image[None]))[0].numpy(), 0.0, 1.0)
    np.testing.assert_array_equal(deblurrer.deblur(image), want)


@pytest.mark.parametrize("precision", ["float16", "bf16", "", "FLOAT32", None])
def test_unknown_precision_is_a_value_error(precision):
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16"):
        Deblurrer(build_kpac("kpac-2level"), precision=precision)


@pytest.mark.parametrize(
    "flags,expected",
    [
        ({"sse4_2", "avx2", "avx512f"}, "float32"),
        ({"avx2", "avx512f", "avx512_bf16"}, "float32"),  # no measured inference gain
        ({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "bfloat16"),
        (set(), "float32"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    precision, reason = resolve_precision("auto")
    assert precision == expected
    assert ("AMX-BF16" in reason) if expected == "bfloat16" else reason
    assert resolve_precision("float32")[0] == "float32"
    assert resolve_precision("bfloat16")[0] == "bfloat16"


def test_auto_is_float32_on_a_cpu_without_bfloat16(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    model = build_kpac("kpac-2level")
    deblurrer = Deblurrer(model)
    assert deblurrer.precision == "float32" and deblurrer.model is model
    assert "neither AMX-BF16 nor AVX512-BF16" in deblurrer.precision_reason


def test_bfloat16_tiles_are_larger_for_the_same_budget():
    assert tile_size_for_budget(512, 8, "bfloat16") > tile_size_for_budget(512, 8, "float32")
    assert tile_size_for_budget(512, 8, "float32") == tile_size_for_budget(512)
    with pytest.raises(ValueError, match="precision"):
        tile_size_for_budget(512, 8, "auto")


def test_forced_bfloat16_gives_float32_output_close_to_float32():
    """Runs anywhere (emulated bfloat16 is slow but correct), so the image is tiny."""
    model = _strong_residual_model("kpac-2level", seed=3)
    image = _photo(40, 56)
    full = Deblurrer(model, precision="float32").deblur(image)
    deblurrer = Deblurrer(model, precision="bfloat16", memory_budget_mb=64, overlap=16)
    assert deblurrer.precision == "bfloat16" and deblurrer.model is not model
    assert deblurrer.model.get_layer("block1").compute_dtype == "bfloat16"
    assert deblurrer.model.get_layer("residual_add").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # nothing global stays changed
    float32_tiles = Deblurrer(model, precision="float32", memory_budget_mb=64, overlap=16)
    assert deblurrer.tile_size > float32_tiles.tile_size
    half = deblurrer.deblur(image)
    assert half.dtype == np.float32 and half.shape == image.shape
    assert np.all(np.isfinite(half)) and half.min() >= 0.0 and half.max() <= 1.0
    assert np.abs(full - image).mean() > 0.02  # the network really changes the image
    assert 0 < np.abs(half - full).max() < 0.02  # bfloat16 really ran, and stays close
    assert _psnr(half, full) > 50


def test_bfloat16_on_a_photo_is_within_50_db_of_float32():
    """The bundled 3-level weights on a real photo: bfloat16 against float32."""
    features = cpu.bf16_features()
    if not features:
        pytest.skip(f"{kprecision.fast_bfloat16()[1]}; this check runs on CPUs with AMX-BF16 or AVX512-BF16")
    from kpac_tf.model.weights import load_model

    model = load_model("kpac-3level")
    image = skimage.data.chelsea().astype(np.float32) / 255.0
    full = Deblurrer(model, precision="float32").deblur(image)
    half = Deblurrer(model, precision="bfloat16").deblur(image)
    assert half.dtype == np.float32 and half.shape == image.shape
    assert _psnr(half, full) >= 50.0


def test_tiling_settings_that_do_not_fit_name_the_setting_and_a_value_that_works():
    from kpac_tf.inference import check_tiling, tile_size_for_budget

    assert check_tiling(None, 128, 512) == tile_size_for_budget(512)
    assert check_tiling(100, 16, 512) == 104  # rounded up to the model's multiple
    with pytest.raises(ValueError, match=r"^The memory budget must be a positive number of MB, got 0; "
                                         r"69 MB is the smallest that works with a tile overlap of 128 px"):
        check_tiling(None, 128, 0)
    with pytest.raises(ValueError, match="positive number of MB, got nan"):
        check_tiling(None, 128, float("nan"))
    # 69 MB gives tiles of 264 px, the smallest over twice 128; 68 MB does not.
    assert check_tiling(None, 128, 69) == 264
    with pytest.raises(ValueError, match=r"^A memory budget of 68 MB gives tiles of 256 px, too small for a "
                                         r"tile overlap of 128 px .* at least 69 MB .* overlap under 128 px"):
        check_tiling(None, 128, 68)
    with pytest.raises(ValueError, match=r"^A tile size of 100 px \(104 px once rounded up to a multiple "
                                         r"of 8\) is too small for a tile overlap of 64 px .* at least 136 px"):
        check_tiling(100, 64, 512)
    with pytest.raises(ValueError, match=r"^The tile overlap must be 0 px or more, got -1"):
        check_tiling(None, -1, 512)
    with pytest.raises(ValueError, match=r"^The tile size must be at least 64 px, got 32"):
        check_tiling(32, 0, 512)
