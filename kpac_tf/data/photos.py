"""All-in-focus photo sources of the synthetic defocus generator, and photo crops.

Sources (a "photo spec" is one of these, or a list mixing them):
  * "skimage-train" / "skimage-heldout": photographs that ship inside scikit-image,
    split into a fixed training list (:data:`SKIMAGE_TRAIN_SAMPLES`) and a fixed
    held-out list (:data:`SKIMAGE_HELDOUT_SAMPLES`) so evaluation never sees training
    photos; "skimage:NAME" for one of them;
  * the user's photos: a folder or image files (read with :func:`kpac_tf.images.codec.read_image`),
    e.g. the ``train/`` folder that :mod:`kpac_tf.data.texture_photos` builds from
    photo-texture packages.

Synthetic scene kinds (:func:`synthetic_photos`) name these sources on the command line.
Photos are float32 HWC in [0, 1] (sRGB); depth maps float32 HxW in [0, 1]. NumPy only.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections import OrderedDict
from typing import Callable, Optional, Sequence

import numpy as np

from kpac_tf.data.depth import normalise
from kpac_tf.images import codec
from kpac_tf.images.colour import luma

__all__ = [
    "SKIMAGE_HELDOUT_SAMPLES",
    "SKIMAGE_TRAIN_SAMPLES",
    "Photo",
    "PhotoCache",
    "flip",
    "jitter_colour",
    "load_skimage_sample",
    "random_window",
    "resolve_photos",
    "scaled_window",
    "synthetic_photos",
]

#: scikit-image sample photographs used for training (all load offline).
SKIMAGE_TRAIN_SAMPLES = (
    "astronaut", "camera", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "moon", "grass", "gravel", "cell",
)
#: scikit-image sample photographs kept out of training, for evaluation:
#: an animal with fur, an indoor still life, metal coins (gray), a cluttered
#: scene with its real stereo disparity, and a brick wall texture.
SKIMAGE_HELDOUT_SAMPLES = ("chelsea", "coffee", "coins", "stereo_motorcycle", "brick")
# Left out on purpose: "cat" (the same photo as "chelsea"), "clock" (motion
# blurred), "page" and "text" (shorter than 256 px), binary or drawn images
# (binary_blobs, horse, checkerboard, colorwheel, logo, shepp_logan_phantom),
# tiny ones (lfw_subset, microaneurysms) and samples that need a download.

_PHOTO_SETS = {"skimage-train": SKIMAGE_TRAIN_SAMPLES,
               "skimage-heldout": SKIMAGE_HELDOUT_SAMPLES}


# --------------------------------------------------------------------------- #
# Scene kinds -> photo specs
# --------------------------------------------------------------------------- #
def synthetic_photos(kinds: Sequence[str], held_out: bool = False) -> tuple[list[str], bool]:
    """(photo specs, dead leaves wanted) for synthetic scene kinds.

    Kinds: "deadleaves"; "skimage" (scikit-image's training list, or its held-out
    list when ``held_out``); "photos=DIR" for a folder made by
    ``python -m kpac_tf.tools.fetch_training_photos`` (``DIR/train``, or ``DIR/val`` when
    ``held_out``); or any folder / file of all-in-focus photos.
    """
    kinds = [k.strip() for k in kinds if k.strip()]
    if not kinds:
        raise ValueError("Name at least one synthetic scene kind, e.g. synthetic:deadleaves,skimage.")
    photos: list[str] = []
    dead_leaves = False
    for kind in kinds:
        if kind.lower().replace("_", "").replace("-", "") == "deadleaves":
            dead_leaves = True
        elif kind.lower() == "skimage":
            photos.append("skimage-heldout" if held_out else "skimage-train")
        elif kind.startswith("photos="):
            root = kind.split("=", 1)[1]
            folder = os.path.join(root, "val" if held_out else "train")
            if not os.path.isdir(folder):
                raise ValueError(f"{kind}: {folder} is missing; make the folder with "
                                 "python -m kpac_tf.tools.fetch_training_photos --out=DIR.")
            photos.append(folder)
        elif os.path.exists(kind):
            photos.append(kind)
        else:
            raise ValueError(
                f"Unknown synthetic scene kind {kind!r}; use deadleaves, skimage, photos=DIR or a "
                "folder of sharp photos."
            )
    return photos, dead_leaves


# --------------------------------------------------------------------------- #
# Loading
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def load_skimage_sample(name: str) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Loads a scikit-image sample photo: (rgb float32 HxWx3 [0, 1], depth or None).

    ``stereo_motorcycle`` comes with its depth from the stereo disparity
    (normalised to [0, 1], 0 near, holes filled from the nearest valid pixel).
    """
    import skimage.data
    from scipy import ndimage

    if name not in SKIMAGE_TRAIN_SAMPLES + SKIMAGE_HELDOUT_SAMPLES:
        raise ValueError(f"unknown scikit-image sample '{name}'; choose one of "
                         f"{', '.join(SKIMAGE_TRAIN_SAMPLES + SKIMAGE_HELDOUT_SAMPLES)}.")
    depth = None
    if name == "stereo_motorcycle":
        image, _, disparity = skimage.data.stereo_motorcycle()
        valid = np.isfinite(disparity)
        index = ndimage.distance_transform_edt(~valid, return_distances=False,
                                               return_indices=True)
        disparity = disparity[tuple(index)]
        depth = normalise(-disparity.astype(np.float32), 0.0, 1.0)
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]
    scale = 65535.0 if image.dtype == np.uint16 else 255.0 if image.dtype == np.uint8 else 1.0
    rgb = np.ascontiguousarray(image.astype(np.float32) / np.float32(scale))
    rgb.setflags(write=False)
    if depth is not None:
        depth.setflags(write=False)
    return rgb, depth


