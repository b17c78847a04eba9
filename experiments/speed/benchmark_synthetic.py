"""Speed of the synthetic defocus generator (kpac_tf.data.pairs).

Prints, for each crop size, the time per (blurred, sharp) pair of the generator in
one Python thread (wall-clock and CPU time, split into dead-leaves scenes and photo
crops), and the throughput of ``make_synthetic_dataset`` batched as in training
(parallel map, AUTOTUNE). Compare the batch time with a training step: the input
pipeline should be several times faster.

    python3 experiments/speed/benchmark_synthetic.py --sizes=256,512 --pairs=40
"""
from __future__ import annotations

import os
import time

from absl import flags

from kpac_tf.cli import runner

flags.DEFINE_list("sizes", ["256", "512"], "Square crop sizes to time.")
flags.DEFINE_integer("pairs", 40, "Pairs timed per size (after a short warm-up).")
flags.DEFINE_integer("batch", 4, "Batch size for the tf.data throughput.")
flags.DEFINE_integer("batches", 10, "Batches timed through tf.data per size (0 skips).")
flags.DEFINE_integer("seed", 0, "Generator seed.")
FLAGS = flags.FLAGS


def _time_pairs(size: int) -> dict:
    import numpy as np

    from kpac_tf.data.pairs import SyntheticDefocusSource

    source = SyntheticDefocusSource(size, seed=FLAGS.seed)
    for index in range(3):  # warm-up: loads the photos, fills caches
        source.pair(10_000 + index)
    wall, cpu, leaves = [], [], []
    for index in range(FLAGS.pairs):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        pair = source.pair(index)
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
        leaves.append(pair.info["source"] == "dead_leaves")
    wall, cpu, leaves = np.array(wall) * 1e3, np.array(cpu) * 1e3, np.array(leaves)
    return {
        "wall_ms": wall.mean(), "cpu_ms": cpu.mean(),
        "cpu_ms_dead_leaves": cpu[leaves].mean() if leaves.any() else float("nan"),
        "cpu_ms_photos": cpu[~leaves].mean() if (~leaves).any() else float("nan"),
    }


def _time_dataset(size: int) -> float:
    from kpac_tf.data.pipeline import make_synthetic_dataset

    dataset = make_synthetic_dataset(size, seed=FLAGS.seed).batch(FLAGS.batch)
    dataset = dataset.prefetch(2)
    iterator = iter(dataset)
    next(iterator)  # warm-up
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    return (time.perf_counter() - start) / FLAGS.batches


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU cores: {os.cpu_count()}, load average at start: {load:.2f}")
    for size in (int(s) for s in FLAGS.sizes):
        result = _time_pairs(size)
        print(f"{size}x{size}: {result['wall_ms']:.1f} ms/pair wall "
              f"({1000 / result['wall_ms']:.1f} pairs/s), {result['cpu_ms']:.1f} ms/pair CPU "
              f"(dead leaves {result['cpu_ms_dead_leaves']:.1f}, photos "
              f"{result['cpu_ms_photos']:.1f}); {FLAGS.pairs} pairs, one thread")
        if FLAGS.batches > 0:
            seconds = _time_dataset(size)
            print(f"{size}x{size}: tf.data batch of {FLAGS.batch}: {seconds * 1e3:.0f} ms "
                  f"({FLAGS.batch / seconds:.1f} pairs/s, parallel map)")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("benchmark_synthetic.py", main)
