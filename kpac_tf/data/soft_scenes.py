"""Procedural scenes whose soft content is sharp by nature: shading, shadows, gradients.

Each scene is an all-in-focus image meant to be fed to a deblurrer as it is (no
defocus): a network that leaves sharp content alone gives it back unchanged. Every
scene carries sharp in-focus context at the same depth (procedural texture, fine
lines, seams or silhouette edges) beside its soft content, so the softness can be told
apart from defocus. Kinds (:data:`SCENE_KINDS`):

- ``linear_gradient`` / ``radial_gradient``: a smooth illumination field (a linear
  ramp across 40-320 px, or a spot light falling off over 30-160 px) over a surface
  that is half textured and half flat;
- ``shadow``: two cast shadows (a straight edge and a bar) over a textured surface,
  35-75% darker, with penumbrae of 3 to 60 px (the darkness ramps linearly across the
  penumbra width, in linear light);
- ``shaded_surface``: a Lambertian sphere or cylinder with a band of texture wrapped
  around it, in front of a textured wall;
- ``facade``: high-contrast bands (near white, near black) with soft shadows under
  the dark bands and thin sharp seams across the white ones;
- ``sky``: a sky with a haze gradient (and sometimes a sun glow) behind a skyline of
  sharp building silhouettes with windows and antennas;
- ``mottled``: a plastered wall whose flat paint carries soft blotches 2-10 px across
  (4-12% in linear light, as on stucco, paper, skin or a soft photographic grain),
  crossed by thin sharp seams and cracks, beside a sharp-textured panel.

Apart from them, :func:`ramp_scenes` gives isolated ramps with no context at all,
which cannot be told from a defocused edge (ambiguous by nature, for information
only), :func:`ground_scenes` soft grounds with no hard edge anywhere (a smooth grain on
a flat ground with soft-edged blobs, as a microscope slide or a painted wall; ambiguous
in the same way, and met in real photographs), and :func:`defocus_plan` a depth map per scene that puts part of the frame out
of focus, for :func:`kpac_tf.data.render.render_defocus_pair`.

Shading is done in linear light; sharp shapes are drawn on a grid oversampled
:data:`OVERSAMPLE` times per axis and box-averaged, so their edges are antialiased as a
camera's pixels would make them. Images are float32 HWC sRGB in [0, 1]; masks HxW
bool; shading HxW float32 linear-light factors in [0, 1]. Scenes are deterministic per
seed. NumPy and SciPy only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
from scipy import ndimage

from kpac_tf.images.colour import linear_to_srgb, srgb_to_linear

__all__ = [
    "DefocusPlan",
    "OVERSAMPLE",
    "GROUND_GRAIN",
    "RAMP_CONTRASTS",
    "RAMP_WIDTHS",
    "SCENE_KINDS",
    "SoftScene",
    "defocus_plan",
    "ground_scenes",
    "make_scene",
    "penumbra_widths",
    "ramp_scenes",
    "soft_scenes",
]

#: Fine-grid samples per output pixel along each axis.
OVERSAMPLE = 3
#: Kinds of scene with context, in report order.
SCENE_KINDS = ("linear_gradient", "radial_gradient", "shadow", "shaded_surface", "facade", "sky",
               "mottled")
#: Grain sizes (Gaussian sigma, pixels) of the soft grounds, first to last variant.
GROUND_GRAIN = (1.5, 5.0)
#: Widths (pixels) of the isolated ramps.
RAMP_WIDTHS = (6, 12, 24, 48)
#: Isolated ramps' end levels (sRGB): full and half contrast.
RAMP_CONTRASTS = {"full": (0.0, 1.0), "half": (0.25, 0.75)}
_TEXTURES = ("noise", "lines", "checker", "hatching")


@dataclasses.dataclass(frozen=True)
class SoftScene:
    """One scene, all in focus.

    Attributes:
      name: ``KIND-VARIANT`` (e.g. ``shadow-2``), or ``ramp-full-12`` for a ramp.
      kind: one of :data:`SCENE_KINDS`, or ``ramp``.
      image: float32 HxWx3 sRGB in [0, 1].
      context: HxW bool, the sharp context (texture, lines, seams, silhouettes).
      shading: HxW float32 in [0, 1], the linear-light illumination factor (1: fully
        lit), or None for scenes without one.
      info: how it was made (texture, penumbra widths, darkness, ...).
    """

    name: str
    kind: str
    image: np.ndarray
    context: np.ndarray
    shading: Optional[np.ndarray]
    info: dict


@dataclasses.dataclass(frozen=True)
class DefocusPlan:
    """Where a scene is put out of focus: ``render_defocus_pair(image, depth,
    focus=focus, max_radius=max_radius)``.

    Attributes:
      depth: float32 HxW in [0, 1] (0 near, 1 far); one half of the frame lies on the
        focus plane.
      focus: depth of the focus plane.
      max_radius: blur radius (pixels) of the farthest depth from the focus plane.
      layout: ``slant`` (the other half slants away from the focus plane),
        ``step-behind`` or ``step-front`` (it is a flat plane behind or in front).
      side: which half is in focus: ``left``, ``right``, ``top`` or ``bottom``.
    """

    depth: np.ndarray
    focus: float
    max_radius: float
    layout: str
    side: str


# --------------------------------------------------------------------------- #
# The fine grid
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class _Grid:
    """Sample positions of the oversampled grid, in output pixels (pixel i spans [i, i+1))."""

    size: int
    y: np.ndarray
    x: np.ndarray

    def along(self, angle: float, cy: float = 0.0, cx: float = 0.0) -> np.ndarray:
        """Signed distance (px) along the direction ``angle`` (radians) from (cy, cx)."""
        return ((self.x - cx) * np.float32(math.cos(angle))
                + (self.y - cy) * np.float32(math.sin(angle))).astype(np.float32)


def _grid(size: int) -> _Grid:
    centres = ((np.arange(size * OVERSAMPLE, dtype=np.float32) + 0.5) / OVERSAMPLE)
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return _Grid(size, y, x)


def _down(fine: np.ndarray, size: int) -> np.ndarray:
    """Box average of an oversampled HxW or HxWxC array to ``size`` x ``size``."""
    shape = (size, OVERSAMPLE, size, OVERSAMPLE) + fine.shape[2:]
    return fine.reshape(shape).mean(axis=(1, 3)).astype(np.float32)


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """0 below -width/2, 1 above +width/2, linear between (width in px)."""
    return np.clip(distance / np.float32(max(width, 1e-3)) + 0.5, 0.0, 1.0).astype(np.float32)


def _colour(rng: np.random.Generator, level: float, saturation: float = 0.25) -> np.ndarray:
    """A linear-light RGB colour around the sRGB gray ``level``."""
    srgb = np.clip(level * (1.0 + saturation * rng.uniform(-1.0, 1.0, 3)), 0.0, 1.0)
    return srgb_to_linear(srgb.astype(np.float32))


def _finish(name: str, kind: str, linear: np.ndarray, context: np.ndarray,
            shading: Optional[np.ndarray], size: int, info: dict) -> SoftScene:
    """Downsamples the fine linear image, context mask and shading into a scene."""
    image = linear_to_srgb(_down(linear, size))
    return SoftScene(name=name, kind=kind, image=image,
                     context=_down(context.astype(np.float32), size) >= 0.5,
                     shading=None if shading is None else _down(shading, size), info=info)


# --------------------------------------------------------------------------- #
# Sharp context: textures and lines
# --------------------------------------------------------------------------- #
def _lines(distance: np.ndarray, period: float, width: float) -> np.ndarray:
    """Parallel lines: 1 within ``width`` px of every multiple of ``period``, else 0."""
    return (np.mod(distance, np.float32(period)) < np.float32(width)).astype(np.float32)


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pixel-scale noise with some coarser structure, in [0, 1], at output resolution."""
    fine = ndimage.gaussian_filter(rng.standard_normal((size, size)), 0.5)
    coarse = ndimage.gaussian_filter(rng.standard_normal((size, size)), 3.0)
    mix = fine / fine.std() + 0.6 * coarse / coarse.std()
    low, high = np.percentile(mix, (2, 98))
    noise = np.clip((mix - low) / (high - low), 0.0, 1.0)
    return np.repeat(np.repeat(noise, OVERSAMPLE, 0), OVERSAMPLE, 1).astype(np.float32)


