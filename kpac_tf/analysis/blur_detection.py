"""Defocus blur detection from KPAC's scale attention (paper, supplementary Appendix F).

The first block's dilation-1 scale attention is large where little blur has to be
undone (rate 1 serves the smallest blur), so ``1 - alpha_1`` is a blur map. The paper
runs the network on the input upsampled x4 so that real photos' blur falls into the
range of the rates, thresholds the map and scores the mask against the CUHK blur
detection dataset (F-measure 0.832, accuracy 78.4%).

Pipeline: :func:`blur_map` (float32 HxW in [0, 1], 1 = blurred) -> :func:`threshold_map`
(a fixed value or Otsu's) -> boolean mask (True = blurred) -> :func:`compare_masks`
against a ground-truth mask -> :class:`MaskCounts` (precision, recall, F-measure,
accuracy).

Data (:func:`pair_blur_dataset`): the CUHK layout, an image folder (``image/*.jpg``)
and a binary mask folder (``gt/*.png``) whose files pair by stem; CUHK masks are white
where the image is blurred (:func:`read_mask` can read the opposite polarity too).

With random (untrained) weights the map is not a blur detector; the mechanics (maps,
geometry, thresholds, metrics, pairing) are the same.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kpac_tf.analysis import attention
from kpac_tf.data.dpdd import PairingError, list_images, pair_by_name
from kpac_tf.images import codec
from kpac_tf.model.builder import model_config

__all__ = [
    "DEFAULT_BETA2",
    "BlurDetection",
    "BlurSample",
    "EvaluationResult",
    "MaskCounts",
    "PairingError",
    "blur_map",
    "compare_masks",
    "detect_blur",
    "ellipse_mask",
    "evaluate",
    "otsu_threshold",
    "pair_blur_dataset",
    "read_mask",
    "synthetic_blur_example",
    "threshold_map",
    "upsample_image",
    "write_synthetic_dataset",
]

#: beta^2 of the F-measure; 0.3 weighs precision more, the blur-detection convention
#: (the KPAC paper does not state its beta).
DEFAULT_BETA2 = 0.3



# ---------------------------------------------------------------------------------------
# Blur map and mask.


def upsample_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Bicubic upsampling of an HWC image in [0, 1] by an integer factor (result clipped)."""
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"The upsampling factor must be a positive integer, got {factor}.")
    image = np.asarray(image, np.float32)
    if factor == 1:
        return image
    height, width = image.shape[:2]
    resized = tf.image.resize(image, (height * factor, width * factor), method="bicubic")
    return np.clip(resized.numpy(), 0.0, 1.0)


