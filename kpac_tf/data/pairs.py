"""The synthetic pair generator: an endless, seeded stream of (blurred, sharp) pairs.

Each pair is a scene (a crop of an all-in-focus photo with a random depth map, or a
layered dead-leaves scene), a focal plane and the renderer's random settings, rendered
by :mod:`kpac_tf.data.render`. :class:`SyntheticConfig` holds the random ranges;
:func:`synthetic_generator` builds the generator for synthetic scene kinds (what
training, validation and pre-rendered pools use).

All images are float32 HWC in [0, 1] (sRGB); radius maps float32 HxW in pixels.
NumPy only.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator, Optional, Sequence

import numpy as np

from kpac_tf.data import dead_leaves as _dl
from kpac_tf.data import grounds as _grounds
from kpac_tf.data import photos as _photos
from kpac_tf.data import relight as _relight
from kpac_tf.data import stamps as _stamps
from kpac_tf.data.depth import DEPTH_MODELS, random_depth
from kpac_tf.data.render import (DefocusPair, add_noise, pick_margin, radius_from_depth,
                                 render_defocus_pair, render_layers, soften)
from kpac_tf.data.texture_photos import SPLITS as _SPLITS
from kpac_tf.images.colour import linear_to_srgb, srgb_to_linear

__all__ = [
    "SyntheticConfig",
    "SyntheticDefocusSource",
    "scene_mix",
    "synthetic_config_from_overrides",
    "synthetic_generator",
]

@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Random ranges of the synthetic defocus generator (pairs sample uniformly).

    Attributes:
      max_radius: (low, high) largest blur-circle radius of a pair, pixels.
      in_focus_probability: chance that the focus plane lies on the scene (some
        region is sharp); otherwise the focus is anywhere in [0, 1].
      radius_step: blur-radius spacing of the depth layers, pixels.
      max_layers: upper bound on depth layers (the spacing widens when needed).
      gaussian_mix: (low, high) weight of a Gaussian PSF (sigma = radius / 2)
        blended into the disc PSF (lens aberrations).
      highlight_threshold: sRGB value at or above which a channel is clipped.
      highlight_gain: (low, high) factor applied to clipped channels in linear
        light before blurring, so highlights bloom into bright bokeh discs.
      noise_sigma: (low, high) standard deviation of Gaussian noise added to the
        blurred image, in [0, 1] sRGB units.
      depth_models: depth generators used for photos ("layers", "smooth",
        "slant"); photos with a real depth map (stereo_motorcycle) use it.
      dead_leaves_layers: (low, high) number of depth planes of dead-leaves scenes.
      sharp_probability: share of pairs rendered with no defocus at all (only the
        noise differs), which teaches a network to leave in-focus texture alone.
      photo_scale: (low, high) magnification of photo crops (< 1 zooms out: finer
        texture; > 1 zooms in: softer detail), resampled before defocus; whole-photo
        renders ("full") are never rescaled.
      base_blur: (low, high) Gaussian sigma, pixels, of the camera's own in-focus
        softness, applied in linear light to the whole scene before defocus, so the
        sharp target and the in-focus parts of the input share it: a network then
        learns to remove defocus, not to sharpen every soft edge. (0, 0): none.
      photo_colour: share of photo crops whose colours are jittered before defocus
        (see :func:`kpac_tf.data.photos.jitter_colour`), so a few training photos stand for more
        palettes and tones; target and input share the jitter. 0: never.
      illumination: share of scenes lit by a smooth illumination field (a ramp, a
        spot or diffuse light; :func:`kpac_tf.data.relight.illumination_field`) before
        defocus, so in-focus shading is in the target. 0: never.
      shadows: share of scenes with cast shadows whose penumbrae are 2-60 px wide
        (:func:`kpac_tf.data.relight.shadow_field`), before defocus. 0: never.
      tones: share of photo scenes given a high-contrast, grayscale or gamma variant
        before defocus (:func:`kpac_tf.data.relight.tone`). 0: never.
      mottle: share of scenes whose sharp version carries soft blotches 2-10 px across,
        4-12% in linear light (:func:`kpac_tf.data.relight.mottle_field`), as on
        plaster, paper, skin or a soft grain, so in-focus blotches are in the target.
        0: never.
      grounds: share of dead-leaves scenes replaced by a soft ground with no hard edge
        (a flat ground with a smooth grain, faint ripples and soft blobs with halos;
        :func:`kpac_tf.data.grounds.ground_layers`), as a wall or a microscope slide
        in focus. 0: never.
      ground_patches: share of photo scenes with one or two patches of such a soft ground
        pasted into the photo's own plane (:func:`kpac_tf.data.grounds.paste_ground_patches`),
        so soft content lies beside sharp texture at the same depth. 0: never.
      shaded_leaves: share of dead-leaves scenes whose shapes are shaded by smooth
        gradients instead of flat colour (:func:`kpac_tf.data.relight.shade_layers`).
      stamps: share of photo scenes with one to three photographic stamps pasted as
        near layers (:func:`kpac_tf.data.stamps.composite_stamps`); needs
        ``stamp_dir``. 0: never.
      stamp_dir: a stamp folder made by ``python -m kpac_tf.tools.fetch_training_photos
        --natural_out=DIR``
        (``DIR/stamps``): its ``train/`` stamps are used, ``val/`` for held-out scenes.
    """

    max_radius: tuple[float, float] = (1.0, 12.0)
    in_focus_probability: float = 0.8
    radius_step: float = 1.5
    max_layers: int = 10
    gaussian_mix: tuple[float, float] = (0.0, 0.3)
    highlight_threshold: float = 0.97
    highlight_gain: tuple[float, float] = (1.0, 4.0)
    noise_sigma: tuple[float, float] = (0.0, 0.01)
    depth_models: tuple[str, ...] = DEPTH_MODELS
    dead_leaves_layers: tuple[int, int] = (3, 8)
    sharp_probability: float = 0.0
    photo_scale: tuple[float, float] = (1.0, 1.0)
    base_blur: tuple[float, float] = (0.0, 0.0)
    photo_colour: float = 0.0
    illumination: float = 0.0
    shadows: float = 0.0
    tones: float = 0.0
    mottle: float = 0.0
    grounds: float = 0.0
    ground_patches: float = 0.0
    shaded_leaves: float = 0.0
    stamps: float = 0.0
    stamp_dir: str = ""

    def __post_init__(self):
        for name in ("max_radius", "gaussian_mix", "highlight_gain", "noise_sigma",
                     "dead_leaves_layers", "photo_scale", "base_blur"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"SyntheticConfig.{name} must be (low, high) with low <= high.")
        if self.max_radius[0] < 0 or self.noise_sigma[0] < 0 or self.base_blur[0] < 0:
            raise ValueError("SyntheticConfig radii and noise must be non-negative.")
        if self.max_layers < 4:
            raise ValueError("SyntheticConfig.max_layers must be at least 4.")
        if self.radius_step <= 0:
            raise ValueError("SyntheticConfig.radius_step must be positive.")
        if not all(0.0 <= p <= 1.0 for p in (self.in_focus_probability, self.sharp_probability,
                                             self.photo_colour, self.illumination,
                                             self.shadows, self.tones, self.shaded_leaves,
                                             self.stamps, self.mottle, self.grounds,
                                             self.ground_patches)):
            raise ValueError("SyntheticConfig probabilities must be in [0, 1].")
        if self.photo_scale[0] <= 0:
            raise ValueError("SyntheticConfig.photo_scale must be positive.")
        if self.stamps > 0 and not self.stamp_dir:
            raise ValueError("SyntheticConfig.stamps needs stamp_dir.")
        unknown = set(self.depth_models) - set(DEPTH_MODELS)
        if unknown or not self.depth_models:
            raise ValueError(f"SyntheticConfig.depth_models: unknown {sorted(unknown)}.")


