"""Soft grounds: scenes with no sharp edge anywhere, as under a microscope or on a wall.

A frame of flat paint, a sheet of paper or a culture dish under a microscope holds no
hard edge at all: a flat ground carrying a smooth grain a few pixels across, faint
ripples, and a few soft-edged blobs (cells, stains) that may carry a dark halo. Fed in
focus, a network trained only on textures and dead leaves takes all of it for defocus
and sharpens the grain into a crisp speckle. These scenes put such content into the
sharp target:

* :func:`ground_layers`: the scene as depth layers (the layout of
  :class:`kpac_tf.data.dead_leaves.DeadLeavesLayers`), so the layered defocus renderer
  blurs it like any dead-leaves scene. Layer 0 is the ground with its in-plane blobs;
  up to two more layers hold soft blobs nearer to the camera.
* :func:`paste_ground_patches`: one or two patches of such a ground pasted into the
  plane of a sharp photo, so soft content sits right beside sharp texture at the same
  depth and the network has to read the context to tell it from defocus.

Layer colours are linear light, premultiplied by alpha, float32 [K, 4, H, W] in
[0, 1] (a blob may reach ``light_gain``); photos are float32 HWC sRGB in [0, 1]. NumPy
and SciPy only; every draw comes from the generator given, so a scene is a function of
its seed.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from kpac_tf.data.dead_leaves import DeadLeavesLayers
from kpac_tf.data.relight import illumination_field, region_shape, soft_edge
from kpac_tf.images.colour import linear_to_srgb, srgb_to_linear

__all__ = ["grain_field", "ground_layers", "paste_ground_patches", "ripple_field"]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def grain_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth grain as a gain, float32 HxW around 1: white noise Gaussian-filtered
    with a sigma of 1-4 px (drawn log-uniformly), scaled to a standard deviation of
    3-12% in linear light."""
    sigma = _log_uniform(rng, 1.0, 4.0)
    field = ndimage.gaussian_filter(rng.standard_normal((height, width)), sigma)
    field = (field - field.mean()) / max(float(field.std()), 1e-6)
    return np.clip(1.0 + rng.uniform(0.03, 0.12) * field, 0.5, 1.5).astype(np.float32)


def ripple_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Faint ripples as a gain, float32 HxW around 1: parallel or concentric waves with
    a period of 6-24 px and an amplitude of 1-4%, fading out over the frame."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    period = _log_uniform(rng, 6.0, 24.0)
    if rng.random() < 0.5:
        angle = rng.uniform(0.0, math.pi)
        phase = xs * math.cos(angle) + ys * math.sin(angle)
    else:
        cy, cx = rng.uniform(-0.5, 1.5) * height, rng.uniform(-0.5, 1.5) * width
        phase = np.hypot(ys - cy, xs - cx)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    fade = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2.0 * (0.6 * max(height, width)) ** 2))
    wave = np.sin(2.0 * math.pi * phase / period + rng.uniform(0, 2 * math.pi))
    return (1.0 + rng.uniform(0.01, 0.04) * fade * wave).astype(np.float32)


def _ground_colour(rng: np.random.Generator) -> np.ndarray:
    """A ground colour in linear light: grey half the time, else a muted tint."""
    level = _log_uniform(rng, 0.02, 0.5)
    tint = np.ones(3) if rng.random() < 0.5 else rng.uniform(0.6, 1.0, 3)
    return (level * tint / tint.max()).astype(np.float32)


