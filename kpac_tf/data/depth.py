"""Random depth maps for the synthetic defocus renderer.

Depth is a float32 HxW map in [0, 1] (0 = near, 1 = far), linear in inverse distance
(like disparity), so the thin-lens blur radius is linear in it
(:func:`kpac_tf.data.render.radius_from_depth`). NumPy only.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from kpac_tf.data import dead_leaves as _dl

__all__ = ["DEPTH_MODELS", "layered_depth", "normalise", "random_depth", "slanted_depth",
           "smooth_depth"]

#: The depth models :func:`random_depth` chooses from.
DEPTH_MODELS = ("layers", "smooth", "slant")


def normalise(field: np.ndarray, low: float, high: float) -> np.ndarray:
    """``field`` mapped linearly onto [low, high] (float32); a flat field maps to ``low``."""
    field = field - field.min()
    peak = float(field.max())
    field = field / peak if peak > 0 else field
    return (np.float32(low) + field * np.float32(high - low)).astype(np.float32)


def _random_range(rng: np.random.Generator) -> tuple[float, float]:
    extent = rng.uniform(0.3, 1.0)
    low = rng.uniform(0.0, 1.0 - extent)
    return low, low + extent


def smooth_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random depth field (sum of low-frequency waves), float32 HxW in [0, 1]."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    field = np.zeros((height, width), np.float32)
    for _ in range(4):
        freq = rng.uniform(0.2, 2.0)
        theta = rng.uniform(0.0, 2.0 * math.pi)
        phase = rng.uniform(0.0, 2.0 * math.pi)
        field += np.float32(rng.uniform(0.3, 1.0) / freq) * np.cos(
            np.float32(2.0 * math.pi * freq) * (xs * np.float32(math.cos(theta))
                                                + ys * np.float32(math.sin(theta)))
            + np.float32(phase))
    return normalise(field, *_random_range(rng))


def slanted_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A slanted plane (e.g. a floor or a wall seen at an angle), float32 HxW in [0, 1]."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    theta = rng.uniform(0.0, 2.0 * math.pi)
    field = xs * np.float32(math.cos(theta)) + ys * np.float32(math.sin(theta))
    return normalise(field, *_random_range(rng))


def layered_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Fronto-parallel objects over a background: a background (smooth or slanted)
    with 1-4 large dead-leaves shapes at constant nearer depths, float32 HxW."""
    scene = _dl.dead_leaves_layers(height, width, rng, num_layers=int(rng.integers(2, 6)),
                                   coverage=0.8, r_min=0.08 * min(height, width),
                                   r_max=0.45 * min(height, width), max_shapes=4,
                                   light_probability=0.0)
    background = (smooth_depth if rng.random() < 0.5 else slanted_depth)(height, width, rng)
    background = 0.5 + 0.5 * background
    depth = background
    for k in range(1, scene.rgba.shape[0]):
        alpha = scene.rgba[k, 3]
        level = np.float32(rng.uniform(0.0, 0.6))
        depth = depth + (alpha >= 0.5) * (level - depth)
    return depth.astype(np.float32)


def random_depth(height: int, width: int, rng: np.random.Generator,
                 models: Sequence[str] = DEPTH_MODELS) -> tuple[np.ndarray, str]:
    """A depth map from a randomly chosen model; returns (depth HxW in [0, 1], model name)."""
    model = models[int(rng.integers(len(models)))]
    makers = {"layers": layered_depth, "smooth": smooth_depth, "slant": slanted_depth}
    return makers[model](height, width, rng), model
