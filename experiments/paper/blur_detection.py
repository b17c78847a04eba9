"""Blur detection with KPAC's scale attention (paper, supplementary Appendix F).

The dilation-1 scale attention of the first KPAC block, computed on the input upsampled
x4, is turned into a blur map (1 - alpha_1), thresholded (Otsu by default) and scored
against binary masks: F-measure (beta^2 = 0.3 by default) and accuracy, per image and
pooled over all pixels. The paper reports F-measure 0.832 and accuracy 78.4% on CUHK.

Data: the CUHK blur detection layout, an image folder and a mask folder whose files
pair by stem (``image/out_of_focus0001.jpg`` with ``gt/out_of_focus0001.png``); CUHK
masks are white where the photo is blurred (--mask_white=sharp for the opposite).
Without a dataset, --synthetic=N writes N synthetic samples in that layout (a sharp
ellipse on a defocused background, rendered by the synthetic thin-lens generator) and
evaluates them.

Writes ``per_image.csv``, ``summary.md`` and overlay figures (PNG) into --output_dir.

Usage (from the repository root):

    python3 experiments/paper/blur_detection.py --images=CUHK/image --masks=CUHK/gt \\
        --include='out_of_focus*' --weights=single_3level.npz
    python3 experiments/paper/blur_detection.py --synthetic=20 --random_weights   # pipeline check
"""
from __future__ import annotations

import csv
import io
import os
import shlex
import sys
import time

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("images", None, "Folder of photos (CUHK: image/).")
flags.DEFINE_string("masks", None, "Folder of binary masks paired by file stem (CUHK: gt/).")
flags.DEFINE_string("include", "*", "Shell pattern on file names, e.g. 'out_of_focus*' for "
                    "CUHK's defocus images.")
flags.DEFINE_enum("mask_white", "blurred", ["blurred", "sharp"],
                  "What white means in the mask files (CUHK: blurred).")
flags.DEFINE_integer("synthetic", 0, "Without --images: write this many synthetic samples "
                     "into <output_dir>/synthetic_data and evaluate them.")
flags.DEFINE_string("weights", None, "Preset name, project *.weights.npz or authors' npz "
                    "(default: the bundled weights of --preset).")
flags.DEFINE_string("preset", "kpac-3level", "Model preset used when --weights is not given.")
flags.DEFINE_boolean("random_weights", False, "Allow random weights when no trained weights "
                     "are available (checks the pipeline; the scores mean nothing).")
flags.DEFINE_integer("upsample", 4, "The network sees the photo upsampled by this factor.")
flags.DEFINE_string("threshold", "otsu", "'otsu' (per image) or a fixed number in [0, 1].")
flags.DEFINE_float("beta2", None, "beta^2 of the F-measure (default: "
                   "kpac_tf.analysis.blur_detection.DEFAULT_BETA2, 0.3).")
flags.DEFINE_integer("block", 1, "KPAC block whose scale attention is used.")
flags.DEFINE_integer("rate", 1, "Dilation rate whose attention map is used.")
flags.DEFINE_integer("limit", 0, "Evaluate only the first N pairs (0: all).")
flags.DEFINE_integer("figures", 6, "Save overlay figures of the first N images.")
flags.DEFINE_string("output_dir", os.path.join("experiments", "results", "blur_detection"),
                    "Folder for per_image.csv, summary.md and the figures.")


def _model():
    from kpac_tf.analysis import attention as analysis

    model, text, trained = analysis.model_for_analysis(FLAGS.weights, FLAGS.preset)
    if not trained and not FLAGS.random_weights:
        raise runner.usage_error(
            f"No trained weights are bundled for {FLAGS.preset}; pass --weights=<file> (e.g. "
            "the authors' single_3level.npz) or --random_weights to check the pipeline only.")
    return model, text, trained


def _data_dirs() -> tuple[str, str]:
    """(image folder, mask folder) from the flags, writing the synthetic set if asked."""
    if FLAGS.images or FLAGS.masks:
        if not (FLAGS.images and FLAGS.masks):
            raise runner.usage_error("Give both --images and --masks.")
        return FLAGS.images, FLAGS.masks
    if FLAGS.synthetic > 0:
        data_dir = os.path.join(FLAGS.output_dir, "synthetic_data")
        from kpac_tf.analysis import blur_detection as bd

        image_dir, mask_dir = bd.write_synthetic_dataset(data_dir, FLAGS.synthetic)
        print(f"wrote {FLAGS.synthetic} synthetic samples into {data_dir}")
        return image_dir, mask_dir
    raise runner.usage_error("Give --images and --masks (CUHK layout), or --synthetic=N.")


