"""python -m kpac_tf.tools.render_pool: render a pool of synthetic defocus pairs for fast
training (kpac_tf.data.pool).

usage: python -m kpac_tf.tools.render_pool --out=DIR [flags]

    python -m kpac_tf.tools.render_pool --out=pools/photos384 --count=3000 --size=384 \\
        --kinds=photos=data/photos,skimage,deadleaves --dead_leaves_fraction=0.15 \\
        --synthetic_options=max_radius=1:16,sharp_probability=0.1 --workers=2

Then ``kpac-train --data=pool:pools/photos384 --crop=256 --flip_rot ...`` takes random
crops, flips and rotations of the pooled pairs instead of rendering every sample, so
the input pipeline costs a fraction of a training step. Rerunning the command with a
larger --count adds pairs; an interrupted render continues where it stopped. Photo
folders (``photos=DIR``) come from ``python -m kpac_tf.tools.fetch_training_photos``.

Exit status: 0 rendered; 2 nothing done (usage error, bad kinds or renderer options).
"""
from __future__ import annotations

import time

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Pool folder.", allow_override=True)
flags.DEFINE_integer("count", 2000, "Number of pairs the pool should hold.")
flags.DEFINE_integer("size", 384, "Side of every rendered pair (larger than the training crop).")
flags.DEFINE_list("kinds", ["deadleaves", "skimage"],
                  "Scene kinds: deadleaves, skimage, photos=DIR (a fetched photo folder), folders.")
flags.DEFINE_float("dead_leaves_fraction", 0.2, "Share of dead-leaves scenes when mixed with photos.")
flags.DEFINE_list("synthetic_options", [], "Renderer fields NAME=VALUE (ranges LOW:HIGH).",
                  allow_override=True)
flags.DEFINE_integer("seed", 0, "Stream seed.", allow_override=True)
flags.DEFINE_integer("workers", 2, "Render processes.")


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not FLAGS.out:
        raise runner.usage_error("--out is required (the pool folder).")
    runner.import_tensorflow()
    from kpac_tf.data import pool
    from kpac_tf.data.pairs import synthetic_config_from_overrides

    started = time.time()
    try:
        config = synthetic_config_from_overrides(FLAGS.synthetic_options)
        record = pool.render_pool(FLAGS.out, FLAGS.count, kinds=FLAGS.kinds, size=FLAGS.size,
                                  dead_leaves_fraction=FLAGS.dead_leaves_fraction, config=config,
                                  seed=FLAGS.seed, workers=FLAGS.workers)
    except ValueError as error:
        raise runner.setup_error(str(error)) from None
    print(f"pool {FLAGS.out}: {record['count']} pairs of {record['size']}x{record['size']} "
          f"({record['photo_count']} photos) in {time.time() - started:.0f} s")
    return runner.EXIT_OK


def run() -> None:
    """Entry point of ``python -m kpac_tf.tools.render_pool``."""
    runner.run_command("python -m kpac_tf.tools.render_pool", main)


if __name__ == "__main__":
    run()