def synthetic_config_from_overrides(overrides: Sequence[str]) -> SyntheticConfig:
    """A :class:`SyntheticConfig` with some fields overridden by "name=value" strings.

    Ranges are written "low:high" (e.g. ``photo_scale=0.6:1.4``), a single number
    for a range means (value, value); ``depth_models`` takes names joined by ":".
    Raises ValueError, naming the valid fields, for an unknown or malformed item.
    """
    fields = {field.name: field for field in dataclasses.fields(SyntheticConfig)}
    defaults = SyntheticConfig()
    values = {}
    for item in overrides:
        item = item.strip()
        if not item:
            continue
        name, sep, text = (part.strip() for part in item.partition("="))
        if not sep or name not in fields:
            raise ValueError(f"Synthetic option {item!r} is not NAME=VALUE with NAME one of "
                             f"{', '.join(fields)}.")
        default = getattr(defaults, name)
        try:
            if isinstance(default, str):
                values[name] = text
            elif name == "depth_models":
                values[name] = tuple(part.strip() for part in text.split(":") if part.strip())
            elif isinstance(default, tuple):
                kind = type(default[0])
                parts = [kind(float(part)) if kind is int else kind(part) for part in text.split(":")]
                if len(parts) == 1:
                    parts = parts * 2
                if len(parts) != 2:
                    raise ValueError
                values[name] = tuple(parts)
            else:
                number = float(text)
                values[name] = int(number) if isinstance(default, int) else number
        except ValueError:
            raise ValueError(f"Synthetic option {item!r}: cannot read {text!r} as "
                             f"{'LOW:HIGH' if isinstance(default, tuple) else 'a number'}.") from None
    return dataclasses.replace(defaults, **values)

