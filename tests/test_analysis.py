"""Attention analysis: maps, geometry, modulation, blur detection, CUHK pairing."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from kpac_tf.analysis import attention as kattention
from kpac_tf.analysis import blur_detection as bd
from kpac_tf.images import codec
from kpac_tf.model.builder import build_kpac
from kpac_tf.model.weights import get_arrays, set_arrays


def _lively_weights(model, seed: int) -> None:
    """He-scaled random weights (Glorot's leave every alpha at ~0.5 and the output ~ the
    input), so that attention and modulation make visible differences."""
    rng = np.random.default_rng(seed)
    arrays = []
    for array in get_arrays(model):
        if array.ndim == 1:
            arrays.append(rng.normal(0.0, 0.05, array.shape).astype(np.float32))
        else:
            fan_in = int(np.prod(array.shape[:-1]))
            std = np.sqrt(2.0 / (1.04 * fan_in))
            arrays.append(rng.normal(0.0, std, array.shape).astype(np.float32))
    set_arrays(model, arrays, "test weights")


@pytest.fixture(scope="module")
def model2():
    model = build_kpac("kpac-2level")
    _lively_weights(model, 7)
    return model


@pytest.fixture(scope="module")
def model3():
    model = build_kpac("kpac-3level")
    _lively_weights(model, 8)
    return model


def _image(rng, height, width):
    return rng.random((height, width, 3), dtype=np.float32)


# ---------------------------------------------------------------------------------------
# Maps.


@pytest.mark.parametrize("fixture, multiple", [("model2", 4), ("model3", 8)])
def test_maps_have_block_and_image_shapes_and_ranges_for_odd_sizes(request, rng, fixture, multiple):
    model = request.getfixturevalue(fixture)
    image = _image(rng, 37, 53)
    maps = kattention.compute_attention(model, image)
    h, w = -(-37 // multiple), -(-53 // multiple)
    assert kattention.block_resolution((37, 53), multiple) == (h, w)
    assert maps.output.shape == (37, 53, 3)
    assert maps.output.min() >= 0.0 and maps.output.max() <= 1.0
    assert len(maps.alphas) == len(maps.alphas_image) == len(maps.betas) == 2
    for alpha, alpha_image, beta in zip(maps.alphas, maps.alphas_image, maps.betas):
        assert alpha.shape == (h, w, 5)
        assert alpha_image.shape == (37, 53, 5)
        assert beta.shape == (48,)
        for values in (alpha, alpha_image, beta):
            assert np.all((values > 0) & (values < 1))
        # Resizing interpolates between cells: it cannot leave their range.
        assert alpha_image.min() >= alpha.min() - 1e-6 and alpha_image.max() <= alpha.max() + 1e-6
    assert maps.rate_map(2, 3).shape == (37, 53)
    np.testing.assert_array_equal(maps.rate_map(2, 3, at_image=False), maps.alphas[1][..., 2])


def test_maps_equal_the_models_own_attention_outputs(rng, model2):
    image = _image(rng, 29, 42)
    maps = kattention.compute_attention(model2, image)
    twin = build_kpac("kpac-2level", return_attention=True)
    set_arrays(twin, get_arrays(model2), "copy")
    reference = twin(image[None], training=False)
    for block in (1, 2):
        np.testing.assert_allclose(maps.alphas[block - 1], reference[f"block{block}_alpha"][0],
                                   atol=1e-6)
        np.testing.assert_allclose(maps.betas[block - 1], reference[f"block{block}_beta"][0, 0, 0],
                                   atol=1e-6)
    plain = np.clip(model2(image[None], training=False).numpy()[0], 0, 1)
    np.testing.assert_allclose(maps.output, plain, atol=1e-5)
    # The maps depend on the image (not a constant of the weights).
    other = kattention.compute_attention(model2, _image(rng, 29, 42))
    assert np.abs(other.alphas[0] - maps.alphas[0]).max() > 1e-3


def test_attention_model_is_cached_per_model_and_follows_weight_changes(rng):
    model = build_kpac("kpac-2level")
    _lively_weights(model, 1)
    image = _image(rng, 24, 24)
    first = kattention.compute_attention(model, image)
    cached = kattention.attention_model(model)
    assert kattention.attention_model(model) is cached
    assert kattention.attention_model(build_kpac("kpac-2level")) is not cached
    _lively_weights(model, 2)
    second = kattention.compute_attention(model, image)
    assert kattention.attention_model(model) is cached
    assert np.abs(second.alphas[0] - first.alphas[0]).max() > 1e-3
    np.testing.assert_allclose(
        second.output, np.clip(model(image[None]).numpy()[0], 0, 1), atol=1e-5)


def test_models_without_scale_attention_are_refused(rng):
    model = build_kpac("kpac-2level", scale_attention=False)
    with pytest.raises(ValueError, match="no scale attention"):
        kattention.compute_attention(model, _image(rng, 16, 16))
    with pytest.raises(ValueError, match="no scale attention"):
        kattention.modulate(model, _image(rng, 16, 16), [1, 0, 0, 0, 0])


# ---------------------------------------------------------------------------------------
# Geometry of block maps.


def test_block_map_to_image_interpolates_between_receptive_field_centres():
    multiple = 8
    h, w = 4, 3
    rows = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)  # value = row cell
    resized = kattention.block_map_to_image(rows, (27, 21), multiple)  # padded 32 x 24
    assert resized.shape == (27, 21)
    centres = kattention.feature_centres(h, multiple)
    np.testing.assert_array_equal(centres, [7, 15, 23, 31])
    for cell, centre in enumerate(centres[:-1]):  # the last centre lies in the padding
        np.testing.assert_allclose(resized[int(centre)], cell)
    # Linear between centres, clamped before the first one, no column dependence.
    np.testing.assert_allclose(resized[11], 0.5)
    np.testing.assert_allclose(resized[:8], 0.0)
    np.testing.assert_allclose(resized[26], (26 - 7) / 8)
    assert np.all(resized == resized[:, :1])
    # Upsampled input: image pixel y has its centre at 4 y + 1.5 of the network input.
    upsampled = kattention.block_map_to_image(rows, (7, 5), multiple, scale=4)
    expected = np.clip((4 * np.arange(7) + 1.5 - 7) / 8, 0, h - 1)
    np.testing.assert_allclose(upsampled[:, 0], expected, atol=1e-6)
    # Channels are resized independently; constants stay constant.
    stacked = np.stack([rows, np.full_like(rows, 0.25)], axis=-1)
    both = kattention.block_map_to_image(stacked, (27, 21), multiple)
    np.testing.assert_allclose(both[..., 0], resized)
    np.testing.assert_allclose(both[..., 1], 0.25)


def test_receptive_field_of_a_block_cell_is_centred_on_the_documented_pixel(rng):
    model = build_kpac("kpac-2level")
    attention = kattention.attention_model(model)  # random Glorot weights are enough here
    image = tf.constant(_image(rng, 256, 8))
    cell = 32
    with tf.GradientTape() as tape:
        tape.watch(image)
        alpha = attention(image[None], training=False)["block1_alpha"]
        value = alpha[0, cell, 0, 0]
    gradient = tape.gradient(value, image).numpy()
    rows = np.nonzero(np.abs(gradient).sum(axis=(1, 2)) > 0)[0]
    assert rows.min() > 0 and rows.max() < 255  # the whole field lies inside the image
    centre = kattention.feature_centres(64, 4)[cell]
    assert (rows.min() + rows.max()) / 2 == centre == 4 * cell + 3


# ---------------------------------------------------------------------------------------
# Modulation.


def test_modulation_with_computed_alphas_reproduces_the_output(rng, model2):
    image = _image(rng, 33, 47)
    maps = kattention.compute_attention(model2, image)
    np.testing.assert_allclose(kattention.modulate(model2, image, maps.alphas), maps.output, atol=1e-6)
    np.testing.assert_allclose(kattention.modulate(model2, image, [None, None]), maps.output, atol=1e-6)


def test_modulation_with_a_single_rate_changes_the_output(rng, model2):
    image = _image(rng, 33, 47)
    maps = kattention.compute_attention(model2, image)
    only1 = kattention.modulate(model2, image, kattention.single_rate(maps.dilations, 1))
    only5 = kattention.modulate(model2, image, kattention.single_rate(maps.dilations, 5))
    block2_only1 = kattention.modulate(model2, image, [None, kattention.single_rate(maps.dilations, 1)])
    assert only1.shape == (33, 47, 3) and 0 <= only1.min() and only1.max() <= 1
    for changed in (only1, only5, block2_only1):
        assert np.abs(changed - maps.output).mean() > 1e-4  # unchanged: < 1e-6
    assert np.abs(only1 - only5).mean() > 1e-3
    # Constants equal to a constant map give the same result as that map.
    h, w = maps.alphas[0].shape[:2]
    constant_map = np.broadcast_to(kattention.single_rate(maps.dilations, 1), (h, w, 5))
    np.testing.assert_allclose(kattention.modulate(model2, image, [constant_map, constant_map]),
                               only1, atol=1e-6)


def test_modulation_rejects_wrong_shapes(rng, model2):
    image = _image(rng, 20, 20)
    with pytest.raises(ValueError, match="3 per-rate constants"):
        kattention.modulate(model2, image, [[1, 0, 0], None])
    with pytest.raises(ValueError, match="block resolution"):
        kattention.modulate(model2, image, [np.ones((4, 4, 5), np.float32), None])
    with pytest.raises(ValueError, match="one entry per block"):
        kattention.modulate(model2, image, [None, None, None])
    with pytest.raises(ValueError, match="not one of the model's rates"):
        kattention.single_rate((1, 2, 3, 4, 5), 7)


# ---------------------------------------------------------------------------------------
# Blur detection: mechanics and metrics.


def test_threshold_recovers_the_region_of_a_known_map(rng):
    truth = bd.ellipse_mask(40, 60, (20, 25), (12, 18))
    values = np.where(truth, 0.8, 0.2) + rng.normal(0, 0.03, truth.shape)
    mask, value = bd.threshold_map(values, 0.5)
    np.testing.assert_array_equal(mask, truth)
    assert value == 0.5
    # Otsu's threshold lies between the modes (within its histogram bin of the gap).
    mask, value = bd.threshold_map(values, "otsu")
    assert 0.2 < value < 0.8
    assert np.mean(mask != truth) < 0.005
    mask, value = bd.threshold_map(np.full((5, 5), 0.4), "otsu")
    assert not mask.any() and value == pytest.approx(0.4)
    with pytest.raises(ValueError, match="otsu"):
        bd.threshold_map(values, "mean")


def test_metrics_on_known_masks():
    truth = np.zeros((4, 4), bool)
    truth[:2] = True  # 8 blurred pixels
    predicted = np.zeros((4, 4), bool)
    predicted[0] = True  # 4 true positives, no false positive
    counts = bd.compare_masks(predicted, truth)
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (4, 0, 4, 8)
    assert counts.precision == 1.0 and counts.recall == 0.5
    assert counts.accuracy == pytest.approx(12 / 16)
    assert counts.f_measure(0.3) == pytest.approx(1.3 * 0.5 / (0.3 + 0.5))
    assert counts.f_measure(1.0) == pytest.approx(2 / 3)
    shifted = np.zeros((4, 4), bool)
    shifted[1:3] = True  # 4 TP, 4 FP, 4 FN, 4 TN
    counts = bd.compare_masks(shifted, truth)
    assert counts.precision == counts.recall == counts.accuracy == counts.f_measure() == 0.5
    inverted = bd.compare_masks(~truth, truth)
    assert inverted.accuracy == 0.0 and inverted.f_measure() == 0.0
    pooled = bd.compare_masks(predicted, truth) + counts
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.tn) == (8, 4, 8, 12)
    with pytest.raises(ValueError, match="image's size"):
        bd.compare_masks(predicted, truth[:3])


@pytest.mark.parametrize("fill", ["ellipse", "empty", "full"])
def test_a_perfect_mask_scores_one(fill):
    truth = {"ellipse": bd.ellipse_mask(30, 40, (15, 20), (8, 12)),
             "empty": np.zeros((30, 40), bool), "full": np.ones((30, 40), bool)}[fill]
    counts = bd.compare_masks(truth.copy(), truth)
    assert counts.f_measure() == 1.0 and counts.f_measure(1.0) == 1.0
    assert counts.accuracy == 1.0 and counts.precision == 1.0 and counts.recall == 1.0


def test_synthetic_example_blurs_exactly_outside_the_focus_region(rng):
    sharp = _image(rng, 48, 64)
    in_focus = bd.ellipse_mask(48, 64, (24, 30), (14, 18))
    blurred, radius, truth = bd.synthetic_blur_example(sharp, in_focus, 4.0)
    np.testing.assert_array_equal(truth, ~in_focus)
    assert np.all(radius[in_focus] == 0) and np.allclose(radius[~in_focus], 4.0)
    inside = np.abs(blurred - sharp)[in_focus].mean()
    outside = np.abs(blurred - sharp)[~in_focus].mean()
    assert inside < 0.01 < 0.05 < outside


@pytest.mark.parametrize("upsample", [1, 2])
def test_blur_map_is_one_minus_the_first_blocks_rate1_map_at_image_resolution(rng, model3, upsample):
    image = _image(rng, 35, 51)
    detection = bd.detect_blur(model3, image, upsample=upsample)
    assert detection.blur_map.shape == (35, 51) and detection.mask.shape == (35, 51)
    assert detection.mask.dtype == bool
    assert 0 <= detection.blur_map.min() and detection.blur_map.max() <= 1
    np.testing.assert_array_equal(detection.mask, detection.blur_map > detection.threshold)
    enlarged = bd.upsample_image(image, upsample)
    assert enlarged.shape == (35 * upsample, 51 * upsample, 3)
    maps = kattention.compute_attention(model3, enlarged)
    expected = 1.0 - kattention.block_map_to_image(maps.alphas[0][..., 0], (35, 51), 8, scale=upsample)
    np.testing.assert_allclose(detection.blur_map, expected, atol=1e-6)
    if upsample == 1:
        np.testing.assert_allclose(detection.blur_map, 1.0 - maps.rate_map(1, 1), atol=1e-6)


# ---------------------------------------------------------------------------------------
# CUHK layout.


def _write(path, height=12, width=16, value=0.0):
    codec.write_image(str(path), np.full((height, width), value, np.float32), grayscale=True)


def _cuhk(tmp_path, images, masks):
    (tmp_path / "image").mkdir()
    (tmp_path / "gt").mkdir()
    for name in images:
        _write(tmp_path / "image" / name, value=0.5)
    for name in masks:
        _write(tmp_path / "gt" / name, value=1.0)
    return str(tmp_path / "image"), str(tmp_path / "gt")


def test_pairing_by_stem_with_include_pattern(tmp_path):
    image_dir, mask_dir = _cuhk(
        tmp_path, ["motion0001.jpg", "out_of_focus0002.jpg", "out_of_focus0001.jpg"],
        ["out_of_focus0001.png", "motion0001.png", "out_of_focus0002.png"])
    (tmp_path / "gt" / "notes.txt").write_text("not an image")
    samples = bd.pair_blur_dataset(image_dir, mask_dir)
    assert [s.name for s in samples] == ["motion0001", "out_of_focus0001", "out_of_focus0002"]
    assert samples[1].image.endswith("out_of_focus0001.jpg")
    assert samples[1].mask.endswith("out_of_focus0001.png")
    defocus = bd.pair_blur_dataset(image_dir, mask_dir, include="out_of_focus*")
    assert [s.name for s in defocus] == ["out_of_focus0001", "out_of_focus0002"]


def test_pairing_errors_name_the_unmatched_files(tmp_path):
    image_dir, mask_dir = _cuhk(tmp_path, ["a.jpg", "b.jpg", "c.jpg"], ["a.png", "d.png"])
    with pytest.raises(bd.PairingError) as error:
        bd.pair_blur_dataset(image_dir, mask_dir)
    message = str(error.value)
    assert "2 image(s) have no mask" in message and "b.jpg, c.jpg" in message
    assert "1 mask(s) have no image" in message and "d.png" in message
    assert isinstance(error.value, ValueError)


def test_pairing_errors_for_duplicates_missing_and_empty_folders(tmp_path):
    image_dir, mask_dir = _cuhk(tmp_path, ["a.jpg", "a.png"], ["a.png"])
    with pytest.raises(bd.PairingError, match="a.jpg / a.png"):
        bd.pair_blur_dataset(image_dir, mask_dir)
    (tmp_path / "image" / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match="mask folder"):
        bd.pair_blur_dataset(image_dir, str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(bd.PairingError, match="holds no images"):
        bd.pair_blur_dataset(image_dir, str(tmp_path / "empty"))
    with pytest.raises(bd.PairingError, match="holds no images"):
        bd.pair_blur_dataset(image_dir, mask_dir, include="zzz*")


def test_read_mask_polarity(tmp_path):
    mask = np.zeros((6, 8), np.float32)
    mask[:, :3] = 1.0
    codec.write_image(str(tmp_path / "m.png"), mask, grayscale=True)
    blurred = bd.read_mask(str(tmp_path / "m.png"))
    np.testing.assert_array_equal(blurred, mask > 0.5)
    np.testing.assert_array_equal(bd.read_mask(str(tmp_path / "m.png"), white="sharp"), mask < 0.5)


def test_evaluate_scores_every_pair_and_checks_sizes(tmp_path, model2):
    image_dir, mask_dir = bd.write_synthetic_dataset(str(tmp_path / "set"), 2, size=(40, 56))
    samples = bd.pair_blur_dataset(image_dir, mask_dir)
    seen = []
    result = bd.evaluate(model2, samples, upsample=2,
                         on_image=lambda sample, image, detection, truth: seen.append(
                             (sample.name, image.shape, detection.mask.shape, truth.shape)))
    assert result.names == ["synthetic_0000", "synthetic_0001"]
    assert seen[0] == ("synthetic_0000", (40, 56, 3), (40, 56), (40, 56))
    assert all(c.total == 40 * 56 for c in result.counts)
    assert result.pooled.total == 2 * 40 * 56
    expected = np.mean([c.f_measure(bd.DEFAULT_BETA2) for c in result.counts])
    assert result.mean_f_measure == pytest.approx(expected)
    # The written masks are the known blurred regions: scoring them against themselves is 1.
    for sample in samples:
        truth = bd.read_mask(sample.mask)
        assert 0.2 < truth.mean() < 0.95
        assert bd.compare_masks(truth, truth).f_measure() == 1.0
    _write(tmp_path / "set" / "gt" / "synthetic_0001.png", height=10, width=10)
    with pytest.raises(ValueError, match="must have its image's size"):
        bd.evaluate(model2, samples, upsample=1)
