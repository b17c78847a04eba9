"""The last conv's faster forms (kpac_tf.model.layers.OutputConv2D): zero-kernel channel
padding and the transposed training form compute the same numbers and gradients as the
plain conv, add no variable, and keep checkpoints interchangeable across forms and
precisions."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kpac_tf import build_kpac
from kpac_tf.model import layers as kl
from kpac_tf.model import builder
from kpac_tf.model.weights import get_arrays, set_arrays, weight_layout

# A small KPAC (one block, two rates) keeps every test to seconds.
SMALL = {"num_blocks": 1, "dilations": (1, 2)}
# Gradient tests use the residual-block model: without oneDNN (TensorFlow leaves it off
# on CPUs without AVX-512, and has no oneDNN bfloat16 kernels there), TensorFlow's own
# CPU kernels reject the gradients of dilated convs. The last conv is the same.
NO_DILATION = {"block_type": "resblock"}
OLD = {"output_conv_form": "direct", "output_conv_channels": 0}
VARIANTS = [
    {"output_conv_form": "direct", "output_conv_channels": 16},
    {"output_conv_form": "transposed", "output_conv_channels": 0},
    {"output_conv_form": "transposed", "output_conv_channels": 8},
    {"output_conv_form": "transposed", "output_conv_channels": 16},
]


def _variant_id(variant: dict) -> str:
    return f"{variant['output_conv_form']}{variant['output_conv_channels']}"


def _build(policy: str = "float32", preset: str = "kpac-2level", **kwargs) -> keras.Model:
    keras.mixed_precision.set_global_policy(policy)
    try:
        return build_kpac(preset, **{**SMALL, **kwargs})
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _twins(variant: dict, policy: str = "float32", **overrides) -> tuple[keras.Model, keras.Model]:
    """The old graph in float32 and ``variant`` under ``policy``, with the same weights."""
    old = _build(**OLD, **overrides)
    new = _build(policy, **variant, **overrides)
    set_arrays(new, get_arrays(old), "the old graph")
    return old, new


def _gradients(model: keras.Model, image: np.ndarray, target: np.ndarray) -> list[np.ndarray]:
    with tf.GradientTape() as tape:
        output = tf.cast(model(image, training=True), tf.float32)
        loss = tf.reduce_mean(tf.abs(output - target))
    return [np.asarray(g, np.float64) for g in tape.gradient(loss, model.trainable_variables)]


def _cosines(reference: list[np.ndarray], other: list[np.ndarray]) -> list[float]:
    return [float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))
            for a, b in zip(reference, other)]


@pytest.fixture
def batch(rng) -> tuple[np.ndarray, np.ndarray]:
    image = rng.uniform(size=(2, 24, 40, 3)).astype("float32")
    return image, np.clip(image + rng.normal(scale=0.05, size=image.shape), 0, 1).astype("float32")


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_outputs_equal_the_plain_graph(variant, batch):
    old, new = _twins(variant)
    image = batch[0]
    for training in (False, True):
        np.testing.assert_allclose(new(image, training=training).numpy(),
                                   old(image, training=training).numpy(), atol=2e-6)


@pytest.mark.parametrize("variant", VARIANTS, ids=_variant_id)
def test_gradients_match_the_plain_float32_graph(variant, batch):
    old, new = _twins(variant, **NO_DILATION)
    reference, got = _gradients(old, *batch), _gradients(new, *batch)
    assert [g.shape for g in got] == [g.shape for g in reference]
    assert min(_cosines(reference, got)) >= 0.99999
    for a, b in zip(reference, got):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-6 * np.abs(a).max())


def test_mixed_bfloat16_gradients_match_the_plain_graph(batch):
    """Under mixed_bfloat16 the defaults pad the last conv to 16 channels (transposed
    form, float32): every variable's gradient is within cosine 0.999 of the plain graph
    under the same policy, and as close to the float32 gradients as the plain graph's
    (bfloat16 rounding elsewhere in the network sets that distance, not the last conv)."""
    reference, plain = _twins(OLD, "mixed_bfloat16", **NO_DILATION)
    new = _build("mixed_bfloat16", **NO_DILATION)
    set_arrays(new, get_arrays(reference), "the float32 graph")
    layer = new.get_layer("d2_2")
    assert layer.computed_channels == builder.BFLOAT16_OUTPUT_CONV_CHANNELS
    assert layer.compute_dtype == "float32" and layer.training_form == "transposed"
    float32, old_mixed, new_mixed = (_gradients(m, *batch) for m in (reference, plain, new))
    assert min(_cosines(old_mixed, new_mixed)) >= 0.999
    old_distance = np.array(_cosines(float32, old_mixed))
    new_distance = np.array(_cosines(float32, new_mixed))
    assert np.all(new_distance >= old_distance - 1e-3), (old_distance, new_distance)


def test_padded_part_is_no_variable_and_stays_zero(batch):
    old, new = _twins({"output_conv_form": "transposed", "output_conv_channels": 16}, **NO_DILATION)
    layer = new.get_layer("d2_2")
    assert isinstance(layer, kl.OutputConv2D)
    assert [tuple(w.shape) for w in layer.weights] == [(5, 5, 96, 3), (3,)]
    assert [v.path for v in new.variables] == [v.path for v in old.variables]
    assert new.count_params() == old.count_params()
    assert [n for n, _ in weight_layout(new)] == [n for n, _ in weight_layout(old)]
    # One optimizer step on each: same update, and the graphs still agree after it
    # (nothing hidden trains in the padded graph).
    for model in (old, new):
        optimizer = keras.optimizers.Adam(1e-3)
        grads = _gradients(model, *batch)
        optimizer.apply_gradients(zip([tf.constant(g, tf.float32) for g in grads],
                                      model.trainable_variables))
    for a, b in zip(get_arrays(old), get_arrays(new)):
        np.testing.assert_allclose(b, a, atol=1e-6)
    np.testing.assert_allclose(new(batch[0], training=True).numpy(), old(batch[0]).numpy(), atol=2e-6)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_parameter_count_of_the_released_model_is_unchanged(policy):
    assert _build(policy, "kpac-3level", num_blocks=2, dilations=(1, 2, 3, 4, 5)).count_params() == 2_057_893


def test_defaults_follow_the_dtype_policy():
    plain, mixed = _build(), _build("mixed_bfloat16")
    assert plain.get_layer("d2_2").computed_channels == 3
    assert mixed.get_layer("d2_2").computed_channels == builder.BFLOAT16_OUTPUT_CONV_CHANNELS
    assert plain.get_layer("d2_2").training_form == builder.DEFAULT_OUTPUT_CONV_FORM
    lean = _build("mixed_bfloat16", float32_last_conv=False)
    assert lean.get_layer("d2_2").compute_dtype == "bfloat16"
    assert lean.get_layer("d2_2").computed_channels == builder.BFLOAT16_OUTPUT_CONV_CHANNELS


def _checkpoint(model: keras.Model) -> tf.train.Checkpoint:
    """Model and built Adam state, as the trainer checkpoints them."""
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    return tf.train.Checkpoint(model=model, optimizer=optimizer)


@pytest.mark.parametrize("source,destination", [
    (("float32", OLD), ("float32", {"output_conv_form": "transposed", "output_conv_channels": 16})),
    (("float32", {"output_conv_form": "transposed", "output_conv_channels": 16}), ("float32", OLD)),
    (("float32", OLD), ("mixed_bfloat16", {})),
    (("mixed_bfloat16", {}), ("float32", OLD)),
])
def test_checkpoints_restore_across_forms_and_precisions(source, destination, tmp_path, rng, batch):
    saved = _build(source[0], **source[1])
    arrays = [rng.normal(scale=0.05, size=a.shape).astype("float32") for a in get_arrays(saved)]
    set_arrays(saved, arrays, "random arrays")
    saving = _checkpoint(saved)
    saving.optimizer.iterations.assign(7)
    path = saving.save(str(tmp_path / "ckpt"))
    restored = _build(destination[0], **destination[1])
    loading = _checkpoint(restored)
    loading.restore(path).assert_consumed()
    assert int(loading.optimizer.iterations.numpy()) == 7
    for a, b in zip(arrays, get_arrays(restored)):
        np.testing.assert_array_equal(a, b)
    if source[0] == destination[0] == "float32":
        np.testing.assert_allclose(restored(batch[0]).numpy(), saved(batch[0]).numpy(), atol=2e-6)


def test_output_conv_serialises_and_validates(rng):
    layer = kl.output_conv(3, 5, pad_channels=16, training_form="transposed", name="d2_2")
    clone = kl.OutputConv2D.from_config(layer.get_config())
    assert (clone.pad_channels, clone.training_form, clone.name) == (16, "transposed", "d2_2")
    x = rng.normal(size=(1, 6, 7, 4)).astype("float32")
    assert layer(x, training=True).shape == (1, 6, 7, 3)
    with pytest.raises(ValueError, match="training_form"):
        kl.output_conv(3, 5, training_form="sideways")
    with pytest.raises(ValueError, match="odd square kernel"):
        kl.output_conv(3, 4)
    with pytest.raises(ValueError, match="pad_channels"):
        kl.output_conv(3, 5, pad_channels=2)
