"""Render a pool of synthetic defocus pairs for fast training (kpac_tf.data.pool).

    python experiments/render_pool.py --out=pools/photos384 --count=3000 --size=384 \
        --kinds=photos=data/photos,skimage,deadleaves --dead_leaves_fraction=0.15 \
        --synthetic_options=max_radius=1:16,sharp_probability=0.1 --workers=2

Then ``kpac-train --data=pool:pools/photos384 --crop=256 --flip_rot ...`` takes random
crops, flips and rotations of the pooled pairs instead of rendering every sample, so
the input pipeline costs a fraction of a training step. Rerunning the command with a
larger --count adds pairs; an interrupted render continues where it stopped.
"""
from __future__ import annotations

import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Pool folder.")
flags.DEFINE_integer("count", 2000, "Number of pairs the pool should hold.")
flags.DEFINE_integer("size", 384, "Side of every rendered pair (larger than the training crop).")
flags.DEFINE_list("kinds", ["deadleaves", "skimage"],
                  "Scene kinds: deadleaves, skimage, photos=DIR (a fetched photo folder), folders.")
flags.DEFINE_float("dead_leaves_fraction", 0.2, "Share of dead-leaves scenes when mixed with photos.")
flags.DEFINE_list("synthetic_options", [], "Renderer fields NAME=VALUE (ranges LOW:HIGH).")
flags.DEFINE_integer("seed", 0, "Stream seed.")
flags.DEFINE_integer("workers", 2, "Render processes.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out:
        raise app.UsageError("--out is required.")
    from kpac_tf.data import pool
    from kpac_tf.data.pairs import synthetic_config_from_overrides

    started = time.time()
    try:
        config = synthetic_config_from_overrides(FLAGS.synthetic_options)
        record = pool.render_pool(FLAGS.out, FLAGS.count, kinds=FLAGS.kinds, size=FLAGS.size,
                                  dead_leaves_fraction=FLAGS.dead_leaves_fraction, config=config,
                                  seed=FLAGS.seed, workers=FLAGS.workers)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"pool {FLAGS.out}: {record['count']} pairs of {record['size']}x{record['size']} "
          f"({record['photo_count']} photos) in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    app.run(main)
