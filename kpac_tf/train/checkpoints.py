"""A training run's work directory: its paths, the checkpoints it resumes from, its record.

The layout (the chief writes it; other workers write throw-away checkpoints under
``worker_tmp/``, because saving is a collective operation)::

    WORKDIR/checkpoints/       tf.train.Checkpoint of model, optimizer, step, wall time
    WORKDIR/tensorboard/       summaries (:mod:`kpac_tf.train.reports`)
    WORKDIR/model.weights.npz  final weights (:data:`WEIGHTS_NAME`)
    WORKDIR/train_record.json  what was run (:data:`RECORD_NAME`), with every invocation
                               of the run in its "history"

Resuming takes the newest checkpoint whose every tensor reads
(:func:`newest_readable_checkpoint`): one cut short by a full disk or a broken copy, or
whose index is missing, is named in one warning and skipped; when none reads,
:class:`CheckpointsUnreadableError` names them all. :func:`restore` refuses, in one
message, a checkpoint that does not fit the model or optimizer.
"""
from __future__ import annotations

import json
import os
import re

import keras
import tensorflow as tf
from absl import logging

from kpac_tf.files import atomic_write, error_line
from kpac_tf.train import ema as kema

__all__ = [
    "CheckpointsUnreadableError",
    "RECORD_NAME",
    "WEIGHTS_NAME",
    "Workdir",
    "check_same_averaging",
    "history",
    "newest_readable_checkpoint",
    "read_record",
    "restore",
    "write_record",
]

WEIGHTS_NAME = "model.weights.npz"
RECORD_NAME = "train_record.json"


class CheckpointsUnreadableError(ValueError):
    """None of a run's checkpoints reads (each is named in the message); nothing was restored."""


class Workdir:
    """Paths of a run and the chief / non-chief split of what is written."""

    def __init__(self, workdir: str, chief: bool, task_id: int):
        self.root = workdir
        self.chief = chief
        self.checkpoints = os.path.join(workdir, "checkpoints")
        self.write_checkpoints = (
            self.checkpoints if chief else os.path.join(workdir, "worker_tmp", f"worker_{task_id}")
        )
        self.tensorboard = os.path.join(workdir, "tensorboard")
        self.weights = os.path.join(workdir, WEIGHTS_NAME)
        self.record = os.path.join(workdir, RECORD_NAME)

    def cleanup(self) -> None:
        """Removes a non-chief worker's throw-away checkpoints."""
        if not self.chief and tf.io.gfile.exists(self.write_checkpoints):
            tf.io.gfile.rmtree(self.write_checkpoints)


def newest_readable_checkpoint(folder: str) -> tuple[str | None, list[dict]]:
    """(the newest checkpoint prefix in ``folder`` whose every tensor reads, or None when
    the run has no checkpoint; the newer ones that do not read, as {"checkpoint": name,
    "problem": why} records). Those are named in one warning line.

    Raises:
        CheckpointsUnreadableError: the run has checkpoints and none of them reads.
    """
    damaged: list[tuple[str, str]] = []
    for prefix in _checkpoint_candidates(folder):
        problem = _unreadable(prefix)
        if problem is None:
            if damaged:
                logging.warning("%s; resuming from %s instead.", _damage_line(damaged, folder),
                                os.path.basename(prefix))
            return prefix, [{"checkpoint": os.path.basename(path), "problem": why}
                            for path, why in damaged]
        damaged.append((prefix, problem))
    if damaged:
        raise CheckpointsUnreadableError(
            f"{_damage_line(damaged, folder)}, and the run has no other; move {folder} aside "
            "to start the run afresh, or use a new work directory.")
    return None, []


