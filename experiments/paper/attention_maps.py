"""Figures of KPAC's attention: per-dilation scale maps (paper Fig. 6), attention
modulation (Fig. 8) and blur detection from the dilation-1 map (supp. Appendix F).

A scikit-image photo (or --image) is defocused with the synthetic thin-lens renderer so
the true blur is known: a left-to-right ramp (no blur at the left edge, --max_radius px
at the right) for the attention maps and the modulation, and a sharp ellipse on a
defocused background for blur detection. Writes PNG figures and ``summary.md`` (the
measured numbers and the command) into --output_dir.

Usage (from the repository root):

    python3 experiments/paper/attention_maps.py                        # bundled or random weights
    python3 experiments/paper/attention_maps.py --weights=single_3level.npz --sample=coffee
    python3 experiments/paper/attention_maps.py --image=photo.png --height=384 --width=576

Without trained weights (none bundled and no --weights) the network has random weights:
every figure and the summary say so, and the maps then show only the mechanics.
"""
from __future__ import annotations

import os
import shlex
import sys
import time

import numpy as np
from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("weights", None, "Preset name, project *.weights.npz or authors' npz "
                    "(default: the bundled weights of --preset if present, else random).")
flags.DEFINE_string("preset", "kpac-3level", "Model preset used when --weights is not given.")
flags.DEFINE_string("image", None, "Sharp photo to defocus (overrides --sample).")
flags.DEFINE_string("sample", "chelsea", "scikit-image sample photo (see "
                    "kpac_tf.data.photos.load_skimage_sample).")
flags.DEFINE_integer("height", 256, "Height the photo is scaled and cropped to.")
flags.DEFINE_integer("width", 384, "Width the photo is scaled and cropped to.")
flags.DEFINE_float("max_radius", 8.0, "Largest defocus radius of the synthetic blur, pixels.")
flags.DEFINE_list("rates", ["1", "3", "5"], "Dilation rates shown alone in the modulation.")
flags.DEFINE_integer("upsample", 4, "Blur detection runs on the input upsampled by this.")
flags.DEFINE_string("threshold", "otsu", "Blur-map threshold: 'otsu' or a number in [0, 1].")
flags.DEFINE_integer("seed", 0, "Seed of the random weights (when no weights are given).")
flags.DEFINE_string("output_dir", os.path.join("experiments", "results", "attention"),
                    "Folder for the PNG figures and summary.md.")


def _sharp_photo(height: int, width: int) -> tuple[np.ndarray, str]:
    from kpac_tf.analysis import attention as analysis
    from kpac_tf.data.photos import load_skimage_sample
    from kpac_tf.images import codec as kio

    if FLAGS.image:
        photo, name = kio.read_image(FLAGS.image).rgb, os.path.basename(FLAGS.image)
    else:
        photo, _ = load_skimage_sample(FLAGS.sample)
        name = f"scikit-image '{FLAGS.sample}'"
    return analysis.cover_crop(photo, height, width), name


def _save(figure, path: str) -> None:
    figure.savefig(path, dpi=100)
    print(f"wrote {path}")


def _scale_attention(model, sharp, weights_text: str, trained: bool):
    """Fig. 6: per-dilation scale attention on a blur ramp with a known radius map.
    Returns (blurred input, attention maps, correlation with the radius per block/rate)."""
    from kpac_tf.analysis import attention as analysis

    blurred, radius = analysis.ramp_defocus(sharp, FLAGS.max_radius)
    maps = analysis.compute_attention(model, blurred)
    correlation = analysis.radius_correlation(maps, radius)
    _save(analysis.plot_scale_attention(
        blurred, maps, title=f"Scale attention per dilation rate ({weights_text})",
        extra={"true radius (px)": radius}, value_range="fixed" if trained else "block"),
        os.path.join(FLAGS.output_dir, "scale_attention.png"))
    return blurred, maps, correlation


def _modulation(model, sharp, blurred, maps, note: str) -> dict[str, float]:
    """Fig. 8: the output with only one dilation rate; PSNR (dB) of each setting."""
    from kpac_tf.analysis import attention as analysis
    from kpac_tf.evaluation import metrics

    outputs = {"computed attention": maps.output}
    for rate in [int(r) for r in FLAGS.rates]:
        outputs[f"only rate {rate}"] = analysis.modulate(
            model, blurred, analysis.single_rate(model.kpac_config.dilations, rate))
    scores = {name: metrics.psnr(out, sharp) for name, out in outputs.items()}
    scores["input"] = metrics.psnr(blurred, sharp)
    shown = {f"{name}\n{scores[name]:.2f} dB": out for name, out in outputs.items()}
    shown["sharp"] = sharp
    _save(analysis.plot_modulation(blurred, shown, title=f"Attention modulation{note}"),
          os.path.join(FLAGS.output_dir, "modulation.png"))
    return scores


