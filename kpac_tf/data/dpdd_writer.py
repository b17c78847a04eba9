"""Synthetic pairs written to disk in the DPDD folder layout, with oracle radius maps.

Files of a split (what :mod:`kpac_tf.data.dpdd` and ``kpac-eval`` read)::

    ROOT/{split}_c/source/synth_NNNN.png   blurred input (16-bit like DPDD, or 8-bit)
    ROOT/{split}_c/target/synth_NNNN.png   sharp target
    ROOT/{split}_c/radius/synth_NNNN.png   oracle blur radius, 16-bit gray
                                           (pixels = value * RADIUS_PNG_SCALE)
    ROOT/{split}_c/synthetic.json          how each pair was made

:func:`write_pair_files` and the radius encoding also serve pre-rendered pools
(:mod:`kpac_tf.data.pool`). Images are float32 HWC in [0, 1]; radius maps float32 HxW
in pixels.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
from absl import logging

from kpac_tf.data.pairs import SyntheticConfig, SyntheticDefocusSource
from kpac_tf.data.render import DefocusPair
from kpac_tf.files import write_json
from kpac_tf.images import codec

__all__ = ["RADIUS_PNG_SCALE", "radius_from_png", "read_radius_map", "write_dpdd_layout",
           "write_pair_files"]

#: Radius maps are stored as 16-bit gray PNGs: radius_px = value * RADIUS_PNG_SCALE.
RADIUS_PNG_SCALE = 0.001


def write_pair_files(folders: dict, name: str, pair: DefocusPair, bit_depth: int = 8) -> None:
    """Writes one pair's input (``folders["source"]``), target (``folders["target"]``) and,
    when ``folders`` has "radius", its radius map, all under the file name ``name``."""
    codec.write_image(os.path.join(folders["source"], name), pair.blurred, bit_depth=bit_depth)
    codec.write_image(os.path.join(folders["target"], name), pair.sharp, bit_depth=bit_depth)
    if "radius" in folders:
        encoded = np.clip(pair.radius / RADIUS_PNG_SCALE / 65535.0, 0.0, 1.0)
        codec.write_image(os.path.join(folders["radius"], name), encoded, bit_depth=16,
                          grayscale=True)


def radius_from_png(rgb: np.ndarray) -> np.ndarray:
    """Radius in pixels (float32 HxW) from a decoded radius PNG (HxWx3 in [0, 1])."""
    return (rgb[:, :, 0] * np.float32(65535.0 * RADIUS_PNG_SCALE)).astype(np.float32)


def read_radius_map(path) -> np.ndarray:
    """Reads a radius map written by :func:`write_dpdd_layout`: float32 HxW, pixels."""
    return radius_from_png(codec.read_image(path).rgb)


def _split_folders(root: str, save_radius: bool) -> dict:
    folders = {"source": os.path.join(root, "source"), "target": os.path.join(root, "target")}
    if save_radius:
        folders["radius"] = os.path.join(root, "radius")
    for folder in folders.values():
        os.makedirs(folder, exist_ok=True)
    return folders


def write_dpdd_layout(out_dir, count: int, split: str = "test", *,
                      photos="skimage-heldout", dead_leaves_fraction: float = 0.0,
                      size=None, bit_depth: int = 16, seed: int = 2021,
                      config: Optional[SyntheticConfig] = None,
                      save_radius: bool = True, stamp_split: Optional[str] = None) -> dict:
    """Writes synthetic pairs in the DPDD folder layout (see the module docstring).

    Args:
      out_dir: dataset root (created if missing).
      count: number of pairs.
      split: "train", "val" or "test" (any name works).
      photos: photo sources (see :class:`kpac_tf.data.pairs.SyntheticDefocusSource`);
        photo pairs cycle through the photos in order.
      dead_leaves_fraction: share of dead-leaves pairs.
      size: None renders whole photos (dead-leaves scenes are 512x512); an int
        or (height, width) takes random crops of that size.
      bit_depth: 16 (like DPDD) or 8.
      seed: generator seed.
      config: random ranges.
      save_radius: also write the oracle radius maps (:func:`read_radius_map`).
      stamp_split: the stamp folder's subfolder pasted from when ``config.stamps``
        > 0 ("train", "val" or "heldout"; None: "train").

    Returns:
      The metadata dictionary written to ``synthetic.json`` (per image: source, mean
      radius, focus, noise, ...).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}.")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}.")
    source = SyntheticDefocusSource(size if size is not None else 256, photos=photos,
                                    dead_leaves_fraction=dead_leaves_fraction,
                                    config=config, seed=seed, stamp_split=stamp_split)
    root = os.path.join(os.fspath(out_dir), f"{split}_c")
    folders = _split_folders(root, save_radius)
    choose = np.random.default_rng([seed, 99])
    images = {}
    photo_counter = 0
    for i in range(count):
        use_leaves = not source.photos or choose.random() < source.dead_leaves_fraction
        photo = None
        if not use_leaves:
            photo = photo_counter % len(source.photos)
            photo_counter += 1
        pair = source.pair(i, size=size if size is not None else "full", photo=photo,
                           dead_leaves=use_leaves)
        name = f"synth_{i:04d}.png"
        write_pair_files(folders, name, pair, bit_depth=bit_depth)
        images[name] = dict(pair.info, mean_radius=pair.mean_radius,
                            height=int(pair.sharp.shape[0]), width=int(pair.sharp.shape[1]))
        logging.info("synthetic %s %d/%d: %s, mean radius %.2f px", split, i + 1, count,
                     images[name]["source"], pair.mean_radius)
    metadata = {"generator": "kpac_tf.data.dpdd_writer", "split": split, "seed": seed,
                "bit_depth": bit_depth, "radius_png_scale": RADIUS_PNG_SCALE,
                "config": dataclasses.asdict(source.config), "images": images}
    write_json(os.path.join(root, "synthetic.json"), metadata)
    return metadata
