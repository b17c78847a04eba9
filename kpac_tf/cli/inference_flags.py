"""--tile, --overlap, --memory_budget, --ensemble, --precision, --max_pixels: how a model
runs on whole photos (kpac-deblur, kpac-eval). See model_flags.py for how flag groups
work."""
from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_integer("tile", None, "Tile side in pixels (default: chosen from --memory_budget).")
flags.DEFINE_integer("overlap", 128, "Overlap between tiles in pixels.")
flags.DEFINE_float("memory_budget", 512, "Memory for one forward pass, in MB (sets the tile size).")
flags.DEFINE_boolean("ensemble", False, "Average the 8 flips/rotations (8x slower, slightly better).")
flags.DEFINE_enum("precision", "auto", ["auto", "float32", "bfloat16"],
                  "auto: bfloat16 on CPUs with AMX-BF16 (about 2-3x faster), float32 elsewhere.",
                  allow_override=True)
flags.DEFINE_integer("max_pixels", None, "Largest image read, in pixels (default: 250 million); "
                     "larger files are refused as too large. Raise it on a machine with the "
                     "memory.", allow_override=True)


def make_deblurrer(model):
    """A Deblurrer for ``model`` configured by --tile, --overlap, --memory_budget,
    --ensemble, --precision; sets the reading limit from --max_pixels."""
    from kpac_tf import io as kio
    from kpac_tf.inference import Deblurrer

    if FLAGS.max_pixels is not None:
        kio.MAX_PIXELS = int(FLAGS.max_pixels)
    return Deblurrer(
        model, tile_size=FLAGS.tile, overlap=FLAGS.overlap,
        memory_budget_mb=FLAGS.memory_budget, ensemble=FLAGS.ensemble, precision=FLAGS.precision,
    )
