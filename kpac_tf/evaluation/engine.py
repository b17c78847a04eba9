"""Evaluation: restore paired images and score them under the DPDD protocol.

What is evaluated is a :class:`Restorer` (:func:`model_restorer` for KPAC weights through
the tiled Deblurrer, :func:`saved_model_restorer`, :func:`baseline_restorer` for the
classical baselines of :mod:`kpac_tf.evaluation.baselines`). :func:`evaluate_pairs` restores and
scores every pair; :func:`subset_means` averages per subset; :func:`write_results`
writes ``per_image.csv``, ``summary.json`` and ``results.md``. :func:`evaluate_dpdd` does
all of it for one DPDD-layout split.

No command-line flags here: ``kpac-eval`` parses its flags around these functions, and
the benchmark scripts call them in-process. Images are float32 HWC in [0, 1]; the protocol
(:class:`kpac_tf.evaluation.metrics.Protocol`) rounds inputs before restoration and outputs and
targets before scoring.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from absl import logging

__all__ = [
    "CSV_COLUMNS",
    "RESULT_NAMES",
    "BlurInfo",
    "ImageResult",
    "Restorer",
    "SetupError",
    "baseline_restorer",
    "blur_info_for",
    "build_lpips",
    "describe_data",
    "evaluate_dpdd",
    "evaluate_pairs",
    "model_restorer",
    "pair_lister",
    "read_name_list",
    "saved_model_restorer",
    "subset_means",
    "write_csv",
    "write_reports",
    "write_results",
]

#: Columns of ``per_image.csv``.
CSV_COLUMNS = ("name", "psnr", "ssim", "mae", "lpips", "seconds")
#: What an evaluation writes into its output folder.
RESULT_NAMES = ("per_image.csv", "summary.json", "results.md", "outputs")


class SetupError(Exception):
    """The evaluation cannot start; the message is one sentence for the user."""


@dataclasses.dataclass
class Restorer:
    """What is evaluated: a description and ``restore(views, info) -> HWC [0,1]``.

    ``views`` is [image] for single-image methods, [left, right, centre] for dual-pixel;
    ``info`` holds the oracle blur facts of the image (baselines that need them).
    """

    description: str
    restore: Callable[[Sequence[np.ndarray], Mapping[str, Any]], np.ndarray]
    dual_pixel: bool = False
    needs_blur_info: bool = False


@dataclasses.dataclass
class ImageResult:
    """The scores of one image (PSNR in dB; LPIPS None when not computed) and its
    restoration time in seconds."""

    name: str
    psnr: float
    ssim: float
    mae: float
    lpips: Optional[float]
    seconds: float


# ---------------------------------------------------------------------------------------
# What is evaluated.


def model_restorer(weights: str, preset: Optional[str] = None, *,
                   make_deblurrer: Optional[Callable] = None, **options) -> Restorer:
    """KPAC weights (a preset, a project weights file or an authors' npz) run through the
    tiled, compiled :class:`kpac_tf.inference.Deblurrer`.

    ``make_deblurrer(model)`` builds the Deblurrer; by default ``Deblurrer(model,
    **options)`` (options: tile_size, overlap, memory_budget_mb, ensemble, ...).
    """
    from kpac_tf.inference import Deblurrer
    from kpac_tf.model.weights import load_model

    try:
        model = load_model(weights, preset)
        deblurrer = make_deblurrer(model) if make_deblurrer else Deblurrer(model, **options)
    except (OSError, ValueError) as error:
        raise SetupError(str(error)) from error
    dual = deblurrer.config.dual_pixel

    def restore(views, info):
        return deblurrer.deblur_dual(*views) if dual else deblurrer.deblur(views[0])

    name = model.name + (", x8 ensemble" if deblurrer.ensemble else "")
    return Restorer(f"{name} (weights: {weights})", restore, dual_pixel=dual)


def saved_model_restorer(path: str) -> Restorer:
    """A SavedModel whose ``serving_default`` signature takes one float32 [N,H,W,3]."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise SetupError(f"{path}: cannot load the SavedModel ({error}).") from error
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise SetupError(f"{path}: the SavedModel has no serving_default signature; export it "
                         "with one taking float32 [N,H,W,3].")
    _, kwargs = signature.structured_input_signature
    if len(kwargs) != 1:
        raise SetupError(f"{path}: serving_default takes {len(kwargs)} inputs "
                         f"({', '.join(kwargs)}); kpac-eval needs one [N,H,W,3] image input.")
    input_name = next(iter(kwargs))

    def restore(views, info):
        outputs = signature(**{input_name: tf.constant(views[0][np.newaxis], tf.float32)})
        result = outputs["output_0"] if "output_0" in outputs else next(iter(outputs.values()))
        return np.clip(result.numpy()[0], 0.0, 1.0)

    return Restorer(f"SavedModel {path}", restore)


def baseline_restorer(name: str) -> Restorer:
    """A classical baseline of :mod:`kpac_tf.evaluation.baselines` (all but "identity" need the
    oracle blur of each image)."""
    from kpac_tf.evaluation import baselines

    method = baselines.get_baseline(name)
    return Restorer(f"baseline: {name}", lambda views, info: method(views[0], info),
                    needs_blur_info=name != "identity")


# ---------------------------------------------------------------------------------------
# Data, subsets, oracle blur, LPIPS.


def pair_lister(dpdd_root: Optional[str] = None, split: str = "test",
                source_dir: Optional[str] = None,
                target_dir: Optional[str] = None) -> Callable[[bool], list]:
    """A function (dual_pixel) -> ImagePairs for a DPDD split or a folder pair (the
    choice is checked now, the folders are listed later)."""
    from kpac_tf.data import dpdd

    if dpdd_root and (source_dir or target_dir):
        raise SetupError("Give either --dpdd_root or --source_dir/--target_dir, not both.")
    if dpdd_root:
        return lambda dual_pixel: dpdd.list_dpdd(dpdd_root, split, dual_pixel=dual_pixel)
    if source_dir and target_dir:
        return lambda dual_pixel: dpdd.list_folder_pairs(source_dir, target_dir)
    raise SetupError("Give the data: --dpdd_root (with --split) or --source_dir and --target_dir.")


def describe_data(count: int, dpdd_root: Optional[str] = None, split: str = "test",
                  source_dir: Optional[str] = None, target_dir: Optional[str] = None) -> str:
    """The data line of a report, e.g. 'DPDD-layout ROOT, split test; 20 pairs'."""
    source = (f"DPDD-layout {dpdd_root}, split {split}" if dpdd_root
              else f"{source_dir} -> {target_dir}")
    return f"{source}; {count} pairs"


def read_name_list(path: str) -> set[str]:
    """Image names (file stems) listed one per line; '#' starts a comment."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as error:
        raise SetupError(f"{path}: cannot read the name list ({error.strerror or error}).") \
            from error
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(os.path.splitext(os.path.basename(line))[0])
    return names


class BlurInfo:
    """Oracle blur facts per image name: radius maps and synthetic.json entries."""

    def __init__(self, radius_dir: Optional[str], json_path: Optional[str]):
        self.radius_dir = radius_dir
        self.entries: dict[str, dict] = {}
        if json_path:
            try:
                with open(json_path, encoding="utf-8") as fh:
                    images = json.load(fh).get("images", {})
            except (OSError, ValueError) as error:
                raise SetupError(f"{json_path}: cannot read the blur facts ({error}).") from error
            self.entries = {os.path.splitext(k)[0]: v for k, v in images.items()}

    def get(self, name: str) -> dict:
        """The facts of one image: its synthetic.json entry and "radius_map" (HxW, pixels)."""
        from kpac_tf.data.dpdd_writer import read_radius_map

        info = dict(self.entries.get(name, {}))
        if self.radius_dir:
            for ext, reader in ((".png", read_radius_map), (".npy", np.load)):
                path = os.path.join(self.radius_dir, name + ext)
                if os.path.isfile(path):
                    info["radius_map"] = np.asarray(reader(path), np.float32)
                    break
        if "radius_map" not in info and info.get("mean_radius") is None:
            raise ValueError(f"{name}: no oracle blur (radius map or mean radius) for this image; "
                             "give --radius_dir or --blur_info.")
        return info


def blur_info_for(dpdd_root: Optional[str] = None, split: str = "test",
                  radius_dir: Optional[str] = None, json_path: Optional[str] = None) -> BlurInfo:
    """The oracle blur of a data set: ``radius_dir`` and ``json_path``, by default the
    ``radius/`` folder and ``synthetic.json`` of a DPDD split written by
    :func:`kpac_tf.data.dpdd_writer.write_dpdd_layout`."""
    if dpdd_root:
        split_dir = os.path.join(dpdd_root, f"{split}_c")
        if radius_dir is None and os.path.isdir(os.path.join(split_dir, "radius")):
            radius_dir = os.path.join(split_dir, "radius")
        if json_path is None and os.path.isfile(os.path.join(split_dir, "synthetic.json")):
            json_path = os.path.join(split_dir, "synthetic.json")
    if radius_dir is None and json_path is None:
        raise SetupError("This baseline needs the oracle blur: give --radius_dir (radius maps) "
                         "or --blur_info (synthetic.json), or a --dpdd_root written by "
                         "kpac_tf.data.dpdd_writer.write_dpdd_layout().")
    return BlurInfo(radius_dir, json_path)


def build_lpips(enabled: bool = True, net: str = "alex", weights: Optional[str] = None):
    """(LPIPS model or None, the reason it was skipped or None). A missing backbone is a
    note, unless ``weights`` names the file explicitly (then SetupError)."""
    if not enabled:
        return None, "disabled with --nolpips"
    from kpac_tf.evaluation.lpips import LPIPS, LPIPSUnavailable

    try:
        return LPIPS(net, backbone_weights=weights), None
    except LPIPSUnavailable as error:
        if weights:  # asked for explicitly: do not hide the problem
            raise SetupError(str(error)) from error
        return None, str(error)


# ---------------------------------------------------------------------------------------
# Restoring and scoring.


def _score_pair(pair, restorer: Restorer, protocol, lpips_model, blur_info,
                outputs_dir: Optional[str]) -> ImageResult:
    """Read, restore and score one pair (ValueError / OSError for a bad image)."""
    from kpac_tf.evaluation import metrics
    from kpac_tf.images import codec

    paths = [pair.left, pair.right, pair.source] if restorer.dual_pixel else [pair.source]
    views = [metrics.prepare(codec.read_image(p).rgb, protocol.bit_depth).astype(np.float32)
             for p in paths]
    target = codec.read_image(pair.target).rgb
    if target.shape != views[-1].shape:
        raise ValueError(f"{pair.name}: input {views[-1].shape[1]}x{views[-1].shape[0]} "
                         f"and target {target.shape[1]}x{target.shape[0]} differ in size.")
    info = blur_info.get(pair.name) if restorer.needs_blur_info else {}
    start = time.perf_counter()
    restored = restorer.restore(views, info)
    seconds = time.perf_counter() - start
    restored = metrics.prepare(restored, protocol.bit_depth).astype(np.float32)
    target = metrics.prepare(target, protocol.bit_depth).astype(np.float32)
    scores = metrics.score_pair(restored, target, protocol)
    lp = lpips_model.distance(restored, target) if lpips_model is not None else None
    if outputs_dir:
        codec.write_image(os.path.join(outputs_dir, pair.name + ".png"), restored,
                          bit_depth=protocol.bit_depth)
    return ImageResult(pair.name, scores["psnr"], scores["ssim"], scores["mae"], lp, seconds)


def evaluate_pairs(pairs, restorer: Restorer, protocol, lpips_model=None,
                   blur_info: Optional[BlurInfo] = None, outputs_dir: Optional[str] = None,
                   on_error: Callable[[str], None] = lambda m: None,
                   progress: Callable = lambda it, **kw: it) -> tuple[list[ImageResult], list[str]]:
    """Restore and score every pair; returns (results, one-line error messages).

    Args:
      pairs: :class:`kpac_tf.data.dpdd.ImagePair` items.
      restorer: what is evaluated.
      protocol: a :class:`kpac_tf.evaluation.metrics.Protocol`.
      lpips_model: an LPIPS model, or None to skip LPIPS.
      blur_info: oracle blur facts, for restorers that need them.
      outputs_dir: also write each restored image there (PNG at the protocol's depth).
      on_error: called with the message of each image that fails (it is skipped).
      progress: wraps the pair iterator (e.g. a progress bar).
    """
    results: list[ImageResult] = []
    errors: list[str] = []
    for pair in progress(pairs, desc="evaluating", unit="image"):
        try:
            result = _score_pair(pair, restorer, protocol, lpips_model, blur_info, outputs_dir)
        except (ValueError, OSError) as error:  # kpac_tf.images.codec.ImageError is a ValueError
            message = str(error)
            errors.append(message)
            on_error(message)
            continue
        results.append(result)
        logging.info("%s: PSNR %.3f SSIM %.4f MAE %.4f LPIPS %s (%.2f s)", result.name,
                     result.psnr, result.ssim, result.mae, result.lpips, result.seconds)
    return results, errors


def subset_means(results: Sequence[ImageResult], subsets: Mapping[str, Optional[set[str]]]):
    """{subset label: {metric: Aggregate}}; a subset of None means all images."""
    from kpac_tf.evaluation import metrics

    table = {}
    for label, names in subsets.items():
        rows = [r for r in results if names is None or r.name in names]
        table[label] = {m: metrics.aggregate(getattr(r, m) for r in rows)
                        for m in ("psnr", "ssim", "mae", "lpips")}
    return table


# ---------------------------------------------------------------------------------------
# Reports.


def _csv_number(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if math.isinf(value):
        return "inf"
    return f"{value:.6f}"


def write_csv(path: str, results: Sequence[ImageResult]) -> None:
    """``per_image.csv``: one row per image, the columns of :data:`CSV_COLUMNS`."""
    from kpac_tf.files import atomic_write

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([r.name] + [_csv_number(getattr(r, c)) for c in CSV_COLUMNS[1:]])
    atomic_write(path, text.getvalue())


def _timing(results: Sequence[ImageResult]) -> dict:
    seconds = [r.seconds for r in results]
    return {
        "mean_seconds": statistics.fmean(seconds) if seconds else None,
        "median_seconds": statistics.median(seconds) if seconds else None,
        "note": "seconds per image for restoration only (no reading or scoring); the first "
                "image includes compilation.",
    }


def _markdown(summary: dict, means, protocol, errors: Sequence[str]) -> str:
    from kpac_tf.evaluation import metrics

    timing = summary["timing"]
    columns = ("psnr", "ssim", "mae") + (("lpips",) if protocol.lpips_net else ())
    lines = [f"# Evaluation: {summary['method']}", "",
             f"Data: {summary['data']}. Inputs were rounded to {protocol.bit_label} before "
             "restoration.", "",
             metrics.markdown_table(list(means.items()), protocol, columns).rstrip("\n")]
    if summary["lpips_skipped"]:
        lines += ["", f"LPIPS not computed: {summary['lpips_skipped']}"]
    if errors:
        lines += ["", f"{len(errors)} image(s) could not be evaluated:"]
        lines += [f"- {message}" for message in errors]
    if timing["median_seconds"] is not None:
        lines += ["", f"Restoration time per image: median {timing['median_seconds']:.3f} s, "
                  f"mean {timing['mean_seconds']:.3f} s ({platform.machine()}, "
                  f"{os.cpu_count()} CPU threads visible; the first image includes compilation)."]
    lines += ["", f"Reproduce: `{summary['command']}`", ""]
    return "\n".join(lines)


def write_reports(output_dir: str, *, results, errors, means, protocol, restorer: Restorer,
                  data_description: str, lpips_note: Optional[str], command: str) -> dict:
    """Write summary.json and results.md; returns the summary dictionary."""
    from kpac_tf.files import atomic_write

    summary = {
        "method": restorer.description,
        "data": data_description,
        "protocol": protocol.to_dict(),
        "num_images": len(results),
        "num_failed": len(errors),
        "failed": errors,
        "means": {label: {m: agg.to_dict() for m, agg in aggs.items()}
                  for label, aggs in means.items()},
        "lpips_skipped": lpips_note,
        "timing": _timing(results),
        "command": command,
        "python": platform.python_version(),
    }
    atomic_write(os.path.join(output_dir, "summary.json"), json.dumps(summary, indent=2) + "\n")
    atomic_write(os.path.join(output_dir, "results.md"),
                 _markdown(summary, means, protocol, errors))
    return summary


def write_results(output_dir: str, results, errors, *, subsets, protocol, restorer: Restorer,
                  data_description: str, lpips_note: Optional[str], command: str):
    """per_image.csv, summary.json and results.md of one evaluation; returns (summary,
    {subset: {metric: Aggregate}})."""
    means = subset_means(results, subsets)
    write_csv(os.path.join(output_dir, "per_image.csv"), results)
    summary = write_reports(output_dir, results=results, errors=errors, means=means,
                            protocol=protocol, restorer=restorer,
                            data_description=data_description, lpips_note=lpips_note,
                            command=command)
    return summary, means


def evaluate_dpdd(restorer: Restorer, dpdd_root: str, output_dir: str, *, split: str = "test",
                  bit_depth: int = 8, lpips: bool = True, lpips_net: str = "alex",
                  command: str = "") -> dict:
    """Evaluates ``restorer`` on a DPDD-layout split as ``kpac-eval`` does with its default
    flags (LPIPS when its backbone is available) and writes the three reports into
    ``output_dir`` (created, earlier results replaced). Returns the summary dictionary."""
    from kpac_tf.evaluation import metrics

    pairs = pair_lister(dpdd_root, split)(restorer.dual_pixel)
    blur_info = blur_info_for(dpdd_root, split) if restorer.needs_blur_info else None
    lpips_model, lpips_note = build_lpips(lpips, lpips_net)
    protocol = metrics.Protocol(bit_depth=int(bit_depth),
                                lpips_net=lpips_net if lpips_model else None)
    os.makedirs(output_dir, exist_ok=True)
    results, errors = evaluate_pairs(pairs, restorer, protocol, lpips_model, blur_info)
    summary, _ = write_results(
        output_dir, results, errors, subsets={"all": None}, protocol=protocol,
        restorer=restorer, data_description=describe_data(len(pairs), dpdd_root, split),
        lpips_note=lpips_note, command=command)
    return summary
