"""KPAC model builder, configuration and presets.

One parameterised builder serves the 2-level, 3-level and dual-pixel networks of the
authors' release and the paper's ablations. The Keras model maps images in [0,1]
(NHWC, any height and width) to deblurred images nominally in [0,1] (not clipped:
callers clip). Inside, it pads to the network's multiple, maps to [-1,1] and computes
exactly the authors' graph (so their weights apply unchanged), then crops back.

Mixed precision (a "mixed_bfloat16" or "mixed_float16" Keras policy set before
building): the padding to [-1,1], the last conv (d2_2), the residual addition and the
crop stay float32, so the residual base is the exact input and the output keeps full
precision; everything in between runs in the policy's compute dtype. For inference,
``build_kpac(..., float32_last_conv=False)`` runs the last conv in the compute dtype
too (its 3-channel output is cast to float32 at the residual addition), which keeps
the float32 copy of its 96-channel full-resolution input out of memory.

The last conv (d2_2, 96 -> 3 at full resolution) is a :class:`kpac_tf.model.layers.OutputConv2D`:
the same variables and numbers, computed in a shape the CPU's kernels take well (see
:func:`build_kpac`'s ``output_conv_channels`` and ``output_conv_form``). Its variables
keep the authors' layout [5, 5, 96, 3] and names whatever the form, so weights and
checkpoints move freely between forms and precisions.

Layer names follow the authors' TensorLayer names (c0, c0_2, ..., cm_1, d2_2) so that
weights can be matched by name; the KPAC blocks are ``block1``, ``block2``, ...
"""
from __future__ import annotations

import dataclasses

import keras

