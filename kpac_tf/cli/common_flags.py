"""Flags shared by the commands that run a model (kpac-deblur, kpac-eval, kpac-demo, ...).

Defined once here so that every command spells and documents them the same way, and
so that several commands can live in one process (absl refuses a flag defined twice).
Defaults that differ per command are applied by the command (``FLAGS.x or default``).
"""
from __future__ import annotations

from absl import flags

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "weights", None,
    "Model weights: a preset name (its bundled weights, e.g. kpac-3level), a project "
    "*.weights.npz file, or the authors' npz.",
)
flags.DEFINE_string(
    "preset", None,
    "Model architecture: kpac-2level, kpac-3level or kpac-dual (default: from the weights).",
)
flags.DEFINE_enum(
    "bit_depth", "8", ["8", "16"],
    "Image precision: 8 (the paper and the published DPDD protocol) or 16 (DPDD's files; "
    "scores about 0.6 dB higher).",
)
flags.DEFINE_string("output_dir", None, "Folder for the results (created if missing).")
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