def scene_mix(kinds: Sequence[str], held_out: bool = False,
              dead_leaves_fraction: float = 0.5) -> tuple[list[str], float]:
    """(photo specs, share of dead-leaves scenes) for synthetic scene kinds
    (:func:`kpac_tf.data.photos.synthetic_photos`): ``dead_leaves_fraction`` when the
    kinds name both, 1 without photos, 0 without "deadleaves"."""
    photos, dead_leaves = _photos.synthetic_photos(kinds, held_out)
    return photos, (float(dead_leaves_fraction) if dead_leaves else 0.0) if photos else 1.0


def synthetic_generator(kinds: Sequence[str], size, *, seed: int = 0, held_out: bool = False,
                        config: Optional["SyntheticConfig"] = None,
                        dead_leaves_fraction: float = 0.5,
                        crops_per_photo: Optional[int] = None) -> "SyntheticDefocusSource":
    """The pair generator of synthetic scene kinds ("deadleaves", "skimage", "photos=DIR",
    folders): photos are drawn uniformly from all photo sources together, mixed with
    dead-leaves scenes by :func:`scene_mix`. ``held_out``: the held-out photo lists."""
    photos, fraction = scene_mix(kinds, held_out, dead_leaves_fraction)
    return SyntheticDefocusSource(size, photos=photos or None, dead_leaves_fraction=fraction,
                                  config=config, seed=seed, crops_per_photo=crops_per_photo,
                                  held_out=held_out)