def blur_map(
    model: keras.Model, image: np.ndarray, *, upsample: int = 4, block: int = 1, rate: int = 1
) -> np.ndarray:
    """``1 - alpha_rate`` of block ``block``, at the image's resolution.

    Args:
        model: a KPAC model with scale attention (single-image).
        image: float32 HWC RGB in [0, 1].
        upsample: the network sees the image enlarged by this integer factor (the paper
            uses 4); the map is sampled back at the original pixel centres.
        block, rate: which block (1-based) and dilation rate to read.

    Returns:
        float32 HxW in [0, 1]: high where the attention says the image is blurred.
    """
    config = model_config(model)
    if config.dual_pixel:
        raise ValueError("Blur detection takes one image; use a single-image model.")
    index = attention.rate_index(config.dilations, rate)
    image = np.asarray(image, np.float32)
    height, width = image.shape[:2]
    enlarged = upsample_image(image, upsample)
    (alpha,) = attention.scale_attention_maps(model, enlarged, blocks=(block,))
    sharpness = attention.block_map_to_image(
        alpha[..., index], (height, width), config.multiple, scale=upsample
    )
    return np.clip(1.0 - sharpness, 0.0, 1.0).astype(np.float32)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (the value itself when they are all equal)."""
    from skimage.filters import threshold_otsu

    values = np.asarray(values, np.float32)
    if float(values.max()) - float(values.min()) <= 1e-12:
        return float(values.max())
    return float(threshold_otsu(values))


def threshold_map(values: np.ndarray, threshold: float | str = "otsu") -> tuple[np.ndarray, float]:
    """(mask, threshold): mask = values > threshold; ``threshold`` a number or "otsu"."""
    values = np.asarray(values, np.float32)
    if isinstance(threshold, str):
        if threshold.lower() != "otsu":
            raise ValueError(f"threshold must be a number or 'otsu', got {threshold!r}.")
        value = otsu_threshold(values)
    else:
        value = float(threshold)
    return values > value, value


@dataclasses.dataclass
class BlurDetection:
    """A blur map (HxW in [0, 1], 1 = blurred), its mask (True = blurred) and threshold."""

    blur_map: np.ndarray
    mask: np.ndarray
    threshold: float


def detect_blur(
    model: keras.Model,
    image: np.ndarray,
    *,
    threshold: float | str = "otsu",
    upsample: int = 4,
    block: int = 1,
    rate: int = 1,
) -> BlurDetection:
    """Blur map of ``image`` and its thresholded mask (see :func:`blur_map`)."""
    values = blur_map(model, image, upsample=upsample, block=block, rate=rate)
    mask, value = threshold_map(values, threshold)
    return BlurDetection(blur_map=values, mask=mask, threshold=value)


# ---------------------------------------------------------------------------------------
# Metrics.


@dataclasses.dataclass(frozen=True)
class MaskCounts:
    """Pixel counts of a predicted mask against the truth (positive = blurred)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: "MaskCounts") -> "MaskCounts":
        return MaskCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                          self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1 when nothing is predicted blurred (no false alarm)."""
        predicted = self.tp + self.fp
        return self.tp / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1 when nothing is blurred in the truth."""
        actual = self.tp + self.fn
        return self.tp / actual if actual else 1.0

    @property
    def accuracy(self) -> float:
        """(TP + TN) / all pixels."""
        return (self.tp + self.tn) / self.total if self.total else 1.0

    def f_measure(self, beta2: float = DEFAULT_BETA2) -> float:
        """(1 + beta2) P R / (beta2 P + R); 0 when P and R are both 0."""
        p, r = self.precision, self.recall
        denominator = beta2 * p + r
        return (1.0 + beta2) * p * r / denominator if denominator > 0 else 0.0


def compare_masks(predicted: np.ndarray, truth: np.ndarray) -> MaskCounts:
    """Confusion counts of two boolean HxW masks of the same shape (True = blurred)."""
    predicted = np.asarray(predicted, bool)
    truth = np.asarray(truth, bool)
    if predicted.shape != truth.shape:
        raise ValueError(
            f"The predicted mask is {predicted.shape} but the true mask is {truth.shape}; "
            "masks must have the image's size."
        )
    tp = int(np.count_nonzero(predicted & truth))
    fp = int(np.count_nonzero(predicted & ~truth))
    fn = int(np.count_nonzero(~predicted & truth))
    return MaskCounts(tp=tp, fp=fp, fn=fn, tn=int(predicted.size) - tp - fp - fn)


# ---------------------------------------------------------------------------------------
# CUHK layout.


@dataclasses.dataclass(frozen=True)
class BlurSample:
    """One image of a blur-detection set and its mask file (paired by stem)."""

    name: str
    image: str
    mask: str