from kpac_tf.model import layers as kl
from kpac_tf.model.padding import CropToImage, PadToMultiple


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture switches of KPAC (defaults: the released 3-level model).

    levels: 2 or 3 encoder downsamplings (the network's multiple is 2**levels).
    num_blocks: KPAC blocks in sequence (paper Table 3).
    kernel_size, dilations: the shared atrous kernel and its rates.
    kernel_sharing: one kernel for all rates (False: Table 1 ablation).
    scale_attention, shape_attention: Table 2 ablations.
    block_type: "kpac" or "resblock" (the residual-block baseline of Table 2).
    dual_pixel: inputs (left, right, centre) instead of one image.
    """

    levels: int = 3
    num_blocks: int = 2
    kernel_size: int = 5
    dilations: tuple = (1, 2, 3, 4, 5)
    kernel_sharing: bool = True
    scale_attention: bool = True
    shape_attention: bool = True
    block_type: str = "kpac"
    dual_pixel: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.levels not in (2, 3):
            raise ValueError(f"levels must be 2 or 3, got {self.levels}.")
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be at least 1, got {self.num_blocks}.")
        if self.block_type not in ("kpac", "resblock"):
            raise ValueError(f"block_type must be 'kpac' or 'resblock', got {self.block_type!r}.")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"dilations must be positive integers, got {self.dilations}.")
        if self.kernel_size < 1:
            raise ValueError(f"kernel_size must be positive, got {self.kernel_size}.")
        if self.dual_pixel and self.levels != 3:
            raise ValueError("The dual-pixel model is 3-level only (levels=3).")

    @property
    def multiple(self) -> int:
        """Height and width must be multiples of this inside the network."""
        return 2**self.levels

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["dilations"] = list(self.dilations)
        return data


#: Input names of a dual-pixel model, in input order: the two dual-pixel views and the
#: combined (centre) image. Commands, data pipelines and exports use these names.
DUAL_PIXEL_VIEWS = ("left", "right", "centre")

PRESETS: dict[str, ModelConfig] = {
    "kpac-2level": ModelConfig(levels=2),
    "kpac-3level": ModelConfig(levels=3),
    "kpac-dual": ModelConfig(levels=3, dual_pixel=True),
}

# The encoder: (name, filters, kernel, stride); 3-level adds c4, c4_2.
_ENCODER = (
    ("c0", 48, 5, 1),
    ("c0_2", 48, 3, 1),
    ("c2", 48, 3, 2),
    ("c2_2", 48, 3, 1),
    ("c3", 96, 3, 2),
    ("c3_2", 96, 3, 1),
    ("c4", 96, 3, 2),
    ("c4_2", 96, 3, 1),
)
# The decoder: (deconv name, deconv filters, conv name, conv filters, conv kernel);
# the last `levels` entries are used.
_DECODER = (
    ("d0", 96, "d0_2", 96, 3),
    ("d1", 48, "d1_2", 48, 3),
    ("d2", 48, "d2_2", 3, 5),
)
_SKIP_AFTER = ("c0_2", "c2_2", "c3_2")  # f1, f2, f3
#: Output channels the last conv computes under a bfloat16 compute policy (zero kernels
#: beyond the 3 real ones): oneDNN's AMX kernels take channel counts that are multiples
#: of 16; with 3 output channels the conv left AMX for plain AVX-512 kernels and took
#: 45% of a bfloat16 training step on an AMX CPU. Under float32 no padding: on an AVX2
#: CPU, 16 channels made the conv's training passes about 2.8x slower.
BFLOAT16_OUTPUT_CONV_CHANNELS = 16
#: The default training form of the last conv (kpac_tf.model.layers.OUTPUT_CONV_FORMS): its
#: forward and both gradients ran 1.75x faster than the direct form in float32 with
#: oneDNN on an AVX2 CPU (the training benchmark).
DEFAULT_OUTPUT_CONV_FORM = "transposed"

# The dtype policy of the layers that stay float32 under mixed precision.
_FULL_PRECISION = "float32"


def resolve_config(config: ModelConfig | str | None = None, **overrides) -> ModelConfig:
    """A ModelConfig from a preset name or config, with field overrides applied."""
    if config is None:
        config = "kpac-3level"
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(
                f"Unknown preset {config!r}; choose one of {', '.join(sorted(PRESETS))}."
            )
        config = PRESETS[config]
    return dataclasses.replace(config, **overrides) if overrides else config


def default_output_conv_channels() -> int:
    """Output channels the last conv computes by default under the current global dtype
    policy: :data:`BFLOAT16_OUTPUT_CONV_CHANNELS` when it computes in bfloat16
    ("mixed_bfloat16", whether the last conv itself runs in float32 or not), else 0
    (the plain 3 channels: padding slowed float32 down on an AVX2 CPU)."""
    if keras.config.dtype_policy().compute_dtype == "bfloat16":
        return BFLOAT16_OUTPUT_CONV_CHANNELS
    return 0


def _make_block(config: ModelConfig, index: int) -> keras.layers.Layer:
    if config.block_type == "resblock":
        return kl.ResidualBlock(96, name=f"block{index}")
    return kl.KPACBlock(
        channels=96,
        filters=48,
        kernel_size=config.kernel_size,
        dilations=config.dilations,
        share_kernel=config.kernel_sharing,
        scale_attention=config.scale_attention,
        shape_attention=config.shape_attention,
        name=f"block{index}",
    )


def _kpac_graph(
    net_input, residual_base, config: ModelConfig, alpha_inputs: list | None,
    float32_last_conv: bool = True, output_conv: dict | None = None,
):
    """The authors' network on padded [-1,1] tensors; returns (output, attention list).

    ``alpha_inputs``: per block, a tensor that replaces its computed scale attention.
    ``float32_last_conv``: d2_2 runs in float32 whatever the dtype policy.
    ``output_conv``: keyword arguments of :func:`kpac_tf.model.layers.output_conv` for d2_2
    (``pad_channels``: None for :func:`default_output_conv_channels`; ``training_form``).
    """
    output_conv = dict(output_conv or {})
    if output_conv.get("pad_channels") is None:
        output_conv["pad_channels"] = default_output_conv_channels()
    x = net_input
    skips = []
    encoder = _ENCODER[: 2 * (config.levels + 1)]
    for name, filters, kernel, stride in encoder:
        x = kl.conv(filters, kernel, strides=stride, name=name)(x)
        if name in _SKIP_AFTER[: config.levels]:
            skips.append(x)
    stack = [x]
    attention = []
    for index in range(1, config.num_blocks + 1):
        alpha = alpha_inputs[index - 1] if alpha_inputs else None
        result = _make_block(config, index)(x, alpha=alpha, return_attention=True)
        x = result["output"]
        attention.append((result.get("alpha"), result.get("beta")))
        stack.append(x)
    x = keras.layers.Concatenate(name="dense_concat")(stack)
    x = kl.conv(96, 3, name="cm_1")(x)
    x = kl.conv(96, 3, name="cm_2")(x)
    for (up_name, up_filters, conv_name, conv_filters, kernel), skip in zip(
        _DECODER[-config.levels :], reversed(skips)
    ):
        x = kl.deconv(up_filters, name=up_name)(x)
        x = keras.layers.Concatenate(name=f"{up_name}_concat")([x, skip])
        if conv_name == "d2_2":
            layer = kl.output_conv(
                conv_filters, kernel, name=conv_name,
                dtype=_FULL_PRECISION if float32_last_conv else None, **output_conv,
            )
        else:
            layer = kl.conv(conv_filters, kernel, name=conv_name)
        x = layer(x)
    x = keras.layers.Add(name="residual_add", dtype=_FULL_PRECISION)([x, residual_base])
    return x, attention


def build_kpac(
    config: ModelConfig | str | None = "kpac-3level",
    *,
    return_attention: bool = False,
    alpha_override: bool = False,
    input_shape: tuple | None = None,
    name: str | None = None,
    float32_last_conv: bool = True,
    output_conv_channels: int | None = None,
    output_conv_form: str = DEFAULT_OUTPUT_CONV_FORM,
    **overrides,
) -> keras.Model:
    """Build a KPAC Keras model.

    Args:
        config: a preset name ("kpac-2level", "kpac-3level", "kpac-dual") or ModelConfig.
        return_attention: if True the model returns a dict: "output" plus, for each
            block i (KPAC blocks only), "block{i}_alpha" [N,h,w,R] (at the block's
            resolution, 1/2**levels of the padded input) and "block{i}_beta" [N,1,1,48].
        alpha_override: if True the model takes, after the image input(s), one extra
            input per block, "block{i}_alpha" [N,h,w,R] in [0,1], used instead of the
            computed scale attention (the paper's Fig. 8 modulation). The weight layout
            is unchanged, so weights copy over with kpac_tf.model.weights.set_arrays.
        input_shape: (H, W) for a fixed-size model (default: any size).
        name: model name (default: the preset-like description).
        float32_last_conv: under a mixed dtype policy, run the last conv (d2_2) in
            float32 (the default, as training does); False runs it in the policy's
            compute dtype (inference: less memory, about 0.2 dB lower PSNR against
            float32). No effect under float32. The weights are the same either way.
        output_conv_channels, output_conv_form: how the last conv is computed (same
            numbers, same variables; :class:`kpac_tf.model.layers.OutputConv2D`): channels
            computed, zero-kernel constants beyond the 3 real ones (None:
            :func:`default_output_conv_channels`; 0: none), and its training form,
            "transposed" (default) or "direct" (inference runs the plain conv).
        **overrides: ModelConfig fields, e.g. num_blocks=3, kernel_sharing=False.

    Returns:
        Single-image: input "image" float32 NHWC [N,H,W,3] in [0,1]. Dual-pixel: inputs
        "left", "right", "centre" in that order. Output [N,H,W,3], nominally [0,1], not
        clipped.
    """
    config = resolve_config(config, **overrides)
    height, width = input_shape if input_shape is not None else (None, None)
    shape = (height, width, 3)
    pad = PadToMultiple(config.multiple, name="to_network", dtype=_FULL_PRECISION)
    if config.dual_pixel:
        inputs = [keras.Input(shape, name=view) for view in DUAL_PIXEL_VIEWS]
        left, right, centre = (
            PadToMultiple(config.multiple, name=f"to_network_{view}", dtype=_FULL_PRECISION)(tensor)
            for view, tensor in zip(DUAL_PIXEL_VIEWS, inputs)
        )
        net_input = keras.layers.Concatenate(name="concat_views")([left, right])
        residual_base, reference = centre, inputs[2]
    else:
        inputs = keras.Input(shape, name="image")
        net_input = residual_base = pad(inputs)
        reference = inputs
    alpha_inputs = None
    if alpha_override:
        if config.block_type != "kpac" or not config.scale_attention:
            raise ValueError("alpha_override needs KPAC blocks with scale attention.")
        alpha_inputs = [
            keras.Input((None, None, len(config.dilations)), name=f"block{i}_alpha")
            for i in range(1, config.num_blocks + 1)
        ]
        inputs = [*(inputs if isinstance(inputs, list) else [inputs]), *alpha_inputs]
    output_conv = {"pad_channels": output_conv_channels, "training_form": output_conv_form}
    net_output, attention = _kpac_graph(
        net_input, residual_base, config, alpha_inputs, float32_last_conv, output_conv
    )
    output = CropToImage(name="to_image", dtype=_FULL_PRECISION)([net_output, reference])
    if return_attention:
        outputs = {"output": output}
        for index, (alpha, beta) in enumerate(attention, start=1):
            if alpha is not None:
                outputs[f"block{index}_alpha"] = alpha
            if beta is not None:
                outputs[f"block{index}_beta"] = beta
    else:
        outputs = output
    model = keras.Model(inputs, outputs, name=name or _default_name(config))
    model.kpac_config = config
    return model


def _default_name(config: ModelConfig) -> str:
    for preset, preset_config in PRESETS.items():
        if preset_config == config:
            return preset.replace("-", "_")
    return f"kpac_{config.levels}level_custom"


def model_config(model: keras.Model) -> ModelConfig:
    """The ModelConfig a model was built from (raises if it was not built here)."""
    config = getattr(model, "kpac_config", None)
    if config is None:
        raise ValueError(f"Model {model.name!r} was not built by kpac_tf.build_kpac.")
    return config
