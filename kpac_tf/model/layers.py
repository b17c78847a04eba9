"""KPAC building blocks as Keras layers.

All layers take and return float32 NHWC feature tensors. The activation everywhere is
LeakyReLU with slope 0.2 (``tf.nn.leaky_relu``'s default, as in the authors' release),
except the sigmoid attention heads. Padding is TF 'SAME' (zero padding); the dilated
convolutions spell it out as explicit per-side pads (the same zeros in the same places),
because ONNX Runtime rejects dilated convs whose padding is left as "SAME" and the
converters keep that form when the height and width are dynamic.

Layers:
    SubPixelConv2DTranspose the 4x4 stride-2 transposed conv as a conv + depth_to_space
    OutputConv2D        the last conv (96 -> 3), in the forms the CPU kernels run fast
    SharedAtrousConv2D  one kernel applied at several dilation rates (Sec. 4.1 of the paper)
    ScaleAttention      per-pixel weights alpha_1..alpha_R, one per dilation rate
    ShapeAttention      global per-channel weights beta, shared by all rates
    KPACBlock           the kernel-sharing parallel atrous convolution block
    ResidualBlock       the plain residual block of the paper's Table 2 baseline
"""
from __future__ import annotations

import functools

from typing import Sequence

import keras
import tensorflow as tf

#: Negative slope of every LeakyReLU of the network (the authors' value).
LEAKY_SLOPE = 0.2


@keras.saving.register_keras_serializable(package="kpac_tf")
def leaky_relu(x: tf.Tensor) -> tf.Tensor:
    """LeakyReLU with the authors' slope :data:`LEAKY_SLOPE`: the activation of every
    conv, deconv and atrous branch (the same op as keras' "leaky_relu" at 0.2)."""
    return tf.nn.leaky_relu(x, alpha=LEAKY_SLOPE)


def same_padding(kernel_size: int, dilation: int) -> list[list[int]]:
    """Explicit NHWC pads equal to TF's 'SAME' for a stride-1 conv with this kernel and
    dilation: the effective kernel (k - 1) * d + 1 less one, split as TF splits it (the
    odd pixel, if any, at the bottom/right)."""
    total = (int(kernel_size) - 1) * int(dilation)
    before = total // 2
    return [[0, 0], [before, total - before], [before, total - before], [0, 0]]


@functools.lru_cache(maxsize=None)
def onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU ops on oneDNN (``TF_ENABLE_ONEDNN_OPTS``, read once
    when TensorFlow loads; importing :mod:`kpac_tf` first turns it on). True when the
    build does not say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # pragma: no cover - a build without the query
        return True
    return bool(_pywrap_util_port.IsMklEnabled())


def native_dilated_gradients(bfloat16: bool) -> bool:
    """Whether this CPU's conv kernels differentiate dilated convs: oneDNN's do, in
    bfloat16 only where it has bfloat16 kernels (CPUs with AVX-512); elsewhere
    TensorFlow falls back to its own kernels, which do not."""
    if not onednn_enabled():
        return False
    if not bfloat16:
        return True
    from kpac_tf.cpu import cpu_flags

    flags = cpu_flags()
    return not flags or "avx512f" in flags


def same_conv2d(x: tf.Tensor, kernel: tf.Tensor, kernel_size: int, dilation: int) -> tf.Tensor:
    """A stride-1 NHWC conv equal to TF's 'SAME' one, as an explicit zero pad followed by a
    'VALID' conv. (TensorFlow's CPU gradient kernels reject dilated convs with padding
    given as a pad list, so the pads are a separate op; converters fold them back in.)

    TensorFlow's own CPU kernels (oneDNN off: TensorFlow imported before kpac_tf on a
    CPU where it does not turn oneDNN on by itself; or bfloat16 on a CPU without
    AVX-512, :func:`native_dilated_gradients`) cannot differentiate a dilated conv at
    all; there the dilated conv is computed as ``tf.nn.atrous_conv2d`` (space to
    batch, plain conv, batch to space), the same sums in a form every kernel can
    differentiate."""
    padded = tf.pad(x, same_padding(kernel_size, dilation))
    if int(dilation) > 1 and not native_dilated_gradients(x.dtype == tf.bfloat16):
        return tf.nn.atrous_conv2d(padded, kernel, rate=int(dilation), padding="VALID")
    return tf.nn.conv2d(padded, kernel, strides=1, padding="VALID", dilations=int(dilation))


