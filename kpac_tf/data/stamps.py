"""Photographic stamps (RGBA cut-outs) composited over photo scenes as near layers.

A stamp is an object photographed with its own shading and an alpha channel (the
photographic stamps that :mod:`kpac_tf.data.natural_photos` fetches). Pasted over a
photo crop at a depth nearer than what it covers, it adds a shaded object with a real
occlusion boundary: in focus it must be left alone, out of focus its blur must not leak
over the sharp background (the layered renderer takes care of that from the depth map).

Images are float32 HWC in [0, 1] (sRGB); stamps float32 HxWx4 (sRGB, straight alpha);
depth maps float32 HxW in [0, 1] (0 near). NumPy, SciPy and Pillow only.
"""
from __future__ import annotations

import os
import threading
from typing import Optional

import numpy as np

__all__ = ["StampSet", "composite_stamps"]


class StampSet:
    """The PNG stamps of one folder, decoded on first use and kept (they are small).

    Args:
      folder: a folder of RGBA PNGs (e.g. ``data/natural_photos/stamps/train``).
    Raises:
      ValueError: the folder is missing or holds no PNG.
    """

    def __init__(self, folder: str):
        if not os.path.isdir(folder):
            raise ValueError(f"stamp folder {folder} is missing; make it with "
                             "python -m kpac_tf.tools.fetch_training_photos --natural_out=DIR.")
        self.paths = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                            if f.lower().endswith(".png"))
        if not self.paths:
            raise ValueError(f"stamp folder {folder} holds no PNG stamps.")
        self._cache: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> np.ndarray:
        """Stamp ``index`` as float32 HxWx4 in [0, 1] (straight alpha)."""
        with self._lock:
            if index not in self._cache:
                from PIL import Image

                with Image.open(self.paths[index]) as image:
                    array = np.asarray(image.convert("RGBA"), np.float32) / np.float32(255.0)
                self._cache[index] = array
            return self._cache[index]


def _resized(stamp: np.ndarray, long_side: int) -> np.ndarray:
    from PIL import Image

    height, width = stamp.shape[:2]
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    channels = [Image.fromarray(stamp[..., c]).resize(size, Image.BICUBIC) for c in range(4)]
    return np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0.0, 1.0)


def composite_stamps(image: np.ndarray, depth: np.ndarray, rng: np.random.Generator,
                     stamps: StampSet, count: tuple[int, int] = (1, 3),
                     flip: Optional[bool] = None) -> tuple[np.ndarray, np.ndarray]:
    """Pastes ``count`` (low, high) random stamps over ``image`` and ``depth``.

    Each stamp gets a long side of 25-70% of the image's shorter side, a random
    position (it may be cut by the frame) and a depth between 0 and the nearest depth
    it covers, so it occludes what lies behind it. Colours are blended with the
    stamp's alpha in linear light; the depth map takes the stamp's depth where its
    alpha is at least 0.5. Returns new (image HxWx3, depth HxW) arrays.
    """
    from kpac_tf.images.colour import linear_to_srgb, srgb_to_linear

    height, width = depth.shape
    linear = srgb_to_linear(np.asarray(image, np.float32))
    depth = np.array(depth, np.float32, copy=True)
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        stamp = stamps.get(int(rng.integers(len(stamps))))
        stamp = _resized(stamp, int(rng.uniform(0.25, 0.7) * min(height, width)))
        if flip if flip is not None else rng.random() < 0.5:
            stamp = stamp[:, ::-1]
        sh, sw = stamp.shape[:2]
        top = int(rng.integers(-sh // 4, height - 3 * sh // 4 + 1))
        left = int(rng.integers(-sw // 4, width - 3 * sw // 4 + 1))
        ys = slice(max(top, 0), min(top + sh, height))
        xs = slice(max(left, 0), min(left + sw, width))
        part = stamp[ys.start - top:ys.stop - top, xs.start - left:xs.stop - left]
        alpha = part[..., 3:]
        covered = depth[ys, xs][alpha[..., 0] >= 0.5]
        if covered.size == 0:
            continue
        near = float(rng.uniform(0.0, float(covered.min())))
        linear[ys, xs] = alpha * srgb_to_linear(part[..., :3]) + (1.0 - alpha) * linear[ys, xs]
        depth[ys, xs] = np.where(alpha[..., 0] >= 0.5, np.float32(near), depth[ys, xs])
    return np.ascontiguousarray(linear_to_srgb(linear), np.float32), depth
