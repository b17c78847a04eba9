"""Scores a deblurrer inside and outside a column band of one benchmark photo.

A synthetic-defocus benchmark treats its source photograph as the sharp truth. When
that photo already has real, camera-made defocus (a shallow-depth-of-field
background), a deblurrer that removes it is penalised there. This script measures
how much: for every pair of a DPDD-layout benchmark whose ``synthetic.json`` names
the given source photo, it prints the PSNR of the input and of each weights'
output over the whole frame, inside a band of columns (e.g. the background) and
outside it, with the 8-bit protocol of ``kpac-eval``. It can also write a figure of
the band (input | output, 2x) for the first pair.

Usage:
  python experiments/region_check.py --benchmark_dir=heldout_benchmark \
      --photo=chelsea --columns=0.7:1 --weights=kpac-3level
  python experiments/region_check.py --benchmark_dir=heldout_benchmark_in_focus \
      --photo=chelsea --columns=0.7:1 --figure=chelsea_band.png
"""
from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags

from region_scores import band_slices, mean_gains, parse_band, photo_pairs, score_pairs

FLAGS = flags.FLAGS
flags.DEFINE_string("benchmark_dir", "heldout_benchmark", "DPDD-layout benchmark written by the "
                    "synthetic renderer (its split folder holds synthetic.json).")
flags.DEFINE_string("split", "test", "Benchmark split.")
flags.DEFINE_string("photo", "chelsea", "Source photo whose pairs are scored.")
flags.DEFINE_string("columns", "0.7:1", "Band of columns as fractions of the width, LOW:HIGH "
                    "in [0, 1].")
flags.DEFINE_list("weights", ["kpac-3level"], "KPAC weights to score (presets or files).")
flags.DEFINE_enum("bit_depth", "8", ["8", "16"], "Protocol bit depth.")
flags.DEFINE_string("figure", None, "Optional PNG: the band of the first pair, input | "
                    "output of the first weights, enlarged 2x.")


def main(argv):
    del argv
    try:
        band = parse_band(FLAGS.columns)
        root = Path(FLAGS.benchmark_dir)
        stems = photo_pairs(root, FLAGS.split, FLAGS.photo)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    import numpy as np

    from kpac_tf import io, weights
    from kpac_tf.inference import Deblurrer

    bit_depth = int(FLAGS.bit_depth)
    deblurrers = {spec: Deblurrer(weights.load_model(spec)) for spec in FLAGS.weights}
    print(f"{FLAGS.photo}: columns {band[0]:g}-{band[1]:g} of the width, {len(stems)} pairs, "
          f"PSNR (dB), {bit_depth}-bit protocol")
    print("| pair | image | whole frame | inside band | outside band |")
    print("|---|---|---:|---:|---:|")
    scores = []
    panel = []
    for stem, label, values, image in score_pairs(root / f"{FLAGS.split}_c", stems, band,
                                                 deblurrers, bit_depth):
        scores.append((stem, label, values))
        print(f"| {stem} | {label} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
        if FLAGS.figure and stem == stems[0] and len(panel) < 2:
            panel.append(np.clip(image[:, band_slices(image.shape[1], band)[0]], 0.0, 1.0))
    if panel:
        figure = np.concatenate(panel, axis=1)
        io.write_image(FLAGS.figure, np.repeat(np.repeat(figure, 2, axis=0), 2, axis=1), bit_depth=8)
        print(f"wrote {FLAGS.figure}")
    for label, (whole, inside, outside) in mean_gains(scores).items():
        print(f"mean gain of {label}: whole {whole:+.2f} dB, inside band {inside:+.2f} dB, "
              f"outside band {outside:+.2f} dB")
    return 0


if __name__ == "__main__":
    app.run(main)