def pair_blur_dataset(image_dir: str, mask_dir: str, include: str = "*") -> list[BlurSample]:
    """Pair a folder of images with a folder of masks by file stem (CUHK layout).

    Args:
        image_dir: folder of photos (e.g. CUHK ``image/``).
        mask_dir: folder of binary masks (e.g. CUHK ``gt/``).
        include: shell pattern on file names in both folders (e.g. "out_of_focus*" for
            CUHK's defocus images).

    Raises:
        FileNotFoundError: a folder is missing.
        PairingError (a ValueError): a folder is empty, holds two files with one stem,
            or some file has no partner; the message lists them.
    """
    dirs = {"image": image_dir, "mask": mask_dir}
    folders = {role: list_images(folder, role, extensions=codec.READ_EXTENSIONS, include=include)
               for role, folder in dirs.items()}
    images, masks = folders["image"], folders["mask"]
    pair_by_name(folders, dirs, lacking={"image": "mask", "mask": "image"},
                 advice="Give every image a mask with the same name (any extension), or "
                        "narrow the set with an include pattern")
    return [BlurSample(name=k, image=images[k], mask=masks[k]) for k in sorted(images)]


def read_mask(path: str, white: str = "blurred") -> np.ndarray:
    """Read a binary mask file as boolean HxW, True = blurred.

    ``white``: what white pixels mean in the file, "blurred" (CUHK) or "sharp". Gray
    values are split at 0.5.
    """
    if white not in ("blurred", "sharp"):
        raise ValueError(f"white must be 'blurred' or 'sharp', got {white!r}.")
    bright = codec.read_image(path).rgb.mean(axis=-1) > 0.5
    return bright if white == "blurred" else ~bright


# ---------------------------------------------------------------------------------------
# Evaluation.


@dataclasses.dataclass
class EvaluationResult:
    """Per-image counts and thresholds, and the summary scores.

    ``mean_*``: the average of per-image scores (each image weighs the same);
    ``pooled``: the counts of all pixels of all images together.
    """

    names: list[str]
    counts: list[MaskCounts]
    thresholds: list[float]
    beta2: float

    @property
    def pooled(self) -> MaskCounts:
        total = MaskCounts()
        for counts in self.counts:
            total = total + counts
        return total

    @property
    def mean_f_measure(self) -> float:
        return float(np.mean([c.f_measure(self.beta2) for c in self.counts]))

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean([c.accuracy for c in self.counts]))

    @property
    def mean_precision(self) -> float:
        return float(np.mean([c.precision for c in self.counts]))

    @property
    def mean_recall(self) -> float:
        return float(np.mean([c.recall for c in self.counts]))


def evaluate(
    model: keras.Model,
    samples: Iterable[BlurSample],
    *,
    threshold: float | str = "otsu",
    upsample: int = 4,
    block: int = 1,
    rate: int = 1,
    beta2: float = DEFAULT_BETA2,
    mask_white: str = "blurred",
    on_image: Callable[[BlurSample, np.ndarray, BlurDetection, np.ndarray], None] | None = None,
) -> EvaluationResult:
    """Detect blur in every sample and score it against its mask.

    ``on_image(sample, image, detection, truth)`` is called after each image (for
    progress bars and figures).
    """
    names, counts, thresholds = [], [], []
    for sample in samples:
        image = codec.read_image(sample.image).rgb
        truth = read_mask(sample.mask, mask_white)
        if truth.shape != image.shape[:2]:
            raise ValueError(
                f"{sample.mask} is {truth.shape[1]}x{truth.shape[0]} but {sample.image} is "
                f"{image.shape[1]}x{image.shape[0]}; a mask must have its image's size."
            )
        detection = detect_blur(model, image, threshold=threshold, upsample=upsample,
                                block=block, rate=rate)
        counts.append(compare_masks(detection.mask, truth))
        thresholds.append(detection.threshold)
        names.append(sample.name)
        logging.debug("%s: F %.3f, accuracy %.3f", sample.name,
                      counts[-1].f_measure(beta2), counts[-1].accuracy)
        if on_image is not None:
            on_image(sample, image, detection, truth)
    if not names:
        raise ValueError("No samples to evaluate; check the dataset folders.")
    return EvaluationResult(names=names, counts=counts, thresholds=thresholds, beta2=beta2)


# ---------------------------------------------------------------------------------------
# Synthetic examples with a known blurred region.


