"""Held-out synthetic-defocus benchmark: identity vs classical baselines vs KPAC weights.

    python experiments/quality/heldout_benchmark.py --photos=data/photos [--weights=kpac-3level]

The first table (``--photos``, a folder from ``python -m kpac_tf.tools.fetch_training_photos``)
scores the held-out photographs, sharp across the frame, of that folder (one whole-image
pair each) and, apart, the held-out scikit-image photos, with the oracle radius maps:
mean PSNR gain, gain on defocused pixels (radius >= 1 px) and on in-focus pixels
(radius < 1 px), SSIM (``defocus_scores.py``; radius up to 16 px, noise 0.5-2/255).

The second part is the earlier 5-photo benchmark, kept so that its history stays
comparable (two of its photos hold real camera bokeh that it scores as sharp truth):

1. Writes (once) a benchmark in the DPDD folder layout: whole photographs from the
   synthetic generator's HELD-OUT scikit-image list (never used for training the
   bundled weights), each defocused with random depth, focus and blur radius, 16-bit.
2. Scores in this process (kpac_tf.evaluation, what kpac-eval runs) under one protocol, the blurred input (identity), Wiener and
   Richardson-Lucy deconvolution with the oracle disc kernel of the mean radius, the
   two-step method with the oracle defocus map, and the KPAC weights (plain, and with
   the x8 flip/rotation self-ensemble of ``--ensemble`` unless --noensemble_rows).
3. Writes a Markdown table with the protocol to --report, and a second table of the
   mean PSNR gain per source photograph (where each method helps and where it hurts).
4. In-focus check (unless --noin_focus_rows): each KPAC weights on the same photos
   rendered with no defocus, i.e. how much a network degrades photos already sharp.
"""
from __future__ import annotations

import csv
import json
import shlex
import sys
from pathlib import Path

from absl import flags

import defocus_scores
from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("photos", None, "Fetched photo folder (its heldout/ split is the first table); "
                    "none: only the 5-photo tables.")
flags.DEFINE_string("photo_benchmark_dir", "defocus_benchmark", "Where the photo pairs are written.")
flags.DEFINE_boolean("five_photo_rows", True, "Also run the earlier 5-photo benchmark.")
flags.DEFINE_string("benchmark_dir", "heldout_benchmark", "Where the benchmark pairs are written.")
flags.DEFINE_string("results_dir", "heldout_results", "Where kpac-eval writes each method's results.")
flags.DEFINE_string("report", "experiments/results/heldout_benchmark.md", "Markdown report path.")
flags.DEFINE_integer("count", 20, "Number of benchmark pairs (cycling through the held-out photos).")
flags.DEFINE_integer("seed", 7, "Benchmark seed.")
flags.DEFINE_list("weights", ["kpac-3level"], "KPAC weights to score (presets or files).")
flags.DEFINE_list("baselines", ["identity", "wiener", "rl", "two_step"], "Baselines to score.")
flags.DEFINE_enum("bit_depth", "8", ["8", "16"], "Protocol bit depth.")
flags.DEFINE_boolean("ensemble_rows", True, "Also score each KPAC weights with the x8 self-ensemble.")
flags.DEFINE_boolean("in_focus_rows", True, "Also score each KPAC weights on the held-out photos "
                     "rendered with no defocus (does the network leave sharp photos alone?).")
flags.DEFINE_boolean("native_defocus_rows", True, "Also score the held-out photos' camera-defocused "
                     "regions (NATIVE_DEFOCUS) apart from the rest of the frame.")
flags.DEFINE_boolean("reuse_baselines", False, "Reuse baseline results already in --results_dir.")

LABELS = {
    "identity": "blurred input (identity)",
    "wiener": "Wiener, oracle disc kernel of the mean radius",
    "rl": "Richardson-Lucy, oracle disc kernel of the mean radius",
    "two_step": "two-step: oracle defocus map + non-blind deconvolution",
}


#: Held-out photos that have real, camera-made defocus, with the band of columns (fractions
#: of the width) where it is: chelsea's right 30% is an out-of-focus background, which
#: the benchmark takes as the sharp truth.
NATIVE_DEFOCUS = {"chelsea": (0.7, 1.0)}


def make_benchmark(root: Path, count: int, in_focus: bool = False) -> None:
    """Writes the benchmark once; ``in_focus``: no defocus at all (only the noise)."""
    from kpac_tf.data.dpdd_writer import write_dpdd_layout
    from kpac_tf.data.pairs import SyntheticConfig
    from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES

    if (root / "test_c" / "synthetic.json").exists():
        return
    config = SyntheticConfig(sharp_probability=1.0) if in_focus else None
    write_dpdd_layout(root, count, "test", photos="skimage-heldout", seed=FLAGS.seed, bit_depth=16,
                      config=config)
    print(f"wrote {count} pairs from {', '.join(SKIMAGE_HELDOUT_SAMPLES)} into {root}")


