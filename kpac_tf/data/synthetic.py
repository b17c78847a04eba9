"""Synthetic defocus data: the names of the former single module, re-exported.

The synthetic defocus code lives in modules with one job each; import from them in
new code:

  :mod:`kpac_tf.colour`              sRGB <-> linear light
  :mod:`kpac_tf.data.render`         the layered thin-lens renderer, PSFs, the radius law
  :mod:`kpac_tf.data.depth`          random depth maps
  :mod:`kpac_tf.data.photos`         photo sources (scikit-image samples, folders), crops,
                                     colour jitter
  :mod:`kpac_tf.data.dead_leaves`    procedural dead-leaves scenes
  :mod:`kpac_tf.data.pairs`          SyntheticConfig and the seeded pair generator
  :mod:`kpac_tf.data.dpdd_writer`    pairs written in the DPDD layout, radius maps
  :mod:`kpac_tf.data.pipeline`       make_synthetic_dataset (tf.data), the training stream
"""
from __future__ import annotations

from kpac_tf.colour import linear_to_srgb, srgb_to_linear
from kpac_tf.data.depth import layered_depth, random_depth, slanted_depth, smooth_depth
from kpac_tf.data.dpdd_writer import RADIUS_PNG_SCALE, read_radius_map, write_dpdd_layout
from kpac_tf.data.pairs import SyntheticConfig, SyntheticDefocusSource, synthetic_config_from_overrides
from kpac_tf.data.pipeline import make_synthetic_dataset
from kpac_tf.data.photos import (SKIMAGE_HELDOUT_SAMPLES, SKIMAGE_TRAIN_SAMPLES, jitter_colour,
                                 load_skimage_sample)
from kpac_tf.data.render import (DefocusPair, disc_psf, pick_margin, radius_from_depth,
                                 render_defocus, render_defocus_pair, render_layers)

__all__ = [
    "SKIMAGE_TRAIN_SAMPLES",
    "SKIMAGE_HELDOUT_SAMPLES",
    "synthetic_config_from_overrides",
    "SyntheticConfig",
    "DefocusPair",
    "SyntheticDefocusSource",
    "disc_psf",
    "srgb_to_linear",
    "linear_to_srgb",
    "jitter_colour",
    "radius_from_depth",
    "render_defocus",
    "render_defocus_pair",
    "render_layers",
    "smooth_depth",
    "slanted_depth",
    "layered_depth",
    "random_depth",
    "load_skimage_sample",
    "make_synthetic_dataset",
    "write_dpdd_layout",
    "read_radius_map",
    "pick_margin",
    "RADIUS_PNG_SCALE",
]

