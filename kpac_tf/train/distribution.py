"""tf.distribute strategies by name, the mixed-precision policy that suits them, which
worker is the chief, and the one cross-replica reduction of training and validation."""
from __future__ import annotations

import os
from typing import Callable

import tensorflow as tf
from absl import logging

__all__ = ["STRATEGIES", "is_chief", "make_strategy", "mixed_precision_policy", "run_and_sum",
           "strategy_name", "worker_task"]

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str = "default", tpu: str = "") -> tf.distribute.Strategy:
    """A tf.distribute strategy by name.

    "default" (one device), "mirrored" (all local GPUs, or the CPU), "multi_worker"
    (MultiWorkerMirroredStrategy; the cluster comes from the TF_CONFIG environment
    variable), "tpu" (``tpu``: the TPU name or address; "" for a TPU VM).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            logging.warning("TF_CONFIG is not set: multi_worker runs as a single worker.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")


def mixed_precision_policy(strategy: str = "default") -> str:
    """The Keras mixed-precision policy for this machine and strategy name.

    "mixed_bfloat16" on a TPU and on a CPU-only machine (TensorFlow has no CPU kernels
    for float16 atrous-convolution gradients, while bfloat16 convolutions run through
    oneDNN, 1.45-1.8x faster than float32 per training step on a CPU with AVX512-BF16;
    see the training benchmark); "mixed_float16" on GPUs. Variables and
    optimizer state stay float32 either way, so checkpoints move freely between
    float32 and mixed runs.
    """
    if strategy == "tpu" or not tf.config.list_physical_devices("GPU"):
        return "mixed_bfloat16"
    return "mixed_float16"


def strategy_name(strategy: tf.distribute.Strategy) -> str:
    """"default", "mirrored", "multi_worker", "tpu", or the class name of another strategy."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "multi_worker"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "mirrored"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "tpu"
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return "default"
    return type(strategy).__name__


def worker_task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    """(task type, task id) of this worker under MultiWorkerMirroredStrategy, else (None, 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, summaries and outputs."""
    task_type, task_id = worker_task(strategy)
    if task_type is None or task_type == "chief":
        return True
    if task_type == "worker":
        spec = strategy.cluster_resolver.cluster_spec().as_dict()
        return "chief" not in spec and task_id == 0
    return False


def run_and_sum(strategy: tf.distribute.Strategy, step_fn: Callable, batch) -> dict:
    """``step_fn(batch)`` on every replica, each returned value summed over replicas (the
    one cross-replica reduction of training and validation)."""
    per_replica = strategy.run(step_fn, args=(batch,))
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}