def _as_size(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = (int(v) for v in size)
    return height, width


class SyntheticDefocusSource:
    """An infinite, seeded stream of synthetic (blurred, sharp) pairs.

    Pair ``i`` depends only on ``(seed, i)``, so any index can be regenerated
    and parallel readers produce the same data.

    Args:
      crop_size: output size, int or (height, width).
      photos: photo sources: "skimage-train", "skimage-heldout",
        "skimage:<name>", folders or image files (a list mixes them); None for
        dead-leaves scenes only.
      dead_leaves_fraction: share of pairs rendered from dead-leaves scenes
        (forced to 1 when there are no photos).
      config: random ranges, see :class:`SyntheticConfig`.
      seed: stream seed.
      crops_per_photo: consecutive indices that share one photo (large folders
        decode fewer files); default 1 when every photo fits the cache, else 8.
      cache_size: decoded photos kept in memory.
      max_photo_side: user photos larger than this are downscaled on load (so a
        crop shows a scene, not a texture); None keeps the full size.
      held_out: validation scenes: stamps come from the stamp folder's ``val/``.
      stamp_split: the stamp folder's subfolder to paste from ("train", "val" or
        "heldout"); None: ``val`` when ``held_out``, else ``train``.
    """

    def __init__(self, crop_size=256, *, photos="skimage-train",
                 dead_leaves_fraction: float = 0.5, config: Optional[SyntheticConfig] = None,
                 seed: int = 0, crops_per_photo: Optional[int] = None, cache_size: int = 32,
                 max_photo_side: Optional[int] = 1680, held_out: bool = False,
                 stamp_split: Optional[str] = None):
        self.height, self.width = _as_size(crop_size)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"crop_size must be positive, got {crop_size}.")
        self.config = config or SyntheticConfig()
        self.seed = int(seed)
        self.photos = _photos.resolve_photos(photos, max_photo_side)
        self.dead_leaves_fraction = 1.0 if not self.photos else float(dead_leaves_fraction)
        if not 0.0 <= self.dead_leaves_fraction <= 1.0:
            raise ValueError("dead_leaves_fraction must be in [0, 1].")
        self._cache = _photos.PhotoCache(cache_size)
        if crops_per_photo is None:
            crops_per_photo = 1 if len(self.photos) <= cache_size else 8
        self.crops_per_photo = max(1, int(crops_per_photo))
        stamp_split = stamp_split or ("val" if held_out else "train")
        if stamp_split not in _SPLITS:
            raise ValueError(f"stamp_split must be one of {', '.join(_SPLITS)}, "
                             f"not {stamp_split!r}.")
        self._stamps = (_stamps.StampSet(os.path.join(self.config.stamp_dir, stamp_split))
                        if self.config.stamps > 0 else None)

    def __iter__(self) -> Iterator[DefocusPair]:
        index = 0
        while True:
            yield self.pair(index)
            index += 1

    def pair(self, index: int, size=None, photo: Optional[int] = None,
             dead_leaves: Optional[bool] = None) -> DefocusPair:
        """Pair number ``index`` (deterministic).

        Args:
          index: non-negative pair index.
          size: output size override (int or (height, width)); ``"full"``
            renders whole photos (dead-leaves scenes are then 512x512).
          photo: force this photo (index into ``self.photos``).
          dead_leaves: True forces a dead-leaves scene, False a photo; None
            draws with ``dead_leaves_fraction``.
        """
        index = int(index)
        if index < 0:
            raise ValueError(f"pair index must be >= 0, got {index}.")
        rng = np.random.default_rng([self.seed, index])
        draw = rng.random()
        if dead_leaves is None:
            dead_leaves = photo is None and (not self.photos
                                             or draw < self.dead_leaves_fraction)
        if not dead_leaves and not self.photos:
            raise ValueError("this source has no photos; pass photos=... to use them.")
        if not dead_leaves:
            if photo is None:
                block = np.random.default_rng([self.seed, index // self.crops_per_photo, 7])
                photo = int(block.integers(len(self.photos)))
            return self._photo_pair(rng, self.photos[photo], size)
        return self._dead_leaves_pair(rng, size)

    # -- sampling helpers --------------------------------------------------- #
    def _common(self, rng: np.random.Generator) -> dict:
        c = self.config
        params = {
            "max_radius": float(rng.uniform(*c.max_radius)),
            "gaussian_mix": float(rng.uniform(*c.gaussian_mix)),
            "highlight_gain": float(rng.uniform(*c.highlight_gain)),
            "noise_sigma": float(rng.uniform(*c.noise_sigma)),
        }
        # Drawn only when enabled, so the default stream stays what it always was.
        if c.sharp_probability > 0.0 and rng.random() < c.sharp_probability:
            params["max_radius"] = 0.0
        return params

    def _base_blur(self, rng: np.random.Generator) -> float:
        """Sigma of this pair's in-focus softness (drawn only when enabled)."""
        low, high = self.config.base_blur
        return float(rng.uniform(low, high)) if high > 0.0 else 0.0

    def _focus(self, rng: np.random.Generator, depth: np.ndarray) -> float:
        if rng.random() < self.config.in_focus_probability:
            y = int(rng.integers(depth.shape[0]))
            x = int(rng.integers(depth.shape[1]))
            return float(depth[y, x])
        return float(rng.uniform(0.0, 1.0))

    def _photo_pair(self, rng: np.random.Generator, photo: _photos.Photo, size) -> DefocusPair:
        params = self._common(rng)
        image, depth = self._cache.get(photo)
        full = isinstance(size, str) and size == "full"
        if full:
            height, width = image.shape[:2]
        else:
            height, width = _as_size(size) if size is not None else (self.height, self.width)
        margin = pick_margin(height, width, int(math.ceil(params["max_radius"])) + 2)
        my = mx = margin
        if full:
            pads = ((my, my), (mx, mx))
            image = np.pad(image, pads + ((0, 0),), mode="symmetric")
            depth = None if depth is None else np.pad(depth, pads, mode="symmetric")
        else:
            image, depth = _photos.scaled_window(image, depth, height + 2 * my, width + 2 * mx,
                                                 self.config.photo_scale, rng)
            image, depth = _photos.flip(image, depth, rng)
            # Drawn only when enabled, so the default stream stays what it always was.
            if self.config.photo_colour > 0.0 and rng.random() < self.config.photo_colour:
                image = _photos.jitter_colour(image, rng)
        model = "real"
        # Patches and stamps are drawn only when enabled, so the default stream stays
        # what it always was.
        patched = self.config.ground_patches > 0 and rng.random() < self.config.ground_patches
        if patched:
            image = _grounds.paste_ground_patches(image, rng)
        if self._stamps is not None and rng.random() < self.config.stamps:
            if depth is None:
                depth, model = random_depth(image.shape[0], image.shape[1], rng,
                                            self.config.depth_models)
            image, depth = _stamps.composite_stamps(image, depth, rng, self._stamps)
            model += "+stamps"
        c = self.config
        image = _relight.relight(image, rng, illumination=c.illumination, shadows=c.shadows,
                                 tones=c.tones, mottle=c.mottle)
        softness = self._base_blur(rng)
        if softness > 0.0:
            image = linear_to_srgb(soften(srgb_to_linear(image), softness, channel_axis=2))
        if depth is None:
            depth, model = random_depth(image.shape[0], image.shape[1], rng,
                                        self.config.depth_models)
        focus = self._focus(rng, depth[my:my + height, mx:mx + width])
        pair = render_defocus_pair(
            np.ascontiguousarray(image), np.ascontiguousarray(depth), focus=focus,
            margin=margin, radius_step=self.config.radius_step,
            max_layers=self.config.max_layers,
            highlight_threshold=self.config.highlight_threshold, rng=rng, **params)
        pair.info.update(source=os.path.basename(photo.name), depth_model=model,
                         base_blur=softness, ground_patches=bool(patched))
        return pair

    def _soft_leaves(self, rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Dead-leaves layers with shaded shapes, illumination and cast shadows, each
        drawn only when enabled (the same gain lights every layer)."""
        c = self.config
        if c.shaded_leaves > 0 and rng.random() < c.shaded_leaves:
            rgba = _relight.shade_layers(rgba, rng)
        gain = _relight.soft_gain(rgba.shape[2], rgba.shape[3], rng,
                                  illumination=c.illumination, shadows=c.shadows,
                                  mottle=c.mottle)
        if gain is not None:
            rgba = np.array(rgba, np.float32, copy=True)
            rgba[:, :3] *= gain[None, None]
        return rgba

    def _leaves_scene(self, rng: np.random.Generator, height: int, width: int,
                      light_gain: float) -> tuple[_dl.DeadLeavesLayers, str]:
        """A dead-leaves scene, or a soft ground with probability ``grounds`` (drawn only
        when enabled), and its source name. Clipped highlights are the scene's light
        sources: they get the highlight gain directly (linear value > 1, clipped in the
        sharp image)."""
        c = self.config
        if c.grounds > 0 and rng.random() < c.grounds:
            return _grounds.ground_layers(height, width, rng, light_gain=light_gain), "ground"
        num_layers = int(rng.integers(c.dead_leaves_layers[0], c.dead_leaves_layers[1] + 1))
        return _dl.dead_leaves_layers(height, width, rng, num_layers=num_layers,
                                      light_gain=light_gain), "dead_leaves"

    def _dead_leaves_pair(self, rng: np.random.Generator, size) -> DefocusPair:
        c = self.config
        params = self._common(rng)
        if size is None:
            height, width = self.height, self.width
        elif isinstance(size, str):
            height, width = 512, 512
        else:
            height, width = _as_size(size)
        my = mx = pick_margin(height, width, int(math.ceil(params["max_radius"])) + 2)
        scene, source = self._leaves_scene(rng, height + 2 * my, width + 2 * mx,
                                           max(1.0, params["highlight_gain"]))
        num_layers = scene.depths.shape[0]
        depths = scene.depths
        if rng.random() < c.in_focus_probability:
            focus = float(depths[int(rng.integers(len(depths)))])
        else:
            focus = float(rng.uniform(0.0, 1.0))
        radii = [float(r) for r in radius_from_depth(depths, focus, params["max_radius"])]
        rgba = self._soft_leaves(scene.rgba, rng)
        blurred_lin, sharp_lin = render_layers(rgba, radii, params["gaussian_mix"])
        softness = self._base_blur(rng)
        if softness > 0.0:  # the camera's softness acts on the final image, focused or not
            blurred_lin = soften(blurred_lin, softness, channel_axis=0)
            sharp_lin = soften(sharp_lin, softness, channel_axis=0)
        crop = (slice(my, my + height), slice(mx, mx + width))
        blurred = linear_to_srgb(blurred_lin[(slice(None),) + crop].transpose(1, 2, 0))
        sharp = linear_to_srgb(sharp_lin[(slice(None),) + crop].transpose(1, 2, 0))
        radius = np.asarray(radii, np.float32)[scene.visible_layer()[crop]]
        blurred = add_noise(blurred, params["noise_sigma"], rng)
        info = {"source": source, "depth_model": "dead_leaves", "focus": focus,
                "layers": num_layers, "base_blur": softness, **params}
        return DefocusPair(blurred=blurred, sharp=np.ascontiguousarray(sharp), radius=radius,
                           mean_radius=float(radius.mean()), info=info)
