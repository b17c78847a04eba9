"""Image-quality metrics under the DPDD evaluation protocol (PSNR, SSIM, MAE).

All functions take float images in HWC layout with values nominally in [0, 1] (RGB or
any channel count). Following the protocol used by DPDNet, IFAN, Restormer and KPAC's
published numbers, both images are first clipped to [0, 1] and, when a bit depth is
given, rounded to that many bits (8-bit is the published protocol; 16-bit is a
labelled alternative that scores about 0.6 dB higher on DPDD). Scores are then
computed in float64:

- PSNR = 10 log10(1 / MSE), the MSE over all pixels and channels; identical images
  give ``inf``.
- SSIM = ``skimage.metrics.structural_similarity(data_range=1, channel_axis=-1)`` with
  its defaults (7x7 uniform window, sample covariance, K1=0.01, K2=0.03). This is not
  ``tf.image.ssim`` (11x11 Gaussian window), which scores differently.
- MAE = mean absolute error over all pixels and channels.

Every table should carry :meth:`Protocol.describe` so its numbers can be compared.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
from skimage.metrics import structural_similarity

__all__ = [
    "Protocol",
    "Aggregate",
    "batch_psnr",
    "prepare",
    "psnr",
    "psnr_from_mse",
    "signal_psnr",
    "ssim",
    "mae",
    "score_pair",
    "aggregate",
    "format_score",
    "markdown_table",
]

_VALID_BIT_DEPTHS = (None, 8, 16)


@dataclass(frozen=True)
class Protocol:
    """What a table of scores was computed under.

    Attributes:
      bit_depth: 8 (the published DPDD protocol), 16, or None for unrounded floats.
        Outputs and targets are clipped to [0, 1] and rounded to this many bits.
      ssim_variant: the SSIM definition; only "skimage-default" is implemented.
      lpips_net: "alex" (the published choice), "vgg", or None when LPIPS was not
        computed.
    """

    bit_depth: int | None = 8
    ssim_variant: str = "skimage-default"
    lpips_net: str | None = "alex"

    def __post_init__(self) -> None:
        if self.bit_depth not in _VALID_BIT_DEPTHS:
            raise ValueError(f"bit_depth must be 8, 16 or None, got {self.bit_depth!r}.")
        if self.ssim_variant != "skimage-default":
            raise ValueError(
                f"Unknown SSIM variant {self.ssim_variant!r}; use 'skimage-default'.")
        if self.lpips_net not in (None, "alex", "vgg"):
            raise ValueError(f"lpips_net must be 'alex', 'vgg' or None, got {self.lpips_net!r}.")

    @property
    def bit_label(self) -> str:
        return "float (no rounding)" if self.bit_depth is None else f"{self.bit_depth}-bit"

    def describe(self) -> str:
        """One paragraph stating how the numbers were computed (for table captions)."""
        if self.bit_depth is None:
            rounding = "clipped to [0,1], not rounded"
        else:
            levels = 2**self.bit_depth - 1
            rounding = f"clipped to [0,1] and rounded to {self.bit_depth} bits ({levels} levels)"
        lpips = ("not computed" if self.lpips_net is None else
                 f"v0.1, {'AlexNet' if self.lpips_net == 'alex' else 'VGG16'} backbone, "
                 "inputs scaled to [-1,1]")
        return (
            f"Protocol: {self.bit_label}. Output and target as floats, {rounding}. "
            "PSNR = 10 log10(1/MSE) over all pixels and channels; "
            "SSIM = skimage structural_similarity(data_range=1, channel_axis=-1), defaults "
            "(7x7 uniform window); MAE over all pixels and channels; "
            f"LPIPS {lpips}. Means are per-image averages.")

    def to_dict(self) -> dict:
        return {"bit_depth": self.bit_depth, "ssim_variant": self.ssim_variant,
                "lpips_net": self.lpips_net, "description": self.describe()}


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    target = np.asarray(target)
    for name, img in (("prediction", pred), ("target", target)):
        if not np.issubdtype(img.dtype, np.floating):
            raise TypeError(
                f"The {name} must be a float image in [0,1] (got dtype {img.dtype}); "
                "divide integer images by 255 or 65535 first.")
        if img.ndim != 3:
            raise ValueError(f"The {name} must be HWC (3 dimensions), got shape {img.shape}.")
    if pred.shape != target.shape:
        raise ValueError(
            f"Prediction shape {pred.shape} does not match target shape {target.shape}.")
    return pred, target


def prepare(image: np.ndarray, bit_depth: int | None = 8) -> np.ndarray:
    """Clip a float image to [0, 1] and optionally round it to ``bit_depth`` bits.

    Returns float64 with values in [0, 1] (multiples of 1/(2**bit_depth - 1) when
    rounded; round-half-up, as when an image is saved to an integer file).
    """
    if bit_depth not in _VALID_BIT_DEPTHS:
        raise ValueError(f"bit_depth must be 8, 16 or None, got {bit_depth!r}.")
    img = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if bit_depth is not None:
        levels = float(2**bit_depth - 1)
        img = np.floor(img * levels + 0.5) / levels
    return img


def _mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((pred - target) ** 2))


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB, ``10 log10(peak^2 / mse)``, of a mean squared error on the [0, peak]
    scale; ``inf`` for an MSE of 0. Every PSNR of the project is computed here."""
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def psnr(pred: np.ndarray, target: np.ndarray, *, bit_depth: int | None = 8) -> float:
    """PSNR in dB of HWC float images in [0,1]; ``inf`` when they are identical."""
    pred, target = _check_pair(pred, target)
    return psnr_from_mse(_mse(prepare(pred, bit_depth), prepare(target, bit_depth)))


