"""python -m kpac_tf.tools.average_weights: average the weights of several checkpoints or
weight files of one model.

usage: python -m kpac_tf.tools.average_weights --out=FILE (--weights=A,B,... | --run=DIR
       --checkpoint_steps=SPEC) [flags]

    python -m kpac_tf.tools.average_weights --out=runs/s7/average.weights.npz \\
        --weights=runs/s7/checkpoints/ckpt-28000,runs/s7/checkpoints/ckpt-29000,runs/s7/model.weights.npz
    python -m kpac_tf.tools.average_weights --out=avg.weights.npz \\
        --run=runs/s7 --checkpoint_steps=26000:30000:1000

Checkpoint averaging, as in stochastic weight averaging: the element-wise mean of the
model's arrays over points of one run's late trajectory can score a little above any
one of them (measure it; it is not a given). Sources are anything ``--weights`` takes
(presets, ``*.weights.npz``, the authors' npz) and kpac-train checkpoint prefixes
(``WORKDIR/checkpoints/ckpt-N``, whose model the run's ``train_record.json`` names,
else --preset). A kpac-train run keeps only its last few checkpoints
(--keep_checkpoints), so copy aside the ones to average while it runs (then give
--checkpoint_dir). The result is a project weights file, written atomically; score it
as any other (``kpac-eval --weights=FILE ...``).

Exit status: 0 written; 1 a source could not be read or averaged, or the output would
replace a source (nothing written); 2 usage error.
"""
from __future__ import annotations

from pathlib import Path

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_list("weights", [], "Sources to average: presets, weights files or checkpoint prefixes.")
flags.DEFINE_string("run", None, "A kpac-train work directory whose checkpoints --checkpoint_steps names.")
flags.DEFINE_string("checkpoint_steps", None, "Steps of --run's checkpoints to average: "
                    "FIRST:LAST:EVERY (both ends included) or a comma list.")
flags.DEFINE_string("checkpoint_dir", None, "Where --run's checkpoints are (default: RUN/checkpoints).")
flags.DEFINE_string("preset", None, "Model of the sources (default: the first source's own, "
                    "or for a checkpoint the model its run's train_record.json names).",
                    allow_override=True)
flags.DEFINE_string("out", None, "Output weights file (*.weights.npz).", allow_override=True)


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    if not FLAGS.out:
        raise runner.usage_error("--out is required (the averaged *.weights.npz).")
    runner.import_tensorflow()
    from kpac_tf.model import weights

    try:
        names = sources()
        if Path(FLAGS.out).resolve() in {Path(name).resolve() for name in names}:
            raise ValueError(f"{FLAGS.out} is also a source; write the average elsewhere.")
        model = weights.average_weights(names, FLAGS.preset)
        path = weights.save_weights(model, FLAGS.out)
    except (ValueError, OSError) as error:
        raise runner.CommandError(str(error), runner.EXIT_FAILED) from None
    print(f"averaged {len(names)} sources into {path}")
    return runner.EXIT_OK


def sources() -> list[str]:
    """--weights, then --run's checkpoints at --checkpoint_steps."""
    found = list(FLAGS.weights)
    if FLAGS.checkpoint_steps:
        if not (FLAGS.run or FLAGS.checkpoint_dir):
            raise ValueError("--checkpoint_steps needs --run (the work directory) or --checkpoint_dir.")
        folder = Path(FLAGS.checkpoint_dir or Path(FLAGS.run) / "checkpoints")
        found += [str(folder / f"ckpt-{step}") for step in checkpoint_steps(FLAGS.checkpoint_steps)]
    return found


def checkpoint_steps(spec: str) -> list[int]:
    """Steps named by ``spec``: "FIRST:LAST:EVERY" (both ends included) or "A,B,C"."""
    try:
        if ":" in spec:
            first, last, every = (int(part) for part in spec.split(":"))
            if every <= 0 or last < first:
                raise ValueError
            return list(range(first, last + 1, every))
        return [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--checkpoint_steps={spec!r}: expected FIRST:LAST:EVERY "
                         "(FIRST <= LAST, EVERY > 0) or a comma list of steps.") from None


def run() -> None:
    """Entry point of ``python -m kpac_tf.tools.average_weights``."""
    runner.run_command("python -m kpac_tf.tools.average_weights", main)


if __name__ == "__main__":
    run()
