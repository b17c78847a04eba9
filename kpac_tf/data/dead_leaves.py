"""Procedural dead-leaves scenes rendered as depth layers.

A dead-leaves scene stacks random opaque shapes (discs, ellipses, rotated
rectangles and convex polygons) whose sizes follow a power law, the classic
scale-invariant model of natural-image occlusion statistics. Each shape carries
a colour and a texture (flat, gradient, sharp stripes or pixel noise) so the
scene has plenty of high-frequency content, and a few small shapes are bright
"light sources" that bloom into bokeh discs when defocused.

Shapes painted later occlude earlier ones. The scene is cut, in painting order,
into ``num_layers`` fronto-parallel depth layers (first layer farthest). Every
layer keeps the full content of its shapes, including the parts hidden by nearer
layers, which is what a layered defocus renderer needs at occlusion boundaries.

Colours are produced in linear light; layers are premultiplied by alpha.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

from kpac_tf.images.colour import srgb_to_linear

__all__ = ["DeadLeavesLayers", "dead_leaves_layers", "dead_leaves_image", "sample_power_law"]

_SHAPES = ("disc", "ellipse", "rectangle", "polygon")
_TEXTURES = ("flat", "gradient", "stripes", "noise")


@dataclasses.dataclass
class DeadLeavesLayers:
    """Depth layers of a dead-leaves scene, ordered far (index 0) to near.

    Attributes:
      rgba: float32 [K, 4, H, W] (channel-first, the layout the FFT renderer
        uses): channels 0-2 are linear-light RGB premultiplied by alpha, in
        [0, 1] (light sources reach ``light_gain``); channel 3 is alpha in
        [0, 1]. Layer 0 is opaque everywhere.
      depths: float32 [K], depth of each layer in [0, 1] (1 = far), decreasing.
    """

    rgba: np.ndarray
    depths: np.ndarray

    def composite(self) -> np.ndarray:
        """All-in-focus composite, float32 HxWx3 linear light (>= 0, not clipped)."""
        out = np.zeros(self.rgba.shape[1:], np.float32)
        for layer in self.rgba:
            out[:3] = layer[:3] + (1.0 - layer[3:]) * out[:3]
        return np.ascontiguousarray(out[:3].transpose(1, 2, 0))

    def visible_layer(self) -> np.ndarray:
        """Index of the visible layer at each pixel (alpha >= 0.5), int32 HxW."""
        index = np.zeros(self.rgba.shape[2:], np.int32)
        for k in range(1, self.rgba.shape[0]):
            index[self.rgba[k, 3] >= 0.5] = k
        return index

    def depth_map(self) -> np.ndarray:
        """Depth of the visible layer at each pixel, float32 HxW in [0, 1]."""
        return self.depths[self.visible_layer()]


def sample_power_law(rng: np.random.Generator, n: int, r_min: float, r_max: float,
                     exponent: float) -> np.ndarray:
    """Samples ``n`` sizes in [r_min, r_max] with density proportional to r**-exponent."""
    u = rng.random(n)
    if abs(exponent - 1.0) < 1e-6:
        return r_min * (r_max / r_min) ** u
    a = r_min ** (1.0 - exponent)
    b = r_max ** (1.0 - exponent)
    return (a + u * (b - a)) ** (1.0 / (1.0 - exponent))


def _mean_square_radius(r_min: float, r_max: float, exponent: float) -> float:
    # E[r^2] for the truncated power law, used to pick the number of shapes.
    grid = np.linspace(0.0, 1.0, 2001)
    a = r_min ** (1.0 - exponent)
    b = r_max ** (1.0 - exponent)
    r = (a + grid * (b - a)) ** (1.0 / (1.0 - exponent))
    return float(np.mean(r * r))


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Linear float32 colours of float64 sRGB colours (converted in float64)."""
    return srgb_to_linear(np.clip(x, 0.0, 1.0), np.float64).astype(np.float32)


def _random_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """n sRGB colours in [0, 1] with natural-looking (mostly low) saturation."""
    gray = rng.uniform(0.03, 0.97, size=(n, 1))
    saturation = rng.uniform(0.0, 1.0, size=(n, 1)) ** 1.5 * 0.8
    hue = rng.uniform(0.0, 1.0, size=(n, 3))
    hue -= hue.mean(axis=1, keepdims=True)
    return np.clip(gray + saturation * hue, 0.0, 1.0)


