"""python -m kpac_tf.tools.fetch_training_photos: fetch all-in-focus training photographs
from Debian's game-texture packages, or natural photographs.

usage: python -m kpac_tf.tools.fetch_training_photos (--out=DIR | --natural_out=DIR) [flags]

    python -m kpac_tf.tools.fetch_training_photos --out=data/photos
    python -m kpac_tf.tools.fetch_training_photos --out=data/photos \\
        --packages=ufoai-textures,nexuiz-textures

Downloads each package with ``apt-get download`` (no root needed), unpacks it and the
``.pk3`` archives inside, keeps colour photographs of at least --min_side pixels (no
normal, bump, gloss, specular, glow, height or alpha maps, no near-uniform images, no
exact duplicates) and splits them by a stable hash of the file name into
``OUT/train``, ``OUT/val`` (validation scenes of training runs, --val_percent) and
``OUT/heldout`` (the held-out benchmark, --heldout_percent). ``OUT/manifest.json`` keeps the
counts. Train with ``kpac-train --data=synthetic:photos=OUT/train``, or render a pool of
them first (``python -m kpac_tf.tools.render_pool --kinds=photos=OUT``). The photos are
never committed: this tool is how they are obtained.

    python -m kpac_tf.tools.fetch_training_photos --natural_out=data/natural_photos

fetches the natural photographs instead (``opencv-doc``'s sample photos and the
photographic stamps of ``tuxpaint-stamps-default``, see
:mod:`kpac_tf.data.natural_photos`): ``OUT/{train,val,heldout}`` photos, split by group,
``OUT/stamps/{train,val,heldout}`` RGBA stamps, and their focus labels in the manifest.

Exit status: 0 fetched; 1 a package could not be fetched or unpacked; 2 nothing done
(usage error, unknown package).
"""
from __future__ import annotations

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Destination folder (train/, val/, heldout/, manifest.json).",
                    allow_override=True)
flags.DEFINE_string("natural_out", None, "Fetch the natural photos and stamps into this folder "
                    "instead of the texture packages.")
flags.DEFINE_list("packages", ["ufoai-textures"], "Debian packages to take photographs from.")
flags.DEFINE_string("deb", None, "Use this already downloaded .deb (one package only).")
flags.DEFINE_integer("min_side", 256, "Smallest accepted side, pixels.")
flags.DEFINE_integer("val_percent", 5, "Share of names kept for training-time validation.")
flags.DEFINE_integer("heldout_percent", 5, "Share of names kept for the held-out benchmark.")


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not (FLAGS.out or FLAGS.natural_out):
        raise runner.usage_error("--out or --natural_out is required.")
    runner.import_tensorflow()
    if FLAGS.natural_out:
        return fetch_natural(FLAGS.natural_out)
    return fetch_textures(FLAGS.out)


def fetch_textures(out_dir: str) -> int:
    """The texture photographs of --packages (or --deb) into ``out_dir``; prints the counts."""
    from kpac_tf.data import texture_photos as tp

    unknown = [p for p in FLAGS.packages if p not in tp.PACKAGES]
    if unknown:
        raise runner.usage_error(f"{', '.join(unknown)}: not one of {', '.join(tp.PACKAGES)}.")
    debs = None
    if FLAGS.deb:
        if len(FLAGS.packages) != 1:
            raise runner.usage_error("--deb goes with exactly one --packages name.")
        debs = {FLAGS.packages[0]: FLAGS.deb}
    rules = tp.PhotoFilter(min_side=FLAGS.min_side, val_percent=FLAGS.val_percent,
                          heldout_percent=FLAGS.heldout_percent)
    try:
        manifest = tp.build_photo_folder(out_dir, FLAGS.packages, rules=rules, debs=debs)
    except (RuntimeError, OSError, ValueError) as error:
        raise runner.CommandError(str(error), runner.EXIT_FAILED) from None
    for package, counts in manifest["packages"].items():
        print(f"{package}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    counts = manifest["counts"]
    print(f"photos: train {counts['train']}, val {counts['val']}, heldout {counts['heldout']} "
          f"-> {out_dir}")
    return runner.EXIT_OK


def fetch_natural(out_dir: str) -> int:
    """The natural photographs and stamps into ``out_dir``; prints the counts."""
    from kpac_tf.data import natural_photos

    try:
        manifest = natural_photos.build_natural_folder(out_dir)
    except (RuntimeError, OSError, ValueError) as error:
        raise runner.CommandError(str(error), runner.EXIT_FAILED) from None
    counts, stamps = manifest["counts"], manifest["stamps"]
    print(f"photos: train {counts['train']}, val {counts['val']}, heldout {counts['heldout']}; "
          f"stamps: train {stamps.get('train', 0)}, val {stamps.get('val', 0)}, "
          f"heldout {stamps.get('heldout', 0)} ({stamps['drawing']} drawings left out) "
          f"-> {out_dir}")
    return runner.EXIT_OK


def run() -> None:
    """Entry point of ``python -m kpac_tf.tools.fetch_training_photos``."""
    runner.run_command("python -m kpac_tf.tools.fetch_training_photos", main)


if __name__ == "__main__":
    run()
