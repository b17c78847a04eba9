"""Attention analysis: per-dilation scale attention maps, shape attention, modulation.

Everything here runs the user's own model definition and weights: the attention
variant is built with ``build_kpac(model.kpac_config, return_attention=True)`` (the
modulation variant with ``alpha_override=True``) and gets the user's weights copied in
with :func:`kpac_tf.model.weights.set_arrays` before every use, so it always matches the
model as it is now. The built variants are cached per model (weakly: they go away
with the model).

Conventions:

* Images are float32 HWC in [0, 1] (RGB). A dual-pixel model takes a tuple
  ``(left, right, centre)`` of such images.
* Outputs are float32 HWC clipped to [0, 1].
* ``alpha`` maps are float32 ``[h, w, R]`` in (0, 1), one channel per dilation rate in
  ``config.dilations`` order, at the KPAC blocks' resolution: ``h = ceil(H / m)``,
  ``w = ceil(W / m)`` with ``m = 2**levels``. They cover the PADDED image (the network
  pads the bottom and right edges to a multiple of ``m``).
* ``beta`` vectors are float32 ``[48]`` in (0, 1) (one weight per filter, shared by
  every rate).

Geometry of a block map: with TF 'SAME' padding each stride-2 3x3 conv centres its
output pixel ``i`` on input pixel ``2 i + 1``, so after ``levels`` such convs cell ``k``
is the centre of a receptive field on padded-image pixel ``m k + m - 1`` (exactly
symmetric; checked by the tests with gradients). :func:`block_map_to_image` interpolates
bilinearly between those centres (clamping at the borders) and so crops the padding
off correctly.
"""
from __future__ import annotations

import dataclasses
import weakref
from typing import Sequence, Union

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.model.builder import DUAL_PIXEL_VIEWS, ModelConfig, build_kpac, model_config
from kpac_tf.model.weights import get_arrays, set_arrays

__all__ = [
    "AttentionMaps",
    "attention_model",
    "block_map_to_image",
    "block_resolution",
    "compute_attention",
    "cover_crop",
    "feature_centres",
    "model_for_analysis",
    "modulate",
    "plot_blur_detection",
    "plot_modulation",
    "plot_scale_attention",
    "radius_correlation",
    "ramp_defocus",
    "rate_index",
    "scale_attention_maps",
    "single_rate",
]

Image = Union[np.ndarray, Sequence[np.ndarray]]


# ---------------------------------------------------------------------------------------
# Geometry.


