"""Dilated convs train on every CPU: with oneDNN (turned on by importing kpac_tf first)
and, when TensorFlow was loaded with it off, through the space-to-batch form."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_importing_kpac_tf_turns_onednn_on():
    from kpac_tf.model import layers

    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") in ("1", "0")
    if os.environ["TF_ENABLE_ONEDNN_OPTS"] == "1":
        assert layers.onednn_enabled()


def test_space_to_batch_form_equals_the_dilated_conv(monkeypatch, rng):
    import tensorflow as tf

    from kpac_tf.model import layers

    x = tf.constant(rng.random((2, 21, 18, 4)).astype("float32"))
    kernel = tf.Variable(rng.standard_normal((3, 3, 4, 5)).astype("float32"))
    direct = layers.same_conv2d(x, kernel, 3, 3)
    monkeypatch.setattr(layers, "onednn_enabled", lambda: False)
    with tf.GradientTape() as tape:
        fallback = layers.same_conv2d(x, kernel, 3, 3)
        loss = tf.reduce_sum(fallback * fallback)
    np.testing.assert_allclose(fallback.numpy(), direct.numpy(), atol=1e-5)
    grad = tape.gradient(loss, kernel)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0


@pytest.mark.process
def test_a_kpac_model_trains_with_onednn_off():
    """The process is the point: TensorFlow loaded before kpac_tf with oneDNN off."""
    code = (
        "import tensorflow as tf, numpy as np\n"
        "from kpac_tf.model.layers import onednn_enabled\n"
        "from kpac_tf.model.builder import build_kpac\n"
        "assert not onednn_enabled()\n"
        "model = build_kpac('kpac-2level', num_blocks=1, dilations=(1, 2))\n"
        "x = tf.constant(np.random.default_rng(0).random((1, 24, 24, 3), np.float32))\n"
        "@tf.function\n"
        "def grads():\n"
        "    with tf.GradientTape() as tape:\n"
        "        loss = tf.reduce_mean(tf.abs(model(x, training=True) - x))\n"
        "    return tape.gradient(loss, model.trainable_variables)\n"
        "g = grads()\n"
        "assert all(v is not None and bool(tf.reduce_all(tf.math.is_finite(v))) for v in g)\n"
        "print('ok')\n")
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_bfloat16_dilated_convs_have_gradients(rng):
    """Under mixed_bfloat16 the dilated convs differentiate on every CPU (oneDNN has no
    bfloat16 kernels without AVX-512; the space-to-batch form is used there)."""
    import keras
    import tensorflow as tf

    from kpac_tf.model.builder import build_kpac

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = tf.constant(rng.random((1, 24, 24, 3)).astype("float32"))

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            out = tf.cast(model(x, training=True), tf.float32)
            loss = tf.reduce_mean(tf.abs(out - x))
        return tape.gradient(loss, model.trainable_variables)

    values = grads()
    assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g))) for g in values)