@dataclasses.dataclass(frozen=True)
class Photo:
    """A named photo and how to load it: ``load() -> (rgb HxWx3 [0, 1], depth HxW or None)``."""

    name: str
    load: Callable[[], tuple[np.ndarray, Optional[np.ndarray]]]


def _load_file(path: str, max_side: Optional[int]) -> tuple[np.ndarray, None]:
    rgb = codec.read_image(path).rgb
    if max_side and max(rgb.shape[:2]) > max_side:
        from skimage.transform import rescale

        rgb = rescale(rgb, max_side / max(rgb.shape[:2]), channel_axis=-1,
                      anti_aliasing=True, preserve_range=True).astype(np.float32)
    return rgb, None


def resolve_photos(photos, max_side: Optional[int]) -> list[Photo]:
    """Turns a photo spec (set names, "skimage:NAME", folders, files, or a list of them)
    into loaders; user photos larger than ``max_side`` are downscaled on load."""
    if photos is None:
        return []
    if isinstance(photos, (str, os.PathLike)):
        photos = [photos]
    result = []
    for spec in photos:
        spec = os.fspath(spec)
        if spec in _PHOTO_SETS:
            result += [Photo(name, functools.partial(load_skimage_sample, name))
                       for name in _PHOTO_SETS[spec]]
        elif spec.startswith("skimage:"):
            name = spec.split(":", 1)[1]
            load_skimage_sample(name)  # validates the name
            result.append(Photo(name, functools.partial(load_skimage_sample, name)))
        elif os.path.isdir(spec):
            files = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                           if codec.is_image_file(os.path.join(spec, f)))
            if not files:
                raise ValueError(f"{spec}: no PNG, JPEG, TIFF or BMP photos in this folder.")
            result += [Photo(f, functools.partial(_load_file, f, max_side)) for f in files]
        elif os.path.isfile(spec):
            result.append(Photo(spec, functools.partial(_load_file, spec, max_side)))
        else:
            raise ValueError(
                f"{spec}: not a folder, an image file, 'skimage-train' or 'skimage-heldout'.")
    return result


class PhotoCache:
    """A small thread-safe LRU cache of decoded photos."""

    def __init__(self, capacity: int):
        self._capacity = capacity
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, photo: Photo):
        """``photo.load()``, decoded once while it stays among the last ``capacity`` used."""
        with self._lock:
            if photo.name in self._items:
                self._items.move_to_end(photo.name)
                return self._items[photo.name]
        value = photo.load()
        with self._lock:
            self._items[photo.name] = value
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return value


# --------------------------------------------------------------------------- #
# Crops and their random changes
# --------------------------------------------------------------------------- #
def random_window(image: np.ndarray, depth: Optional[np.ndarray], height: int, width: int,
                  rng: np.random.Generator):
    """A random height x width window of an HWC image and its depth (symmetric padding
    when the image is smaller)."""
    pad_y = max(0, height - image.shape[0])
    pad_x = max(0, width - image.shape[1])
    if pad_y or pad_x:
        pads = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2))
        image = np.pad(image, pads + ((0, 0),), mode="symmetric")
        depth = None if depth is None else np.pad(depth, pads, mode="symmetric")
    y = int(rng.integers(0, image.shape[0] - height + 1))
    x = int(rng.integers(0, image.shape[1] - width + 1))
    image = image[y:y + height, x:x + width]
    depth = None if depth is None else depth[y:y + height, x:x + width]
    return image, depth


def scaled_window(image: np.ndarray, depth: Optional[np.ndarray], height: int, width: int,
                  photo_scale: tuple[float, float], rng: np.random.Generator):
    """A random window magnified by a factor drawn from ``photo_scale``, resampled to
    height x width (anti-aliased when shrinking; depth bilinear)."""
    if tuple(photo_scale) == (1.0, 1.0):  # no draw: the default stream is unchanged
        return random_window(image, depth, height, width, rng)
    from skimage.transform import resize

    magnification = float(rng.uniform(*photo_scale))
    source_h = max(1, int(round(height / magnification)))
    source_w = max(1, int(round(width / magnification)))
    image, depth = random_window(image, depth, source_h, source_w, rng)
    if (source_h, source_w) != (height, width):
        image = resize(image, (height, width, 3), order=1, anti_aliasing=magnification < 1.0,
                       preserve_range=True).astype(np.float32)
        image = np.clip(image, 0.0, 1.0)
        if depth is not None:
            depth = resize(depth, (height, width), order=1, anti_aliasing=False,
                           preserve_range=True).astype(np.float32)
    return image, depth


def jitter_colour(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random recolouring of an sRGB HWC image in [0, 1] (float32 in [0, 1] out).

    Shuffles the channels, scales the saturation by a factor in [0, 1.5] (0: gray;
    gray images stay gray) and applies a tone curve x ** g with g in [2/3, 3/2].
    Edges stay where they are, so the defocus rendered from the result is as valid
    as from the original.
    """
    image = np.asarray(image, np.float32)[..., rng.permutation(3)]
    gray = luma(image)[..., None]
    image = np.clip(gray + np.float32(rng.uniform(0.0, 1.5)) * (image - gray), 0.0, 1.0)
    return (image ** np.float32(np.exp(rng.uniform(np.log(2 / 3), np.log(1.5))))).astype(np.float32)


def flip(image: np.ndarray, depth: Optional[np.ndarray], rng: np.random.Generator):
    """Random horizontal flip (depth follows). Vertical flips would put skies below."""
    if rng.random() < 0.5:
        image = image[:, ::-1]
        depth = None if depth is None else depth[:, ::-1]
    return image, depth
