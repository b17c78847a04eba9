"""Scores of deblurring on synthetic defocus of all-in-focus photographs, split by the
oracle radius maps into defocused and in-focus pixels.

Shared by ``defocus_benchmark.py`` (validation and held-out splits of the fetched photo
folder) and ``heldout_benchmark.py`` (the report). Images are HWC floats in [0, 1];
scores follow ``kpac_tf.evaluation.metrics`` (8-bit, clipped).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

#: Renderer settings of the benchmark (the issue's protocol): radius up to 16 px,
#: noise sigma 0.5-2/255.
BENCHMARK_OPTIONS = ("max_radius=1:16", "noise_sigma=0.002:0.008")
#: Oracle radius (pixels) below which a pixel counts as in focus.
IN_FOCUS_RADIUS = 1.0
#: A region enters a pair's regional mean only when it covers this share of the frame.
MIN_REGION_SHARE = 0.01
#: Edges (pixels) of the oracle blur-radius bins the gain is also broken down by: [0, 1)
#: is the in-focus region, the last bin is open-ended.
RADIUS_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, math.inf)


def radius_bin_names() -> list[str]:
    """Column names of :data:`RADIUS_BINS`: "0-1", ..., "8+" (pixels)."""
    def number(x: float) -> str:
        return f"{x:g}"

    return [f"{number(lo)}-{number(hi)}" if math.isfinite(hi) else f"{number(lo)}+"
            for lo, hi in zip(RADIUS_BINS[:-1], RADIUS_BINS[1:])]


@dataclasses.dataclass
class PairScore:
    """Scores of one pair (dB for PSNRs)."""

    name: str
    group: str
    input_psnr: float
    psnr: float
    input_ssim: float
    ssim: float
    defocused_gain: float  # NaN when the region is (almost) empty
    in_focus_gain: float
    radius_gains: tuple[float, ...] = ()  # one per RADIUS_BINS bin (NaN: almost empty)
    source: str = ""  # the photo the pair was rendered from (its file stem)


#: How ``run_benchmark`` groups the pairs: by photo set (photos, skimage), by photo set
#: and focus label of the source photo ("sharp" across the frame, real "bokeh", or
#: "unknown"; :func:`kpac_tf.data.natural_photos.focus_label`), or by source photo.
GROUPINGS = ("set", "focus", "photo")


def group_key(score: PairScore, grouping: str) -> str:
    """The group ``score`` is summarised in under ``grouping`` (one of :data:`GROUPINGS`):
    its photo set, then "/" and its source's focus label or its source photo."""
    if grouping == "set":
        return score.group
    if grouping == "focus":
        from kpac_tf.data.natural_photos import focus_label

        return f"{score.group}/{focus_label(score.source)}"
    if grouping == "photo":
        return f"{score.group}/{score.source or '?'}"
    raise ValueError(f"Group pairs by one of {', '.join(GROUPINGS)}, not {grouping!r}.")


def _split_photos(photos: str, split: str) -> list[str]:
    """The PNG photos of ``photos/split``; ValueError when there are none."""
    split_dir = Path(photos) / split
    files = sorted(p for p in split_dir.iterdir() if p.suffix == ".png") if split_dir.is_dir() else []
    if not files:
        raise ValueError(f"{split_dir}: no photos; run python -m kpac_tf.tools.fetch_training_photos.")
    return [str(f) for f in files]


def render_split(root: Path, photos: str | None, split: str, skimage_pairs: int, seed: int,
                 pairs_per_photo: int = 1, stamps: str | None = None,
                 stamp_pairs: int = 0) -> Path:
    """Writes the benchmark pairs (once) and returns the folder holding groups of pairs:
    ``pairs_per_photo`` pairs of every photo of the folder's split (different crops and
    defocus; 0: none, the photos only carry the stamps), ``skimage_pairs`` of every
    held-out scikit-image photo, and ``stamp_pairs`` pairs of the split's photos with
    one to three photographic stamps of the same split of ``stamps`` (a ``stamps/``
    folder made by ``fetch_training_photos --natural_out``)
    pasted as near layers: objects with their natural shading, in focus or not."""
    from kpac_tf.data.dpdd_writer import write_dpdd_layout
    from kpac_tf.data.pairs import synthetic_config_from_overrides
    from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES

    folder = root / split
    plain = synthetic_config_from_overrides(BENCHMARK_OPTIONS)
    groups = []
    if photos:
        files = _split_photos(photos, split)
        if pairs_per_photo:
            groups.append(("photos", files, len(files) * pairs_per_photo, plain))
        if stamps and stamp_pairs:
            if not (Path(stamps) / split).is_dir():
                raise ValueError(f"{Path(stamps) / split}: no stamps; run python -m "
                                 "kpac_tf.tools.fetch_training_photos --natural_out=DIR.")
            pasted = synthetic_config_from_overrides(BENCHMARK_OPTIONS + ("stamps=1", f"stamp_dir={stamps}"))
            groups.append(("stamps", files, stamp_pairs, pasted))
    elif stamps and stamp_pairs:
        raise ValueError("Stamp pairs are pasted over the --photos split's photos: give --photos.")
    if skimage_pairs:
        groups.append(("skimage", "skimage-heldout", skimage_pairs * len(SKIMAGE_HELDOUT_SAMPLES), plain))
    for group, sources, count, config in groups:
        record = folder / group / "test_c" / "synthetic.json"  # written last: the group is complete
        if not record.exists():
            write_dpdd_layout(folder / group, count, "test", photos=sources, seed=seed, bit_depth=16,
                              config=config, stamp_split=split)
            continue
        held = len(json.loads(record.read_text())["images"])
        if held != count:
            raise ValueError(f"{folder / group} holds {held} pairs, not {count}; choose another "
                             "--benchmark_dir.")
    return folder


