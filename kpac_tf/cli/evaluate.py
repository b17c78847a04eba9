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
  --baseline: identity | wiener | rl | two_step (kpac_tf.evaluation.baselines). All but identity
  need the oracle blur: a radius map per image (16-bit PNG written by
  ``from kpac_tf.data.dpdd_writer import write_dpdd_layout``, or a .npy of pixels) and optionally
  ``synthetic.json`` (mean radius, Gaussian share of the PSF).

Data: --dpdd_root with --split (reads {split}_c/source and target, paired by file
name; dual-pixel models also read {split}_l and {split}_r), or --source_dir with
--target_dir.

Protocol (see kpac_tf.evaluation.metrics): inputs and outputs at --bit_depth (8, the published
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

import dataclasses
import os
import shlex
import sys
from typing import Any, Optional

from absl import flags

from kpac_tf.cli import inference_flags, model_flags, runner
from kpac_tf.evaluation import engine
from kpac_tf.evaluation.engine import SetupError

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(model_flags)
flags.adopt_module_key_flags(inference_flags)
DEFAULT_OUTPUT_DIR = "eval_results"
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
flags.DEFINE_string("lpips_weights", None, "LPIPS backbone .npz (made by python -m "
                    "kpac_tf.tools.convert_lpips_backbone); default: the standard location.")
flags.DEFINE_integer("limit", None, "Evaluate only the first N pairs (by name).")


def build_restorer() -> engine.Restorer:
    """The Restorer that --weights / --saved_model / --baseline name."""
    chosen = [n for n in ("weights", "saved_model", "baseline") if getattr(FLAGS, n)]
    if len(chosen) > 1:
        raise SetupError("Give one of --weights, --saved_model or --baseline, not "
                         f"{' and '.join('--' + n for n in chosen)}.")
    if FLAGS.baseline:
        return engine.baseline_restorer(FLAGS.baseline)
    if FLAGS.saved_model:
        return engine.saved_model_restorer(FLAGS.saved_model)
    return engine.model_restorer(FLAGS.weights or model_flags.DEFAULT_WEIGHTS, FLAGS.preset,
                                 make_deblurrer=inference_flags.make_deblurrer)


def _command_line() -> str:
    return " ".join(["kpac-eval", *(shlex.quote(a) for a in sys.argv[1:])])


# ----------------------------------------------------------------------------- main
@dataclasses.dataclass
class Plan:
    """Everything checked before the first image: what, on which pairs, how, where."""

    restorer: engine.Restorer
    pairs: list
    subsets: dict
    protocol: Any
    lpips_model: Any
    lpips_note: Optional[str]
    blur_info: Optional[engine.BlurInfo]
    output_dir: str


def check_output_dir(output_dir: str) -> None:
    """Writable (or creatable) and free of earlier results unless --overwrite."""
    runner.check_output_dir(output_dir)
    earlier = [n for n in engine.RESULT_NAMES if os.path.exists(os.path.join(output_dir, n))]
    if earlier and not FLAGS.overwrite:
        raise SetupError(f"{output_dir} holds the results of an earlier evaluation "
                         f"({', '.join(earlier)}); pass --overwrite to replace them, or choose "
                         "another --output_dir.")


def _subsets() -> dict[str, Optional[set[str]]]:
    subsets: dict[str, Optional[set[str]]] = {"all": None}
    if FLAGS.indoor_list:
        subsets["indoor"] = engine.read_name_list(FLAGS.indoor_list)
    if FLAGS.outdoor_list:
        subsets["outdoor"] = engine.read_name_list(FLAGS.outdoor_list)
    return subsets


def prepare(output_dir: str) -> Plan:
    """Check the flags, load what is evaluated and list the pairs (SetupError: exit 2)."""
    from kpac_tf.data import dpdd
    from kpac_tf.evaluation import metrics

    list_pairs = engine.pair_lister(FLAGS.dpdd_root, FLAGS.split, FLAGS.source_dir,
                                    FLAGS.target_dir)
    subsets = _subsets()
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
    blur_info = (engine.blur_info_for(FLAGS.dpdd_root, FLAGS.split, FLAGS.radius_dir,
                                      FLAGS.blur_info) if restorer.needs_blur_info else None)
    lpips_model, lpips_note = engine.build_lpips(FLAGS.lpips, FLAGS.lpips_net,
                                                 FLAGS.lpips_weights)
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
    runner.no_arguments(argv)
    runner.import_tensorflow()
    from tqdm import tqdm

    from kpac_tf.evaluation import metrics

    try:
        plan = prepare(output_dir)
    except SetupError as error:
        raise runner.setup_error(str(error)) from None
    outputs_dir = _make_output_dirs(plan)
    if plan.lpips_note and FLAGS.lpips:
        print(runner.line("note", f"LPIPS skipped: {plan.lpips_note}"), file=sys.stderr)

    results, errors = engine.evaluate_pairs(
        plan.pairs, plan.restorer, plan.protocol, plan.lpips_model, plan.blur_info, outputs_dir,
        on_error=lambda m: tqdm.write(runner.line("error", m), file=sys.stderr),
        progress=lambda it, **kw: tqdm(it, disable=not runner.progress_bar_wanted(), **kw))
    listed = {p.name for p in plan.pairs}
    for label, names in plan.subsets.items():
        if names is not None and not names & listed:
            runner.warning(f"none of the images is in the {label} list.")
    data = engine.describe_data(len(plan.pairs), FLAGS.dpdd_root, FLAGS.split,
                                FLAGS.source_dir, FLAGS.target_dir)
    _, means = engine.write_results(
        output_dir, results, errors, subsets=plan.subsets, protocol=plan.protocol,
        restorer=plan.restorer, data_description=data, lpips_note=plan.lpips_note,
        command=_command_line())
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
