"""python -m kpac_tf.tools.export_skimage_photos: write scikit-image's training photographs
as a photo folder with a validation split.

usage: python -m kpac_tf.tools.export_skimage_photos --out=DIR [--val=NAME,...]

    python -m kpac_tf.tools.export_skimage_photos --out=data/natural

The scikit-image training list (``kpac_tf.data.photos.SKIMAGE_TRAIN_SAMPLES``: natural
photos with shading, sky and smoke gradients, plus microscopy and sky images) is the
only allowed source of natural scenes whose in-focus content is soft by nature. This
tool writes it in the layout of ``python -m kpac_tf.tools.fetch_training_photos``, so
that the same tools take it:

* ``OUT/train/NAME.png``: the photos to train on (render a pool of them with
  ``python -m kpac_tf.tools.render_pool --kinds=photos=OUT``);
* ``OUT/val/NAME.png``: the --val photos, kept out of training: a guard on natural soft
  content that never touches the held-out photos (the project's defocus benchmark
  scores them with ``--photos=OUT --split=val``);
* ``OUT/manifest.json``: which photo went where.

8-bit sRGB PNG (grey photos as three equal channels). Nothing is fetched: the photos
ship with scikit-image.

Exit status: 0 written; 1 the photos could not be written; 2 nothing done (usage error,
a bad --val list).
"""
from __future__ import annotations

import os

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Destination folder (train/, val/, manifest.json).",
                    allow_override=True)
flags.DEFINE_list("val", ["rocket", "moon", "cell"],
                  "Photos of the scikit-image training list kept for validation.")


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not FLAGS.out:
        raise runner.usage_error("--out is required (the photo folder).")
    runner.import_tensorflow()
    try:
        check_val(FLAGS.val)
    except ValueError as error:
        raise runner.setup_error(str(error)) from None
    try:
        manifest = export_photos(FLAGS.out, FLAGS.val)
    except (ValueError, OSError) as error:
        raise runner.CommandError(str(error), runner.EXIT_FAILED) from None
    print(f"train {len(manifest['train'])} ({', '.join(manifest['train'])}), "
          f"val {len(manifest['val'])} ({', '.join(manifest['val'])}) -> {FLAGS.out}")
    return runner.EXIT_OK


def export_photos(out_dir: str, val: list[str]) -> dict:
    """Writes every photo of the scikit-image training list into ``out_dir``/train or
    ``out_dir``/val (the names in ``val``) and returns the manifest it writes; ValueError
    (nothing written) for a bad ``val`` list."""
    from kpac_tf.data.photos import SKIMAGE_TRAIN_SAMPLES, load_skimage_sample
    from kpac_tf.files import write_json
    from kpac_tf.images import codec

    check_val(val)
    manifest = {"source": "scikit-image training list", "train": [], "val": []}
    for name in SKIMAGE_TRAIN_SAMPLES:
        split = "val" if name in val else "train"
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        rgb, _ = load_skimage_sample(name)
        codec.write_image(os.path.join(out_dir, split, f"{name}.png"), rgb, bit_depth=8)
        manifest[split].append(name)
    write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest


def check_val(val: list[str]) -> None:
    """ValueError unless ``val`` names photos of the training list and leaves one to train on."""
    from kpac_tf.data.photos import SKIMAGE_TRAIN_SAMPLES

    unknown = sorted(set(val) - set(SKIMAGE_TRAIN_SAMPLES))
    if unknown:
        raise ValueError(f"--val: {', '.join(unknown)} not in the scikit-image training list "
                         f"({', '.join(SKIMAGE_TRAIN_SAMPLES)}).")
    if len(set(val)) == len(SKIMAGE_TRAIN_SAMPLES):
        raise ValueError("--val names every photo; keep at least one for training.")


def run() -> None:
    """Entry point of ``python -m kpac_tf.tools.export_skimage_photos``."""
    runner.run_command("python -m kpac_tf.tools.export_skimage_photos", main)


if __name__ == "__main__":
    run()
