"""--tile, --overlap, --memory_budget, --ensemble: how a model runs on whole photos
(kpac-deblur, kpac-eval). See model_flags.py for how flag groups work."""
from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_integer("tile", None, "Tile side in pixels (default: chosen from --memory_budget).")
flags.DEFINE_integer("overlap", 128, "Overlap between tiles in pixels.")
flags.DEFINE_float("memory_budget", 512, "Memory for one forward pass, in MB (sets the tile size).")
flags.DEFINE_boolean("ensemble", False, "Average the 8 flips/rotations (8x slower, slightly better).")


def make_deblurrer(model):
    """A Deblurrer for ``model`` configured by --tile, --overlap, --memory_budget, --ensemble."""
    from kpac_tf.inference import Deblurrer

    return Deblurrer(
        model, tile_size=FLAGS.tile, overlap=FLAGS.overlap,
        memory_budget_mb=FLAGS.memory_budget, ensemble=FLAGS.ensemble,
    )
