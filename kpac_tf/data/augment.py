"""Graph-mode augmentations for aligned training images (tf.data friendly).

Every function takes a *sample*: a dict of aligned float32 HWC images in [0, 1] with
the same height and width, e.g. ``{"input": ..., "target": ...}`` or, for dual-pixel
data, ``{"left": ..., "right": ..., "centre": ..., "target": ...}``. Geometric
transforms apply the same window / flip / rotation to every image of a sample.

Randomness is stateless: each function takes a ``seed`` (int tensor of shape [2]) and
returns the same result for the same seed, so a pipeline that derives the seed from
the sample's index is reproducible and resumable at any position.
"""
from __future__ import annotations

from typing import Mapping

import tensorflow as tf

from kpac_tf.model.builder import DUAL_PIXEL_VIEWS

__all__ = [
    "DUAL_PIXEL_KEYS",
    "INPUT_KEYS",
    "add_gaussian_noise",
    "center_crop",
    "check_same_size",
    "crop_window",
    "random_crop",
    "random_dihedral",
    "split_seed",
]

Sample = Mapping[str, tf.Tensor]

#: Keys of the network inputs in a sample (single-image / dual-pixel: the model's
#: input names, in input order).
INPUT_KEYS = ("input",)
DUAL_PIXEL_KEYS = DUAL_PIXEL_VIEWS


def split_seed(seed: tf.Tensor, num: int) -> tf.Tensor:
    """``num`` independent stateless seeds [num, 2] from one seed [2]."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=num)


def check_same_size(sample: Sample) -> tf.Tensor:
    """Assert every image of ``sample`` has the same H and W; returns that [H, W]."""
    names = sorted(sample)
    size = tf.shape(sample[names[0]])[:2]
    checks = [
        tf.debugging.assert_equal(
            tf.shape(sample[name])[:2],
            size,
            message=f"The {name!r} image and the {names[0]!r} image differ in size; "
            "source and target images must be aligned and of equal size.",
        )
        for name in names[1:]
    ]
    with tf.control_dependencies([c for c in checks if c is not None]):
        return tf.identity(size)


def crop_window(height: tf.Tensor, width: tf.Tensor, size: int, seed: tf.Tensor):
    """A random top-left corner (y, x) of a ``size`` x ``size`` window, uniform over
    every valid position of an image of ``height`` x ``width``."""
    check = tf.debugging.assert_greater_equal(
        tf.minimum(height, width),
        tf.cast(size, height.dtype),
        message=f"An image is smaller than the {size}x{size} crop; use a smaller --crop.",
    )
    with tf.control_dependencies([check] if check is not None else []):
        limits = tf.stack([height - size + 1, width - size + 1])
    offsets = tf.random.stateless_uniform(
        [2], seed=seed, minval=0, maxval=tf.int32.max, dtype=tf.int32
    )
    corner = offsets % tf.cast(limits, tf.int32)
    return corner[0], corner[1]


def random_crop(sample: Sample, size: int, seed: tf.Tensor) -> dict[str, tf.Tensor]:
    """The same random ``size`` x ``size`` window of every image in ``sample``."""
    hw = check_same_size(sample)
    y, x = crop_window(hw[0], hw[1], size, seed)
    out = {}
    for key, image in sample.items():
        window = tf.slice(image, tf.stack([y, x, 0]), [size, size, -1])
        window.set_shape([size, size, image.shape[-1]])
        out[key] = window
    return out


def center_crop(sample: Sample, size: int) -> dict[str, tf.Tensor]:
    """The central ``size`` x ``size`` window (the whole image if it is smaller)."""
    hw = check_same_size(sample)
    h = tf.minimum(hw[0], size)
    w = tf.minimum(hw[1], size)
    y = (hw[0] - h) // 2
    x = (hw[1] - w) // 2
    return {k: v[y : y + h, x : x + w, :] for k, v in sample.items()}


def random_dihedral(
    sample: Sample, seed: tf.Tensor, *, rotate: bool = True, dual_pixel: bool = False
) -> dict[str, tf.Tensor]:
    """Random horizontal/vertical flips and (if ``rotate``) a random multiple of 90
    degrees, the same for every image of the sample (with rotate: all 8 symmetries of
    the square, equally likely; rotation needs square images).

    Dual-pixel samples: the two views differ by a horizontal disparity whose sign a
    horizontal mirror reverses, so a horizontal flip also swaps ``left`` and ``right``;
    rotations would turn the disparity vertical, which real sensors never show, so
    ``rotate`` must be False.
    """
    if dual_pixel and rotate:
        raise ValueError("Rotations would make dual-pixel disparity vertical; use flips only.")
    draws = tf.random.stateless_uniform([3], seed=seed, minval=0, maxval=4, dtype=tf.int32)
    flip_lr = draws[0] % 2 == 1
    flip_ud = draws[1] % 2 == 1
    quarter_turns = draws[2] if rotate else tf.constant(0, tf.int32)

    def transform(image):
        image = tf.cond(flip_lr, lambda: tf.reverse(image, axis=[1]), lambda: image)
        image = tf.cond(flip_ud, lambda: tf.reverse(image, axis=[0]), lambda: image)
        if rotate:
            image = tf.image.rot90(image, k=quarter_turns)
        return image

    out = {k: transform(v) for k, v in sample.items()}
    if dual_pixel and "left" in out and "right" in out:
        left, right = out["left"], out["right"]
        out["left"] = tf.cond(flip_lr, lambda: right, lambda: left)
        out["right"] = tf.cond(flip_lr, lambda: left, lambda: right)
    return out


def add_gaussian_noise(
    image: tf.Tensor, sigma_max: float, seed: tf.Tensor, *, clip: bool = True
) -> tf.Tensor:
    """Additive white Gaussian noise with a per-image sigma drawn uniformly from
    [0, ``sigma_max``] (the paper's Appendix G uses sigma_max = 0.03, i.e. 3% of the
    [0, 1] range). The result is clipped to [0, 1] when ``clip`` (as a camera would)."""
    if sigma_max <= 0:
        return image
    seeds = split_seed(seed, 2)
    sigma = tf.random.stateless_uniform([], seed=seeds[0], minval=0.0, maxval=sigma_max)
    noise = tf.random.stateless_normal(tf.shape(image), seed=seeds[1], dtype=image.dtype)
    noisy = image + tf.cast(sigma, image.dtype) * noise
    return tf.clip_by_value(noisy, 0.0, 1.0) if clip else noisy