def _blob(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
    """A soft-edged disc or ellipse: (alpha HxW in [0, 1], radius px, edge 10-90% px)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = _log_uniform(rng, 6.0, 0.3 * min(height, width))
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    ratio, angle = rng.uniform(0.6, 1.0), rng.uniform(0.0, math.pi)
    u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
    v = (ys - cy) * math.cos(angle) - (xs - cx) * math.sin(angle)
    inside = (u / radius) ** 2 + (v / (radius * ratio)) ** 2 <= 1.0
    edge = _log_uniform(rng, 1.5, 8.0)
    return soft_edge(inside, edge), radius, edge


def _halo(alpha: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A dark ring around a blob as a gain, float32 HxW in [0.4, 1]: 20-60% darker,
    2-20 px wide, fading outward (as the phase halo of a cell)."""
    width = min(_log_uniform(rng, 2.0, 20.0), radius)
    ring = np.clip(ndimage.gaussian_filter(alpha, width) - alpha, 0.0, None)
    ring /= max(float(ring.max()), 1e-6)
    return (1.0 - rng.uniform(0.2, 0.6) * ring).astype(np.float32)


def _paint_blob(layer: np.ndarray, ground: np.ndarray, alpha: np.ndarray,
                rng: np.random.Generator, light_gain: float) -> None:
    """Paints a blob over ``layer`` (float32 [4, H, W], premultiplied) in place: a core
    0.3-3x the ground's level (up to ``light_gain``) with its own grain."""
    core = np.clip(ground * rng.uniform(0.3, 3.0), 0.0, max(1.0, light_gain))
    core = core[:, None, None] * grain_field(alpha.shape[0], alpha.shape[1], rng)[None]
    layer[:3] = core * alpha + layer[:3] * (1.0 - alpha)
    layer[3] = alpha + layer[3] * (1.0 - alpha)


def _ground_plane(height: int, width: int, rng: np.random.Generator,
                  light_gain: float) -> tuple[np.ndarray, np.ndarray]:
    """The opaque ground layer of :func:`ground_layers`: (float32 [4, H, W], linear RGB
    premultiplied with alpha 1; its ground colour, float32 [3] linear)."""
    ground = _ground_colour(rng)
    gain = grain_field(height, width, rng)
    if rng.random() < 0.5:
        gain = gain * ripple_field(height, width, rng)
    if rng.random() < 0.5:
        gain = gain * (0.7 + 0.3 * illumination_field(height, width, rng))
    base = np.zeros((4, height, width), np.float32)
    base[:3] = ground[:, None, None] * gain[None]
    base[3] = 1.0
    for _ in range(int(rng.integers(0, 4))):
        alpha, radius, _ = _blob(height, width, rng)
        if rng.random() < 0.5:
            base[:3] *= _halo(alpha, radius, rng)[None]
        _paint_blob(base, ground, alpha, rng, light_gain)
    return base, ground


def ground_layers(height: int, width: int, rng: np.random.Generator, *,
                  light_gain: float = 1.0) -> DeadLeavesLayers:
    """A soft ground scene as 1-3 depth layers (far first; layer 0 opaque).

    Layer 0: a flat ground colour (linear 0.02-0.5) times a smooth grain, with faint
    ripples half the time and a gentle illumination field half the time, and 0-3
    soft-edged blobs in its plane, each with a dark halo half the time. Layers 1-2
    (each with probability 0.3): one soft blob nearer to the camera.

    Args:
      height, width: scene size in pixels.
      rng: random generator.
      light_gain: the brightest a blob core may be (linear light, >= 1).

    Returns:
      A :class:`kpac_tf.data.dead_leaves.DeadLeavesLayers` of float32 [K, 4, H, W].
    """
    base, ground = _ground_plane(height, width, rng, light_gain)
    layers = [base]
    for _ in range(2):
        if rng.random() < 0.3:
            near = np.zeros((4, height, width), np.float32)
            _paint_blob(near, ground, _blob(height, width, rng)[0], rng, light_gain)
            layers.append(near)
    depths = np.sort(rng.uniform(0.0, 1.0, len(layers)))[::-1].astype(np.float32)
    return DeadLeavesLayers(rgba=np.stack(layers).astype(np.float32), depths=depths)


def paste_ground_patches(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A sharp photo with one or two soft-ground patches pasted into its own plane.

    Each patch is the opaque ground of :func:`ground_layers` (grain, ripples, soft
    blobs with halos), rescaled to 0.5-1.5x the photo's mean linear level and pasted
    over a half-plane, an ellipse or a band (:func:`kpac_tf.data.relight.region_shape`)
    whose border is 0.7-6 px wide (10-90%, drawn log-uniformly). The depth map is left
    alone: the patch lies at the photo's depth, in focus wherever the photo is.

    Args:
      image: float32 HxWx3 sRGB in [0, 1].
      rng: random generator.

    Returns:
      A new float32 HxWx3 sRGB image in [0, 1].
    """
    height, width = image.shape[:2]
    linear = srgb_to_linear(np.asarray(image, np.float32))
    level = max(float(linear.mean()), 0.02)
    for _ in range(int(rng.integers(1, 3))):
        ground = _ground_plane(height, width, rng, 1.0)[0][:3].transpose(1, 2, 0)
        ground = ground * (level * rng.uniform(0.5, 1.5) / max(float(ground.mean()), 1e-6))
        mask = soft_edge(region_shape(height, width, rng), _log_uniform(rng, 0.7, 6.0))
        linear = linear * (1.0 - mask[..., None]) + np.clip(ground, 0.0, 1.0) * mask[..., None]
    return np.ascontiguousarray(linear_to_srgb(np.clip(linear, 0.0, 1.0)), np.float32)