def evaluate(name: str, root: Path, *, baseline: str | None = None, weights: str | None = None,
             ensemble: bool = False, reuse: bool = False) -> dict:
    """Scores a baseline or KPAC weights on the benchmark in ``root`` in this process
    (kpac_tf.evaluation, as kpac-eval does) into --results_dir/NAME; returns the summary."""
    from kpac_tf.evaluation import engine as evaluation

    output = Path(FLAGS.results_dir) / name
    if reuse and (output / "summary.json").exists():
        return {**json.loads((output / "summary.json").read_text()), "results_name": name}
    if baseline:
        method, restorer = [f"--baseline={baseline}"], evaluation.baseline_restorer(baseline)
    else:
        method = [f"--weights={weights}"] + (["--ensemble"] if ensemble else [])
        restorer = evaluation.model_restorer(weights, ensemble=ensemble)
    command = shlex.join(["kpac-eval", *method, f"--dpdd_root={root}", f"--bit_depth={FLAGS.bit_depth}",
                          f"--output_dir={output}", "--overwrite"])
    summary = evaluation.evaluate_dpdd(restorer, str(root), str(output), bit_depth=int(FLAGS.bit_depth),
                                       command=command)
    return {**summary, "results_name": name}


def per_photo_gains(root: Path, rows: list) -> list[str]:
    """Markdown lines: mean PSNR gain over the input per source photo and method."""
    meta = json.loads((root / "test_c" / "synthetic.json").read_text())["images"]
    source = {Path(name).stem: info["source"] for name, info in meta.items()}
    photos = sorted(set(source.values()))
    psnr = {}
    for label, summary in rows:
        path = Path(FLAGS.results_dir) / summary["results_name"] / "per_image.csv"
        with path.open() as handle:
            psnr[label] = {r["name"]: float(r["psnr"]) for r in csv.DictReader(handle) if r["psnr"]}
    identity = next(label for label, _ in rows if label.startswith("blurred input"))
    counts = {photo: sum(1 for s in source.values() if s == photo) for photo in photos}
    lines = [
        "| method | " + " | ".join(f"{photo} ({counts[photo]})" for photo in photos) + " |",
        "|---|" + "---:|" * len(photos),
    ]
    for label, _ in rows:
        if label == identity:
            continue
        cells = []
        for photo in photos:
            gains = [psnr[label][n] - psnr[identity][n] for n in psnr[identity]
                     if source.get(n) == photo and n in psnr[label]]
            cells.append(f"{sum(gains) / len(gains):+.2f}" if gains else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def in_focus_section(root: Path) -> list[str]:
    """Markdown lines: KPAC on the held-out photos with no defocus (only the noise)."""
    from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES

    sharp_root = root.with_name(root.name + "_in_focus")
    make_benchmark(sharp_root, len(SKIMAGE_HELDOUT_SAMPLES), in_focus=True)
    rows = [(LABELS["identity"], evaluate("in_focus_identity", sharp_root, baseline="identity",
                                          reuse=FLAGS.reuse_baselines))]
    for weights in FLAGS.weights:
        name = Path(weights).name.replace(".weights.npz", "")
        rows.append((f"KPAC ({weights})", evaluate(f"in_focus_kpac_{name}", sharp_root, weights=weights)))
    return [
        "In-focus check: each held-out photograph rendered with no defocus at all (the input is "
        "the sharp photo plus the renderer's noise). A network that leaves sharp content alone "
        f"stays near the input (mean input PSNR {rows[0][1]['means']['all']['psnr']['mean']:.2f} dB). "
        "PSNR change against the input (dB), per photograph:",
        "",
        *per_photo_gains(sharp_root, rows),
    ]


def native_defocus_section(root: Path) -> list[str]:
    """Markdown lines: KPAC's gain inside and outside each photo's camera-defocused band."""
    import region_scores

    from kpac_tf.inference import Deblurrer
    from kpac_tf.model import weights

    lines = []
    deblurrers = None
    for photo, band in NATIVE_DEFOCUS.items():
        try:
            stems = region_scores.photo_pairs(root, "test", photo)
        except ValueError:  # a small benchmark may hold no pair of this photo
            continue
        if deblurrers is None:
            deblurrers = {spec: Deblurrer(weights.load_model(spec)) for spec in FLAGS.weights}
        scores = [(stem, label, values) for stem, label, values, _ in region_scores.score_pairs(
            root / "test_c", stems, band, deblurrers, int(FLAGS.bit_depth))]
        inputs = [values for _, label, values in scores if label == "input"]
        lines += [
            f"Real defocus in a source photo: the right {band[1] - band[0]:.0%} of {photo} is a "
            "camera-defocused background, which this benchmark takes as sharp truth, so a "
            "deblurrer that sharpens it loses PSNR there. Mean PSNR gain over the input (dB) on "
            f"{photo}'s {len(stems)} pairs, inside that band of columns and outside it (input PSNR "
            f"{sum(v[1] for v in inputs) / len(inputs):.2f} and {sum(v[2] for v in inputs) / len(inputs):.2f} dB):",
            "",
            "| method | whole frame | background band | rest of the frame |",
            "|---|---:|---:|---:|",
            *(f"| KPAC ({label}) | {whole:+.2f} | {inside:+.2f} | {outside:+.2f} |"
              for label, (whole, inside, outside) in region_scores.mean_gains(scores).items()),
            "",
        ]
    return lines


def photo_section() -> list[str]:
    """Markdown lines: the held-out photographs scored with their oracle radius maps."""
    results = defocus_scores.run_benchmark(FLAGS.photos, "heldout", FLAGS.photo_benchmark_dir,
                                           FLAGS.weights, skimage_pairs=2, seed=11)
    return [
        "## Held-out photographs, sharp across the frame",
        "",
        "One whole-image pair per held-out photograph of the fetched texture photos "
        "(`photos` rows; never trained on, never used to choose weights) and two per held-out "
        "scikit-image photo (`skimage` rows, scored apart: chelsea and coffee hold real bokeh). "
        "Layered thin-lens defocus up to a 16 px radius, noise 0.5-2/255, 16-bit pairs; scored "
        "8-bit, outputs clipped. Gains are PSNR gains over the input (dB), means over pairs; "
        "the defocused / in-focus columns use the pixels whose oracle blur radius is >= 1 px / "
        "< 1 px (pairs where that region covers under 1% of the frame are left out of its mean).",
        "",
        *defocus_scores.markdown(results),
        "",
        f"Reproduce: `python experiments/quality/defocus_benchmark.py --photos=PHOTOS --split=heldout "
        f"--weights={','.join(FLAGS.weights)}`",
        "",
    ]


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    head = ["# Held-out synthetic-defocus benchmark", ""]
    if FLAGS.photos:
        head += photo_section()
    if not FLAGS.five_photo_rows:
        _write_report(head)
        return runner.EXIT_OK
    head += ["## The earlier benchmark: five scikit-image photos", ""]
    root = Path(FLAGS.benchmark_dir)
    make_benchmark(root, FLAGS.count)
    rows = []
    for baseline in FLAGS.baselines:
        rows.append((LABELS.get(baseline, baseline),
                     evaluate(baseline, root, baseline=baseline, reuse=FLAGS.reuse_baselines)))
    for weights in FLAGS.weights:
        name = Path(weights).name.replace(".weights.npz", "")
        rows.append((f"KPAC ({weights})", evaluate(f"kpac_{name}", root, weights=weights)))
        if FLAGS.ensemble_rows:
            rows.append((f"KPAC ({weights}), x8 self-ensemble",
                         evaluate(f"kpac_{name}_x8", root, weights=weights, ensemble=True)))
    identity = next((s for label, s in rows if label.startswith("blurred input")), None)
    protocol = rows[0][1]["protocol"]
    lines = [
        *head,
        f"{rows[0][1]['data']}: whole photographs from scikit-image's held-out list, defocused "
        "by the project's synthetic renderer (layered thin-lens depth of field, disc PSFs with "
        "a Gaussian mix, bokeh highlights, noise), written as 16-bit PNG. None of these photos "
        "was used for training. " + protocol["description"],
        "",
        "| method | PSNR (dB) | gain vs input (dB) | SSIM | MAE | seconds / image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, summary in rows:
        means = summary["means"]["all"]
        psnr = means["psnr"]["mean"]
        gain = psnr - identity["means"]["all"]["psnr"]["mean"] if identity else float("nan")
        seconds = summary["timing"]["median_seconds"]
        lines.append(
            f"| {label} | {psnr:.2f} | {gain:+.2f} | {means['ssim']['mean']:.4f} | "
            f"{means['mae']['mean']:.4f} | {seconds:.2f} |"
        )
    lines += [
        "",
        "Mean PSNR gain over the input (dB) per source photograph (number of pairs):",
        "",
        *per_photo_gains(root, rows),
        "",
        *(in_focus_section(root) + [""] if FLAGS.in_focus_rows else []),
        *(native_defocus_section(root) if FLAGS.native_defocus_rows else []),
        "LPIPS: " + ("not computed (no LPIPS backbone weights file on this machine; see the README)"
                     if rows[0][1]["lpips_skipped"] else "computed, AlexNet v0.1") + ".",
        "",
        "Reproduce: `python experiments/quality/heldout_benchmark.py " + " ".join(sys.argv[1:]) + "`",
        "",
    ]
    _write_report(lines)
    return runner.EXIT_OK


def _write_report(lines: list[str]) -> None:
    report = Path(FLAGS.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    runner.run_command("heldout_benchmark.py", main)
