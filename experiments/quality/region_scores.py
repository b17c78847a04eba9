"""PSNR inside and outside a band of columns of a benchmark photo's pairs.

Used by ``heldout_benchmark.py`` (its camera-defocused band of chelsea). Images are HWC floats in
[0, 1]; scores follow ``kpac_tf.evaluation.metrics`` (clipped, rounded to the protocol's bits).
"""
from __future__ import annotations

import json
from pathlib import Path


def band_slices(width: int, band: tuple[float, float]) -> tuple[slice, list[slice]]:
    """The band's column slice and the slices of the columns outside it."""
    start, stop = round(band[0] * width), round(band[1] * width)
    stop = max(stop, start + 1)
    outside = [s for s in (slice(0, start), slice(stop, width)) if s.stop > s.start]
    return slice(start, stop), outside


def region_psnr(pred, target, columns: list[slice], bit_depth: int) -> float:
    """PSNR (dB) over the given column slices of HWC images in [0, 1]."""
    import numpy as np

    from kpac_tf.evaluation import metrics

    if not columns:
        return float("nan")
    return metrics.psnr(np.concatenate([pred[:, c] for c in columns], axis=1),
                        np.concatenate([target[:, c] for c in columns], axis=1),
                        bit_depth=bit_depth)


def photo_pairs(root: Path, split: str, photo: str) -> list[str]:
    """Stems of the benchmark pairs rendered from ``photo``, sorted."""
    meta_path = root / f"{split}_c" / "synthetic.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} not found: write the benchmark first "
                                "(experiments/quality/heldout_benchmark.py).")
    images = json.loads(meta_path.read_text())["images"]
    stems = sorted(Path(name).stem for name, info in images.items() if info.get("source") == photo)
    if not stems:
        sources = sorted({info.get("source") for info in images.values()})
        raise ValueError(f"No pair of {root} comes from {photo!r}; sources: {', '.join(sources)}.")
    return stems


def score_pairs(folder: Path, stems: list[str], band: tuple[float, float], deblurrers: dict,
                bit_depth: int):
    """Yields (stem, label, (whole, inside, outside) PSNR, image) for the input
    (label "input") and each deblurrer's output, pair by pair."""
    from kpac_tf.images import codec as io

    for stem in stems:
        blurred = io.read_image(folder / "source" / f"{stem}.png").rgb
        target = io.read_image(folder / "target" / f"{stem}.png").rgb
        inside, outside = band_slices(target.shape[1], band)
        regions = ([slice(0, target.shape[1])], [inside], outside)
        yield stem, "input", tuple(region_psnr(blurred, target, r, bit_depth) for r in regions), blurred
        for label, deblurrer in deblurrers.items():
            output = deblurrer.deblur(blurred)
            yield stem, label, tuple(region_psnr(output, target, r, bit_depth) for r in regions), output


def mean_gains(scores: list[tuple[str, str, tuple]]) -> dict[str, tuple[float, float, float]]:
    """Mean PSNR gain over the input, (whole, inside, outside), per label."""
    import numpy as np

    inputs = {stem: values for stem, label, values in scores if label == "input"}
    gains: dict[str, list] = {}
    for stem, label, values in scores:
        if label != "input":
            gains.setdefault(label, []).append(np.subtract(values, inputs[stem]))
    return {label: tuple(float(v) for v in np.mean(rows, axis=0)) for label, rows in gains.items()}
