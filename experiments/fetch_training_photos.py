"""Fetch all-in-focus training photographs from Debian's game-texture packages.

    python experiments/fetch_training_photos.py --out=data/photos
    python experiments/fetch_training_photos.py --out=data/photos \
        --packages=ufoai-textures,nexuiz-textures

Downloads each package with ``apt-get download`` (no root needed), unpacks it and the
``.pk3`` archives inside, keeps colour photographs of at least --min_side pixels (no
normal, bump, gloss, specular, glow, height or alpha maps, no near-uniform images, no
exact duplicates) and splits them by a stable hash of the file name into
``OUT/train``, ``OUT/val`` (validation scenes of training runs, --val_percent) and
``OUT/heldout`` (the held-out benchmark, --heldout_percent). ``OUT/manifest.json`` keeps the
counts. Train with ``kpac-train --data=synthetic:photos=OUT/train`` (see the README).
The photos are never committed: this script is how they are obtained.

    python experiments/fetch_training_photos.py --natural_out=data/natural_photos

fetches the natural photographs instead (``opencv-doc``'s sample photos and the
photographic stamps of ``tuxpaint-stamps-default``, see
:mod:`kpac_tf.data.natural_photos`): ``OUT/{train,val,heldout}`` photos, split by group,
``OUT/stamps/{train,val,heldout}`` RGBA stamps, and their focus labels in the manifest.
"""
from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Destination folder (train/, heldout/, manifest.json).")
flags.DEFINE_string("natural_out", None, "Fetch the natural photos and stamps into this folder "
                    "instead of the texture packages.")
flags.DEFINE_list("packages", ["ufoai-textures"], "Debian packages to take photographs from.")
flags.DEFINE_string("deb", None, "Use this already downloaded .deb (one package only).")
flags.DEFINE_integer("min_side", 256, "Smallest accepted side, pixels.")
flags.DEFINE_integer("val_percent", 5, "Share of names kept for training-time validation.")
flags.DEFINE_integer("heldout_percent", 5, "Share of names kept for the held-out benchmark.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.natural_out:
        return _fetch_natural(FLAGS.natural_out)
    if not FLAGS.out:
        raise app.UsageError("--out or --natural_out is required.")
    from kpac_tf.data import texture_photos as tp

    unknown = [p for p in FLAGS.packages if p not in tp.PACKAGES]
    if unknown:
        print(f"error: {', '.join(unknown)}: not one of {', '.join(tp.PACKAGES)}.", file=sys.stderr)
        return 2
    debs = None
    if FLAGS.deb:
        if len(FLAGS.packages) != 1:
            raise app.UsageError("--deb goes with exactly one --packages name.")
        debs = {FLAGS.packages[0]: FLAGS.deb}
    rules = tp.PhotoFilter(min_side=FLAGS.min_side, val_percent=FLAGS.val_percent,
                          heldout_percent=FLAGS.heldout_percent)
    try:
        manifest = tp.build_photo_folder(FLAGS.out, FLAGS.packages, rules=rules, debs=debs)
    except (RuntimeError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for package, counts in manifest["packages"].items():
        print(f"{package}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    counts = manifest["counts"]
    print(f"photos: train {counts['train']}, val {counts['val']}, heldout {counts['heldout']} "
          f"-> {FLAGS.out}")
    return 0


def _fetch_natural(out_dir: str) -> int:
    from kpac_tf.data import natural_photos

    try:
        manifest = natural_photos.build_natural_folder(out_dir)
    except (RuntimeError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts, stamps = manifest["counts"], manifest["stamps"]
    print(f"photos: train {counts['train']}, val {counts['val']}, heldout {counts['heldout']}; "
          f"stamps: train {stamps.get('train', 0)}, val {stamps.get('val', 0)}, "
          f"heldout {stamps.get('heldout', 0)} ({stamps['drawing']} drawings left out) "
          f"-> {out_dir}")
    return 0


if __name__ == "__main__":
    app.run(main)
