"""kpac-eval: score a model or a baseline on paired images under the DPDD protocol.

usage: kpac-eval [flags]   (data: --dpdd_root or --source_dir/--target_dir)

    kpac-eval --dpdd_root=DPDD                     # the bundled kpac-3level weights
    kpac-eval --weights=single_3level.npz --dpdd_root=DPDD --split=test \\
        --indoor_list=indoor.txt --outdoor_list=outdoor.txt --output_dir=eval_kpac3
    kpac-eval --weights=run/best.weights.npz --source_dir=blurred --target_dir=sharp
    kpac-eval --saved_model=export/kpac --dpdd_root=DPDD --bit_depth=16
    kpac-eval --baseline=two_step --dpdd_root=synthetic_root     # needs oracle blur maps

What is evaluated (one of them; default: --weights=kpac-3level):
  --weights (with optional --preset): a project weights file, an authors' npz or the
  bundled kpac-3level weights, run through the tiled, compiled Deblurrer;
  --saved_model: a SavedModel whose ``serving_default`` signature takes one float32
  [N,H,W,3] tensor in [0,1];
  --baseline: identity | wiener | rl | two_step (kpac_tf.baselines). All but identity
  need the oracle blur: a radius map per image (16-bit PNG written by
  ``from kpac_tf.data.synthetic import write_dpdd_layout``, or a .npy of pixels) and optionally
  ``synthetic.json`` (mean radius, Gaussian share of the PSF).

Data: --dpdd_root with --split (reads {split}_c/source and target, paired by file
name; dual-pixel models also read {split}_l and {split}_r), or --source_dir with
--target_dir.

Protocol (see kpac_tf.metrics): inputs and outputs at --bit_depth (8, the published
protocol, or 16): the input is rounded to that depth before restoration, output and
target are clipped to [0,1] and rounded before scoring; PSNR, SSIM (scikit-image
defaults), MAE and LPIPS v0.1 (AlexNet by default; skipped with a note when its
backbone weights are not available). Writes per_image.csv (name, psnr, ssim, mae, lpips,
seconds), summary.json and results.md (a table that states the protocol) into
--output_dir (refused if it holds earlier results, unless --overwrite); --save_outputs
also writes the restored images. Unreadable images are reported one line each and
skipped.

Exit status: 0 all evaluated; 1 some images failed; 2 nothing done (usage error, or
weights / data / output folder unusable, earlier results without --overwrite); 130
Ctrl-C.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from absl import flags, logging

from kpac_tf.cli import inference_flags, model_flags, runner

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(model_flags)
flags.adopt_module_key_flags(inference_flags)
DEFAULT_OUTPUT_DIR = "eval_results"
RESULT_NAMES = ("per_image.csv", "summary.json", "results.md", "outputs")
flags.DEFINE_string("output_dir", None, f"Folder for per_image.csv, summary.json and results.md "
                    f"(default: {DEFAULT_OUTPUT_DIR}; created if missing).", allow_override=True)
flags.DEFINE_boolean("overwrite", False, "Replace the results of an earlier evaluation in "
                     "--output_dir.", allow_override=True)
flags.DEFINE_enum(
    "bit_depth", "8", ["8", "16"],
    "Protocol precision: 8 (the paper and the published DPDD protocol) or 16 (DPDD's files; "
    "scores about 0.6 dB higher).", allow_override=True,
)
flags.DEFINE_string("saved_model", None, "A SavedModel folder with a serving_default "
                    "signature taking float32 [N,H,W,3] in [0,1].")
flags.DEFINE_enum("baseline", None, ["identity", "wiener", "rl", "two_step"],
                  "Evaluate a classical baseline instead of a model.")
flags.DEFINE_string("dpdd_root", None, "DPDD-layout root ({split}_c/source, {split}_c/target).")
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "DPDD split for --dpdd_root.")
flags.DEFINE_string("source_dir", None, "Folder of blurred inputs (with --target_dir).")
flags.DEFINE_string("target_dir", None, "Folder of sharp targets, same file names.")
flags.DEFINE_string("radius_dir", None, "Oracle radius maps for the baselines (default with "
                    "--dpdd_root: {split}_c/radius).")
flags.DEFINE_string("blur_info", None, "synthetic.json with per-image blur facts (default "
                    "with --dpdd_root: {split}_c/synthetic.json if present).")
flags.DEFINE_string("indoor_list", None, "Text file of image names in the indoor subset.")
flags.DEFINE_string("outdoor_list", None, "Text file of image names in the outdoor subset.")
flags.DEFINE_boolean("save_outputs", False, "Also write restored images (PNG at --bit_depth) "
                     "into OUTPUT_DIR/outputs.")
flags.DEFINE_boolean("lpips", True, "Compute LPIPS (needs its backbone weights file).")
flags.DEFINE_enum("lpips_net", "alex", ["alex", "vgg"], "LPIPS backbone.")
flags.DEFINE_string("lpips_weights", None, "LPIPS backbone .npz (made by "
                    "experiments/convert_lpips_backbone.py); default: the standard location.")
flags.DEFINE_integer("limit", None, "Evaluate only the first N pairs (by name).")

CSV_COLUMNS = ("name", "psnr", "ssim", "mae", "lpips", "seconds")


class SetupError(Exception):
    """The evaluation cannot start; the message is one sentence for the user."""


@dataclasses.dataclass
class Restorer:
    """What is evaluated: a description and ``restore(views, info) -> HWC [0,1]``.

    ``views`` is [image] for single-image methods, [left, right, centre] for dual-pixel.
    """

    description: str
    restore: Callable[[Sequence[np.ndarray], Mapping[str, Any]], np.ndarray]
    dual_pixel: bool = False
    needs_blur_info: bool = False


@dataclasses.dataclass
class ImageResult:
    name: str
    psnr: float
    ssim: float
    mae: float
    lpips: Optional[float]
    seconds: float


# ----------------------------------------------------------------------------- set-up
def build_restorer() -> Restorer:
    chosen = [n for n in ("weights", "saved_model", "baseline") if getattr(FLAGS, n)]
    if len(chosen) > 1:
        raise SetupError("Give one of --weights, --saved_model or --baseline, not "
                         f"{' and '.join('--' + n for n in chosen)}.")
    if FLAGS.baseline:
        return _baseline_restorer(FLAGS.baseline)
    if FLAGS.saved_model:
        return _saved_model_restorer(FLAGS.saved_model)
    return _model_restorer(FLAGS.weights or model_flags.DEFAULT_WEIGHTS, FLAGS.preset)


def _model_restorer(weights: str, preset: Optional[str]) -> Restorer:
    from kpac_tf.weights import load_model

    try:
        model = load_model(weights, preset)
        deblurrer = inference_flags.make_deblurrer(model)
    except (OSError, ValueError) as error:
        raise SetupError(str(error)) from error
    dual = deblurrer.config.dual_pixel

    def restore(views, info):
        return deblurrer.deblur_dual(*views) if dual else deblurrer.deblur(views[0])

    name = model.name + (", x8 ensemble" if FLAGS.ensemble else "")
    return Restorer(f"{name} (weights: {weights})", restore, dual_pixel=dual)


def _saved_model_restorer(path: str) -> Restorer:
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


def _baseline_restorer(name: str) -> Restorer:
    from kpac_tf import baselines

    method = baselines.get_baseline(name)
    return Restorer(f"baseline: {name}", lambda views, info: method(views[0], info),
                    needs_blur_info=name != "identity")


def pair_lister() -> Callable[[bool], list]:
    """A function (dual_pixel) -> ImagePairs for the data flags (checked now, listed later)."""
    from kpac_tf.data import dpdd

    if FLAGS.dpdd_root and (FLAGS.source_dir or FLAGS.target_dir):
        raise SetupError("Give either --dpdd_root or --source_dir/--target_dir, not both.")
    if FLAGS.dpdd_root:
        return lambda dual_pixel: dpdd.list_dpdd(FLAGS.dpdd_root, FLAGS.split,
                                                 dual_pixel=dual_pixel)
    if FLAGS.source_dir and FLAGS.target_dir:
        return lambda dual_pixel: dpdd.list_folder_pairs(FLAGS.source_dir, FLAGS.target_dir)
    raise SetupError("Give the data: --dpdd_root (with --split) or --source_dir and --target_dir.")


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
        from kpac_tf.data import synthetic

        info = dict(self.entries.get(name, {}))
        if self.radius_dir:
            for ext, reader in ((".png", synthetic.read_radius_map), (".npy", np.load)):
                path = os.path.join(self.radius_dir, name + ext)
                if os.path.isfile(path):
                    info["radius_map"] = np.asarray(reader(path), np.float32)
                    break
        if "radius_map" not in info and info.get("mean_radius") is None:
            raise ValueError(f"{name}: no oracle blur (radius map or mean radius) for this image; "
                             "give --radius_dir or --blur_info.")
        return info


def _blur_info_sources() -> tuple[Optional[str], Optional[str]]:
    radius_dir, json_path = FLAGS.radius_dir, FLAGS.blur_info
    if FLAGS.dpdd_root:
        split_dir = os.path.join(FLAGS.dpdd_root, f"{FLAGS.split}_c")
        if radius_dir is None and os.path.isdir(os.path.join(split_dir, "radius")):
            radius_dir = os.path.join(split_dir, "radius")
        if json_path is None and os.path.isfile(os.path.join(split_dir, "synthetic.json")):
            json_path = os.path.join(split_dir, "synthetic.json")
    if radius_dir is None and json_path is None:
        raise SetupError("This baseline needs the oracle blur: give --radius_dir (radius maps) "
                         "or --blur_info (synthetic.json), or a --dpdd_root written by "
                         "kpac_tf.data.synthetic.write_dpdd_layout().")
    return radius_dir, json_path


def build_lpips():
    """(LPIPS model or None, reason it was skipped or None)."""
    if not FLAGS.lpips:
        return None, "disabled with --nolpips"
    from kpac_tf.lpips import LPIPS, LPIPSUnavailable

    try:
        return LPIPS(FLAGS.lpips_net, backbone_weights=FLAGS.lpips_weights), None
    except LPIPSUnavailable as error:
        if FLAGS.lpips_weights:  # asked for explicitly: do not hide the problem
            raise SetupError(str(error)) from error
        return None, str(error)


# ----------------------------------------------------------------------------- core
def evaluate_pairs(pairs, restorer: Restorer, protocol, lpips_model=None,
                   blur_info: Optional[BlurInfo] = None, outputs_dir: Optional[str] = None,
                   on_error: Callable[[str], None] = lambda m: None,
                   progress: Callable = lambda it, **kw: it) -> tuple[list[ImageResult], list[str]]:
    """Restore and score every pair; returns (results, one-line error messages)."""
    from kpac_tf import io as kio
    from kpac_tf import metrics

    results: list[ImageResult] = []
    errors: list[str] = []
    for pair in progress(pairs, desc="evaluating", unit="image"):
        try:
            paths = ([pair.left, pair.right, pair.source] if restorer.dual_pixel
                     else [pair.source])
            views = [metrics.prepare(kio.read_image(p).rgb, protocol.bit_depth).astype(np.float32)
                     for p in paths]
            target = kio.read_image(pair.target).rgb
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
            lp = None
            if lpips_model is not None:
                lp = lpips_model.distance(restored, target)
            if outputs_dir:
                kio.write_image(os.path.join(outputs_dir, pair.name + ".png"), restored,
                                bit_depth=protocol.bit_depth)
        except (ValueError, OSError) as error:  # kpac_tf.io.ImageError is a ValueError
            message = str(error)
            errors.append(message)
            on_error(message)
            continue
        results.append(ImageResult(pair.name, scores["psnr"], scores["ssim"], scores["mae"],
                                   lp, seconds))
        logging.info("%s: PSNR %.3f SSIM %.4f MAE %.4f LPIPS %s (%.2f s)", pair.name,
                     scores["psnr"], scores["ssim"], scores["mae"], lp, seconds)
    return results, errors


def subset_means(results: Sequence[ImageResult], subsets: Mapping[str, Optional[set[str]]]):
    """{subset label: {metric: Aggregate}}; a subset of None means all images."""
    from kpac_tf import metrics

    table = {}
    for label, names in subsets.items():
        rows = [r for r in results if names is None or r.name in names]
        table[label] = {m: metrics.aggregate(getattr(r, m) for r in rows)
                        for m in ("psnr", "ssim", "mae", "lpips")}
    return table


def _csv_number(value: Optional[float]) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if math.isinf(value):
        return "inf"
    return f"{value:.6f}"


def write_csv(path: str, results: Sequence[ImageResult]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for r in results:
            writer.writerow([r.name] + [_csv_number(getattr(r, c)) for c in CSV_COLUMNS[1:]])


def write_reports(output_dir: str, *, results, errors, means, protocol, restorer: Restorer,
                  data_description: str, lpips_note: Optional[str], command: str) -> dict:
    """Write summary.json and results.md; returns the summary dictionary."""
    from kpac_tf import metrics

    seconds = [r.seconds for r in results]
    timing = {
        "mean_seconds": statistics.fmean(seconds) if seconds else None,
        "median_seconds": statistics.median(seconds) if seconds else None,
        "note": "seconds per image for restoration only (no reading or scoring); the first "
                "image includes compilation.",
    }
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
        "timing": timing,
        "command": command,
        "python": platform.python_version(),
    }
    with open(os.path.join(output_dir, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
        fh.write("\n")
    columns = ("psnr", "ssim", "mae") + (("lpips",) if protocol.lpips_net else ())
    lines = [f"# Evaluation: {restorer.description}", "",
             f"Data: {data_description}. Inputs were rounded to {protocol.bit_label} before "
             "restoration.", "",
             metrics.markdown_table(list(means.items()), protocol, columns).rstrip("\n")]
    if lpips_note:
        lines += ["", f"LPIPS not computed: {lpips_note}"]
    if errors:
        lines += ["", f"{len(errors)} image(s) could not be evaluated:"]
        lines += [f"- {message}" for message in errors]
    if seconds:
        lines += ["", f"Restoration time per image: median {timing['median_seconds']:.3f} s, "
                  f"mean {timing['mean_seconds']:.3f} s ({platform.machine()}, "
                  f"{os.cpu_count()} CPU threads visible; the first image includes compilation)."]
    lines += ["", f"Reproduce: `{command}`", ""]
    with open(os.path.join(output_dir, "results.md"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    return summary


def _command_line() -> str:
    return " ".join(["kpac-eval", *(shlex.quote(a) for a in sys.argv[1:])])


# ----------------------------------------------------------------------------- main
@dataclasses.dataclass
class Plan:
    """Everything checked before the first image: what, on which pairs, how, where."""

    restorer: Restorer
    pairs: list
    subsets: dict
    protocol: Any
    lpips_model: Any
    lpips_note: Optional[str]
    blur_info: Optional[BlurInfo]
    output_dir: str


def check_output_dir(output_dir: str) -> None:
    """Writable (or creatable) and free of earlier results unless --overwrite."""
    runner.check_output_dir(output_dir)
    earlier = [n for n in RESULT_NAMES if os.path.exists(os.path.join(output_dir, n))]
    if earlier and not FLAGS.overwrite:
        raise SetupError(f"{output_dir} holds the results of an earlier evaluation "
                         f"({', '.join(earlier)}); pass --overwrite to replace them, or choose "
                         "another --output_dir.")


def prepare(output_dir: str) -> Plan:
    """Check the flags, load what is evaluated and list the pairs (SetupError: exit 2)."""
    from kpac_tf import metrics
    from kpac_tf.data import dpdd

    list_pairs = pair_lister()
    subsets: dict[str, Optional[set[str]]] = {"all": None}
    if FLAGS.indoor_list:
        subsets["indoor"] = read_name_list(FLAGS.indoor_list)
    if FLAGS.outdoor_list:
        subsets["outdoor"] = read_name_list(FLAGS.outdoor_list)
    check_output_dir(output_dir)
    restorer = build_restorer()
    try:
        pairs = list_pairs(restorer.dual_pixel)
    except (FileNotFoundError, dpdd.PairingError, ValueError) as error:
        raise SetupError(str(error)) from error
    if restorer.dual_pixel and not FLAGS.dpdd_root:
        raise SetupError("The dual-pixel model needs --dpdd_root (its _l and _r views).")
    if FLAGS.limit:
        pairs = pairs[: FLAGS.limit]
    blur_info = BlurInfo(*_blur_info_sources()) if restorer.needs_blur_info else None
    lpips_model, lpips_note = build_lpips()
    protocol = metrics.Protocol(bit_depth=int(FLAGS.bit_depth),
                                lpips_net=FLAGS.lpips_net if lpips_model else None)
    return Plan(restorer, pairs, subsets, protocol, lpips_model, lpips_note, blur_info, output_dir)


def _make_output_dirs(plan: Plan) -> Optional[str]:
    try:
        os.makedirs(plan.output_dir, exist_ok=True)
        if not FLAGS.save_outputs:
            return None
        outputs_dir = os.path.join(plan.output_dir, "outputs")
        os.makedirs(outputs_dir, exist_ok=True)
        return outputs_dir
    except OSError as error:
        raise runner.setup_error(f"{plan.output_dir}: cannot create the output folder "
                                 f"({error.strerror or error}).") from None


def main(argv: list[str]) -> int:
    output_dir = FLAGS.output_dir or DEFAULT_OUTPUT_DIR
    if len(argv) > 1:
        raise runner.usage_error(f"unexpected arguments {' '.join(argv[1:])}; all options are --flags.")
    runner.import_tensorflow()
    from tqdm import tqdm

    from kpac_tf import metrics

    try:
        plan = prepare(output_dir)
    except SetupError as error:
        raise runner.setup_error(str(error)) from None
    outputs_dir = _make_output_dirs(plan)
    if plan.lpips_note and FLAGS.lpips:
        print(runner.line("note", f"LPIPS skipped: {plan.lpips_note}"), file=sys.stderr)

    results, errors = evaluate_pairs(
        plan.pairs, plan.restorer, plan.protocol, plan.lpips_model, plan.blur_info, outputs_dir,
        on_error=lambda m: tqdm.write(runner.line("error", m), file=sys.stderr),
        progress=lambda it, **kw: tqdm(it, disable=not runner.progress_bar_wanted(), **kw))
    means = subset_means(results, plan.subsets)
    listed = {p.name for p in plan.pairs}
    for label, names in plan.subsets.items():
        if names is not None and not names & listed:
            runner.warning(f"none of the images is in the {label} list.")
    source = (f"DPDD-layout {FLAGS.dpdd_root}, split {FLAGS.split}" if FLAGS.dpdd_root
              else f"{FLAGS.source_dir} -> {FLAGS.target_dir}")
    write_csv(os.path.join(output_dir, "per_image.csv"), results)
    write_reports(output_dir, results=results, errors=errors, means=means,
                  protocol=plan.protocol, restorer=plan.restorer,
                  data_description=f"{source}; {len(plan.pairs)} pairs",
                  lpips_note=plan.lpips_note, command=_command_line())
    overall = means["all"]
    print(f"{len(results)} evaluated, {len(errors)} failed ({plan.protocol.bit_label}): "
          f"PSNR {metrics.format_score(overall['psnr'].mean, 2)} dB, "
          f"SSIM {metrics.format_score(overall['ssim'].mean)}, "
          f"MAE {metrics.format_score(overall['mae'].mean)}, "
          f"LPIPS {metrics.format_score(overall['lpips'].mean)}; "
          f"results in {output_dir}/")
    return runner.EXIT_FAILED if errors else runner.EXIT_OK


def run() -> None:
    """Console-script entry point."""
    runner.run_command("kpac-eval", main)


if __name__ == "__main__":
    run()