def batch_psnr(image, target, max_db: float = 100.0):
    """Per-example PSNR in dB of two NHWC batches in [0,1] as TensorFlow tensors (no
    rounding), at most ``max_db``: the training and validation PSNR."""
    import tensorflow as tf

    mse = tf.reduce_mean(tf.square(image - target), axis=[1, 2, 3])
    return tf.minimum(10.0 * tf.math.log(1.0 / tf.maximum(mse, 1e-12)) / math.log(10.0), max_db)


def signal_psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR in dB of two arrays of any shape and range, as they are: no clipping, no
    rounding, no border crop (peak ``data_range``); ``inf`` when they are equal."""
    difference = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return psnr_from_mse(float(np.mean(difference ** 2)), data_range)


def masked_psnr(pred: np.ndarray, target: np.ndarray, mask: np.ndarray, *,
                bit_depth: int | None = 8) -> float:
    """PSNR in dB over the pixels where ``mask`` (HxW bool) is set, all channels; NaN for
    an empty mask, ``inf`` when those pixels are identical."""
    pred, target = _check_pair(pred, target)
    mask = np.asarray(mask, bool)
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"The mask {mask.shape} does not match the images {pred.shape[:2]}.")
    if not mask.any():
        return math.nan
    return psnr_from_mse(_mse(prepare(pred, bit_depth)[mask], prepare(target, bit_depth)[mask]))


def ssim(pred: np.ndarray, target: np.ndarray, *, bit_depth: int | None = 8) -> float:
    """Mean SSIM of HWC float images in [0,1], scikit-image defaults, data_range=1."""
    pred, target = _check_pair(pred, target)
    return float(structural_similarity(
        prepare(pred, bit_depth), prepare(target, bit_depth), data_range=1.0, channel_axis=-1))


def mae(pred: np.ndarray, target: np.ndarray, *, bit_depth: int | None = 8) -> float:
    """Mean absolute error of HWC float images in [0,1] (same units as the images)."""
    pred, target = _check_pair(pred, target)
    return float(np.mean(np.abs(prepare(pred, bit_depth) - prepare(target, bit_depth))))


def score_pair(pred: np.ndarray, target: np.ndarray,
               protocol: Protocol = Protocol()) -> dict[str, float]:
    """PSNR, SSIM and MAE of one HWC pair under ``protocol`` (LPIPS is scored elsewhere).

    The pair is clipped and rounded once and all three scores use the same arrays.
    """
    pred, target = _check_pair(pred, target)
    p = prepare(pred, protocol.bit_depth)
    t = prepare(target, protocol.bit_depth)
    return {
        "psnr": psnr_from_mse(_mse(p, t)),
        "ssim": float(structural_similarity(p, t, data_range=1.0, channel_axis=-1)),
        "mae": float(np.mean(np.abs(p - t))),
    }


@dataclass(frozen=True)
class Aggregate:
    """A per-image mean.

    ``mean`` averages the finite values only; ``n_infinite`` counts the excluded
    ``inf`` values (PSNR of identical pairs), and ``mean`` is ``inf`` when every value
    is infinite. ``n_missing`` counts NaN / None entries (e.g. skipped LPIPS).
    """

    mean: float
    count: int
    n_infinite: int = 0
    n_missing: int = 0

    def to_dict(self) -> dict:
        return {"mean": _json_number(self.mean), "count": self.count,
                "n_infinite": self.n_infinite, "n_missing": self.n_missing}


def aggregate(values: Iterable[float | None]) -> Aggregate:
    """Mean of per-image scores, treating ``inf`` and missing values as documented."""
    finite: list[float] = []
    n_inf = n_missing = 0
    for v in values:
        if v is None or math.isnan(float(v)):
            n_missing += 1
        elif math.isinf(float(v)):
            n_inf += 1
        else:
            finite.append(float(v))
    if finite:
        mean = float(np.mean(finite))
    elif n_inf:
        mean = math.inf
    else:
        mean = math.nan
    return Aggregate(mean=mean, count=len(finite) + n_inf, n_infinite=n_inf, n_missing=n_missing)


def _json_number(v: float | None) -> float | str | None:
    """JSON has no inf/NaN: encode them as the strings "inf" and None."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return float(v)


