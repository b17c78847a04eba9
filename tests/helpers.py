"""Helpers shared by test modules: the tiny model, data and training settings, and the
kpac-* commands run in the test process (their flags, output and exit status)."""
from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: Module of each command under kpac_tf.cli, and the name it runs as.
COMMANDS = {"deblur": "kpac-deblur", "demo": "kpac-demo", "evaluate": "kpac-eval",
            "export": "kpac-export", "train": "kpac-train"}
#: kpac-train flags of a tiny, quick run (a 1-block 2-level model on 32 px dead-leaves crops).
TINY_TRAIN_FLAGS = [
    "--data=synthetic:deadleaves", "--crop=32", "--val_data=none", "--preset=kpac-2level",
    "--num_blocks=1", "--dilations=1,2", "--batch_size=2", "--lr=1e-3", "--checkpoint_every=2",
    "--summary_every=0", "--image_summary_every=0", "--eval_every=0", "--progress=false",
]
#: kpac-train flags of the shared tiny run: 4 steps, checkpoints at 2 and 4, one
#: validation (3 scenes of 48 px) at step 4 written to its TensorBoard events.
TINY_RUN_FLAGS = [
    "--data=synthetic:deadleaves", "--crop=32", "--val_crop=48", "--val_images=3",
    "--preset=kpac-2level", "--num_blocks=1", "--dilations=1,2", "--batch_size=2", "--lr=5e-3",
    "--steps=4", "--checkpoint_every=2", "--eval_every=4", "--summary_every=0",
    "--image_summary_every=0", "--progress=false", "--data_seed=7", "--nomixed_precision",
]


def tiny_model():
    """A 1-block 2-level KPAC with two dilation rates: the smallest model that trains."""
    from kpac_tf.model import builder

    return builder.build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))


def tiny_data(crop: int = 32, seed: int = 0, nan_at_step: int | None = None, val_images: int = 2):
    """Synthetic dead-leaves training data with a few validation scenes."""
    from kpac_tf.data import pipeline
    from kpac_tf.train.config import TrainData

    sources = pipeline.resolve_data("synthetic:deadleaves", crop=crop, val_images=val_images, seed=seed)
    return TrainData(
        train=sources.train, val=sources.val, val_crop=crop, description="synthetic:deadleaves",
        pipeline=pipeline.PipelineConfig(crop=crop, flip_rot=True, seed=seed, nan_at_step=nan_at_step),
    )


def quiet_config(**kwargs: Any):
    """A TrainConfig with batch 2 and no summaries, evaluations or checkpoints unless asked."""
    from kpac_tf.train.config import TrainConfig

    defaults = dict(batch_size=2, learning_rate=1e-3, checkpoint_every=1000, summary_every=0,
                    image_summary_every=0, eval_every=0)
    defaults.update(kwargs)
    return TrainConfig(**defaults)


@dataclasses.dataclass
class CommandResult:
    """What a command run in the test process gave: exit status and its printed text."""

    returncode: int
    stdout: str
    stderr: str


class InProcessCommands:
    """Runs kpac-* commands in the test process as their console scripts would: absl flag
    parsing with one-line flag errors and --help, quiet logging, ``main`` and its exit code.

    ``capsys`` (pytest's) captures what the command prints; ``monkeypatch`` restores the
    working directory, environment, ``sys.argv`` and the log stream afterwards. Signal
    handlers and the Keras dtype policy a command sets are put back after each run.
    """

    def __init__(self, capsys, monkeypatch):
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, name: str, *args: str, cwd: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None) -> CommandResult:
        """Run ``kpac_tf.cli.<name>`` with ``args``; returns its status, stdout and stderr."""
        import logging

        from absl import logging as absl_logging

        program = COMMANDS[name]
        self.capsys.readouterr()  # drop what came before
        if cwd is not None:
            self.monkeypatch.chdir(cwd)
        for key, value in (env or {}).items():
            self.monkeypatch.setenv(key, value)
        self.monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        self.monkeypatch.setattr(sys, "argv", [program, *args])
        # absl's handler (as app.run sets it up) writes log lines to the captured stderr.
        absl_handler = absl_logging.get_absl_handler()
        self.monkeypatch.setattr(absl_handler.python_handler, "stream", sys.stderr)
        added = absl_handler not in logging.root.handlers
        if added:
            logging.root.addHandler(absl_handler)
        try:
            code = run_command_in_process(name, *args)
        finally:
            if added:
                logging.root.removeHandler(absl_handler)
        out, err = self.capsys.readouterr()
        return CommandResult(code, out, err)


def run_command_in_process(name: str, *args: str) -> int:
    """``kpac_tf.cli.<name>`` with ``args`` in this process, as its console script runs it
    (flag parsing, --help, quiet logging, ``main``); its exit status. Signal handlers,
    the Keras dtype policy and the parsed flags are put back afterwards."""
    import keras
    from absl import flags

    from kpac_tf.cli import runner

    module = importlib.import_module(f"kpac_tf.cli.{name}")
    program = COMMANDS[name]
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    policy = keras.mixed_precision.global_policy().name
    runner._state["name"] = program
    flags.FLAGS.unparse_flags()
    try:
        remaining = runner._parse(module, [program, *args])
        code = runner.call_main(program, module.main, remaining)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        keras.mixed_precision.set_global_policy(policy)
        flags.FLAGS.unparse_flags()
    return int(code)