def _pairs(group_dir: Path):
    from kpac_tf.data.dpdd_writer import read_radius_map
    from kpac_tf.images import codec as kio

    test = group_dir / "test_c"
    record = test / "synthetic.json"
    images = json.loads(record.read_text()).get("images", {}) if record.is_file() else {}
    for name in sorted(os.listdir(test / "source")):
        source = os.path.splitext(str(images.get(name, {}).get("source", "")))[0]
        yield (name, kio.read_image(test / "source" / name).rgb, kio.read_image(test / "target" / name).rgb,
               read_radius_map(test / "radius" / name), source)


def region_gain(output, blurred, target, mask) -> float:
    """PSNR gain (dB) of ``output`` over ``blurred`` on the masked pixels (NaN if too few)."""
    from kpac_tf.evaluation import metrics

    if mask.mean() < MIN_REGION_SHARE:
        return math.nan
    return metrics.masked_psnr(output, target, mask) - metrics.masked_psnr(blurred, target, mask)


def score_weights(folder: Path, weights: str) -> list[PairScore]:
    """Deblurs every pair under ``folder`` with ``weights`` and scores it."""
    from kpac_tf.evaluation import metrics
    from kpac_tf.inference import Deblurrer
    from kpac_tf.model import weights as kweights

    deblurrer = Deblurrer(kweights.load_model(weights))
    scores = []
    for group_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for name, blurred, target, radius, source in _pairs(group_dir):
            output = deblurrer.deblur(blurred)
            before = metrics.score_pair(blurred, target)
            after = metrics.score_pair(output, target)
            defocused = radius >= IN_FOCUS_RADIUS
            scores.append(PairScore(
                name=name, group=group_dir.name, input_psnr=before["psnr"], psnr=after["psnr"],
                input_ssim=before["ssim"], ssim=after["ssim"],
                defocused_gain=region_gain(output, blurred, target, defocused),
                in_focus_gain=region_gain(output, blurred, target, ~defocused),
                radius_gains=tuple(region_gain(output, blurred, target, (radius >= lo) & (radius < hi))
                                   for lo, hi in zip(RADIUS_BINS[:-1], RADIUS_BINS[1:])),
                source=source))
    return scores


def summarise(scores: list[PairScore]) -> dict:
    """Means over pairs (regional means over the pairs that have the region)."""
    def mean(values):
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    gains = [s.psnr - s.input_psnr for s in scores]
    return {
        "pairs": len(scores),
        "input_psnr": mean([s.input_psnr for s in scores]),
        "psnr": mean([s.psnr for s in scores]),
        "gain": mean(gains),
        "defocused_gain": mean([s.defocused_gain for s in scores]),
        "in_focus_gain": mean([s.in_focus_gain for s in scores]),
        "in_focus_pairs": sum(1 for s in scores if not math.isnan(s.in_focus_gain)),
        "input_ssim": mean([s.input_ssim for s in scores]),
        "ssim": mean([s.ssim for s in scores]),
        "worst_gain": float(min(gains)) if gains else math.nan,
        "radius_bins": radius_bin_names(),
        "radius_gains": [mean([s.radius_gains[k] for s in scores if s.radius_gains])
                         for k in range(len(RADIUS_BINS) - 1)],
        "radius_pairs": [sum(1 for s in scores if s.radius_gains and not math.isnan(s.radius_gains[k]))
                         for k in range(len(RADIUS_BINS) - 1)],
    }


