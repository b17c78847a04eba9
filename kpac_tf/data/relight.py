"""Soft content for training scenes: illumination, cast shadows, shaded leaves and tone.

Texture photographs are lit flat and dead-leaves shapes are flat colour, so a network
trained on them learns that anything soft is defocused, and turns in-focus shading,
shadow penumbrae and gradients into hard edges. These functions put soft content into
the *sharp* scene before it is defocused, so the target carries it and the network
learns to leave it alone where its context is in focus:

* :func:`illumination_field`: a smooth gain (linear ramp, radial spot or low-frequency
  noise), as from a light that is near, off-axis or diffuse;
* :func:`shadow_field`: cast shadows of random shapes, 25-75% darker, with penumbrae
  from a few pixels to tens of pixels wide;
* :func:`shade_layers`: dead-leaves layers whose shapes are shaded by smooth gradients
  (as a curved surface) instead of flat colour;
* :func:`mottle_field`: soft blotches 2-10 px across (4-12%), as on plaster, paper,
  skin or a soft photographic grain;
* :func:`tone`: high-contrast, grayscale and gamma variants.

Gains multiply linear light; images are float32 HWC in [0, 1] (sRGB) unless a
docstring says linear light or CHW. Every function draws from the generator it is
given, so a pair stays a function of its seed. NumPy and SciPy only.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import ndimage

from kpac_tf.images.colour import linear_to_srgb, srgb_to_linear

__all__ = ["illumination_field", "mottle_field", "region_shape", "relight", "shade_layers",
           "shadow_field", "soft_edge", "soft_gain", "tone"]


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates scaled to [-1, 1] along the longer side (float32)."""
    scale = 2.0 / max(height, width)
    ys = (np.arange(height, dtype=np.float32) - (height - 1) / 2.0) * scale
    xs = (np.arange(width, dtype=np.float32) - (width - 1) / 2.0) * scale
    return ys[:, None], xs[None, :]


def _smooth_noise(height: int, width: int, rng: np.random.Generator, cell: float
                  ) -> np.ndarray:
    """Low-frequency noise in [-1, 1], HxW float32: a coarse random grid, upsampled."""
    gh = max(2, int(math.ceil(height / cell)) + 2)
    gw = max(2, int(math.ceil(width / cell)) + 2)
    coarse = rng.uniform(-1.0, 1.0, (gh, gw)).astype(np.float32)
    field = ndimage.zoom(coarse, (height / (gh - 2), width / (gw - 2)), order=3)
    field = field[:height, :width]
    peak = float(np.abs(field).max())
    return field / peak if peak > 0 else field


def illumination_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth illumination gain, float32 HxW, between about 0.2 and 1.5.

    One of: a linear ramp across the frame at a random angle, a radial spot (a light
    near the surface), or low-frequency noise (diffuse light through clutter).
    """
    ys, xs = _grid(height, width)
    kind = rng.integers(3)
    if kind == 0:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        field = (np.cos(angle) * xs + np.sin(angle) * ys) * np.float32(rng.uniform(0.3, 1.0))
    elif kind == 1:
        cy, cx = rng.uniform(-1.0, 1.0, 2)
        spread = rng.uniform(0.3, 1.5)
        dist2 = ((ys - cy) ** 2 + (xs - cx) ** 2) / np.float32(spread ** 2)
        field = 2.0 * np.exp(-dist2).astype(np.float32) - 1.0
    else:
        field = _smooth_noise(height, width, rng, cell=rng.uniform(0.25, 0.8) * max(height, width))
    low, high = sorted(rng.uniform([0.2, 0.9], [0.8, 1.5]))
    gain = low + (high - low) * (np.clip(field, -1.0, 1.0) + 1.0) / 2.0
    return np.broadcast_to(gain, (height, width)).astype(np.float32)


def region_shape(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A hard-edged region mask in {0, 1}, float32 HxW: a half-plane, an ellipse or a
    band (the shape of a cast shadow or of a pasted patch)."""
    ys, xs = _grid(height, width)
    kind = rng.integers(3)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    u = np.cos(angle) * xs + np.sin(angle) * ys
    v = -np.sin(angle) * xs + np.cos(angle) * ys
    if kind == 0:
        mask = u > rng.uniform(-0.6, 0.6)
    elif kind == 1:
        cu, cv = rng.uniform(-0.7, 0.7, 2)
        ru, rv = rng.uniform(0.15, 0.8, 2)
        mask = ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 < 1.0
    else:
        centre, half = rng.uniform(-0.6, 0.6), rng.uniform(0.05, 0.3)
        mask = np.abs(u - centre) < half
    return np.broadcast_to(mask, (height, width)).astype(np.float32)


