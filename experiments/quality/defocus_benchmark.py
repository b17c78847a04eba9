"""Synthetic defocus of all-in-focus photographs, scored with the oracle radius maps.

    python experiments/quality/defocus_benchmark.py --photos=data/photos --split=val \
        --weights=kpac-3level,runs/photos/model.weights.npz

Renders (once, into --benchmark_dir/SPLIT) one pair per photograph of the fetched photo
folder's SPLIT (``val``: the validation photos that choose what gets bundled;
``heldout``: the held-out benchmark, never used to choose anything) plus
--skimage_pairs pairs of scikit-image's held-out photos per photo (scored apart), as
whole images: layered thin-lens defocus up to a 16 px radius, the focus plane and the
depth drawn as for training, noise 0.5-2/255, 16-bit PNG with the radius maps.

Each weights file then deblurs every pair in this process, and the script prints, per
photo set, the mean over pairs of: PSNR of the input and of the output, the PSNR gain,
the gain on the pixels whose oracle blur radius is >= 1 px (defocused) and on those
below 1 px (in focus), SSIM, and the worst pair's gain, then the gain by oracle blur
radius (0-1, 1-2, 2-4, 4-8 and 8+ px). ``--stamps=DIR --stamp_pairs=N`` adds N pairs of
the split's photos with one to three photographic stamps of the same split pasted over
them as near layers (objects with their own shading, in focus or not; set "stamps"), a
wider guard of in-focus natural content than a few photos. ``--group_by=focus`` splits
each photo set by the focus label of the source photos (a photo holding real bokeh is
not held to the in-focus figure: sharpening its background is the job),
``--group_by=photo`` by source photo. With several weights it also prints each one's
PSNR difference from the first, pair by pair: the mean, its standard
error and their ratio t (how far the difference stands above the pair-to-pair noise).
Protocol: 8-bit, outputs clipped, PSNR over all pixels and channels, SSIM =
scikit-image defaults.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from absl import flags

import defocus_scores
from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("photos", None, "Photo folder from python -m kpac_tf.tools.fetch_training_photos.")
flags.DEFINE_enum("split", "heldout", ["val", "heldout"], "Which photos of the folder.")
flags.DEFINE_string("benchmark_dir", "defocus_benchmark", "Where the pairs are written (once).")
flags.DEFINE_list("weights", ["kpac-3level"], "Weights to score (presets or files).")
flags.DEFINE_integer("skimage_pairs", 2, "Pairs per held-out scikit-image photo (0: none).")
flags.DEFINE_integer("pairs_per_photo", 1, "Pairs per photo of the folder's split (different "
                     "crops and defocus; for a split of few photos; 0: none, with --stamps "
                     "the photos only carry the stamps).")
flags.DEFINE_string("stamps", None, "A stamp folder (DIR/stamps of fetch_training_photos "
                    "--natural_out=DIR): --stamp_pairs pairs of the split's photos with "
                    "stamps of the same split pasted over them, scored as the set 'stamps'.")
flags.DEFINE_integer("stamp_pairs", 0, "Pairs with pasted stamps (needs --photos and --stamps).")
flags.DEFINE_integer("seed", 11, "Render seed.")
flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")
flags.DEFINE_enum("group_by", "set", defocus_scores.GROUPINGS,
                  "Rows per photo set; per set and focus label of the source photo (sharp "
                  "across the frame, real bokeh, unknown); or per source photo.")


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    started = time.time()
    try:
        results = defocus_scores.run_benchmark(FLAGS.photos, FLAGS.split, FLAGS.benchmark_dir,
                                               FLAGS.weights, FLAGS.skimage_pairs, FLAGS.seed,
                                               FLAGS.pairs_per_photo, FLAGS.group_by,
                                               FLAGS.stamps, FLAGS.stamp_pairs)
    except (ValueError, FileNotFoundError) as error:
        runner.error(str(error))
        return runner.EXIT_FAILED
    print("\n".join(defocus_scores.markdown(results)))
    print(f"({FLAGS.split} split, seed {FLAGS.seed}, {time.time() - started:.0f} s)")
    if FLAGS.json:
        Path(FLAGS.json).write_text(json.dumps(results, indent=1, sort_keys=True))
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("defocus_benchmark.py", main)
