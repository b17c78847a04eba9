"""Soft content fed sharp: does a deblurrer leave shading, shadows and gradients alone?

    python experiments/quality/soft_content_benchmark.py \
        --weights=kpac-3level,runs/s9/model.weights.npz \
        --natural=data/natural_photos --out=soft_content

Makes (deterministic per --seed) the procedural scenes of kpac_tf.data.soft_scenes:
gradients, cast shadows with 3-60 px penumbrae, shaded spheres and cylinders, a
high-contrast facade with soft shadows and thin seams, sky and haze behind a skyline,
each beside sharp context at the same depth; isolated ramps with no context; soft
grounds with no hard edge (a smooth grain and soft blobs on a flat ground); the same
scenes with one half of the frame out of focus; and natural photographs (scikit-image's
held-out list, and --natural's heldout/ photos), grouped by their focus label.

Each weights (a preset with bundled weights, a project weights file, an authors' npz or
a kpac-train checkpoint) then deblurs every input in this process, and the script
prints, per weights: PSNR(result, input) of the scenes fed sharp, mean and worst per
kind and over all; the isolated ramps and the soft grounds apart (ambiguous by nature,
for information only); on the partly defocused scenes, the mean PSNR gain over the input on in-focus
and on defocused pixels, per kind and over all; and PSNR(result, input) of the natural
photos labelled sharp and, apart, of those holding real bokeh. A network that changes
nothing scores inf on the sharp inputs, so there is no identity row. Protocol: 8-bit,
outputs clipped, PSNR over all pixels and channels (soft_content_scores.py, beside it).

--out writes soft_content.md, soft_content.json (with every input's figures) and, per
weights, the worst input of every group as a PNG: input | result | difference x8 (fed
sharp), or input | result | sharp truth (partly defocused).
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from absl import flags

import soft_content_scores as scores
from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_list("weights", ["kpac-3level"], "Weights to score: presets, weights files or "
                  "kpac-train checkpoints (WORKDIR/checkpoints/ckpt-N).")
flags.DEFINE_string("natural", None, "A natural photo folder (its heldout/*.png photos join "
                    "scikit-image's held-out list); none: scikit-image's only.")
flags.DEFINE_string("out", None, "Folder for the report, the JSON figures and the worst images.")
flags.DEFINE_enum("precision", "float32", ["auto", "float32", "bfloat16"],
                  "Inference precision (auto: bfloat16 on CPUs with AMX-BF16, float32 elsewhere).")
flags.DEFINE_integer("size", scores.DEFAULT_SIZE, "Side of the procedural scenes in pixels.")
flags.DEFINE_integer("variants", scores.DEFAULT_VARIANTS, "Seeded variants per scene kind.")
flags.DEFINE_integer("seed", scores.DEFAULT_SEED, "Scene seed.")
flags.DEFINE_integer("max_side", scores.DEFAULT_MAX_SIDE, "Photos with a longer side are "
                     "downscaled to it.")


def write_images(folder: Path, label: str, worst: list) -> list[str]:
    """Writes each worst input's panels side by side as a PNG; returns the file names."""
    from kpac_tf.images import codec as kio

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for item in worst:
        stem = scores.weights_label(f"{label}__{item.set}__{item.group}__{item.name.split(' ')[0]}")
        kio.write_image(folder / f"{stem}.png", np.concatenate(item.panels, axis=1))
        names.append(f"{stem}.png")
    return names


def write_report(out: Path, results: dict, benchmark, lines: list[str], command: str) -> None:
    """soft_content.md, soft_content.json and images/ in ``out``."""
    from kpac_tf import files as kio

    out.mkdir(parents=True, exist_ok=True)
    images = {}
    for index, (weights, result) in enumerate(results.items()):
        label = f"{index}-{scores.weights_label(weights)}"
        images[weights] = write_images(out / "images", label, result.worst)
    report = ["# Soft-content benchmark", "", benchmark.describe() + ".", "", *lines, "",
              "Worst input of every group (input | result | difference x8, or input | result "
              "| sharp truth for the partly defocused scenes): " +
              ", ".join(f"`images/{n}`" for names in images.values() for n in names), "",
              f"Reproduce: `{command}`", ""]
    kio.atomic_write(out / "soft_content.md", "\n".join(report))
    payload = {"benchmark": benchmark.settings, "command": command,
               "weights": {w: {"summary": r.summary, "inputs": r.records, "images": images[w]}
                           for w, r in results.items()}}
    kio.atomic_write(out / "soft_content.json", json.dumps(scores.jsonable(payload), indent=1) + "\n")


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not FLAGS.weights:
        raise runner.usage_error("--weights names no weights.")
    runner.import_tensorflow()
    started = time.time()
    try:
        benchmark = scores.build_benchmark(size=FLAGS.size, variants=FLAGS.variants, seed=FLAGS.seed,
                                           natural=FLAGS.natural, max_side=FLAGS.max_side)
    except (ValueError, OSError) as error:
        runner.error(str(error))
        return runner.EXIT_FAILED
    print(f"{benchmark.describe()} ({time.time() - started:.0f} s)")
    results = {}
    for weights in FLAGS.weights:
        try:
            results[weights] = scores.score_weights(weights, benchmark, FLAGS.precision,
                                                    keep_images=bool(FLAGS.out))
        except (ValueError, OSError) as error:
            runner.error(f"--weights={weights}: {error}")
            return runner.EXIT_FAILED
        summary = results[weights].summary
        print(f"{weights}: {summary['seconds']:.0f} s, {summary['precision']}")
    lines = scores.markdown({w: r.summary for w, r in results.items()})
    print("\n" + "\n".join(lines))
    command = shlex.join(["python", "experiments/quality/soft_content_benchmark.py", *sys.argv[1:]])
    if FLAGS.out:
        write_report(Path(FLAGS.out), results, benchmark, lines, command)
        print(f"\nReport in {FLAGS.out}/soft_content.md")
    print(f"({time.time() - started:.0f} s in all)")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("soft_content_benchmark.py", main)
