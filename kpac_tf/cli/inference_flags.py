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

#: The smallest tile side (kpac_tf.inference.MIN_TILE; not imported: it loads TensorFlow).
MIN_TILE = 64

# Values that cannot work are refused while the flags are parsed, before any work, in
# words about the flag as typed (absl prefixes "flag --NAME=VALUE: "). Whether tiles,
# overlap and memory budget fit together is checked with the model (kpac_tf.inference).
flags.register_validator("tile", lambda value: value is None or value >= MIN_TILE,
                         f"tiles must be at least {MIN_TILE} px (leave --tile out to size them "
                         "from --memory_budget).")
flags.register_validator("overlap", lambda value: value is not None and value >= 0,
                         "the overlap between tiles must be 0 px or more.")
flags.register_validator("max_pixels", lambda value: value is None or value >= 1,
                         "the largest image read must be at least 1 pixel (default: 250 million).")


def make_deblurrer(model):
    """A Deblurrer for ``model`` configured by --tile, --overlap, --memory_budget,
    --ensemble, --precision; sets the reading limit from --max_pixels."""
    from kpac_tf.images import codec
    from kpac_tf.inference import Deblurrer

    if FLAGS.max_pixels is not None:
        codec.MAX_PIXELS = int(FLAGS.max_pixels)
    return Deblurrer(
        model, tile_size=FLAGS.tile, overlap=FLAGS.overlap,
        memory_budget_mb=FLAGS.memory_budget, ensemble=FLAGS.ensemble, precision=FLAGS.precision,
    )