def _figure_writer(progress, trained: bool, saved: list[str]):
    """The per-image callback of bd.evaluate: advances ``progress`` and saves the
    overlay figures of the first --figures images (their paths go into ``saved``)."""
    from kpac_tf.analysis import attention as analysis
    from kpac_tf.analysis import blur_detection as bd

    note = "" if trained else " - RANDOM WEIGHTS"

    def on_image(sample, image, detection, truth):
        progress.update(1)
        if len(saved) < FLAGS.figures:
            counts = bd.compare_masks(detection.mask, truth)
            figure = analysis.plot_blur_detection(
                image, detection.blur_map, detection.mask, truth,
                title=f"{sample.name}: F {counts.f_measure(FLAGS.beta2):.3f}, "
                      f"accuracy {counts.accuracy:.3f}{note}",
                value_range="fixed" if trained else "auto")
            path = os.path.join(FLAGS.output_dir, f"{sample.name}.png")
            figure.savefig(path, dpi=100)
            saved.append(path)

    return on_image


def _per_image_csv(result) -> str:
    """The per-image scores as CSV text."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["name", "threshold", "precision", "recall", "f_measure", "accuracy"])
    for name, counts, value in zip(result.names, result.counts, result.thresholds):
        writer.writerow([name, f"{value:.4f}", f"{counts.precision:.4f}",
                         f"{counts.recall:.4f}", f"{counts.f_measure(FLAGS.beta2):.4f}",
                         f"{counts.accuracy:.4f}"])
    return text.getvalue()


def _summary_lines(result, weights_text: str, trained: bool, dirs: tuple[str, str],
                   elapsed: float) -> list[str]:
    """The summary's Markdown lines (the first four: command and set-up)."""
    pooled = result.pooled
    lines = [
        "# Blur detection from KPAC's scale attention",
        "",
        f"Command: `{' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        f"Model: {weights_text}. Data: {len(result.names)} images from {dirs[0]} "
        f"(masks {dirs[1]}, include {FLAGS.include!r}, white = {FLAGS.mask_white}). "
        f"Map: block {FLAGS.block}, rate {FLAGS.rate}, input x{FLAGS.upsample}; threshold "
        f"{FLAGS.threshold}. Run time {elapsed:.1f} s.",
        "",
    ]
    if not trained:
        lines += ["**RANDOM WEIGHTS: these numbers check the pipeline; they say nothing "
                  "about KPAC.**", ""]
    return lines + [
        f"| averaging | F-measure (beta^2 = {FLAGS.beta2:g}) | accuracy | precision | recall |",
        "|---|---|---|---|---|",
        f"| mean over images | {result.mean_f_measure:.3f} | {result.mean_accuracy:.3f} | "
        f"{result.mean_precision:.3f} | {result.mean_recall:.3f} |",
        f"| pooled pixels | {pooled.f_measure(FLAGS.beta2):.3f} | {pooled.accuracy:.3f} | "
        f"{pooled.precision:.3f} | {pooled.recall:.3f} |",
        "",
        "Paper (supp. Appendix F, CUHK, input x4): F-measure 0.832, accuracy 0.784 (its "
        "beta and averaging are not stated).",
        "",
    ]


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    from tqdm import tqdm

    from kpac_tf import files as kio
    from kpac_tf.analysis import blur_detection as bd

    if FLAGS.beta2 is None:
        FLAGS.beta2 = bd.DEFAULT_BETA2

    threshold = runner.parsed_flag("threshold", FLAGS.threshold, bd.parse_threshold)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    dirs = _data_dirs()
    try:
        samples = bd.pair_blur_dataset(*dirs, FLAGS.include)
    except (OSError, ValueError) as error:
        raise runner.setup_error(str(error)) from None
    if FLAGS.limit > 0:
        samples = samples[: FLAGS.limit]
    model, weights_text, trained = _model()

    start = time.time()
    saved: list[str] = []
    with tqdm(total=len(samples), unit="image", desc="blur detection",
              disable=not runner.progress_bar_wanted()) as progress:
        try:
            result = bd.evaluate(model, samples, threshold=threshold, upsample=FLAGS.upsample,
                                 block=FLAGS.block, rate=FLAGS.rate, beta2=FLAGS.beta2,
                                 mask_white=FLAGS.mask_white,
                                 on_image=_figure_writer(progress, trained, saved))
        except ValueError as error:
            raise runner.setup_error(str(error)) from None
    lines = _summary_lines(result, weights_text, trained, dirs, time.time() - start)
    kio.atomic_write(os.path.join(FLAGS.output_dir, "per_image.csv"), _per_image_csv(result))
    kio.atomic_write(os.path.join(FLAGS.output_dir, "summary.md"), "\n".join(lines))
    print("\n".join(lines[4:]))
    print(f"wrote per_image.csv, summary.md and {len(saved)} figures into {FLAGS.output_dir}")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("blur_detection.py", main)
