"""Architecture tests: exact parameter counts, MACs, any input size, serialisation."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from kpac_tf import build_kpac, count_parameters
from kpac_tf.model.builder import ModelConfig, resolve_config
from kpac_tf.model.complexity import analytic_macs

# (preset, overrides, parameters) from the reference table.
PARAMETER_TABLE = [
    ("kpac-2level", {}, 1_578_277),
    ("kpac-3level", {}, 2_057_893),
    ("kpac-dual", {}, 2_061_493),
    ("kpac-2level", {"num_blocks": 1}, 1_047_188),
    ("kpac-2level", {"num_blocks": 3}, 2_109_366),
    ("kpac-2level", {"num_blocks": 4}, 2_640_455),
    ("kpac-2level", {"kernel_sharing": False}, 2_499_877),
    ("kpac-3level", {"kernel_sharing": False}, 2_979_493),
    ("kpac-2level", {"scale_attention": False, "shape_attention": False}, 1_327_299),
    ("kpac-2level", {"shape_attention": False}, 1_574_701),
    ("kpac-2level", {"scale_attention": False}, 1_330_875),
]


@pytest.mark.parametrize("preset,overrides,expected", PARAMETER_TABLE)
def test_parameter_counts_match_reference(preset, overrides, expected, preset_model):
    model = build_kpac(preset, **overrides) if overrides else preset_model(preset)
    assert count_parameters(model) == expected


def test_kernel_size_and_dilations_change_the_shared_kernel(preset_model):
    base = count_parameters(preset_model("kpac-2level"))
    # Kernel 3 instead of 5 for the shared kernel only: 2 blocks x (25 - 9) x 96 x 48.
    assert count_parameters(build_kpac("kpac-2level", kernel_size=3)) == base - 2 * 16 * 96 * 48
    # Three rates: the shared kernel is unchanged, scale head and fusion shrink.
    three = count_parameters(build_kpac("kpac-2level", dilations=(1, 3, 5)))
    head = 25 * 16 * 2 + 2  # two fewer sigmoid channels
    fusion = 9 * 96 * 96  # two fewer 48-channel branches into cf
    assert three == base - 2 * (head + fusion)


def test_residual_block_baseline_replaces_kpac_blocks():
    model = build_kpac("kpac-2level", block_type="resblock")
    kpac_block = 448_145
    resblock = 2 * (9 * 96 * 96 + 96)
    assert count_parameters(model) == 1_578_277 - 2 * kpac_block + 2 * resblock


def test_analytic_macs_at_720p():
    assert round(analytic_macs("kpac-3level", 720, 1280) / 1e9, 1) == 113.0
    assert round(analytic_macs("kpac-2level", 720, 1280) / 1e9, 1) == 191.7


@pytest.mark.parametrize("height,width", [(37, 53), (1, 1), (5, 130), (64, 48)])
def test_any_size_in_same_size_out(height, width, rng, preset_model):
    model = preset_model("kpac-3level")
    image = rng.random((2, height, width, 3), dtype=np.float32)
    output = model(image).numpy()
    assert output.shape == image.shape
    assert np.all(np.isfinite(output))


def test_zero_last_layer_returns_the_input_exactly(rng):
    """The output is residual + input: with the last conv zeroed it is the input."""
    model = build_kpac("kpac-2level")
    last = model.get_layer("d2_2")
    last.kernel.assign(np.zeros(last.kernel.shape, np.float32))
    last.bias.assign(np.zeros(last.bias.shape, np.float32))
    image = rng.random((1, 19, 23, 3), dtype=np.float32)
    np.testing.assert_allclose(model(image).numpy(), image, atol=1e-6)


def test_padding_mirrors_the_image_for_any_size():
    from kpac_tf.model.padding import crop_to, pad_to_multiple

    image = np.arange(1 * 3 * 2 * 1, dtype=np.float32).reshape(1, 3, 2, 1)
    padded, (height, width) = pad_to_multiple(image, 8)
    assert padded.shape == (1, 8, 8, 1)
    # Rows 0,1,2 then mirrored 2,1,0 then 0,1 (symmetric, repeated for pads > size).
    np.testing.assert_array_equal(padded.numpy()[0, :, 0, 0], image[0, [0, 1, 2, 2, 1, 0, 0, 1], 0, 0])
    np.testing.assert_array_equal(padded.numpy()[0, 0, :, 0], image[0, 0, [0, 1, 1, 0, 0, 1, 1, 0], 0])
    np.testing.assert_array_equal(crop_to(padded, height, width).numpy(), image)
    already, _ = pad_to_multiple(np.ones((1, 16, 8, 3), np.float32), 8)
    assert already.shape == (1, 16, 8, 3)


def test_dual_pixel_model_adds_the_residual_to_the_centre_view(rng):
    model = build_kpac("kpac-dual")
    assert [t.name for t in model.inputs] == ["left", "right", "centre"]
    last = model.get_layer("d2_2")
    last.kernel.assign(np.zeros(last.kernel.shape, np.float32))
    last.bias.assign(np.zeros(last.bias.shape, np.float32))
    views = [rng.random((1, 16, 24, 3), dtype=np.float32) for _ in range(3)]
    np.testing.assert_allclose(model(views).numpy(), views[2], atol=1e-6)


def test_attention_outputs_have_block_resolution(rng):
    model = build_kpac("kpac-3level", return_attention=True)
    outputs = model(rng.random((1, 40, 72, 3), dtype=np.float32))
    assert outputs["output"].shape == (1, 40, 72, 3)
    for block in (1, 2):
        alpha = outputs[f"block{block}_alpha"].numpy()
        beta = outputs[f"block{block}_beta"].numpy()
        assert alpha.shape == (1, 5, 9, 5)
        assert beta.shape == (1, 1, 1, 48)
        assert np.all((alpha > 0) & (alpha < 1)) and np.all((beta > 0) & (beta < 1))


def test_modulated_alpha_changes_the_block_output(rng):
    model = build_kpac("kpac-2level")
    block = model.get_layer("block1")
    features = rng.standard_normal((1, 8, 8, 96)).astype(np.float32)
    computed = block(features).numpy()
    alpha, _ = block.attention(features)
    same = block(features, alpha=alpha).numpy()
    only_rate1 = block(features, alpha=np.array([1, 0, 0, 0, 0], np.float32)).numpy()
    np.testing.assert_allclose(same, computed, atol=1e-6)
    assert np.abs(only_rate1 - computed).max() > 1e-3


def test_model_serialises_through_keras(rng, tmp_path):
    model = build_kpac("kpac-2level", num_blocks=1, kernel_sharing=False)
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    image = rng.random((1, 12, 20, 3), dtype=np.float32)
    np.testing.assert_allclose(restored(image).numpy(), model(image).numpy(), atol=1e-6)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="Unknown preset 'kpac-9level'"):
        resolve_config("kpac-9level")
    with pytest.raises(ValueError, match="levels must be 2 or 3"):
        ModelConfig(levels=4)
    with pytest.raises(ValueError, match="dual-pixel model is 3-level"):
        ModelConfig(levels=2, dual_pixel=True)


def test_alpha_override_inputs_replace_the_scale_attention(rng):
    from kpac_tf.model import weights

    model = build_kpac("kpac-2level", return_attention=True)
    modulated = build_kpac("kpac-2level", alpha_override=True)
    weights.set_arrays(modulated, weights.get_arrays(model), "test")
    image = rng.random((1, 24, 32, 3), dtype=np.float32)
    reference = model(image)
    alphas = [reference["block1_alpha"].numpy(), reference["block2_alpha"].numpy()]
    same = np.abs(modulated([image, *alphas]).numpy() - reference["output"].numpy()).max()
    assert same < 1e-6
    only_rate1 = np.zeros((1, 6, 8, 5), np.float32)
    only_rate1[..., 0] = 1
    changed = modulated([image, only_rate1, only_rate1]).numpy()
    assert np.abs(changed - reference["output"].numpy()).max() > 100 * max(same, 1e-7)


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_keeps_the_residual_path_float32(mixed_bfloat16, rng):
    """Under mixed_bfloat16 the output is float32 and equals the float32 model's to
    within bfloat16 rounding of the interior; with a zero last layer it is the input
    to float32 rounding (the residual base is never rounded to bfloat16)."""
    from kpac_tf.model.weights import get_arrays, set_arrays

    mixed = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
    keras.mixed_precision.set_global_policy("float32")
    full = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
    set_arrays(mixed, get_arrays(full), "the float32 model")
    image = rng.uniform(size=(1, 24, 40, 3)).astype("float32")
    out_mixed, out_full = np.asarray(mixed(image)), np.asarray(full(image))
    assert out_mixed.dtype == np.float32
    assert mixed.get_layer("block1").compute_dtype == "bfloat16"
    difference = np.abs(out_mixed - out_full)
    assert 0 < difference.max() < 0.02
    last = mixed.get_layer("d2_2")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    np.testing.assert_allclose(np.asarray(mixed(image)), image, atol=1e-6)


# ---------------------------------------------------------------------------------------
# A graph other runtimes accept, with the same numbers.


@pytest.mark.parametrize("kernel_size,dilation", [(5, 2), (5, 3), (4, 3), (3, 1)])
def test_explicit_padding_equals_same_padding(kernel_size, dilation, rng):
    import tensorflow as tf

    from kpac_tf.model import layers as kl

    x = rng.standard_normal((2, 13, 17, 6)).astype("float32")
    kernel = rng.standard_normal((kernel_size, kernel_size, 6, 4)).astype("float32")
    want = tf.nn.conv2d(x, kernel, strides=1, padding="SAME", dilations=dilation).numpy()
    got = kl.same_conv2d(x, kernel, kernel_size, dilation).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    layer = kl.DilatedConv2D(4, kernel_size, dilation_rate=dilation, padding="same")
    reference = keras.layers.Conv2D(4, kernel_size, dilation_rate=dilation, padding="same")
    for conv_layer in (layer, reference):
        conv_layer.build(x.shape)
        conv_layer.set_weights([kernel, np.arange(4, dtype="float32")])
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(reference(x)), atol=1e-5)
    assert layer.compute_output_shape(x.shape) == (2, 13, 17, 4)


def _graph_ops(model):
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    return function.graph.get_operations()


def test_graph_has_no_dilated_same_convs_and_no_tile(preset_model):
    """ONNX Runtime refuses dilated convs with 'SAME' padding; OpenVINO's TensorFlow
    front end mis-infers the shape of the tile that broadcast beta."""
    ops = _graph_ops(preset_model("kpac-2level"))
    convs = [op for op in ops if op.type == "Conv2D"]
    dilated = [op for op in convs if max(op.get_attr("dilations")) > 1]
    assert len(dilated) == 2 * (4 + 4)  # per block: rates 2..5 and the 4 scale-attention convs
    assert all(op.get_attr("padding") == b"VALID" for op in dilated)
    assert all(op.inputs[0].op.type == "Pad" for op in dilated)  # the pads, written out
    # tf.repeat's own tile (alpha, one channel per rate) converts fine; beta's must not be one.
    assert not [op.name for op in ops if op.type == "Tile" and "/Repeat/" not in op.name]


def test_dilated_convs_train_on_the_cpu(rng):
    """The explicit pads must not stop TensorFlow's CPU gradient kernels (which reject
    dilated convs whose padding is a pad list)."""
    import tensorflow as tf

    model = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
    x = tf.constant(rng.random((1, 24, 24, 3)).astype("float32"))

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.abs(model(x, training=True) - x))
        return tape.gradient(loss, model.trainable_variables)

    values = grads()
    assert all(g is not None and bool(tf.reduce_all(tf.math.is_finite(g))) for g in values)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in values) > 0


def test_last_conv_can_run_in_the_compute_dtype_for_inference(rng):
    from kpac_tf.model.weights import get_arrays, set_arrays, weight_layout

    full = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        training_like = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
        lean = build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2), float32_last_conv=False)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert training_like.get_layer("d2_2").compute_dtype == "float32"
    assert lean.get_layer("d2_2").compute_dtype == "bfloat16"
    assert lean.get_layer("residual_add").compute_dtype == "float32"
    assert [name for name, _ in weight_layout(lean)] == [name for name, _ in weight_layout(full)]
    for model in (training_like, lean):
        set_arrays(model, get_arrays(full), "the float32 model")
    image = rng.uniform(size=(1, 24, 40, 3)).astype("float32")
    out_full, out_lean = np.asarray(full(image)), np.asarray(lean(image))
    assert out_lean.dtype == np.float32
    assert 0 < np.abs(out_lean - out_full).max() < 0.02
    last = lean.get_layer("d2_2")
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    np.testing.assert_allclose(np.asarray(lean(image)), image, atol=1e-6)  # exact residual base


def test_every_leaky_relu_takes_the_one_slope(rng):
    from kpac_tf.model import layers as kl

    model = build_kpac("kpac-2level", num_blocks=1)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    leaky = [layer for layer in convs if layer.activation is kl.leaky_relu]
    assert len(leaky) == len(convs) - 1  # all but the last conv, d2_2
    assert model.get_layer("d2_2").activation is not kl.leaky_relu
    x = np.linspace(-1.0, 1.0, 9, dtype=np.float32)
    np.testing.assert_allclose(kl.leaky_relu(x).numpy(), np.where(x < 0, kl.LEAKY_SLOPE * x, x))


@pytest.mark.parametrize("height,width", [(5, 7), (8, 8), (1, 3)])
def test_subpixel_deconv_equals_the_transposed_conv(rng, height, width):
    """In bfloat16 the deconvs run as a 3x3 conv to four phases + depth_to_space: the
    same variables and numbers as Keras' transposed conv (checked through the kernel
    rearrangement in float32, and end to end at bfloat16 rounding)."""
    import keras
    import tensorflow as tf

    from kpac_tf.model import layers

    x = rng.normal(size=(2, height, width, 6)).astype("float32")
    plain = keras.layers.Conv2DTranspose(5, 4, strides=2, padding="same",
                                         activation=layers.leaky_relu)
    plain.build(x.shape)
    plain.set_weights([rng.normal(size=(4, 4, 5, 6)).astype("float32"),
                       rng.normal(size=5).astype("float32")])
    kernel, bias = plain.get_weights()
    expected = plain(x).numpy()
    assert expected.shape == (2, 2 * height, 2 * width, 5)
    phases = tf.nn.conv2d(x, layers.subpixel_kernel(kernel), strides=1, padding="SAME")
    rearranged = tf.nn.depth_to_space(layers.leaky_relu(phases + np.tile(bias, 4)), 2)
    np.testing.assert_allclose(rearranged.numpy(), expected, atol=1e-5)
    subpixel = layers.deconv(5)
    subpixel.dtype_policy = keras.DTypePolicy("mixed_bfloat16")
    subpixel.build(x.shape)
    subpixel.set_weights(plain.get_weights())
    assert [w.shape for w in subpixel.weights] == [(4, 4, 5, 6), (5,)]
    got = tf.cast(subpixel(x), tf.float32).numpy()
    np.testing.assert_allclose(got, expected, atol=0.05 * np.abs(expected).max())


def test_bfloat16_graph_has_no_transposed_convs(preset_model):
    """In bfloat16 the deconvs' bias and LeakyReLU fuse into a forward conv (no
    Conv2DBackpropInput); float32 keeps the transposed conv."""
    from kpac_tf.inference import bfloat16_copy

    model = preset_model("kpac-2level")
    float_ops = _graph_ops(model)
    assert sum(op.type == "Conv2DBackpropInput" for op in float_ops) == 2
    ops = _graph_ops(bfloat16_copy(model))
    assert not [op.name for op in ops if op.type == "Conv2DBackpropInput"]
    assert sum(op.type == "DepthToSpace" for op in ops) == 2