def block_resolution(image_size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(h, w) of the KPAC blocks' feature maps for an image of ``image_size`` (H, W)."""
    height, width = (int(s) for s in image_size)
    return -(-height // multiple), -(-width // multiple)


def feature_centres(num_cells: int, multiple: int) -> np.ndarray:
    """Padded-image pixel (row or column) on which each block-map cell is centred."""
    return np.arange(num_cells, dtype=np.float64) * multiple + (multiple - 1)


def _interpolate_axis(values: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``values`` along ``axis`` at fractional cell ``positions``
    (clamped to the first and last cell)."""
    size = values.shape[axis]
    positions = np.clip(positions, 0.0, size - 1)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    frac = (positions - low).astype(np.float32)
    shape = [1] * values.ndim
    shape[axis] = -1
    frac = frac.reshape(shape)
    return np.take(values, low, axis=axis) * (1.0 - frac) + np.take(values, high, axis=axis) * frac


def block_map_to_image(
    block_map: np.ndarray, image_size: tuple[int, int], multiple: int, scale: float = 1.0
) -> np.ndarray:
    """Resize a block-resolution map ``[h, w]`` or ``[h, w, C]`` to the image, ``[H, W(, C)]``.

    Args:
        block_map: a map at block resolution that covers the padded network input.
        image_size: (H, W) of the image the result should align with.
        multiple: the network's multiple ``2**levels``.
        scale: how much the network input was enlarged relative to that image (4 when
            the input was upsampled x4); image pixel ``y`` then has its centre at
            network-input pixel ``scale * y + (scale - 1) / 2``.

    Values are interpolated bilinearly between cell centres (see the module docstring),
    so the result keeps the map's value range; the padding is dropped.
    """
    block_map = np.asarray(block_map, dtype=np.float32)
    if block_map.ndim not in (2, 3):
        raise ValueError(f"block_map must be [h, w] or [h, w, C], got shape {block_map.shape}.")
    height, width = (int(s) for s in image_size)
    result = block_map
    for axis, size in ((0, height), (1, width)):
        pixel_centres = scale * np.arange(size, dtype=np.float64) + (scale - 1.0) / 2.0
        cells = (pixel_centres - (multiple - 1)) / multiple
        result = _interpolate_axis(result, axis, cells)
    return result.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Variants of the user's model, cached per model.


@dataclasses.dataclass
class _Variants:
    """Attention / modulation variants of one model, and their compiled forward passes."""

    models: dict = dataclasses.field(default_factory=dict)
    functions: dict = dataclasses.field(default_factory=dict)


_CACHE: "weakref.WeakKeyDictionary[keras.Model, _Variants]" = weakref.WeakKeyDictionary()


def _variant(model: keras.Model, kind: str, outputs: tuple = ()) -> tuple[keras.Model, object]:
    """(variant model, compiled call) for ``kind`` "attention" or "override", with the
    weights of ``model`` copied in now. ``outputs`` restricts the attention variant to
    some of its outputs (a sub-model sharing its layers: cheaper when only the first
    block is needed)."""
    config = model_config(model)
    variants = _CACHE.setdefault(model, _Variants())
    base_key = (kind,)
    if base_key not in variants.models:
        if kind == "attention":
            built = build_kpac(config, return_attention=True, name=f"{model.name}_attention")
        else:
            built = build_kpac(config, alpha_override=True, name=f"{model.name}_modulated")
        variants.models[base_key] = built
        logging.info("Built the %s variant of %s.", kind, model.name)
    base = variants.models[base_key]
    set_arrays(base, get_arrays(model), f"model {model.name!r}")
    key = (kind, *outputs)
    if key not in variants.functions:
        target = base
        if outputs:
            target = keras.Model(base.inputs, {name: base.output[name] for name in outputs})
            variants.models[key] = target
        names = [tensor.name for tensor in target.inputs]
        signature = {
            tensor.name: tf.TensorSpec((None, None, None, tensor.shape[-1]), tf.float32)
            for tensor in target.inputs
        }

        def forward(inputs, _target=target, _names=tuple(names)):
            ordered = [inputs[name] for name in _names]
            return _target(ordered[0] if len(ordered) == 1 else ordered, training=False)

        variants.functions[key] = tf.function(forward, input_signature=[signature])
    return variants.models[key], variants.functions[key]


def attention_model(model: keras.Model) -> keras.Model:
    """``model`` itself when it already returns attention (built with
    ``return_attention=True``), else its cached ``return_attention=True`` twin, holding
    its current weights."""
    if isinstance(model.output, dict) and "output" in model.output:
        return model
    built, _ = _variant(model, "attention")
    return built


def _require_scale_attention(config: ModelConfig) -> None:
    if config.block_type != "kpac" or not config.scale_attention:
        raise ValueError(
            "This model has no scale attention (residual blocks or scale_attention=False); "
            "attention maps and modulation need a KPAC model with scale attention."
        )


def _image_inputs(config: ModelConfig, image: Image) -> tuple[dict[str, np.ndarray], tuple[int, int]]:
    """Model input dict (batch of one) and the image size (H, W)."""
    if config.dual_pixel:
        if isinstance(image, np.ndarray) or len(image) != 3:
            raise ValueError("A dual-pixel model needs a tuple (left, right, centre) of HWC images.")
        views = [_as_hwc(view, name) for view, name in zip(image, DUAL_PIXEL_VIEWS)]
        if len({view.shape for view in views}) != 1:
            raise ValueError(
                f"The left, right and centre views differ in shape {[v.shape for v in views]}; "
                "pass three views of the same size."
            )
        inputs = {name: view[None] for name, view in zip(DUAL_PIXEL_VIEWS, views)}
        return inputs, views[0].shape[:2]
    array = _as_hwc(image, "image")
    return {"image": array[None]}, array.shape[:2]


def _as_hwc(image, name: str) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"The {name} must be an RGB image of shape [H, W, 3], got {array.shape}.")
    return array


def model_for_analysis(
    weights: str | None = None, preset: str = "kpac-3level", seed: int = 0
) -> tuple[keras.Model, str, bool]:
    """(model, description, trained) for the analysis scripts.

    ``weights``: a preset name, a project weights file or an authors' npz (its model is
    recognised from the file); None takes the bundled weights of ``preset`` when they
    ship with the package and otherwise builds ``preset`` with random weights
    (seeded), which ``trained=False`` and the description say.
    """
    from kpac_tf.model.weights import bundled_weights_path, load_model

    if weights is None and bundled_weights_path(preset).exists():
        weights = preset
    if weights is not None:
        model = load_model(weights)
        return model, f"weights {weights}", True
    keras.utils.set_random_seed(seed)
    model = build_kpac(preset)
    logging.warning("No trained weights for %s: using RANDOM weights; the maps show the "
                    "mechanics, not what a trained KPAC attends to.", preset)
    return model, f"RANDOM weights ({preset}, seed {seed}; no trained weights available)", False


# ---------------------------------------------------------------------------------------
# Attention maps.


@dataclasses.dataclass
class AttentionMaps:
    """Output and attention of one image.

    Attributes:
        output: deblurred image, float32 HWC clipped to [0, 1].
        alphas: per block (index 0 = block1), scale attention [h, w, R] in (0, 1) at
            block resolution (covering the padded image).
        alphas_image: the same maps resized to the image, [H, W, R].
        betas: per block, shape attention [48] in (0, 1), or None when the model has no
            shape attention.
        dilations: the rates of the R channels.
        multiple: the network's multiple (block cell size in image pixels).
    """

    output: np.ndarray
    alphas: list[np.ndarray]
    alphas_image: list[np.ndarray]
    betas: list[np.ndarray | None]
    dilations: tuple[int, ...]
    multiple: int

    def rate_map(self, block: int, rate: int, at_image: bool = True) -> np.ndarray:
        """The alpha map of dilation ``rate`` in block ``block`` (1-based), [H, W] or [h, w]."""
        if not 1 <= block <= len(self.alphas):
            raise ValueError(f"block must be in 1..{len(self.alphas)}, got {block}.")
        maps = self.alphas_image if at_image else self.alphas
        return maps[block - 1][..., rate_index(self.dilations, rate)]


def rate_index(dilations: Sequence[int], rate: int) -> int:
    """Position of dilation ``rate`` in ``dilations`` (the channel of its alpha map);
    ValueError naming the model's rates when it is not one of them."""
    if rate not in dilations:
        raise ValueError(f"Dilation rate {rate} is not one of the model's rates {tuple(dilations)}.")
    return tuple(dilations).index(rate)


def compute_attention(model: keras.Model, image: Image) -> AttentionMaps:
    """Deblur ``image`` with ``model`` and return every block's scale and shape attention.

    Args:
        model: a model built by :func:`kpac_tf.build_kpac` (any variant with KPAC blocks
            and scale attention), with the weights to analyse.
        image: float32 HWC RGB in [0, 1] of any size (dual-pixel: (left, right, centre)).
    """
    config = model_config(model)
    _require_scale_attention(config)
    inputs, size = _image_inputs(config, image)
    _, forward = _variant(model, "attention")
    result = {name: value.numpy() for name, value in forward(inputs).items()}
    alphas, alphas_image, betas = [], [], []
    for block in range(1, config.num_blocks + 1):
        alpha = result[f"block{block}_alpha"][0]
        alphas.append(alpha)
        alphas_image.append(block_map_to_image(alpha, size, config.multiple))
        beta = result.get(f"block{block}_beta")
        betas.append(None if beta is None else beta[0, 0, 0])
    return AttentionMaps(
        output=np.clip(result["output"][0], 0.0, 1.0),
        alphas=alphas,
        alphas_image=alphas_image,
        betas=betas,
        dilations=config.dilations,
        multiple=config.multiple,
    )


def scale_attention_maps(
    model: keras.Model, image: Image, blocks: Sequence[int] = (1,)
) -> list[np.ndarray]:
    """Only the block-resolution alpha maps [h, w, R] of ``blocks`` (1-based), computed
    by the network up to the last of them (cheaper than :func:`compute_attention`)."""
    config = model_config(model)
    _require_scale_attention(config)
    for block in blocks:
        if not 1 <= block <= config.num_blocks:
            raise ValueError(f"block must be in 1..{config.num_blocks}, got {block}.")
    inputs, _ = _image_inputs(config, image)
    names = tuple(f"block{block}_alpha" for block in blocks)
    _, forward = _variant(model, "attention", names)
    result = forward(inputs)
    return [result[name].numpy()[0] for name in names]


# ---------------------------------------------------------------------------------------
# Modulation (paper Fig. 8).


def single_rate(dilations: Sequence[int], rate: int, value: float = 1.0) -> np.ndarray:
    """Per-rate constants [R] that keep only dilation ``rate`` (``value``) and zero the rest."""
    constants = np.zeros(len(dilations), np.float32)
    constants[rate_index(dilations, rate)] = value
    return constants


def _block_alpha(spec, block: int, computed: np.ndarray, num_rates: int) -> np.ndarray:
    """One block's override as [1, h, w, R] from constants [R], a map [h, w, R] or None."""
    h, w = computed.shape[:2]
    if spec is None:
        return computed[None]
    array = np.asarray(spec, dtype=np.float32)
    if array.ndim == 1:
        if array.shape[0] != num_rates:
            raise ValueError(
                f"Block {block}: got {array.shape[0]} per-rate constants, the model has "
                f"{num_rates} dilation rates."
            )
        return np.broadcast_to(array, (1, h, w, num_rates)).copy()
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.shape != (h, w, num_rates):
        raise ValueError(
            f"Block {block}: the alpha map has shape {array.shape}, this image needs "
            f"[{h}, {w}, {num_rates}] (block resolution) or {num_rates} constants."
        )
    return array[None]


def _is_constants(alphas) -> bool:
    """True for one vector of per-rate constants (not a per-block list)."""
    if isinstance(alphas, (np.ndarray, tf.Tensor)):
        return np.ndim(alphas) == 1
    return all(a is not None and np.ndim(a) == 0 for a in alphas)


def modulate(model: keras.Model, image: Image, alphas) -> np.ndarray:
    """Deblur ``image`` with the scale attention replaced (paper Fig. 8).

    Args:
        model: a KPAC model with scale attention.
        image: float32 HWC RGB in [0, 1] (dual-pixel: (left, right, centre)).
        alphas: either R per-rate constants used in every block (e.g.
            ``single_rate(config.dilations, 3)``), or a list with one entry per block,
            each R constants, a block-resolution map [h, w, R] (e.g. from
            :func:`compute_attention`), or None to keep that block's computed attention.

    Returns:
        The deblurred image, float32 HWC clipped to [0, 1].
    """
    config = model_config(model)
    _require_scale_attention(config)
    num_rates = len(config.dilations)
    if _is_constants(alphas):
        specs = [np.asarray(alphas, np.float32)] * config.num_blocks
    else:
        specs = list(alphas)
        if len(specs) != config.num_blocks:
            raise ValueError(
                f"Give {num_rates} per-rate constants or one entry per block "
                f"({config.num_blocks} blocks); got {len(specs)} entries."
            )
    inputs, size = _image_inputs(config, image)
    if any(spec is None for spec in specs):
        computed = compute_attention(model, image).alphas
    else:
        h, w = block_resolution(size, config.multiple)
        computed = [np.zeros((h, w, num_rates), np.float32)] * config.num_blocks
    for block, (spec, own) in enumerate(zip(specs, computed), start=1):
        inputs[f"block{block}_alpha"] = _block_alpha(spec, block, own, num_rates)
    _, forward = _variant(model, "override")
    output = forward(inputs)
    return np.clip(output.numpy()[0], 0.0, 1.0)


def radius_correlation(maps: AttentionMaps, radius: np.ndarray) -> np.ndarray:
    """Pearson correlation of every block's per-rate alpha (at image resolution) with a
    known blur-radius map HxW: array [blocks, R] (NaN where a map is constant)."""
    radius = np.asarray(radius, np.float64)
    if radius.shape != maps.output.shape[:2]:
        raise ValueError(
            f"The radius map is {radius.shape}, the image {maps.output.shape[:2]}; "
            "give a map of the image's height and width."
        )
    radius = radius.ravel()
    table = np.full((len(maps.alphas_image), len(maps.dilations)), np.nan)
    for block, alpha in enumerate(maps.alphas_image):
        for col in range(alpha.shape[-1]):
            values = alpha[..., col].astype(np.float64).ravel()
            if values.std() > 0 and radius.std() > 0:
                table[block, col] = np.corrcoef(values, radius)[0, 1]
    return table


# ---------------------------------------------------------------------------------------
# Demonstration inputs.


def cover_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale an HWC image in [0, 1] to cover height x width, then take the centre crop."""
    image = np.asarray(image, np.float32)
    factor = max(height / image.shape[0], width / image.shape[1])
    size = (max(height, int(np.ceil(image.shape[0] * factor))),
            max(width, int(np.ceil(image.shape[1] * factor))))
    method = "area" if factor < 1 else "bicubic"
    resized = np.clip(tf.image.resize(image, size, method=method).numpy(), 0.0, 1.0)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return np.ascontiguousarray(resized[top:top + height, left:left + width])


def ramp_defocus(sharp: np.ndarray, max_radius: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """Defocus that grows from none at the left edge to ``max_radius`` px at the right.

    Uses the synthetic thin-lens renderer on a left-to-right depth ramp focused at the
    left edge. Returns (blurred HWC in [0, 1], radius map HxW in pixels).
    """
    from kpac_tf.data.render import render_defocus_pair

    sharp = np.asarray(sharp, np.float32)
    height, width = sharp.shape[:2]
    depth = np.broadcast_to(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, width))
    pair = render_defocus_pair(sharp, np.ascontiguousarray(depth), focus=0.0,
                                         max_radius=float(max_radius))
    return pair.blurred, pair.radius


# ---------------------------------------------------------------------------------------
# Figures (matplotlib Figure objects; no pyplot state, so they work headless).


def _figure(rows: int, cols: int, cell: float = 2.6):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(cols * cell, rows * cell * 0.8), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return figure, axes


def plot_scale_attention(image: np.ndarray, maps: AttentionMaps, title: str | None = None,
                         extra: dict[str, np.ndarray] | None = None,
                         value_range: str = "fixed"):
    """Input, output and every block's per-dilation alpha maps (paper Fig. 6).

    ``extra``: further [H, W] panels shown after the input and output (e.g. the known
    defocus radius map of a synthetic image). ``value_range``: "fixed" colours every
    map on [0, 1]; "block" stretches each block's colours to the min..max of its maps
    (all rates share it, so they stay comparable): use it for untrained weights, whose
    alphas all sit near 0.5.
    """
    if value_range not in ("fixed", "block"):
        raise ValueError(f"value_range must be 'fixed' or 'block', got {value_range!r}.")
    extra = extra or {}
    rates = len(maps.dilations)
    cols = max(rates, 2 + len(extra))
    figure, axes = _figure(1 + len(maps.alphas), cols)
    axes[0, 0].imshow(np.clip(image, 0, 1))
    axes[0, 0].set_title("input")
    axes[0, 1].imshow(maps.output)
    axes[0, 1].set_title("output")
    for col, (name, panel) in enumerate(extra.items(), start=2):
        shown = axes[0, col].imshow(panel, cmap="magma")
        axes[0, col].set_title(name)
        figure.colorbar(shown, ax=axes[0, col], location="bottom", shrink=0.8)
    for block, alpha in enumerate(maps.alphas_image, start=1):
        low, high = (0.0, 1.0) if value_range == "fixed" else (float(alpha.min()), float(alpha.max()))
        for col, rate in enumerate(maps.dilations):
            shown = axes[block, col].imshow(alpha[..., col], cmap="viridis", vmin=low,
                                            vmax=max(high, low + 1e-6))
            axes[block, col].set_title(f"block {block}, rate {rate}")
        figure.colorbar(shown, ax=axes[block, :], shrink=0.8, label="alpha")
    if title:
        figure.suptitle(title)
    return figure


def plot_modulation(image: np.ndarray, outputs: dict[str, np.ndarray], title: str | None = None):
    """Input and the outputs of several modulations side by side (paper Fig. 8)."""
    figure, axes = _figure(1, 1 + len(outputs))
    axes[0, 0].imshow(np.clip(image, 0, 1))
    axes[0, 0].set_title("input")
    for col, (name, output) in enumerate(outputs.items(), start=1):
        axes[0, col].imshow(np.clip(output, 0, 1))
        axes[0, col].set_title(name)
    if title:
        figure.suptitle(title)
    return figure


def plot_blur_detection(image: np.ndarray, blur_map: np.ndarray, mask: np.ndarray,
                        truth: np.ndarray | None = None, title: str | None = None,
                        value_range: str = "fixed"):
    """Input, blur map, detected mask overlaid on the input, and the true mask if given.

    ``value_range``: "fixed" colours the map on [0, 1], "auto" on its min..max.
    """
    if value_range not in ("fixed", "auto"):
        raise ValueError(f"value_range must be 'fixed' or 'auto', got {value_range!r}.")
    low, high = (0.0, 1.0) if value_range == "fixed" else (float(blur_map.min()),
                                                           float(blur_map.max()))
    figure, axes = _figure(1, 3 if truth is None else 4)
    axes[0, 0].imshow(np.clip(image, 0, 1))
    axes[0, 0].set_title("input")
    shown = axes[0, 1].imshow(blur_map, cmap="magma", vmin=low, vmax=max(high, low + 1e-6))
    axes[0, 1].set_title("blur map")
    figure.colorbar(shown, ax=axes[0, 1], shrink=0.8)
    overlay = np.clip(image, 0, 1).copy()
    overlay[mask] = 0.5 * overlay[mask] + 0.5 * np.array([1.0, 0.1, 0.1], np.float32)
    axes[0, 2].imshow(overlay)
    axes[0, 2].set_title("detected blur (red)")
    if truth is not None:
        axes[0, 3].imshow(truth, cmap="gray", vmin=0, vmax=1)
        axes[0, 3].set_title("true blur (white)")
    if title:
        figure.suptitle(title)
    return figure