@keras.saving.register_keras_serializable(package="kpac_tf")
class DilatedConv2D(keras.layers.Conv2D):
    """A stride-1 'same' Conv2D whose zero padding is written into the graph explicitly.

    Same variables, configuration and numbers as ``keras.layers.Conv2D(...,
    padding="same")``; only the graph differs (explicit pads instead of "SAME"), which
    is what ONNX Runtime needs for dilated convs. NHWC only.
    """

    def convolution_op(self, inputs, kernel):
        if self.padding != "same" or tuple(self.strides) != (1, 1):
            return super().convolution_op(inputs, kernel)
        if self.kernel_size[0] != self.kernel_size[1] or self.dilation_rate[0] != self.dilation_rate[1]:
            return super().convolution_op(inputs, kernel)
        return same_conv2d(inputs, kernel, self.kernel_size[0], self.dilation_rate[0])


def conv(
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    dilation: int = 1,
    activation: str | None = "leaky",
    name: str | None = None,
    dtype: str | None = None,
) -> keras.layers.Conv2D:
    """A 'SAME'-padded conv with bias, LeakyReLU(0.2) by default ('sigmoid' or None too).

    Dilated convs (``dilation > 1``) are :class:`DilatedConv2D` (explicit pads).
    ``dtype``: a dtype policy for this layer only (default: the global policy).
    """
    act = {"leaky": leaky_relu, "sigmoid": "sigmoid", None: None}[activation]
    layer_class = DilatedConv2D if dilation > 1 and strides == 1 else keras.layers.Conv2D
    return layer_class(
        filters,
        kernel_size,
        strides=strides,
        dilation_rate=dilation,
        padding="same",
        activation=act,
        name=name,
        dtype=dtype,
    )


# Taps of the 4x4 stride-2 'SAME' transposed conv seen by each output phase, as
# offsets -1, 0, +1 of a 3x3 conv over its input (index 4 is a zero tap): even output
# rows/columns 2m take x[m-1]*w[3] + x[m]*w[1], odd ones 2m+1 take x[m]*w[2] + x[m+1]*w[0].
_PHASE_TAPS = ((3, 1, 4), (4, 2, 0))


def subpixel_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """The [3, 3, in, 4*out] conv kernel whose output, rearranged by
    ``tf.nn.depth_to_space(., 2)``, equals the 4x4 stride-2 'SAME' transposed conv with
    ``kernel`` (stored [4, 4, out, in]). Phases are ordered (row, column) = (0,0),
    (0,1), (1,0), (1,1), the channel order depth_to_space expects."""
    taps = tf.pad(tf.transpose(kernel, [0, 1, 3, 2]), [[0, 1], [0, 1], [0, 0], [0, 0]])
    phases = [tf.gather(tf.gather(taps, _PHASE_TAPS[row], axis=0), _PHASE_TAPS[col], axis=1)
              for row in (0, 1) for col in (0, 1)]
    return tf.concat(phases, axis=-1)