def soft_edge(mask: np.ndarray, width: float) -> np.ndarray:
    """A {0, 1} mask (float32 HxW) with edges softened to a 10-90% width of ``width``
    pixels (a Gaussian edge's 10-90% width is 2.563 sigma)."""
    return ndimage.gaussian_filter(np.asarray(mask, np.float32), width / 2.563, mode="nearest")


def shadow_field(height: int, width: int, rng: np.random.Generator,
                 penumbra: tuple[float, float] = (2.0, 60.0)) -> np.ndarray:
    """Cast shadows as a gain, float32 HxW in [0.25, 1]: one to three shapes, each
    25-75% darker, with a penumbra (10-90% width, pixels) drawn log-uniformly from
    ``penumbra``."""
    gain = np.ones((height, width), np.float32)
    for _ in range(int(rng.integers(1, 4))):
        mask = region_shape(height, width, rng)
        width_px = math.exp(rng.uniform(math.log(penumbra[0]), math.log(penumbra[1])))
        gain *= 1.0 - np.float32(rng.uniform(0.25, 0.75)) * soft_edge(mask, width_px)
    return gain


def mottle_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Soft blotches as a gain, float32 HxW around 1: smooth noise 2-10 px across
    (Gaussian-filtered white noise, the scale drawn log-uniformly) whose standard
    deviation is 4-12% in linear light. In focus, such content is soft by nature."""
    scale = float(np.exp(rng.uniform(math.log(2.0), math.log(10.0))))
    field = ndimage.gaussian_filter(rng.standard_normal((height, width)), scale / 2.0)
    field = (field - field.mean()) / max(float(field.std()), 1e-6)
    return np.clip(1.0 + rng.uniform(0.04, 0.12) * field, 0.5, 1.5).astype(np.float32)


def tone(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One tone variant of an sRGB image (HxWx3 in [0, 1]): a high-contrast curve
    (stretched and clipped), grayscale, or a gamma in [0.6, 1.6]."""
    kind = rng.integers(3)
    if kind == 0:
        mid = float(np.median(image))
        out = (image - mid) * np.float32(rng.uniform(1.5, 3.0)) + mid
    elif kind == 1:
        gray = image @ np.asarray([0.2126, 0.7152, 0.0722], np.float32)
        out = np.repeat(gray[..., None], 3, axis=2)
    else:
        out = image ** np.float32(rng.uniform(0.6, 1.6))
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def soft_gain(height: int, width: int, rng: np.random.Generator, *, illumination: float,
              shadows: float, mottle: float = 0.0) -> Optional[np.ndarray]:
    """An illumination field with probability ``illumination`` times cast shadows with
    probability ``shadows`` times soft blotches with probability ``mottle`` (float32 HxW
    gain for linear light), or None when none was drawn. Each draw happens only when
    its probability is positive."""
    gain = None
    if mottle > 0 and rng.random() < mottle:
        gain = mottle_field(height, width, rng)
    if illumination > 0 and rng.random() < illumination:
        light = illumination_field(height, width, rng)
        gain = light if gain is None else gain * light
    if shadows > 0 and rng.random() < shadows:
        shade = shadow_field(height, width, rng)
        gain = shade if gain is None else gain * shade
    return gain


def relight(image: np.ndarray, rng: np.random.Generator, *, illumination: float,
            shadows: float, tones: float, mottle: float = 0.0) -> np.ndarray:
    """A sharp sRGB scene (HxWx3 in [0, 1]) with soft content added: soft blotches with
    probability ``mottle``, an illumination field with probability ``illumination``,
    cast shadows with probability ``shadows`` (all in linear light, :func:`soft_gain`),
    then a tone variant with probability ``tones``. The draws for each step happen only
    when its probability is positive.
    """
    gain = soft_gain(image.shape[0], image.shape[1], rng, illumination=illumination,
                     shadows=shadows, mottle=mottle)
    if gain is not None:
        image = linear_to_srgb(np.clip(srgb_to_linear(image) * gain[..., None], 0.0, 1.0))
    if tones > 0 and rng.random() < tones:
        image = tone(image, rng)
    return np.ascontiguousarray(image, np.float32)


def shade_layers(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dead-leaves layers (float32 [K, 4, H, W], premultiplied linear RGB + alpha) with
    each layer's colour multiplied by its own smooth shading field (a ramp or a radial
    spot, gain in [0.2, 1.5]), as if its shapes were curved surfaces under a light.
    Alpha is unchanged; a new array is returned."""
    out = np.array(rgba, np.float32, copy=True)
    height, width = rgba.shape[2:]
    for k in range(out.shape[0]):
        out[k, :3] *= illumination_field(height, width, rng)[None]
    return out
