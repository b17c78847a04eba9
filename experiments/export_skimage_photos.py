"""Write scikit-image's training photographs as a photo folder with a validation split.

    python experiments/export_skimage_photos.py --out=data/natural

The scikit-image training list (``kpac_tf.data.photos.SKIMAGE_TRAIN_SAMPLES``: natural
photos with shading, sky and smoke gradients, plus microscopy and sky images) is the
only allowed source of natural scenes whose in-focus content is soft by nature. This
script writes it in the layout of experiments/fetch_training_photos.py, so that the same
tools take it:

* ``OUT/train/NAME.png``: the photos to train on (render a pool of them with
  ``render_pool.py --kinds=photos=OUT``);
* ``OUT/val/NAME.png``: the --val photos, kept out of training and scored by
  ``defocus_benchmark.py --photos=OUT --split=val --pairs_per_photo=N``, a guard on
  natural soft content that never touches the held-out photos;
* ``OUT/manifest.json``: which photo went where.

8-bit sRGB PNG (grey photos as three equal channels). Nothing is fetched: the photos
ship with scikit-image.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Destination folder (train/, val/, manifest.json).")
flags.DEFINE_list("val", ["rocket", "moon", "cell"],
                  "Photos of the scikit-image training list kept for validation.")


def export_photos(out_dir: str, val: list[str]) -> dict:
    """Writes every photo of the scikit-image training list into ``out_dir``/train or
    ``out_dir``/val (the names in ``val``) and returns the manifest it writes."""
    from kpac_tf import io as kio
    from kpac_tf.data.photos import SKIMAGE_TRAIN_SAMPLES, load_skimage_sample

    unknown = sorted(set(val) - set(SKIMAGE_TRAIN_SAMPLES))
    if unknown:
        raise ValueError(f"--val: {', '.join(unknown)} not in the scikit-image training list "
                         f"({', '.join(SKIMAGE_TRAIN_SAMPLES)}).")
    if len(set(val)) == len(SKIMAGE_TRAIN_SAMPLES):
        raise ValueError("--val names every photo; keep at least one for training.")
    manifest = {"source": "scikit-image training list", "train": [], "val": []}
    for name in SKIMAGE_TRAIN_SAMPLES:
        split = "val" if name in val else "train"
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        rgb, _ = load_skimage_sample(name)
        kio.write_image(os.path.join(out_dir, split, f"{name}.png"), rgb, bit_depth=8)
        manifest[split].append(name)
    kio.write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out:
        raise app.UsageError("--out is required.")
    try:
        manifest = export_photos(FLAGS.out, FLAGS.val)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"train {len(manifest['train'])} ({', '.join(manifest['train'])}), "
          f"val {len(manifest['val'])} ({', '.join(manifest['val'])}) -> {FLAGS.out}")
    return 0


if __name__ == "__main__":
    app.run(main)
