"""Tests for kpac_tf.evaluation.metrics: values on known pairs and the protocol options."""
from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from kpac_tf.evaluation import metrics


def _image(rng: np.random.Generator, h: int = 24, w: int = 32) -> np.ndarray:
    return rng.uniform(0.1, 0.9, size=(h, w, 3)).astype(np.float32)


def test_identical_images_score_perfectly(rng):
    img = _image(rng)
    assert metrics.psnr(img, img) == math.inf
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    assert metrics.mae(img, img) == 0.0


def test_constant_shift_gives_known_mse_and_psnr():
    # A flat grey image shifted by exactly 10 levels: MSE = (10/255)^2.
    target = np.full((16, 16, 3), 100 / 255, np.float32)
    pred = np.full((16, 16, 3), 110 / 255, np.float32)
    expected = 10 * math.log10(1 / (10 / 255) ** 2)  # 28.1308 dB
    assert metrics.psnr(pred, target) == pytest.approx(expected, abs=1e-9)
    assert metrics.mae(pred, target) == pytest.approx(10 / 255, abs=1e-12)
    # Unrounded floats: shift 0.05 everywhere -> 26.0206 dB.
    assert metrics.psnr(target + 0.05, target, bit_depth=None) == pytest.approx(
        10 * math.log10(1 / 0.05**2), abs=1e-5)


def test_ssim_matches_skimage_defaults_not_tf(rng):
    target = _image(rng, 40, 48)
    pred = np.clip(target + rng.normal(0, 0.08, target.shape), 0, 1).astype(np.float32)
    expected = structural_similarity(
        target.astype(np.float64), pred.astype(np.float64), data_range=1.0, channel_axis=-1)
    assert metrics.ssim(pred, target, bit_depth=None) == pytest.approx(expected, abs=1e-12)
    assert 0.2 < expected < 0.95  # a real, non-trivial case
    # The 8-bit protocol scores the rounded images with the same function.
    r = lambda x: np.round(x.astype(np.float64) * 255) / 255  # noqa: E731
    assert metrics.ssim(pred, target, bit_depth=8) == pytest.approx(
        structural_similarity(r(pred), r(target), data_range=1.0, channel_axis=-1), abs=1e-12)


def test_output_is_clipped_before_scoring():
    target = np.ones((8, 8, 3), np.float32)
    overshoot = np.full((8, 8, 3), 1.3, np.float32)
    assert metrics.psnr(overshoot, target) == math.inf
    assert metrics.mae(-0.2 * target, 0 * target) == 0.0


def test_bit_depth_rounding():
    target = np.full((8, 8, 3), 0.5, np.float32)
    pred = target + np.float32(0.001)  # well under half an 8-bit step (0.00196)
    assert metrics.psnr(pred, target, bit_depth=8) == math.inf
    assert metrics.psnr(pred, target, bit_depth=16) == pytest.approx(
        10 * math.log10(1 / (65 / 65535) ** 2), abs=1e-6)  # 32833 vs 32768 of 65535
    assert metrics.psnr(pred, target, bit_depth=None) == pytest.approx(60.0, abs=1e-3)
    prepared = metrics.prepare(np.array([[[0.0, 0.5, 1.2]]]), 8)
    np.testing.assert_allclose(prepared * 255, [[[0, 128, 255]]])


def test_input_validation(rng):
    img = _image(rng)
    with pytest.raises(ValueError, match="does not match"):
        metrics.psnr(img, img[:-1])
    with pytest.raises(TypeError, match="float image"):
        metrics.psnr((img * 255).astype(np.uint8), img)
    with pytest.raises(ValueError, match="bit_depth"):
        metrics.psnr(img, img, bit_depth=10)


def test_score_pair_agrees_with_single_metrics(rng):
    target = _image(rng)
    pred = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1).astype(np.float32)
    for bits in (8, 16, None):
        got = metrics.score_pair(pred, target, metrics.Protocol(bit_depth=bits))
        assert got["psnr"] == pytest.approx(metrics.psnr(pred, target, bit_depth=bits), abs=1e-12)
        assert got["ssim"] == pytest.approx(metrics.ssim(pred, target, bit_depth=bits), abs=1e-12)
        assert got["mae"] == pytest.approx(metrics.mae(pred, target, bit_depth=bits), abs=1e-12)


def test_aggregate_handles_infinite_and_missing():
    agg = metrics.aggregate([20.0, math.inf, 30.0, None, float("nan")])
    assert agg.mean == pytest.approx(25.0)
    assert (agg.count, agg.n_infinite, agg.n_missing) == (3, 1, 2)
    assert metrics.aggregate([math.inf, math.inf]).mean == math.inf
    assert math.isnan(metrics.aggregate([None]).mean)
    assert agg.to_dict()["mean"] == 25.0
    assert metrics.aggregate([math.inf]).to_dict()["mean"] == "inf"
    assert metrics.format_score(math.inf) == "inf"
    assert metrics.format_score(None) == "-"
    assert metrics.format_score(0.123456, 3) == "0.123"


def test_protocol_labels_and_markdown_table():
    p8 = metrics.Protocol()
    assert "8-bit" in p8.describe() and "AlexNet" in p8.describe()
    assert "skimage structural_similarity" in p8.describe()
    p16 = metrics.Protocol(bit_depth=16, lpips_net=None)
    assert "16-bit" in p16.describe() and "LPIPS not computed" in p16.describe()
    with pytest.raises(ValueError):
        metrics.Protocol(ssim_variant="tf")
    rows = [("all", {"psnr": metrics.aggregate([24.0, math.inf, 26.0]),
                     "ssim": metrics.aggregate([0.7, 1.0, 0.8]),
                     "mae": metrics.aggregate([0.02, 0.0, 0.04]),
                     "lpips": metrics.aggregate([None, None, None])})]
    table = metrics.markdown_table(rows, p8)
    lines = table.splitlines()
    assert lines[0] == p8.describe()
    assert "| all | 3 | 25.00 | 0.8333 | 0.0200 | - |" in lines
    assert any("1 identical pair" in line for line in lines)
    assert any("LPIPS missing for 3 image(s)" in line for line in lines)


def test_every_psnr_comes_from_one_formula():
    assert metrics.psnr_from_mse(0.0) == math.inf
    assert metrics.psnr_from_mse(0.01) == pytest.approx(20.0)
    assert metrics.psnr_from_mse(0.01 * 255**2, peak=255.0) == pytest.approx(20.0)
    a = np.linspace(-0.5, 1.5, 24).reshape(2, 3, 4)  # any shape, any range
    assert metrics.signal_psnr(a, a) == math.inf
    assert metrics.signal_psnr(a, a + 0.1) == pytest.approx(20.0)
    assert metrics.signal_psnr(a, a + 25.5, data_range=255.0) == pytest.approx(20.0)
    image = np.full((4, 4, 3), 0.5)
    assert metrics.psnr(image, image + 0.1, bit_depth=None) == pytest.approx(
        metrics.signal_psnr(image, image + 0.1))