def ellipse_mask(height: int, width: int, centre: tuple[float, float],
                 radii: tuple[float, float]) -> np.ndarray:
    """Boolean HxW ellipse (True inside); centre (y, x) and radii (ry, rx) in pixels."""
    ys = (np.arange(height, dtype=np.float32)[:, None] - centre[0]) / radii[0]
    xs = (np.arange(width, dtype=np.float32)[None, :] - centre[1]) / radii[1]
    return ys**2 + xs**2 <= 1.0


def synthetic_blur_example(
    sharp: np.ndarray, in_focus: np.ndarray, max_radius: float = 6.0, *,
    noise_sigma: float = 0.0, rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Defocus everything outside ``in_focus`` with the synthetic renderer.

    The in-focus region is a near layer on the focal plane (radius 0); the rest is a
    far layer blurred with a disc of ``max_radius`` pixels, composited with occlusion.

    Returns:
        (blurred HWC in [0, 1], radius map HxW in pixels, true blur mask HxW with
        True where the radius is at least 0.5 px).
    """
    from kpac_tf.data.render import render_defocus_pair

    in_focus = np.asarray(in_focus, bool)
    depth = np.where(in_focus, 0.0, 1.0).astype(np.float32)
    pair = render_defocus_pair(
        np.asarray(sharp, np.float32), depth, focus=0.0, max_radius=float(max_radius),
        noise_sigma=noise_sigma, rng=rng,
    )
    return pair.blurred, pair.radius, pair.radius >= 0.5


def write_synthetic_dataset(
    out_dir: str, count: int, *, size: tuple[int, int] = (192, 256), max_radius: float = 6.0,
    seed: int = 0,
) -> tuple[str, str]:
    """Write ``count`` synthetic blur-detection samples in the CUHK layout.

    Photos are crops of scikit-image's held-out sample photos; an ellipse stays in
    focus, the rest is defocused (:func:`synthetic_blur_example`). Files:
    ``{out_dir}/image/synthetic_NNNN.png`` and ``{out_dir}/gt/synthetic_NNNN.png``
    (white = blurred). Returns (image folder, mask folder).
    """
    from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES, load_skimage_sample

    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}.")
    height, width = size
    image_dir, mask_dir = os.path.join(out_dir, "image"), os.path.join(out_dir, "gt")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    photos = SKIMAGE_HELDOUT_SAMPLES
    for index in range(count):
        photo, _ = load_skimage_sample(photos[index % len(photos)])
        # Scale the photo to a little more than the crop, so a crop shows a scene.
        factor = 1.25 * max(height / photo.shape[0], width / photo.shape[1])
        photo = tf.image.resize(photo, (int(np.ceil(photo.shape[0] * factor)),
                                        int(np.ceil(photo.shape[1] * factor))),
                                method="area" if factor < 1 else "bicubic").numpy()
        y = int(rng.integers(0, photo.shape[0] - height + 1))
        x = int(rng.integers(0, photo.shape[1] - width + 1))
        crop = np.clip(photo[y:y + height, x:x + width], 0.0, 1.0)
        centre = (rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width)
        radii = (rng.uniform(0.2, 0.4) * height, rng.uniform(0.2, 0.4) * width)
        blurred, _, truth = synthetic_blur_example(
            crop, ellipse_mask(height, width, centre, radii), max_radius, rng=rng
        )
        name = f"synthetic_{index:04d}.png"
        codec.write_image(os.path.join(image_dir, name), blurred)
        codec.write_image(os.path.join(mask_dir, name), truth.astype(np.float32), grayscale=True)
    return image_dir, mask_dir


def parse_threshold(text: str) -> str | float:
    """'otsu' or a fixed threshold in [0, 1] from command-line text (ValueError otherwise)."""
    if text.strip().lower() == "otsu":
        return "otsu"
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"the threshold must be 'otsu' or a number in [0, 1], got {text!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the threshold must be in [0, 1], got {value}.")
    return value