@keras.saving.register_keras_serializable(package="kpac_tf")
class SubPixelConv2DTranspose(keras.layers.Conv2DTranspose):
    """The 4x4 stride-2 'SAME' transposed conv computed as one 3x3 conv to four output
    phases, bias and activation, then ``depth_to_space``.

    Same variables (kernel [4, 4, out, in], bias [out]), configuration and numbers as
    ``keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same")`` (sums in
    another order); only the graph differs, and only when the layer computes in
    bfloat16. There a forward conv lets oneDNN fuse the bias and LeakyReLU into it: as
    a transposed conv they ran as separate element-wise passes over the
    full-resolution output, a fifth of a bfloat16 forward pass. Float32 layers and
    other configurations run the plain transposed conv.
    """

    def _is_subpixel(self) -> bool:
        return (tuple(self.kernel_size) == (4, 4) and tuple(self.strides) == (2, 2)
                and self.padding == "same" and self.data_format == "channels_last"
                and tuple(self.dilation_rate) == (1, 1) and self.output_padding is None)

    def call(self, inputs):
        # In float32 the transposed conv is faster (the sub-pixel conv does 2.25x the
        # multiply-adds and float32 element-wise passes are cheap): 0.90x instead of
        # 0.97-1.01x of the raw tf.nn graph at 1280x720. In bfloat16 the fusion wins.
        if not self._is_subpixel() or self.compute_dtype != "bfloat16":
            return super().call(inputs)
        outputs = tf.nn.conv2d(inputs, subpixel_kernel(self.kernel), strides=1, padding="SAME")
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.concat([self.bias] * 4, axis=0))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return tf.nn.depth_to_space(outputs, 2)


def deconv(filters: int, *, name: str | None = None) -> keras.layers.Conv2DTranspose:
    """4x4 stride-2 'SAME' transposed conv with LeakyReLU; output exactly 2x the input.

    Its kernel is stored [4, 4, out, in], the layout of ``tf.nn.conv2d_transpose``; in
    bfloat16 it runs as a sub-pixel conv (:class:`SubPixelConv2DTranspose`: same
    numbers, a faster graph).
    """
    return SubPixelConv2DTranspose(
        filters, 4, strides=2, padding="same", activation=leaky_relu, name=name
    )


#: How :class:`OutputConv2D` computes its training (``training=True``) pass: "direct" is
#: the plain conv; "transposed" is the same conv written as the transposed conv of its
#: flipped kernel (see :func:`flipped_kernel`).
OUTPUT_CONV_FORMS = ("direct", "transposed")


def flipped_kernel(kernel: tf.Tensor) -> tf.Tensor:
    """The [k, k, out, in] filter of ``tf.nn.conv2d_transpose`` whose stride-1 'SAME'
    transposed conv equals the stride-1 'SAME' conv with ``kernel`` [k, k, in, out]
    (k odd): the kernel rotated by 180 degrees with its channel axes swapped."""
    return tf.transpose(tf.reverse(kernel, axis=[0, 1]), [0, 1, 3, 2])