def _texture_pattern(kind: str, rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """A sharp pattern in [0, 1] on the fine grid: noise, lines, checker or hatching."""
    angle = rng.uniform(0.0, math.pi)
    if kind == "noise":
        return _noise(rng, grid.size)
    if kind == "lines":
        return _lines(grid.along(angle), rng.uniform(4.0, 8.0), rng.uniform(1.0, 2.0))
    if kind == "checker":
        side = rng.uniform(3.0, 8.0)
        u = np.floor(grid.along(angle) / side)
        v = np.floor(grid.along(angle + math.pi / 2) / side)
        return np.mod(u + v, 2.0).astype(np.float32)
    if kind == "hatching":
        first = _lines(grid.along(angle), rng.uniform(5.0, 9.0), 1.0)
        second = _lines(grid.along(angle + rng.uniform(1.0, 2.1)), rng.uniform(5.0, 9.0), 1.0)
        return np.maximum(first, second)
    raise ValueError(f"unknown texture {kind!r}; choose one of {', '.join(_TEXTURES)}.")


def _texture(kind: str, rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """A two-colour sharp texture, linear light, fine grid HxWx3."""
    pattern = _texture_pattern(kind, rng, grid)[..., None]
    dark, light = _colour(rng, rng.uniform(0.1, 0.4)), _colour(rng, rng.uniform(0.6, 0.9))
    return dark + (light - dark) * pattern


def _surface(rng: np.random.Generator, grid: _Grid, texture: str,
             textured_share: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(reflectance HxWx3 linear, textured mask): a flat colour and a textured panel
    split by a straight sharp edge at a random angle (``textured_share`` of the frame,
    roughly; 1 textures all of it)."""
    textured = _texture(texture, rng, grid)
    if textured_share >= 1.0:
        return textured, np.ones(grid.x.shape, bool)
    angle = rng.uniform(0.0, 2 * math.pi)
    centre = grid.size / 2
    offset = (textured_share - 0.5) * grid.size * rng.uniform(0.8, 1.2)
    mask = grid.along(angle, centre, centre) < offset
    flat = _colour(rng, rng.uniform(0.45, 0.85))
    return np.where(mask[..., None], textured, flat).astype(np.float32), mask


def _thin_lines(rng: np.random.Generator, grid: _Grid, count: int) -> np.ndarray:
    """``count`` straight lines 1-1.5 px wide at random angles through the frame (mask)."""
    mask = np.zeros(grid.x.shape, bool)
    for _ in range(count):
        angle = rng.uniform(0.0, math.pi)
        offset = rng.uniform(0.2, 0.8) * grid.size
        distance = grid.along(angle, grid.size / 2, grid.size / 2) + grid.size / 2 - offset
        mask |= np.abs(distance) < rng.uniform(0.5, 0.75)
    return mask


def _near(mask: np.ndarray, pixels: float) -> np.ndarray:
    """Fine-grid mask grown by ``pixels`` output pixels."""
    return ndimage.binary_dilation(mask, iterations=max(1, int(round(pixels * OVERSAMPLE))))


def _variant_fraction(variant: int, variants: int) -> float:
    """0 for the first variant, 1 for the last (0 when there is one)."""
    return variant / (variants - 1) if variants > 1 else 0.0


# --------------------------------------------------------------------------- #
# Scene kinds: each returns (linear HxWx3, context mask, shading, info) on the fine grid
# --------------------------------------------------------------------------- #
def _gradient_surface(rng: np.random.Generator, grid: _Grid, variant: int):
    """A half-textured surface crossed by two thin dark lines (reflectance, context)."""
    texture = _TEXTURES[variant % len(_TEXTURES)]
    reflectance, textured = _surface(rng, grid, texture)
    lines = _thin_lines(rng, grid, 2)
    reflectance = np.where(lines[..., None], reflectance * np.float32(0.25), reflectance)
    return reflectance, textured | _near(lines, 1.0), texture


def _linear_gradient(rng: np.random.Generator, grid: _Grid, variant: int, variants: int):
    """Illumination ramping linearly across 320 (first variant) to 40 px (last)."""
    reflectance, context, texture = _gradient_surface(rng, grid, variant)
    span = grid.size * (1.0 / 8.0) ** _variant_fraction(variant, variants)
    centre = grid.size / 2 + rng.uniform(-0.15, 0.15) * grid.size
    angle = rng.uniform(0.0, 2 * math.pi)
    low = rng.uniform(0.12, 0.4)
    shading = low + (1.0 - low) * _ramp(grid.along(angle, centre, centre), span)
    info = {"texture": texture, "span": float(span), "low": float(low), "angle": float(angle)}
    return reflectance * shading[..., None], context, shading, info


def _radial_gradient(rng: np.random.Generator, grid: _Grid, variant: int, variants: int):
    """A spot light (Gaussian falloff, sigma 160 px for the first variant to 30 px)."""
    reflectance, context, texture = _gradient_surface(rng, grid, variant)
    sigma = grid.size / 2 * (3.0 / 16.0) ** _variant_fraction(variant, variants)
    cy, cx = _flat_point(rng, grid, context)
    low = rng.uniform(0.1, 0.35)
    distance2 = (grid.y - cy) ** 2 + (grid.x - cx) ** 2
    shading = (low + (1.0 - low) * np.exp(-0.5 * distance2 / sigma ** 2)).astype(np.float32)
    info = {"texture": texture, "sigma": float(sigma), "low": float(low),
            "centre": [float(cy), float(cx)]}
    return reflectance * shading[..., None], context, shading, info


def _flat_point(rng: np.random.Generator, grid: _Grid, context: np.ndarray) -> tuple[float, float]:
    """A point (y, x) in px in the middle of the frame, off the context if one of a few
    draws finds one."""
    for _ in range(20):
        cy, cx = rng.uniform(0.2, 0.8, 2) * grid.size
        if not context[int(cy * OVERSAMPLE), int(cx * OVERSAMPLE)]:
            break
    return float(cy), float(cx)


def penumbra_widths(variants: int) -> list[tuple[float, float]]:
    """(straight edge, bar) penumbra widths in px of each shadow variant: 2 x
    ``variants`` widths spaced evenly in log from 3 to 60 px, paired narrow with wide."""
    widths = np.geomspace(3.0, 60.0, 2 * variants)
    return [(float(widths[k]), float(widths[-1 - k])) for k in range(variants)]


def _shadow(rng: np.random.Generator, grid: _Grid, variant: int, variants: int):
    """A straight-edged shadow and a parallel bar shadow (a pole, a window frame) over a
    texture. Along the direction ``angle`` from the frame's centre, the bar's darkness
    ramps up across ``bar[0]`` and down across ``bar[1]`` (its 50% points), the edge's
    from ``edge_at`` on; each ramp spans its penumbra width."""
    texture = _TEXTURES[(variant + 1) % len(_TEXTURES)]
    reflectance, textured = _surface(rng, grid, texture, 1.0 if variant % 2 == 0 else 0.6)
    edge_width, bar_width = penumbra_widths(variants)[variant % variants]
    core = rng.uniform(15.0, 35.0)
    bar_extent = core + 2 * bar_width
    lit = 10.0  # fully lit px between the bar's and the edge's penumbrae, at least
    needed = bar_extent + lit + edge_width + 20.0
    start = -grid.size / 2 + 10.0 + rng.uniform(0.0, max(grid.size - 20.0 - needed, 0.0))
    bar = (start + bar_width / 2, start + bar_width * 1.5 + core)
    edge_at = start + bar_extent + lit + edge_width / 2
    angle = rng.uniform(0.0, 2 * math.pi)
    u = grid.along(angle, grid.size / 2, grid.size / 2)
    in_bar = np.minimum(_ramp(u - bar[0], bar_width), _ramp(bar[1] - u, bar_width))
    darkness = rng.uniform(0.35, 0.75)
    shading = 1.0 - darkness * np.maximum(_ramp(u - edge_at, edge_width), in_bar)
    info = {"texture": texture, "penumbra": [edge_width, bar_width], "darkness": float(darkness),
            "angle": float(angle), "edge_at": float(edge_at), "bar": [float(b) for b in bar]}
    return reflectance * shading[..., None], textured, shading.astype(np.float32), info


def _light(rng: np.random.Generator) -> np.ndarray:
    """A unit light direction (x, y, z towards the viewer), 20-60 degrees above the
    image plane, from the upper half mostly."""
    elevation = rng.uniform(math.radians(20), math.radians(60))
    azimuth = rng.uniform(-math.pi, 0.3)
    return np.array([math.cos(elevation) * math.cos(azimuth),
                     math.cos(elevation) * math.sin(azimuth), math.sin(elevation)], np.float32)


def _wrapped_band(rng: np.random.Generator, arc_u: np.ndarray, arc_v: np.ndarray,
                  half_height: float) -> tuple[np.ndarray, np.ndarray]:
    """(pattern in [0, 1], band mask): a checker or stripes on surface coordinates (px
    of arc), within ``half_height`` px of arc_v = 0."""
    side = rng.uniform(7.0, 14.0)
    if rng.random() < 0.5:
        pattern = np.mod(np.floor(arc_u / side) + np.floor(arc_v / side), 2.0)
    else:
        pattern = _lines(arc_u, side, side / 3)
    return pattern.astype(np.float32), np.abs(arc_v) < half_height


def _sphere(rng: np.random.Generator, grid: _Grid):
    """(inside mask, normal x, y, z, arc_u, arc_v) of a sphere; arc_* are surface
    coordinates in px (longitude and latitude arcs about a tilted axis)."""
    radius = rng.uniform(0.22, 0.34) * grid.size
    cy, cx = rng.uniform(radius + 4.0, grid.size - radius - 4.0, 2)
    nx, ny = (grid.x - cx) / np.float32(radius), (grid.y - cy) / np.float32(radius)
    inside = nx ** 2 + ny ** 2 < 1.0
    nz = np.sqrt(np.clip(1.0 - nx ** 2 - ny ** 2, 0.0, 1.0))
    tilt = rng.uniform(-0.6, 0.6)
    tx = nx * math.cos(tilt) + ny * math.sin(tilt)
    ty = -nx * math.sin(tilt) + ny * math.cos(tilt)
    arc_u = np.arctan2(tx, np.maximum(nz, 1e-3)) * radius
    arc_v = np.arcsin(np.clip(ty, -1.0, 1.0)) * radius
    return inside, nx, ny, nz, arc_u, arc_v


def _cylinder(rng: np.random.Generator, grid: _Grid):
    """(inside mask, normal x, y, z, arc_u, arc_v) of a cylinder across the frame whose
    axis is tilted up to 15 degrees from vertical; arc_v runs along the axis."""
    radius = rng.uniform(0.16, 0.28) * grid.size
    tilt = rng.uniform(-0.25, 0.25)
    cx = rng.uniform(radius + 4.0, grid.size - radius - 4.0)
    across = grid.along(tilt, grid.size / 2, cx) / np.float32(radius)
    inside = np.abs(across) < 1.0
    nz = np.sqrt(np.clip(1.0 - across ** 2, 0.0, 1.0))
    arc_u = np.arcsin(np.clip(across, -1.0, 1.0)) * radius
    arc_v = grid.along(tilt + math.pi / 2, grid.size / 2, cx) - rng.uniform(-0.2, 0.2) * grid.size
    return inside, across * math.cos(tilt), across * math.sin(tilt), nz, arc_u, arc_v


def _shaded_surface(rng: np.random.Generator, grid: _Grid, variant: int, variants: int):
    """A Lambertian sphere (even variants) or cylinder (odd) with a band of texture
    wrapped around it, in front of a half-textured wall."""
    texture = _TEXTURES[(variant + 2) % len(_TEXTURES)]
    wall, textured = _surface(rng, grid, texture)
    wall_light = np.float32(rng.uniform(0.6, 0.9))
    shape = "sphere" if variant % 2 == 0 else "cylinder"
    inside, nx, ny, nz, arc_u, arc_v = (_sphere if shape == "sphere" else _cylinder)(rng, grid)
    light = _light(rng)
    ambient = rng.uniform(0.04, 0.2)
    lambert = np.maximum(nx * light[0] + ny * light[1] + nz * light[2], 0.0)
    shade = (ambient + (1.0 - ambient) * lambert).astype(np.float32)
    pattern, band = _wrapped_band(rng, arc_u, arc_v, rng.uniform(0.2, 0.35) * grid.size)
    plain = _colour(rng, rng.uniform(0.55, 0.9))
    second = _colour(rng, rng.uniform(0.1, 0.35))
    albedo = np.where(band[..., None], plain + (second - plain) * pattern[..., None], plain)
    linear = np.where(inside[..., None], albedo * shade[..., None], wall * wall_light)
    shading = np.where(inside, shade, wall_light).astype(np.float32)
    info = {"texture": texture, "shape": shape, "ambient": float(ambient),
            "light": [float(v) for v in light]}
    return linear.astype(np.float32), (textured & ~inside) | (band & inside), shading, info


def _facade(rng: np.random.Generator, grid: _Grid, variant: int, variants: int):
    """Near-white panels between near-black bands; under each dark band a soft shadow
    55-90% darker (full, then a penumbra 6 px wide for the first variant to 40 px for
    the last) lies on the panel, crossed by thin seams, one of them across the penumbra."""
    angle = (math.pi / 2 if variant % 2 else 0.0) + rng.uniform(-0.12, 0.12)
    u, v = grid.along(angle), grid.along(angle + math.pi / 2)
    dark_height, panel_height = rng.uniform(12.0, 28.0), rng.uniform(45.0, 80.0)
    period = dark_height + panel_height
    position = np.mod(v - rng.uniform(0.0, period), np.float32(period))
    dark = position < dark_height
    below = position - np.float32(dark_height)  # px below the dark band, on the panel
    penumbra = float(np.geomspace(6.0, 40.0, variants)[variant]) * rng.uniform(0.9, 1.1)
    shadow_edge = penumbra / 2 + rng.uniform(2.0, 12.0)
    darkness = rng.uniform(0.55, 0.9)
    shadow = np.where(dark, 0.0, 1.0 - _ramp(below - shadow_edge, penumbra))
    sky_light = rng.uniform(0.5, 0.8) + rng.uniform(0.2, 0.5) * _ramp(u, grid.size * 1.5)
    shading = (np.minimum(sky_light, 1.0) * (1.0 - darkness * shadow)).astype(np.float32)
    seam_period = rng.uniform(24.0, 60.0)
    seam_row = shadow_edge + rng.uniform(-0.3, 0.3) * penumbra  # a seam across the penumbra
    seams = ~dark & ((np.mod(u, np.float32(seam_period)) < 1.0) | (np.abs(below - seam_row) < 0.5))
    white = _colour(rng, rng.uniform(0.9, 0.97), 0.03)
    black = _colour(rng, rng.uniform(0.02, 0.06), 0.1)
    reflectance = np.where(dark[..., None], black, np.where(seams[..., None], white * 0.3, white))
    edges = _near(dark, 2.0) & _near(~dark, 2.0)
    info = {"penumbra": float(penumbra), "darkness": float(darkness), "angle": float(angle),
            "period": float(period), "seam_period": float(seam_period)}
    return (reflectance * shading[..., None]).astype(np.float32), _near(seams, 1.0) | edges, shading, info


def _sky_field(rng: np.random.Generator, grid: _Grid, horizon: float, glow: bool) -> np.ndarray:
    """Linear-light sky HxWx3: zenith blue to a pale, hazy horizon (and a sun glow)."""
    zenith = srgb_to_linear(np.array([rng.uniform(0.15, 0.35), rng.uniform(0.35, 0.55),
                                      rng.uniform(0.7, 0.9)], np.float32))
    pale = srgb_to_linear(np.array([rng.uniform(0.75, 0.9), rng.uniform(0.82, 0.92),
                                    rng.uniform(0.9, 0.98)], np.float32))
    height = np.clip(grid.y / np.float32(horizon), 0.0, 1.0) ** np.float32(rng.uniform(1.3, 2.5))
    sky = zenith + (pale - zenith) * height[..., None]
    haze = np.exp(-np.maximum(horizon - grid.y, 0.0) / np.float32(rng.uniform(15.0, 50.0)))
    sky = sky + (np.float32(0.95) - sky) * (0.6 * haze)[..., None]
    if glow:
        cy, cx = rng.uniform(0.1, 0.5) * horizon, rng.uniform(0.1, 0.9) * grid.size
        distance2 = (grid.y - cy) ** 2 + (grid.x - cx) ** 2
        sky = sky + (0.5 * np.exp(-0.5 * distance2 / rng.uniform(25.0, 70.0) ** 2))[..., None]
    return np.clip(sky, 0.0, 1.0).astype(np.float32)


def _building(rng: np.random.Generator, grid: _Grid, left: float, width: float, top: float,
              haze: float, horizon_colour: np.ndarray, image: np.ndarray, mask: np.ndarray) -> None:
    """Paints one building (a wall with a grid of windows, some lit, and maybe a 1 px
    antenna) into ``image`` and ``mask``, working on its own columns of the fine grid."""
    first = max(int(math.floor(left * OVERSAMPLE)) - OVERSAMPLE, 0)
    columns = slice(first, max(int(math.ceil((left + width) * OVERSAMPLE)) + OVERSAMPLE, first))
    y, x = grid.y[:, columns], grid.x[:, columns]
    body = (x >= left) & (x < left + width) & (y >= top)
    cell = rng.uniform(5.0, 9.0)
    row, column = np.floor((y - top) / cell).astype(np.intp), np.floor((x - left) / cell).astype(np.intp)
    lit = rng.random((grid.size // 4 + 2, grid.size // 4 + 2)) < 0.35
    windows = ((np.mod(x - left, cell) < cell * 0.45) & (np.mod(y - top, cell) < cell * 0.5)
               & lit[np.clip(row, 0, lit.shape[0] - 1), np.clip(column, 0, lit.shape[1] - 1)])
    wall, light = _colour(rng, rng.uniform(0.05, 0.25)), _colour(rng, rng.uniform(0.6, 0.9), 0.3)
    colour = np.where(windows[..., None], light, wall)
    colour = colour + (horizon_colour - colour) * np.float32(haze)
    view, held = image[:, columns], mask[:, columns]
    view[body] = colour[body]
    held |= body
    if rng.random() < 0.35:  # an antenna, 1 px wide
        mast_x = left + rng.uniform(0.2, 0.8) * width
        mast = (np.abs(x - mast_x) < 0.5) & (y >= top - rng.uniform(12.0, 40.0)) & (y < top)
        view[mast] = wall * np.float32(1.0 - haze) + horizon_colour * np.float32(haze)
        held |= mast


def _buildings(rng: np.random.Generator, grid: _Grid, top_range: tuple[float, float],
               haze: float, horizon_colour: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Paints a row of buildings across the frame into ``image`` (fine grid, linear
    light), mixed by ``haze`` towards the horizon colour; returns their mask."""
    mask = np.zeros(grid.x.shape, bool)
    left = -rng.uniform(0.0, 20.0)
    while left < grid.size:
        width = rng.uniform(14.0, 60.0)
        top = rng.uniform(*top_range) * grid.size
        _building(rng, grid, left, width, top, haze, horizon_colour, image, mask)
        left += width + (rng.uniform(2.0, 15.0) if rng.random() < 0.4 else 0.0)
    return mask


def _sky(rng: np.random.Generator, grid: _Grid, variant: int, variants: int):
    """A sky gradient with haze near the horizon behind a skyline: a hazy far row of
    buildings and a sharp near one, with lit windows and antennas."""
    horizon = rng.uniform(0.55, 0.8) * grid.size
    glow = variant % 2 == 1
    image = _sky_field(rng, grid, horizon, glow)
    pale = image[-1, grid.x.shape[1] // 2].copy()
    far = _buildings(rng, grid, (horizon / grid.size - 0.2, horizon / grid.size - 0.05),
                     rng.uniform(0.3, 0.6), pale, image)
    near = _buildings(rng, grid, (horizon / grid.size - 0.1, 0.95), 0.0, pale, image)
    info = {"horizon": float(horizon), "glow": glow}
    return image, far | near, None, info


def _blotches(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Soft blotches about ``scale`` px across: smooth noise of unit standard deviation
    at output resolution (HxW float32), repeated onto the fine grid (it is smooth, so
    the box average gives it back)."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), scale / 2.0)
    field = (field - field.mean()) / max(float(field.std()), 1e-6)
    return np.repeat(np.repeat(field, OVERSAMPLE, 0), OVERSAMPLE, 1).astype(np.float32)


def _mottled(rng: np.random.Generator, grid: _Grid, variant: int, variants: int):
    """Paint with soft blotches 2 px (first variant) to 10 px (last) across, 4-12% in
    linear light, over the flat part of a surface whose other part is a sharp texture
    (a quarter to a third of the frame), crossed by seams and two thin cracks."""
    texture = _TEXTURES[(variant + 2) % len(_TEXTURES)]
    reflectance, textured = _surface(rng, grid, texture, rng.uniform(0.25, 0.35))
    scale = float(np.geomspace(2.0, 10.0, variants)[variant]) if variants > 1 else 4.0
    contrast = rng.uniform(0.04, 0.12)
    gain = np.clip(1.0 + contrast * _blotches(rng, grid.size, scale), 0.5, 1.5)
    reflectance = np.where(textured[..., None], reflectance, reflectance * gain[..., None])
    seams = ~textured & (_lines(grid.along(rng.uniform(0.0, math.pi)), rng.uniform(50.0, 90.0),
                                1.0) > 0)
    cracks = _thin_lines(rng, grid, 2) & ~textured
    reflectance = np.where((seams | cracks)[..., None], reflectance * np.float32(0.35), reflectance)
    info = {"texture": texture, "blotch_scale": scale, "contrast": float(contrast)}
    return (reflectance.astype(np.float32), textured | _near(seams | cracks, 1.0), None, info)


_BUILDERS = {"linear_gradient": _linear_gradient, "radial_gradient": _radial_gradient,
             "shadow": _shadow, "shaded_surface": _shaded_surface, "facade": _facade, "sky": _sky,
             "mottled": _mottled}


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
def make_scene(kind: str, variant: int, *, size: int = 320, seed: int = 0,
               variants: int = 4) -> SoftScene:
    """Scene ``variant`` (0 <= variant < ``variants``) of ``kind`` (one of
    :data:`SCENE_KINDS`), ``size`` x ``size`` px, the same for the same arguments.
    ``variants`` spreads a kind's main parameter (gradient span, penumbra widths)
    over its variants."""
    if kind not in _BUILDERS:
        raise ValueError(f"unknown scene kind {kind!r}; choose one of {', '.join(SCENE_KINDS)}.")
    if not 0 <= variant < variants:
        raise ValueError(f"variant must be in [0, {variants}), got {variant}.")
    if size < 64:
        raise ValueError(f"size must be at least 64 px, got {size}.")
    rng = np.random.default_rng([int(seed), SCENE_KINDS.index(kind), int(variant)])
    grid = _grid(int(size))
    linear, context, shading, info = _BUILDERS[kind](rng, grid, variant, variants)
    return _finish(f"{kind}-{variant}", kind, linear, context, shading, int(size),
                   {**info, "seed": int(seed), "variant": int(variant)})


def soft_scenes(*, size: int = 320, seed: int = 0, variants: int = 4,
                kinds: tuple[str, ...] = SCENE_KINDS) -> list[SoftScene]:
    """Every variant of every kind, kind by kind (:func:`make_scene`)."""
    return [make_scene(kind, variant, size=size, seed=seed, variants=variants)
            for kind in kinds for variant in range(variants)]


def ramp_scenes(size: int = 320, widths: tuple[int, ...] = RAMP_WIDTHS) -> list[SoftScene]:
    """Isolated ramps with no context: a vertical edge in the middle of the frame whose
    level goes linearly in linear light across ``width`` px, between the sRGB levels of
    each of :data:`RAMP_CONTRASTS` (full: black to white; half: 0.25 to 0.75).
    Ambiguous by nature: alone, a ramp cannot be told from a defocused edge."""
    grid = _grid(int(size))
    scenes = []
    for contrast, (low, high) in RAMP_CONTRASTS.items():
        ends = srgb_to_linear(np.array([low, high], np.float32))
        for width in widths:
            level = ends[0] + (ends[1] - ends[0]) * _ramp(grid.x - size / 2, float(width))
            linear = np.repeat(level[..., None], 3, axis=2)
            scenes.append(_finish(f"ramp-{contrast}-{width}", "ramp", linear,
                                  np.zeros(grid.x.shape, bool), None, int(size),
                                  {"width": int(width), "contrast": contrast,
                                   "levels": [float(low), float(high)]}))
    return scenes


def _ground(rng: np.random.Generator, grid: _Grid, sigma: float) -> np.ndarray:
    """A soft ground (fine-grid linear HxWx3): a flat colour (sRGB level 0.2-0.6) times a
    smooth grain of sigma ``sigma`` px (4-10%), with two soft-edged blobs 15-45 px in
    radius, 1.6-2.5x brighter, whose 2-6 px edges are ringed by a dark halo."""
    size = grid.size
    gain = 1.0 + rng.uniform(0.04, 0.10) * _blotches(rng, size, 2.0 * sigma)
    linear = _colour(rng, rng.uniform(0.2, 0.6), 0.1)[None, None] * gain[..., None]
    for _ in range(2):
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        radius, edge = rng.uniform(15.0, 45.0), rng.uniform(2.0, 6.0)
        distance = np.hypot(grid.y - cy, grid.x - cx) - radius
        inside = _ramp(-distance, edge)
        halo = 1.0 - rng.uniform(0.3, 0.6) * np.exp(-np.maximum(distance, 0.0) / 6.0) * (1 - inside)
        linear = linear * halo[..., None] * (1.0 + rng.uniform(0.6, 1.5) * inside[..., None])
    return np.clip(linear, 0.0, 1.0).astype(np.float32)


def ground_scenes(size: int = 320, seed: int = 0, variants: int = 4) -> list[SoftScene]:
    """Soft grounds with no hard edge and no context, ``variants`` of them with a grain
    sigma spread over :data:`GROUND_GRAIN` (px), deterministic per ``seed``. Ambiguous
    by nature as a ramp is, but met in real photographs (microscope slides, walls,
    paper): a network that sharpens their grain turns it into a crisp speckle."""
    grid = _grid(int(size))
    sigmas = np.geomspace(*GROUND_GRAIN, variants) if variants > 1 else [GROUND_GRAIN[0]]
    scenes = []
    for variant, sigma in enumerate(sigmas):
        rng = np.random.default_rng([int(seed), 7919, variant])
        scenes.append(_finish(f"ground-{variant}", "ground", _ground(rng, grid, float(sigma)),
                              np.zeros(grid.x.shape, bool), None, int(size),
                              {"grain_sigma": float(sigma), "seed": int(seed),
                               "variant": variant}))
    return scenes


def defocus_plan(size: int, seed: int, max_radius: tuple[float, float] = (6.0, 8.0)
                 ) -> DefocusPlan:
    """A depth map that keeps one half of a ``size`` x ``size`` frame on the focus plane
    and puts the other half out of focus, deterministic per ``seed``: that half slants
    away to the far plane (``slant``), or is a flat plane behind (``step-behind``) or in
    front of it (``step-front``, whose blur spreads over the in-focus half). The largest
    blur radius is drawn from ``max_radius`` (px)."""
    rng = np.random.default_rng([int(seed), 104729])
    side = ("left", "right", "top", "bottom")[int(rng.integers(4))]
    layout = ("slant", "step-behind", "step-front")[int(rng.integers(3))]
    coordinate = (np.arange(size, dtype=np.float32) + 0.5) / size
    if side in ("right", "bottom"):
        coordinate = 1.0 - coordinate
    away = np.clip((coordinate - 0.5) * 2.0, 0.0, 1.0)  # 0 on the in-focus half
    focus = 0.7 if layout == "step-front" else 0.3
    if layout == "slant":
        profile = focus + (1.0 - focus) * away
    else:
        profile = np.where(away > 0, 0.0 if layout == "step-front" else 1.0, focus)
    profile = profile.astype(np.float32)
    depth = (np.repeat(profile[None, :], size, 0) if side in ("left", "right")
             else np.repeat(profile[:, None], size, 1))
    return DefocusPlan(depth=np.ascontiguousarray(depth), focus=float(focus),
                       max_radius=float(rng.uniform(*max_radius)), layout=layout, side=side)