def _blur_detection(model, sharp, threshold, trained: bool, note: str):
    """Appendix F: blur detection on a sharp ellipse over a defocused background.
    Returns (detection, mask counts)."""
    from kpac_tf.analysis import attention as analysis
    from kpac_tf.analysis import blur_detection as bd

    height, width = sharp.shape[:2]
    focus = bd.ellipse_mask(height, width, (0.5 * height, 0.45 * width),
                            (0.3 * height, 0.25 * width))
    spot, _, truth = bd.synthetic_blur_example(sharp, focus, FLAGS.max_radius)
    detection = bd.detect_blur(model, spot, threshold=threshold, upsample=FLAGS.upsample)
    counts = bd.compare_masks(detection.mask, truth)
    _save(analysis.plot_blur_detection(
        spot, detection.blur_map, detection.mask, truth,
        title=(f"Blur detection: F(beta2={bd.DEFAULT_BETA2}) {counts.f_measure():.3f}, "
               f"accuracy {counts.accuracy:.3f}{note}"),
        value_range="fixed" if trained else "auto"),
        os.path.join(FLAGS.output_dir, "blur_detection.png"))
    return detection, counts


def _rate_table(dilations, rows) -> list[str]:
    """A Markdown table of one row of per-rate values per block."""
    return (["| block | " + " | ".join(f"rate {r}" for r in dilations) + " |",
             "|---|" + "---|" * len(dilations)]
            + [f"| {block} | " + " | ".join(row) + " |" for block, row in enumerate(rows, start=1)])


def _summary_lines(found: dict, weights_text: str, trained: bool, photo: str,
                   elapsed: float) -> list[str]:
    """The summary's Markdown lines from the measured ``found``."""
    from kpac_tf.analysis.blur_detection import DEFAULT_BETA2

    dilations, counts = found["dilations"], found["counts"]
    height, width = found["size"]
    lines = ["# KPAC attention analysis", "",
             f"Command: `{' '.join(shlex.quote(a) for a in sys.argv)}`", "",
             f"Model: {weights_text}. Photo: {photo}, {height}x{width}, synthetic defocus "
             f"up to {FLAGS.max_radius:g} px. Run time {elapsed:.1f} s.", ""]
    if not trained:
        lines += ["**These numbers come from RANDOM weights: they test the pipeline, they do "
                  "not describe KPAC.**", ""]
    lines += ["## Scale attention vs. true blur radius (Pearson r, blur ramp)", ""]
    lines += _rate_table(dilations, [[f"{v:+.3f}" for v in row] for row in found["correlation"]])
    lines += ["", "Mean alpha per rate (image resolution):", ""]
    lines += _rate_table(dilations, [[f"{alpha[..., i].mean():.3f}" for i in range(len(dilations))]
                                     for alpha in found["maps"].alphas_image])
    lines += ["", "## Modulation (PSNR to the sharp photo, 8-bit)", "", "| setting | PSNR (dB) |",
              "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in found["scores"].items()]
    return lines + [
        "", f"## Blur detection (dilation-1 map of block 1, input x{FLAGS.upsample}, "
        f"threshold {FLAGS.threshold} = {found['detection'].threshold:.3f})", "",
        f"F-measure (beta2 = {DEFAULT_BETA2}): {counts.f_measure():.3f}; "
        f"F1: {counts.f_measure(1.0):.3f}; accuracy: {counts.accuracy:.3f}; "
        f"precision {counts.precision:.3f}, recall {counts.recall:.3f}.", ""]


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    from kpac_tf import files as kio
    from kpac_tf.analysis import attention as analysis
    from kpac_tf.analysis.blur_detection import parse_threshold

    threshold = runner.parsed_flag("threshold", FLAGS.threshold, parse_threshold)
    start = time.time()
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    model, weights_text, trained = analysis.model_for_analysis(
        FLAGS.weights, FLAGS.preset, FLAGS.seed)
    sharp, photo_name = _sharp_photo(FLAGS.height, FLAGS.width)
    note = "" if trained else " - RANDOM WEIGHTS, not a trained model"
    blurred, maps, correlation = _scale_attention(model, sharp, weights_text, trained)
    scores = _modulation(model, sharp, blurred, maps, note)
    detection, counts = _blur_detection(model, sharp, threshold, trained, note)
    elapsed = time.time() - start
    found = {"dilations": model.kpac_config.dilations, "size": sharp.shape[:2], "maps": maps,
             "correlation": correlation, "scores": scores, "detection": detection,
             "counts": counts}
    summary = os.path.join(FLAGS.output_dir, "summary.md")
    kio.atomic_write(summary, "\n".join(_summary_lines(found, weights_text, trained, photo_name,
                                                       elapsed)))
    print(f"wrote {summary} ({elapsed:.1f} s)")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("attention_maps.py", main)