def dead_leaves_layers(
    height: int,
    width: int,
    rng: np.random.Generator,
    *,
    num_layers: int = 8,
    coverage: float = 2.0,
    r_min: float = 5.0,
    r_max: Optional[float] = None,
    exponent: float = 3.0,
    light_probability: float = 0.03,
    light_gain: float = 1.0,
    max_shapes: Optional[int] = None,
) -> DeadLeavesLayers:
    """Renders a random dead-leaves scene as ``num_layers`` depth layers.

    Args:
      height, width: scene size in pixels.
      rng: random generator (the scene is a deterministic function of it).
      num_layers: number of fronto-parallel depth layers (>= 1).
      coverage: expected number of shapes over each pixel (total shape area /
        image area; shapes may be centred up to 10% outside the frame).
      r_min, r_max: shape size range in pixels (r_max defaults to half the
        shorter side).
      exponent: power-law exponent of the size density (3 is scale invariant).
      light_probability: chance that a small shape is a bright light source.
      light_gain: linear-light value of the light sources (> 1 makes them
        brighter than white, so they bloom when blurred and clip when sharp).
      max_shapes: upper bound on the number of shapes (default: 450 per 288x288
        pixels; it bounds the run time).

    Returns:
      A :class:`DeadLeavesLayers`; layer 0 is an opaque textured background.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}.")
    if height < 1 or width < 1:
        raise ValueError(f"scene size must be positive, got {height}x{width}.")
    if r_max is None:
        r_max = 0.5 * min(height, width)
    r_max = max(float(r_max), r_min + 1.0)
    if max_shapes is None:
        max_shapes = int(450 * height * width / (288 * 288)) + 1
    mean_area = math.pi * _mean_square_radius(r_min, r_max, exponent)
    count = int(min(max_shapes, max(1, round(coverage * height * width / mean_area))))

    rgba = np.zeros((num_layers, 4, height, width), np.float32)
    ys = np.arange(height, dtype=np.float32)
    xs = np.arange(width, dtype=np.float32)
    noise = rng.standard_normal((height, width), dtype=np.float32)

    _paint_background(rgba[0], rng, ys, xs, noise)

    params = _ShapeParams.sample(rng, count, height, width, r_min, r_max, exponent,
                                 light_probability, light_gain)
    layer_of = (np.arange(count) * num_layers) // count
    for i in range(count):
        _paint_shape(rgba[layer_of[i]], ys, xs, noise, params, i)

    depths = np.sort(rng.uniform(0.0, 1.0, num_layers))[::-1].astype(np.float32)
    depths[0] = max(depths[0], 0.9)  # the background sits far away
    return DeadLeavesLayers(rgba=rgba, depths=depths)


@dataclasses.dataclass
class _ShapeParams:
    """Per-shape random parameters, sampled in one go (cheaper than per shape)."""

    cy: np.ndarray
    cx: np.ndarray
    r: np.ndarray
    shape: np.ndarray
    texture: np.ndarray
    color_a: np.ndarray
    color_b: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    ratio: np.ndarray
    frequency: np.ndarray
    hardness: np.ndarray
    amplitude: np.ndarray
    corners: list

    @classmethod
    def sample(cls, rng, count, height, width, r_min, r_max, exponent, light_probability,
               light_gain=1.0):
        radii = sample_power_law(rng, count, r_min, r_max, exponent)
        angles = rng.uniform(0.0, 2.0 * math.pi, count)
        lights = (rng.random(count) < light_probability) & (radii < 3.0 * r_min)
        texture = rng.integers(0, len(_TEXTURES), count)
        texture[lights] = 0  # lights are flat
        color_a = _srgb_to_linear(_random_colors(rng, count))
        color_a[lights] = light_gain
        # stripe periods from 2.5 px (near Nyquist) up to the shape size (<= 24 px)
        period = 2.5 + rng.random(count) * np.clip(np.minimum(24.0, radii) - 2.5, 0.5, None)
        corners = [np.sort(rng.uniform(0.0, 2.0 * math.pi, n))
                   for n in rng.integers(3, 8, count)]
        return cls(
            cy=rng.uniform(-0.1 * height, 1.1 * height, count),
            cx=rng.uniform(-0.1 * width, 1.1 * width, count),
            r=radii,
            shape=rng.integers(0, len(_SHAPES), count),
            texture=texture,
            color_a=color_a,
            color_b=_srgb_to_linear(_random_colors(rng, count)),
            cos=np.cos(angles),
            sin=np.sin(angles),
            ratio=rng.uniform(0.25, 1.0, count),
            frequency=2.0 * math.pi / period,
            hardness=rng.uniform(1.0, 8.0, count),
            amplitude=rng.uniform(0.05, 0.4, count),
            corners=corners,
        )


def _paint_background(rgba: np.ndarray, rng: np.random.Generator, ys: np.ndarray,
                      xs: np.ndarray, noise: np.ndarray) -> None:
    """Fills a [4, H, W] layer with an opaque noisy two-colour gradient."""
    c1, c2 = _srgb_to_linear(_random_colors(rng, 2))
    theta = rng.uniform(0.0, 2.0 * math.pi)
    ramp = np.float32(math.cos(theta)) * xs[None, :] + np.float32(math.sin(theta)) * ys[:, None]
    ramp -= ramp.min()
    ramp /= max(float(ramp.max()), 1.0)
    color = rgba[:3]
    color[...] = c1[:, None, None] + ramp[None] * (c2 - c1)[:, None, None]
    color *= 1.0 + np.float32(rng.uniform(0.0, 0.08)) * noise[None]
    np.clip(color, 0.0, 1.0, out=color)
    rgba[3] = 1.0


def _shape_distance(p: _ShapeParams, i: int, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Signed distance (pixels, < 0 inside) of shape i on the grid dy x dx."""
    shape = _SHAPES[p.shape[i]]
    r, c, s = float(p.r[i]), float(p.cos[i]), float(p.sin[i])
    if shape == "disc":
        return np.hypot(dx, dy) - r
    if shape == "ellipse":
        ratio = float(p.ratio[i])
        return (np.hypot(dx * c + dy * s, (dy * c - dx * s) / ratio) - r) * ratio
    if shape == "rectangle":
        u = np.abs(dx * c + dy * s) - r
        v = np.abs(dy * c - dx * s) - r * float(p.ratio[i])
        return np.maximum(u, v)
    corners = p.corners[i]
    px, py = np.cos(corners) * r, np.sin(corners) * r
    sd = np.full(np.broadcast_shapes(dy.shape, dx.shape), -np.inf, np.float32)
    for j in range(len(corners)):
        ax, ay = px[j], py[j]
        bx, by = px[(j + 1) % len(corners)], py[(j + 1) % len(corners)]
        nx, ny = by - ay, ax - bx  # outward normal for counter-clockwise corners
        norm = math.hypot(nx, ny)
        if norm < 1e-6:
            continue
        nx, ny = nx / norm, ny / norm
        np.maximum(sd, dx * np.float32(nx) + (dy * np.float32(ny) - np.float32(ax * nx + ay * ny)),
                   out=sd)
    return sd


