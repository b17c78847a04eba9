"""The soft-content benchmark's data and scores: does a deblurrer leave content that is
soft by nature (shading, shadows, gradients, sky) as it is?

Shared by ``soft_content_benchmark.py`` (the report) and ``learning_curve.py`` (its
figures over a run's checkpoints); it defines no flags. The benchmark
(:func:`build_benchmark`) holds:

- the procedural scenes of :mod:`kpac_tf.data.soft_scenes`, each with sharp context,
  fed sharp (8-bit, no noise): PSNR(result, input) per scene;
- the isolated ramps, which no network can tell from a defocused edge (ambiguous by
  nature, for information only): PSNR(result, input);
- soft grounds with no hard edge (:func:`kpac_tf.data.soft_scenes.ground_scenes`: a
  smooth grain and soft blobs on a flat ground, as a microscope slide), ambiguous in the
  same way but met in real photographs, fed sharp: PSNR(result, input), reported apart;
- the same scenes again with one half of the frame put out of focus
  (:func:`kpac_tf.data.soft_scenes.defocus_plan`, radius up to 6-8 px, noise 1/255,
  8-bit): the PSNR gain over the input on the in-focus pixels (oracle radius below
  :data:`defocus_scores.IN_FOCUS_RADIUS`, as the photo benchmarks count them) and on the
  defocused ones, gain = PSNR(result, sharp) - PSNR(input, sharp) over those pixels;
- natural photographs fed sharp (scikit-image's held-out list, and a natural photo
  folder's ``heldout/`` photos when given), grouped by
  :func:`kpac_tf.data.natural_photos.focus_label`: "sharp" across the frame, or holding
  real "bokeh" (sharpening that is the job, so it is reported apart).

Images are float32 HWC in [0, 1] (sRGB); scores follow ``kpac_tf.evaluation.metrics`` (8-bit,
clipped). Means are per-image means of dB values.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

import defocus_scores

#: Benchmark defaults: scene side (px), variants per kind, seed, long side of photos.
DEFAULT_SIZE, DEFAULT_VARIANTS, DEFAULT_SEED, DEFAULT_MAX_SIDE = 320, 4, 0, 1024
#: Noise of the partly defocused versions (sRGB units, 1/255).
NOISE_SIGMA = 1.0 / 255.0
#: The issue's targets for sharp inputs with context and sharp photos: worst, mean (dB).
TARGET_WORST, TARGET_MEAN = 35.0, 45.0
#: Photo groups in report order.
FOCUS_GROUPS = ("sharp", "bokeh", "unknown")


@dataclasses.dataclass(frozen=True)
class Item:
    """One input of the benchmark.

    Attributes:
      group: the scene kind, the ramp's contrast, or the photo's focus label.
      name: the scene's or photo's name.
      image: float32 HxWx3 in [0, 1] on the 8-bit grid: what is fed to the deblurrer.
      sharp: the all-in-focus truth (partly defocused scenes), else None.
      radius: HxW oracle blur radius in px (partly defocused scenes), else None.
    """

    group: str
    name: str
    image: np.ndarray
    sharp: Optional[np.ndarray] = None
    radius: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """The five sets of the benchmark (lists of :class:`Item`) and how they were made."""

    scenes: list
    ramps: list
    defocused: list
    photos: list
    settings: dict
    grounds: list = dataclasses.field(default_factory=list)

    def describe(self) -> str:
        s = self.settings
        return (f"{len(self.scenes)} scenes with context ({s['variants']} per kind, "
                f"{s['size']} px, seed {s['seed']}), {len(self.ramps)} isolated ramps, "
                f"{len(self.grounds)} soft grounds, "
                f"{len(self.defocused)} partly defocused scenes, {len(self.photos)} natural "
                f"photos (long side at most {s['max_side']} px)")


def _quantize(image: np.ndarray) -> np.ndarray:
    from kpac_tf.images import codec as kio

    return kio.quantize(image, 8)


def defocused_item(scene, index: int, seed: int) -> Item:
    """``scene`` with one half of its frame out of focus (its
    :func:`~kpac_tf.data.soft_scenes.defocus_plan`), 1/255 noise, 8-bit."""
    from kpac_tf.data.render import render_defocus_pair
    from kpac_tf.data.soft_scenes import defocus_plan

    size = scene.image.shape[0]
    plan = defocus_plan(size, seed * 1000 + index)
    pair = render_defocus_pair(scene.image, plan.depth, focus=plan.focus, max_radius=plan.max_radius,
                               noise_sigma=NOISE_SIGMA, rng=np.random.default_rng([seed, index, 17]))
    return Item(scene.kind, f"{scene.name} ({plan.layout}, {plan.side} in focus)",
                _quantize(pair.blurred), sharp=pair.sharp, radius=pair.radius)


def _downscaled(image: np.ndarray, max_side: int) -> np.ndarray:
    if max_side and max(image.shape[:2]) > max_side:
        from skimage.transform import rescale

        image = rescale(image, max_side / max(image.shape[:2]), channel_axis=-1,
                        anti_aliasing=True, preserve_range=True)
    return _quantize(np.asarray(image, np.float32))


def natural_photos(natural: Optional[str], max_side: int = DEFAULT_MAX_SIDE,
                   labeller: Optional[Callable[[str], str]] = None) -> list:
    """Items of scikit-image's held-out photos and of ``natural``/heldout/*.png (when
    given), downscaled to ``max_side`` px at most, grouped by ``labeller`` (default:
    :func:`kpac_tf.data.natural_photos.focus_label`)."""
    from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES, load_skimage_sample
    from kpac_tf.images import codec as kio

    if labeller is None:
        from kpac_tf.data.natural_photos import focus_label as labeller
    photos = [(name, load_skimage_sample(name)[0]) for name in SKIMAGE_HELDOUT_SAMPLES]
    if natural:
        folder = Path(natural) / "heldout"
        files = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if not files:
            raise ValueError(f"{folder}: no PNG photos; is {natural} a natural photo folder?")
        photos += [(path.stem, kio.read_image(path).rgb) for path in files]
    return [Item(labeller(name), name, _downscaled(image, max_side)) for name, image in photos]


def build_benchmark(*, size: int = DEFAULT_SIZE, variants: int = DEFAULT_VARIANTS,
                    seed: int = DEFAULT_SEED, natural: Optional[str] = None,
                    max_side: int = DEFAULT_MAX_SIDE,
                    labeller: Optional[Callable[[str], str]] = None) -> Benchmark:
    """Makes every input of the benchmark (deterministic for the same arguments)."""
    from kpac_tf.data import soft_scenes

    scenes = soft_scenes.soft_scenes(size=size, seed=seed, variants=variants)
    ramps = soft_scenes.ramp_scenes(size)
    grounds = soft_scenes.ground_scenes(size, seed, variants)
    return Benchmark(
        scenes=[Item(s.kind, s.name, _quantize(s.image)) for s in scenes],
        ramps=[Item(s.info["contrast"], s.name, _quantize(s.image)) for s in ramps],
        grounds=[Item(s.kind, s.name, _quantize(s.image)) for s in grounds],
        defocused=[defocused_item(s, i, seed) for i, s in enumerate(scenes)],
        photos=natural_photos(natural, max_side, labeller),
        settings={"size": size, "variants": variants, "seed": seed, "natural": natural,
                  "max_side": max_side, "noise_sigma": NOISE_SIGMA,
                  "in_focus_radius": defocus_scores.IN_FOCUS_RADIUS})


# --------------------------------------------------------------------------- #
# Scoring
# --------------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class Worst:
    """The worst input of one group: its panels side by side are input, result and
    either the difference x8 (fed sharp) or the sharp truth (partly defocused)."""

    set: str
    group: str
    name: str
    value: float
    panels: tuple


@dataclasses.dataclass(frozen=True)
class Scores:
    """One weights' figures: ``summary`` (JSON-ready except inf/NaN), the per-input
    ``records`` and the ``worst`` input of every group (empty unless kept)."""

    summary: dict
    records: list
    worst: list


class _WorstTracker:
    """Keeps the lowest-scoring input of every (set, group); panels are made only for a
    new worst."""

    def __init__(self, keep: bool):
        self.keep = keep
        self.held: dict[tuple[str, str], Worst] = {}

    def offer(self, key: tuple[str, str], name: str, value: float,
              panels: Callable[[], tuple]) -> None:
        if not self.keep or math.isnan(value):
            return
        held = self.held.get(key)
        if held is None or value < held.value:
            self.held[key] = Worst(key[0], key[1], name, value, panels())


def _difference(result: np.ndarray, image: np.ndarray) -> np.ndarray:
    return np.clip(np.abs(result - image) * 8.0, 0.0, 1.0).astype(np.float32)


def score_deblurrer(deblurrer, benchmark: Benchmark, keep_images: bool = True) -> Scores:
    """Runs ``deblurrer`` (anything with ``deblur(HxWx3 [0, 1]) -> HxWx3 [0, 1]``, e.g. a
    :class:`kpac_tf.inference.Deblurrer`) on every input of ``benchmark`` and scores it."""
    from kpac_tf.evaluation import metrics

    records, worst = [], _WorstTracker(keep_images)
    for set_name, items in (("sharp", benchmark.scenes), ("ramps", benchmark.ramps),
                            ("grounds", benchmark.grounds), ("natural", benchmark.photos)):
        for item in items:
            result = deblurrer.deblur(item.image)
            value = metrics.psnr(result, item.image)
            records.append({"set": set_name, "group": item.group, "name": item.name, "psnr": value})
            worst.offer((set_name, item.group), item.name, value,
                        lambda: (item.image, result, _difference(result, item.image)))
    for item in benchmark.defocused:
        result = deblurrer.deblur(item.image)
        in_focus = item.radius < defocus_scores.IN_FOCUS_RADIUS
        gains = [defocus_scores.region_gain(result, item.image, item.sharp, mask)
                 for mask in (in_focus, ~in_focus)]
        records.append({"set": "partial_defocus", "group": item.group, "name": item.name,
                        "in_focus_gain": gains[0], "defocused_gain": gains[1],
                        "in_focus_share": float(in_focus.mean())})
        worst.offer(("partial_defocus", item.group), item.name, gains[0],
                    lambda: (item.image, result, item.sharp))
    return Scores(summarise(records), records, list(worst.held.values()))


def score_weights(weights: str, benchmark: Benchmark, precision: str = "float32",
                  keep_images: bool = True) -> Scores:
    """Loads ``weights`` (a preset with bundled weights, a project weights file, an
    authors' npz or a kpac-train checkpoint) and scores it on ``benchmark``; the
    summary also holds the precision and the seconds it took."""
    import time

    from kpac_tf.inference import Deblurrer
    from kpac_tf.model import weights as kweights

    started = time.time()
    deblurrer = Deblurrer(kweights.load_model(weights), precision=precision)
    scores = score_deblurrer(deblurrer, benchmark, keep_images)
    scores.summary.update(precision=deblurrer.precision, seconds=time.time() - started)
    return scores


def _psnr_summary(records: list) -> dict:
    from kpac_tf.evaluation import metrics

    mean = metrics.aggregate(r["psnr"] for r in records)
    worst = min(records, key=lambda r: r["psnr"])
    return {"count": len(records), "mean": mean.mean, "n_infinite": mean.n_infinite,
            "worst": worst["psnr"], "worst_name": worst["name"]}


def _gain_summary(records: list) -> dict:
    from kpac_tf.evaluation import metrics

    scored = [r for r in records if not math.isnan(r["in_focus_gain"])]
    worst = min(scored, key=lambda r: r["in_focus_gain"]) if scored else None
    return {"count": len(records),
            "in_focus_gain": metrics.aggregate(r["in_focus_gain"] for r in records).mean,
            "defocused_gain": metrics.aggregate(r["defocused_gain"] for r in records).mean,
            "worst_in_focus_gain": worst["in_focus_gain"] if worst else math.nan,
            "worst_name": worst["name"] if worst else None}


def _by_group(records: list, order: tuple = ()) -> dict[str, list]:
    groups: dict[str, list] = {}
    for record in records:
        groups.setdefault(record["group"], []).append(record)
    ranked = [g for g in order if g in groups] + sorted(g for g in groups if g not in order)
    return {g: groups[g] for g in ranked}


def summarise(records: list) -> dict:
    """Per set: per group and over all (sharp scenes, partly defocused scenes), per
    ramp and contrast, per soft ground and over all, per photo focus label."""
    from kpac_tf.data.soft_scenes import RAMP_CONTRASTS, SCENE_KINDS

    of = {name: [r for r in records if r["set"] == name]
          for name in ("sharp", "ramps", "grounds", "partial_defocus", "natural")}
    summary: dict = {}
    if of["sharp"]:
        summary["sharp"] = {"kinds": {g: _psnr_summary(rs) for g, rs in
                                      _by_group(of["sharp"], SCENE_KINDS).items()},
                            "all": _psnr_summary(of["sharp"])}
    if of["ramps"]:
        summary["ramps"] = {"scenes": {r["name"]: r["psnr"] for r in of["ramps"]},
                            **{g: _psnr_summary(rs) for g, rs in
                               _by_group(of["ramps"], tuple(RAMP_CONTRASTS)).items()}}
    if of["grounds"]:
        summary["grounds"] = {"scenes": {r["name"]: r["psnr"] for r in of["grounds"]},
                              "all": _psnr_summary(of["grounds"])}
    if of["partial_defocus"]:
        summary["partial_defocus"] = {
            "kinds": {g: _gain_summary(rs) for g, rs in
                      _by_group(of["partial_defocus"], SCENE_KINDS).items()},
            "all": _gain_summary(of["partial_defocus"])}
    if of["natural"]:
        summary["natural"] = {g: _psnr_summary(rs) for g, rs in
                              _by_group(of["natural"], FOCUS_GROUPS).items()}
    return summary


# --------------------------------------------------------------------------- #
# Tables
# --------------------------------------------------------------------------- #
def _db(value: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _psnr_rows(results: dict[str, dict], key: str, label: str, groups: Callable[[dict], dict]
               ) -> list[str]:
    lines = [f"| weights | {label} | count | mean | worst | worst input |", "|---|---|---:|---:|---:|---|"]
    for weights, summary in results.items():
        for group, s in groups(summary.get(key, {})).items():
            lines.append(f"| {weights} | {group} | {s['count']} | {_db(s['mean'])} | "
                         f"{_db(s['worst'])} | {s['worst_name']} |")
    return lines


def sharp_table(results: dict[str, dict]) -> list[str]:
    """Lines: PSNR(result, input) of the scenes with context, per kind and over all."""
    return _psnr_rows(results, "sharp", "kind", lambda s: {**s.get("kinds", {}), **(
        {"**all**": s["all"]} if "all" in s else {})})


def ramp_table(results: dict[str, dict]) -> list[str]:
    """Lines: PSNR(result, input) of every isolated ramp, a row per contrast."""
    from kpac_tf.data.soft_scenes import RAMP_CONTRASTS, RAMP_WIDTHS

    lines = ["| weights | contrast | " + " | ".join(f"{w} px" for w in RAMP_WIDTHS) + " |",
             "|---|---|" + "---:|" * len(RAMP_WIDTHS)]
    for weights, summary in results.items():
        scenes = summary.get("ramps", {}).get("scenes", {})
        for contrast in RAMP_CONTRASTS:
            cells = [_db(scenes.get(f"ramp-{contrast}-{w}", math.nan)) for w in RAMP_WIDTHS]
            lines.append(f"| {weights} | {contrast} | " + " | ".join(cells) + " |")
    return lines


def ground_table(results: dict[str, dict]) -> list[str]:
    """Lines: PSNR(result, input) of every soft ground (finest grain first), their mean
    and worst."""
    names = sorted({n for summary in results.values()
                    for n in summary.get("grounds", {}).get("scenes", {})})
    lines = ["| weights | " + " | ".join(names) + " | mean | worst |",
             "|---|" + "---:|" * (len(names) + 2)]
    for weights, summary in results.items():
        grounds = summary.get("grounds")
        if grounds:
            cells = [_db(grounds["scenes"].get(n, math.nan)) for n in names]
            lines.append(f"| {weights} | " + " | ".join(cells) +
                         f" | {_db(grounds['all']['mean'])} | {_db(grounds['all']['worst'])} |")
    return lines


def defocus_table(results: dict[str, dict]) -> list[str]:
    """Lines: gains on the in-focus and defocused pixels of the partly defocused scenes."""
    lines = ["| weights | kind | scenes | in-focus px gain | defocused px gain | "
             "worst in-focus gain | worst scene |", "|---|---|---:|---:|---:|---:|---|"]
    for weights, summary in results.items():
        part = summary.get("partial_defocus", {})
        for group, s in {**part.get("kinds", {}), "**all**": part.get("all")}.items():
            if s:
                lines.append(f"| {weights} | {group} | {s['count']} | {_db(s['in_focus_gain'], True)} | "
                             f"{_db(s['defocused_gain'], True)} | "
                             f"{_db(s['worst_in_focus_gain'], True)} | {s['worst_name']} |")
    return lines


def natural_table(results: dict[str, dict]) -> list[str]:
    """Lines: PSNR(result, input) of the natural photos fed sharp, per focus label."""
    return _psnr_rows(results, "natural", "photos", lambda s: s)


def markdown(results: dict[str, dict]) -> list[str]:
    """Every table, with its caption, for ``{weights: summary}``."""
    from kpac_tf.data.soft_scenes import GROUND_GRAIN as grain

    return [
        "Scenes with sharp context, fed sharp: PSNR(result, input), dB (target: worst >= "
        f"{TARGET_WORST:.0f}, mean >= {TARGET_MEAN:.0f}; a network that changes nothing scores inf).",
        "", *sharp_table(results), "",
        "Isolated ramps, no context: ambiguous by nature (a ramp alone cannot be told from a "
        "defocused edge), for information only. PSNR(result, input), dB, by ramp width:",
        "", *ramp_table(results), "",
        "Soft grounds, no hard edge and no context (a smooth grain with a sigma of "
        f"{grain[0]:g} to {grain[1]:g} px and soft blobs on a flat ground, as a microscope slide): as "
        "ambiguous as a ramp, but met in real photographs; reported apart. PSNR(result, "
        "input), dB:",
        "", *ground_table(results), "",
        "The same scenes with one half of the frame out of focus (radius up to 6-8 px, noise "
        "1/255): PSNR gain over the input (dB) on the in-focus pixels (oracle radius < "
        f"{defocus_scores.IN_FOCUS_RADIUS:g} px) and on the defocused ones; means over scenes.",
        "", *defocus_table(results), "",
        "Natural photographs fed sharp: PSNR(result, input), dB. `sharp`: in focus across the "
        f"frame (target: worst >= {TARGET_WORST:.0f}, mean >= {TARGET_MEAN:.0f}); `bokeh`: a real "
        "out-of-focus background, whose sharpening is the job (reported apart).",
        "", *natural_table(results),
    ]


def checkpoint_steps(run: Path) -> dict[int, Path]:
    """{step: checkpoint prefix} of the checkpoints a kpac-train run holds now."""
    found = {}
    for index in (run / "checkpoints").glob("ckpt-*.index"):
        step = index.name[len("ckpt-"):-len(".index")]
        if step.isdigit():
            found[int(step)] = index.with_suffix("")
    return dict(sorted(found.items()))


def checkpoint_curve(run: Path, benchmark: Benchmark, every: int = 0) -> dict[int, dict]:
    """{step: summary} of ``run`` on ``benchmark``: the steps stored in
    RUN/soft_content_curve.json for the same benchmark settings, and the run's
    checkpoints not scored yet (scored now, float32, and added to that file, so a run
    that keeps only its last few checkpoints still has its whole curve). ``every`` > 0
    scores only the checkpoints whose step is a multiple of it; stored steps stay."""
    import json

    from kpac_tf import files as kio

    path = run / "soft_content_curve.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    curve = stored.get("steps", {}) if stored.get("benchmark") == benchmark.settings else {}
    for step, prefix in checkpoint_steps(run).items():
        if str(step) not in curve and (every <= 0 or step % every == 0):
            scores = score_weights(str(prefix), benchmark, keep_images=False)
            curve[str(step)] = jsonable(scores.summary)
            kio.write_json(str(path), {"benchmark": benchmark.settings, "steps": curve})
    return {int(step): summary for step, summary in sorted(curve.items(), key=lambda kv: int(kv[0]))}


def jsonable(value):
    """``value`` with inf as "inf"/"-inf" and NaN as None (JSON has neither)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def weights_label(weights: str) -> str:
    """A short file-name-safe label of a weights source."""
    name = os.path.basename(os.path.normpath(str(weights))).replace(".weights.npz", "")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "weights"