def restore(checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restore ``path``; one ValueError (and no TensorFlow warnings) if it does not fit."""
    status = None
    try:
        status = checkpoint.restore(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        if status is not None:
            status.expect_partial()  # silences the "unrestored values" warnings
        raise ValueError(
            f"The checkpoint {path} does not fit this model or optimizer ({error_line(error)[:200]}); "
            "rerun with the model flags (and --ema_decay on or off) of that run, or use a new work directory."
        ) from None


def check_same_averaging(record_path: str, optimizer: keras.optimizers.Optimizer) -> None:
    """A resumed run keeps a moving average of its weights if, and only if, it did (the
    average is part of the optimizer's checkpointed state); ValueError otherwise. The
    run's record (``record_path``) says whether it did; without one nothing is checked."""
    if not tf.io.gfile.exists(record_path):
        return
    try:
        before = float(read_record(record_path).get("config", {}).get("ema_decay") or 0.0)
    except (ValueError, TypeError):
        return
    if (before > 0) != kema.has_average(optimizer):
        raise ValueError(
            f"This run was trained {'with' if before > 0 else 'without'} a moving average of its "
            f"weights (ema_decay {before:g}); resume it {'with' if before > 0 else 'without'} one, "
            "or use a new work directory."
        )


def read_record(path: str) -> dict:
    """The JSON object in ``path`` (a run's record); ValueError naming the file when it
    does not parse (a copy or a disk write cut short)."""
    with tf.io.gfile.GFile(path) as stream:
        text = stream.read()
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"The run record {path} is damaged (not JSON: {error}); restore it "
                         "from a copy, or use a new work directory.") from None
    if not isinstance(value, dict):
        raise ValueError(f"The run record {path} is damaged (not a JSON object); restore it "
                         "from a copy, or use a new work directory.")
    return value


def write_record(path: str, payload: dict) -> None:
    """The run record, written atomically (:func:`kpac_tf.files.atomic_write`), keys sorted."""
    atomic_write(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def history(record_path: str, record: dict, seconds: float) -> list[dict]:
    """The run's invocations so far (from the previous record, if any) and this one."""
    history: list[dict] = []
    if tf.io.gfile.exists(record_path):
        try:
            previous = read_record(record_path)
        except ValueError as error:
            logging.warning("%s The history of the earlier invocations is lost; this "
                            "invocation starts a new one.", error)
            previous = {}
        history = previous.get("history") or ([_invocation(previous)] if previous else [])
    return history + [_invocation(record, seconds)]


def _invocation(record: dict, seconds: float | None = None) -> dict:
    """One history entry: what was run and which steps it trained."""
    keys = ("command", "flags", "dtype_policy", "start_step", "step", "init_from")
    entry = {key: record.get(key) for key in keys}
    if record.get("damaged_checkpoints"):  # this invocation skipped checkpoints that did not read
        entry["damaged_checkpoints"] = record["damaged_checkpoints"]
    entry["seconds"] = round(seconds, 3) if seconds is not None else None
    return entry


def _damage_line(damaged: list[tuple[str, str]], folder: str) -> str:
    """The words naming checkpoints that do not read, and why: "Checkpoint ckpt-6 (why)
    in FOLDER does not read", or "Checkpoints ... do not read" for several."""
    named = ", ".join(f"{os.path.basename(path)} ({why})" for path, why in damaged)
    if len(damaged) == 1:
        return f"Checkpoint {named} in {folder} does not read"
    return f"Checkpoints {named} in {folder} do not read"


def _checkpoint_candidates(folder: str) -> list[str]:
    """Checkpoint prefixes of a run, newest step first: those the ``checkpoint`` index
    file names and those with an index or data file on disk (a checkpoint whose index
    is missing is still found, and then reported)."""
    names: set[str] = set()
    try:
        state = tf.train.get_checkpoint_state(folder)
    except Exception:  # noqa: BLE001 - an unreadable index file: the files on disk still count
        state = None
    if state is not None:
        names.update(os.path.basename(path) for path in
                     [state.model_checkpoint_path, *state.all_model_checkpoint_paths] if path)
    if tf.io.gfile.isdir(folder):
        for entry in tf.io.gfile.listdir(folder):
            match = re.fullmatch(r"(ckpt-\d+)\.(?:index|data-\d+-of-\d+)", entry)
            if match:
                names.add(match.group(1))
    steps = {name: int(match.group(1)) for name in names
             if (match := re.fullmatch(r"ckpt-(\d+)", name))}
    return [os.path.join(folder, name) for name in sorted(steps, key=steps.get, reverse=True)]


def _unreadable(prefix: str) -> str | None:
    """Why the checkpoint at ``prefix`` does not read (None: every tensor of it reads)."""
    name = os.path.basename(prefix)
    if not tf.io.gfile.exists(prefix + ".index"):
        return f"its index file {name}.index is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except (tf.errors.OpError, IndexError, OSError, ValueError, RuntimeError) as error:
        return error_line(error)[:200].replace(prefix, name)
    return None