def paired_difference(baseline: list[PairScore], other: list[PairScore]) -> dict:
    """``other``'s PSNR minus ``baseline``'s (dB), pair by pair over the same pairs: the
    mean, its standard error (sample standard deviation / sqrt(pairs); NaN for one pair)
    and their ratio ``t``. The pairs share their inputs, so this is the difference of the
    two gains, without the spread of the pairs' difficulty."""
    before = {(s.group, s.name): s.psnr for s in baseline}
    differences = np.array([s.psnr - before[(s.group, s.name)] for s in other], np.float64)
    if differences.size == 0:
        raise ValueError("No pairs to compare.")
    mean = float(differences.mean())
    stderr = (float(differences.std(ddof=1) / math.sqrt(differences.size))
              if differences.size > 1 else math.nan)
    t = mean / stderr if stderr > 0 else math.nan
    return {"pairs": int(differences.size), "mean": mean, "stderr": stderr, "t": t}


def markdown(results: dict[str, dict[str, dict]]) -> list[str]:
    """Table lines: one row per (weights, photo set), then, when several weights were
    scored, their paired gain differences against the first."""
    lines = ["| weights | photos | pairs | input PSNR | PSNR | gain | defocused px gain | "
             "in-focus px gain | input SSIM | SSIM | worst pair |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for weights, groups in results.items():
        for group, s in groups.items():
            lines.append(
                f"| {weights} | {group} | {s['pairs']} | {s['input_psnr']:.2f} | {s['psnr']:.2f} | "
                f"{s['gain']:+.2f} | {s['defocused_gain']:+.2f} | {s['in_focus_gain']:+.2f} | "
                f"{s['input_ssim']:.4f} | {s['ssim']:.4f} | {s['worst_gain']:+.2f} |")
    lines += radius_table(results)
    paired = [(weights, group, s["vs_first"]) for weights, groups in results.items()
              for group, s in groups.items() if "vs_first" in s]
    if paired:
        first = next(iter(results))
        lines += ["", f"Paired against {first} (PSNR difference per pair, dB):", "",
                  "| weights | photos | pairs | mean difference | standard error | t |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {weights} | {group} | {d['pairs']} | {d['mean']:+.3f} | {d['stderr']:.3f} | "
                  f"{d['t']:+.1f} |" for weights, group, d in paired]
    return lines


def radius_table(results: dict[str, dict[str, dict]]) -> list[str]:
    """Table lines of the gain by oracle blur radius (empty when no summary has it):
    per bin, the mean over the pairs where the bin covers at least
    :data:`MIN_REGION_SHARE` of the frame (their count under the header)."""
    rows = [(weights, group, s) for weights, groups in results.items() for group, s in groups.items()
            if any(not math.isnan(g) for g in s.get("radius_gains", []))]
    if not rows:
        return []
    names = rows[0][2]["radius_bins"]
    lines = ["", "PSNR gain by oracle blur radius (px; pairs with the bin in brackets):", "",
             "| weights | photos | " + " | ".join(names) + " |",
             "|---|---|" + "---:|" * len(names)]
    for weights, group, s in rows:
        cells = [f"{g:+.2f} ({n})" if not math.isnan(g) else "-"
                 for g, n in zip(s["radius_gains"], s["radius_pairs"])]
        lines.append(f"| {weights} | {group} | " + " | ".join(cells) + " |")
    return lines


def run_benchmark(photos: str | None, split: str, benchmark_dir: str, weights: list[str],
                  skimage_pairs: int = 2, seed: int = 11, pairs_per_photo: int = 1,
                  grouping: str = "set", stamps: str | None = None,
                  stamp_pairs: int = 0) -> dict[str, dict[str, dict]]:
    """{weights: {group: summary}} for every weights; groups are the photo sets
    (photos, skimage), or finer under ``grouping`` (:func:`group_key`). The summaries of
    every weights after the first hold ``vs_first``, the :func:`paired_difference`
    against the first."""
    if grouping not in GROUPINGS:
        raise ValueError(f"Group pairs by one of {', '.join(GROUPINGS)}, not {grouping!r}.")
    folder = render_split(Path(benchmark_dir), photos, split, skimage_pairs, seed, pairs_per_photo,
                          stamps, stamp_pairs)
    results, first = {}, None
    for spec in weights:
        members: dict[str, list[PairScore]] = {}
        for score in score_weights(folder, spec):
            members.setdefault(group_key(score, grouping), []).append(score)
        results[spec] = {group: summarise(members[group]) for group in sorted(members)}
        if first is None:
            first = members
            continue
        for group in members:
            results[spec][group]["vs_first"] = paired_difference(first.get(group, []), members[group])
    return results
