"""--weights and --preset: which model a command runs (kpac-deblur, kpac-eval, kpac-demo,
kpac-export).

Flags that mean the same in several commands are defined once, in a small module per
group, so that several commands can live in one process (absl refuses a flag defined
twice). A command imports the groups it uses and adopts their flags as its own
(``flags.adopt_module_key_flags``), so its --help lists them; it never gets a flag it
does not use. Flags whose help or use differs per command (--output_dir,
--overwrite, --bit_depth, kpac-train's --preset) are defined by each command with
``allow_override=True`` and the same default.
"""
from __future__ import annotations

from absl import flags

DEFAULT_WEIGHTS = "kpac-3level"

flags.DEFINE_string(
    "weights", None,
    f"Model weights (default: {DEFAULT_WEIGHTS}): kpac-3level (the weights bundled with the "
    "package; no other preset ships weights), a *.weights.npz of your own (kpac-train), a "
    "kpac-train checkpoint (WORKDIR/checkpoints/ckpt-N), or an authors' file (single_2level.npz, single_3level.npz or dual.npz from "
    "github.com/HyeongseokSon1/KPAC, folder pretrained/).",
)
flags.DEFINE_string(
    "preset", None,
    "Model architecture for an authors' npz or a checkpoint: kpac-2level, kpac-3level or "
    "kpac-dual (default: guessed from the authors' file, or named by the checkpoint's run "
    "record; own files and presets know their own).",
)