def format_score(value: float | None, digits: int = 4) -> str:
    """Format one score for a table: ``inf`` for identical images, ``-`` when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def markdown_table(rows: Sequence[tuple[str, dict[str, Aggregate]]],
                   protocol: Protocol,
                   metrics: Sequence[str] = ("psnr", "ssim", "mae", "lpips")) -> str:
    """A Markdown table of means (one row per subset) headed by the protocol.

    ``rows`` is a list of (label, {metric: Aggregate}). PSNR is printed with 2
    decimals, the others with 4; a footnote counts identical pairs left out of the
    PSNR mean and images without a score.
    """
    names = {"psnr": "PSNR (dB)", "ssim": "SSIM", "mae": "MAE", "lpips": "LPIPS"}
    lines = [protocol.describe(), "",
             "| subset | images | " + " | ".join(names[m] for m in metrics) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    notes = []
    for label, aggs in rows:
        count = max((aggs[m].count + aggs[m].n_missing for m in metrics if m in aggs),
                    default=0)
        cells = []
        for m in metrics:
            agg = aggs.get(m)
            cells.append("-" if agg is None else format_score(agg.mean, 2 if m == "psnr" else 4))
            if agg is not None and agg.n_infinite:
                notes.append(f"{label}: {agg.n_infinite} identical pair(s) (infinite "
                             f"{names[m]}) left out of the mean.")
            if agg is not None and agg.n_missing:
                notes.append(f"{label}: {names[m]} missing for {agg.n_missing} image(s).")
        lines.append(f"| {label} | {count} | " + " | ".join(cells) + " |")
    if notes:
        lines.append("")
        lines.extend(notes)
    return "\n".join(lines) + "\n"