@keras.saving.register_keras_serializable(package="kpac_tf")
class OutputConv2D(keras.layers.Conv2D):
    """A stride-1 'same' conv with few output channels (the network's last conv, d2_2:
    96 -> 3, 5x5, full resolution), computed in a shape the CPU's conv kernels run fast.

    Same variables (kernel [k, k, in, filters], bias [filters]), names, configuration
    and numbers as ``keras.layers.Conv2D(filters, k, padding="same")`` (sums in another
    order); only the graph differs:

    - ``pad_channels`` > ``filters``: the conv computes ``pad_channels`` output channels,
      the kernel extended by zero kernels (a constant made in the graph by ``tf.pad``:
      no variable, no gradient, always zero) and the extra channels sliced off before
      the bias. Vector and matrix kernels (AMX tiles: multiples of 16) take 3 output
      channels badly. 0 (or ``filters``) computes the plain conv.
    - ``training_form="transposed"``: when called with ``training=True``, the conv runs
      as ``tf.nn.conv2d_transpose`` of :func:`flipped_kernel` (the same sums). Its
      gradients are then a forward conv 3 -> 96 (input gradient) and a weight gradient
      with 3 input channels, which CPU kernels run faster than the backward passes of
      a conv to 3 channels: forward plus both gradients 1.75x faster with oneDNN on an
      AVX2 CPU (float32, 4 x 256 x 256), about 10x with TensorFlow's own kernels.
      Inference graphs (``training`` false) always use the plain conv, so exported
      graphs keep no transposed conv.

    Odd square kernels, stride 1 and dilation 1 only.
    """

    def __init__(self, filters: int, kernel_size: int, pad_channels: int = 0,
                 training_form: str = "direct", **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if training_form not in OUTPUT_CONV_FORMS:
            raise ValueError(f"training_form must be one of {OUTPUT_CONV_FORMS}, got {training_form!r}.")
        if (self.kernel_size[0] != self.kernel_size[1] or self.kernel_size[0] % 2 != 1
                or tuple(self.strides) != (1, 1) or tuple(self.dilation_rate) != (1, 1)
                or self.padding != "same" or self.data_format != "channels_last"):
            raise ValueError("OutputConv2D needs an odd square kernel, stride 1, dilation 1, "
                             "'same' padding and channels_last.")
        if pad_channels and int(pad_channels) < self.filters:
            raise ValueError(f"pad_channels ({pad_channels}) must be 0 or at least filters ({self.filters}).")
        self.pad_channels = int(pad_channels)
        self.training_form = training_form

    @property
    def computed_channels(self) -> int:
        """Output channels the conv computes (``filters`` plus the zero-kernel ones)."""
        return max(self.filters, self.pad_channels)

    def call(self, inputs, training=None):
        transposed = bool(training) and self.training_form == "transposed"
        padded = self.computed_channels > self.filters
        if not transposed and not padded:
            return super().call(inputs)
        kernel = self.kernel
        if padded:
            extra = self.computed_channels - self.filters
            kernel = tf.pad(kernel, [[0, 0], [0, 0], [0, 0], [0, extra]])
        if transposed:
            shape = tf.concat([tf.shape(inputs)[:3], [self.computed_channels]], axis=0)
            outputs = tf.nn.conv2d_transpose(inputs, flipped_kernel(kernel), shape, strides=1,
                                             padding="SAME")
        else:
            outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")
        if padded:
            outputs = outputs[..., : self.filters]
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(pad_channels=self.pad_channels, training_form=self.training_form)
        return config


def output_conv(
    filters: int,
    kernel_size: int,
    *,
    pad_channels: int = 0,
    training_form: str = "direct",
    name: str | None = None,
    dtype: str | None = None,
) -> OutputConv2D:
    """The network's last conv: 'SAME', bias, no activation, computed as
    :class:`OutputConv2D` (``pad_channels``, ``training_form``); ``dtype``: a dtype
    policy for this layer only (default: the global policy)."""
    return OutputConv2D(filters, kernel_size, pad_channels=pad_channels, training_form=training_form,
                        padding="same", activation=None, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="kpac_tf")
class SharedAtrousConv2D(keras.layers.Layer):
    """Parallel atrous convolutions that share one kernel.

    One kernel variable [k, k, C_in, filters] (no bias, as released) is applied with
    each dilation rate through ``tf.nn.conv2d(..., dilations=rate)``; every branch goes
    through LeakyReLU(0.2) and the branches are concatenated in rate order, giving
    ``filters * len(dilations)`` channels. Each branch is zero-padded like 'SAME', with
    the pads written out (:func:`same_padding`). With ``share_kernel=False`` every rate gets a
    kernel of its own (the paper's Table 1 ablation).
    """

    def __init__(
        self,
        filters: int = 48,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 2, 3, 4, 5),
        share_kernel: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilations = tuple(int(d) for d in dilations)
        self.share_kernel = bool(share_kernel)
        self.kernels: list = []

    def build(self, input_shape):
        shape = (self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters)
        count = 1 if self.share_kernel else len(self.dilations)
        self.kernels = [
            self.add_weight(
                name="kernel" if count == 1 else f"kernel_rate{rate}",
                shape=shape,
                initializer=keras.initializers.GlorotUniform(),
            )
            for rate in self.dilations[:count]
        ]

    def kernel_for(self, index: int):
        """The kernel variable used by the branch with dilation ``self.dilations[index]``."""
        return self.kernels[0 if self.share_kernel else index]

    def call(self, x):
        branches = [
            leaky_relu(same_conv2d(x, self.kernel_for(i), self.kernel_size, rate))
            for i, rate in enumerate(self.dilations)
        ]
        return tf.concat(branches, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters * len(self.dilations))

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            dilations=list(self.dilations),
            share_kernel=self.share_kernel,
        )
        return config


