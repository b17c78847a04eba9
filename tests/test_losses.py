"""MAE and the VGG19 perceptual loss (random VGG weights; no download)."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kpac_tf.train import losses


@pytest.fixture(scope="module")
def perceptual():
    keras.utils.set_random_seed(0)
    return losses.PerceptualLoss(weights=None)


def test_mae_per_example(rng):
    a = rng.random((3, 8, 8, 3)).astype(np.float32)
    b = rng.random((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.mae(a, b).numpy(), np.abs(a - b).mean(axis=(1, 2, 3)), rtol=1e-6)


def test_caffe_preprocessing_matches_keras(rng):
    images = rng.random((2, 8, 8, 3)).astype(np.float32)
    expected = keras.applications.vgg19.preprocess_input(images * 255.0)
    np.testing.assert_allclose(losses.caffe_preprocess(tf.constant(images)).numpy(), expected, atol=1e-4)
    # Explicit check of one pixel: BGR order, means subtracted.
    pixel = images[0, 0, 0]
    got = losses.caffe_preprocess(tf.constant(images)).numpy()[0, 0, 0]
    np.testing.assert_allclose(got, pixel[::-1] * 255.0 - np.array(losses.CAFFE_BGR_MEAN), atol=1e-4)


def test_extractor_is_vgg19_truncated_at_block4_conv4(perceptual):
    extractor = perceptual.extractor
    names = [layer.name for layer in extractor.layers]
    assert names[-1] == "block4_conv4"
    assert not any(name.startswith("block5") for name in names)
    assert sum(name.startswith("block") and "conv" in name for name in names) == 12  # 2+2+4+4
    features = perceptual.features(tf.zeros([1, 48, 40, 3]))
    assert features.shape == (1, 6, 5, 512)  # three 2x poolings, conv4_4 has 512 channels
    assert not extractor.trainable_weights


def test_perceptual_values_and_gradients(perceptual, rng):
    target = tf.constant(rng.random((2, 32, 32, 3)).astype(np.float32))
    noisy = tf.clip_by_value(target + 0.1 * tf.constant(rng.standard_normal((2, 32, 32, 3)).astype(np.float32)), 0, 1)
    np.testing.assert_allclose(perceptual(target, target).numpy(), [0.0, 0.0], atol=1e-6)
    loss = perceptual(target, noisy).numpy()
    assert loss.shape == (2,) and np.all(loss > 0)
    # The value is the mean squared feature difference.
    diff = perceptual.features(noisy) - perceptual.features(target)
    np.testing.assert_allclose(loss, tf.reduce_mean(diff**2, axis=[1, 2, 3]).numpy(), rtol=1e-4)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(noisy)
        tape.watch(target)
        value = tf.reduce_sum(perceptual(target, noisy))
    assert float(tf.reduce_max(tf.abs(tape.gradient(value, noisy)))) > 0
    assert tape.gradient(value, target) is None  # the target is a constant


def test_absolute_distance(perceptual, rng):
    absolute = losses.PerceptualLoss.__new__(losses.PerceptualLoss)
    absolute.extractor, absolute.distance, absolute.layer = perceptual.extractor, "absolute", "block4_conv4"
    a = tf.constant(rng.random((1, 16, 16, 3)).astype(np.float32))
    b = tf.constant(rng.random((1, 16, 16, 3)).astype(np.float32))
    diff = perceptual.features(a) - perceptual.features(b)
    np.testing.assert_allclose(absolute(a, b).numpy(), tf.reduce_mean(tf.abs(diff), axis=[1, 2, 3]).numpy(), rtol=1e-4)
    with pytest.raises(ValueError, match="Unknown feature distance"):
        losses.PerceptualLoss(weights=None, distance="cosine")


def test_local_weights_file(tmp_path, perceptual, rng):
    keras.utils.set_random_seed(1)
    full = keras.applications.VGG19(include_top=False, weights=None)
    path = str(tmp_path / "vgg19_notop.weights.h5")
    full.save_weights(path)
    loaded = losses.build_vgg19_features(path)
    images = losses.caffe_preprocess(tf.constant(rng.random((1, 16, 16, 3)).astype(np.float32)))
    expected = keras.Model(full.input, full.get_layer("block4_conv4").output)(images)
    np.testing.assert_allclose(loaded(images).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_missing_weights_are_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="--vgg19_weights"):
        losses.build_vgg19_features(str(tmp_path / "absent.h5"))
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(losses.VGGWeightsError, match="notop"):
        losses.build_vgg19_features(str(tmp_path / "broken.h5"))

    def offline(*args, **kwargs):
        if kwargs.get("weights") == "imagenet":
            raise Exception("URL fetch failure on https://example.invalid/vgg19.h5: None -- [Errno -3]")
        raise AssertionError("unexpected call")

    monkeypatch.setattr(keras.applications, "VGG19", offline)
    with pytest.raises(losses.VGGWeightsError) as info:
        losses.PerceptualLoss("imagenet")
    message = str(info.value)
    assert "--vgg19_weights=PATH" in message and "URL fetch failure" in message
    assert "\n" not in message