def _paint_shape(rgba: np.ndarray, ys: np.ndarray, xs: np.ndarray, noise: np.ndarray,
                 p: _ShapeParams, i: int) -> None:
    """Paints shape i over a [4, H, W] premultiplied layer ("over" operator)."""
    height, width = rgba.shape[1:]
    cy, cx, r = float(p.cy[i]), float(p.cx[i]), float(p.r[i])
    y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), height)
    x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), width)
    if y0 >= y1 or x0 >= x1:
        return
    dy = ys[y0:y1, None] - np.float32(cy)
    dx = xs[None, x0:x1] - np.float32(cx)
    mask = _shape_distance(p, i, dy, dx)
    np.subtract(np.float32(0.5), mask, out=mask)
    np.clip(mask, 0.0, 1.0, out=mask)
    texture = _TEXTURES[p.texture[i]]
    value = np.ones((4, 1, 1), np.float32)
    value[:3, 0, 0] = p.color_a[i]
    if texture == "noise":
        value = value * np.maximum(1.0 + np.float32(p.amplitude[i]) * noise[y0:y1, x0:x1], 0.0)
        np.minimum(value, 1.0, out=value)
        value[3] = 1.0
    elif texture != "flat":
        c, s = np.float32(p.cos[i]), np.float32(p.sin[i])
        if texture == "gradient":
            t = np.clip((dx * c + dy * s) * np.float32(0.5 / r) + np.float32(0.5), 0.0, 1.0)
        else:  # stripes with adjustable edge hardness
            hardness = float(p.hardness[i])
            t = np.sin((dy * c - dx * s) * np.float32(p.frequency[i]))
            t = np.tanh(t * np.float32(hardness)) * np.float32(0.5 / math.tanh(hardness)) + 0.5
        step = np.zeros((4, 1, 1), np.float32)
        step[:3, 0, 0] = p.color_b[i] - p.color_a[i]
        value = value + t[None] * step
    region = rgba[:, y0:y1, x0:x1]
    region += mask[None] * (value - region)


def dead_leaves_image(height: int, width: int, seed: int = 0, **kwargs) -> np.ndarray:
    """An all-in-focus dead-leaves image, float32 HxWx3 sRGB in [0, 1].

    Keyword arguments go to :func:`dead_leaves_layers`.
    """
    layers = dead_leaves_layers(height, width, np.random.default_rng(seed), **kwargs)
    linear = np.clip(layers.composite(), 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92,
                    1.055 * np.power(linear, 1.0 / 2.4) - 0.055).astype(np.float32)