@keras.saving.register_keras_serializable(package="kpac_tf")
class ScaleAttention(keras.layers.Layer):
    """Spatially varying scale attention: alpha in (0, 1), one channel per dilation rate.

    Four atrous 5x5 convs with dilation 2 (32, 32, 16, 16 channels, bias, LeakyReLU), then
    a plain 5x5 conv to ``num_rates`` channels with sigmoid. Output NHWC [N, H, W, R].
    """

    def __init__(self, num_rates: int = 5, units: Sequence[int] = (32, 32, 16, 16), **kwargs):
        super().__init__(**kwargs)
        self.num_rates = int(num_rates)
        self.units = tuple(int(u) for u in units)
        self.hidden = [conv(u, 5, dilation=2, name=f"sca_dc{i + 1}") for i, u in enumerate(self.units)]
        self.head = conv(self.num_rates, 5, activation="sigmoid", name="sca_c2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.hidden:
            layer.build(shape)
            shape = (*shape[:-1], layer.filters)
        self.head.build(shape)

    def call(self, x):
        for layer in self.hidden:
            x = layer(x)
        return self.head(x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.num_rates)

    def get_config(self):
        config = super().get_config()
        config.update(num_rates=self.num_rates, units=list(self.units))
        return config


@keras.saving.register_keras_serializable(package="kpac_tf")
class ShapeAttention(keras.layers.Layer):
    """Global shape attention: beta in (0, 1), shape [N, 1, 1, filters].

    Global mean over H and W (the authors pool with a window as large as the feature map
    of their fixed input size; a global mean is the same at any size), 1x1 conv to
    ``units`` with LeakyReLU, 1x1 conv to ``filters`` with sigmoid.
    """

    def __init__(self, filters: int = 48, units: int = 12, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.units = int(units)
        self.squeeze = conv(self.units, 1, name="sha_c1")
        self.excite = conv(self.filters, 1, activation="sigmoid", name="sha_c2")

    def build(self, input_shape):
        self.squeeze.build((input_shape[0], 1, 1, input_shape[-1]))
        self.excite.build((input_shape[0], 1, 1, self.units))

    def call(self, x):
        pooled = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        return self.excite(self.squeeze(pooled))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, units=self.units)
        return config


def apply_attention(
    branches: tf.Tensor, alpha: tf.Tensor | None, beta: tf.Tensor | None, filters: int
) -> tf.Tensor:
    """Weight concatenated rate branches [N,H,W,R*filters] by alpha and beta.

    alpha [N,H,W,R] (or anything broadcastable to it, e.g. a [R] vector): alpha_i
    multiplies the ``filters`` channels of branch i. beta [N,1,1,filters]: the same beta
    multiplies every branch. ``None`` skips that attention.

    beta is repeated across the branches by concatenating copies, not with ``tf.tile``:
    OpenVINO's TensorFlow front end mis-infers the shape of that tile and rejects the
    multiply; the values are the same.
    """
    if alpha is not None:
        branches = branches * tf.repeat(alpha, filters, axis=-1)
    if beta is not None:
        num_rates = branches.shape[-1] // filters
        branches = branches * tf.concat([beta] * num_rates, axis=-1)
    return branches


@keras.saving.register_keras_serializable(package="kpac_tf")
class KPACBlock(keras.layers.Layer):
    """The KPAC block: shared atrous convs weighted by scale and shape attention, fused.

    Input and output NHWC with ``channels`` (96) channels. No residual inside the block.
    ``call(x, alpha=None, return_attention=False)``: ``alpha`` replaces the computed scale
    attention (a tensor broadcastable to [N,H,W,R], e.g. per-rate constants), which is how
    the paper's Fig. 8 modulation is run; ``return_attention=True`` returns a dict with
    "output" and, for the attentions that are switched on, "alpha" and "beta".
    """

    def __init__(
        self,
        channels: int = 96,
        filters: int = 48,
        kernel_size: int = 5,
        dilations: Sequence[int] = (1, 2, 3, 4, 5),
        share_kernel: bool = True,
        scale_attention: bool = True,
        shape_attention: bool = True,
        shape_units: int = 12,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.dilations = tuple(int(d) for d in dilations)
        self.share_kernel = bool(share_kernel)
        self.use_scale_attention = bool(scale_attention)
        self.use_shape_attention = bool(shape_attention)
        self.shape_units = int(shape_units)
        self.atrous = SharedAtrousConv2D(
            self.filters, self.kernel_size, self.dilations, self.share_kernel, name="dc1"
        )
        self.scale_attention = (
            ScaleAttention(len(self.dilations), name="scale_attention")
            if self.use_scale_attention
            else None
        )
        self.shape_attention = (
            ShapeAttention(self.filters, self.shape_units, name="shape_attention")
            if self.use_shape_attention
            else None
        )
        self.fusion = conv(self.channels, 3, name="cf")

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.atrous.build(shape)
        if self.scale_attention is not None:
            self.scale_attention.build(shape)
        if self.shape_attention is not None:
            self.shape_attention.build(shape)
        self.fusion.build((*shape[:-1], self.filters * len(self.dilations)))

    def attention(self, x) -> tuple:
        """(alpha [N,H,W,R] or None, beta [N,1,1,filters] or None) for features x."""
        alpha = self.scale_attention(x) if self.scale_attention is not None else None
        beta = self.shape_attention(x) if self.shape_attention is not None else None
        return alpha, beta

    def call(self, x, alpha=None, return_attention: bool = False):
        computed_alpha, beta = self.attention(x)
        if alpha is None:
            alpha = computed_alpha
        weighted = apply_attention(self.atrous(x), alpha, beta, self.filters)
        out = self.fusion(weighted)
        if not return_attention:
            return out
        result = {"output": out}
        if alpha is not None:
            result["alpha"] = alpha
        if beta is not None:
            result["beta"] = beta
        return result

    def compute_output_spec(self, x, alpha=None, return_attention: bool = False):
        out = keras.KerasTensor((*x.shape[:-1], self.channels), dtype=x.dtype)
        if not return_attention:
            return out
        result = {"output": out}
        if self.scale_attention is not None or alpha is not None:
            result["alpha"] = keras.KerasTensor((*x.shape[:-1], len(self.dilations)), dtype=x.dtype)
        if self.shape_attention is not None:
            result["beta"] = keras.KerasTensor((x.shape[0], 1, 1, self.filters), dtype=x.dtype)
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            channels=self.channels,
            filters=self.filters,
            kernel_size=self.kernel_size,
            dilations=list(self.dilations),
            share_kernel=self.share_kernel,
            scale_attention=self.use_scale_attention,
            shape_attention=self.use_shape_attention,
            shape_units=self.shape_units,
        )
        return config


@keras.saving.register_keras_serializable(package="kpac_tf")
class ResidualBlock(keras.layers.Layer):
    """The residual-block baseline of the paper's Table 2: x + conv(lrelu(conv(x))).

    Two 3x3 convs with ``channels`` channels (bias; LeakyReLU after the first) and an
    identity skip; drop-in replacement for :class:`KPACBlock` (same input/output shape).
    """

    def __init__(self, channels: int = 96, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.kernel_size = int(kernel_size)
        self.conv1 = conv(self.channels, self.kernel_size, name="rb_c1")
        self.conv2 = conv(self.channels, self.kernel_size, activation=None, name="rb_c2")

    def build(self, input_shape):
        self.conv1.build(tuple(input_shape))
        self.conv2.build((*tuple(input_shape)[:-1], self.channels))

    def call(self, x, alpha=None, return_attention: bool = False):
        out = x + self.conv2(self.conv1(x))
        return {"output": out} if return_attention else out

    def compute_output_spec(self, x, alpha=None, return_attention: bool = False):
        out = keras.KerasTensor(x.shape, dtype=x.dtype)
        return {"output": out} if return_attention else out

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, kernel_size=self.kernel_size)
        return config
