"""Benchmark: a training pool decoded into memory (the baseline) against its packed,
memory-mapped arrays (kpac_tf.data.pool_arrays), in one run.

    python experiments/speed/benchmark_pool_storage.py --pool=data/pool384 --pairs=800
    python experiments/speed/benchmark_pool_storage.py          # a small pool rendered here

For each storage it prints the time to open the pool, the process memory it holds
(anonymous memory, which the operating system cannot reclaim, and file pages, which it
can), and the training pipeline's batches/s (random crops, flips and rotations, the
recipe's batch and crop), with ratios against memory. "packed, first open" writes the
pack; "packed, reopened" is every later run. With --pairs, the first N pairs of --pool
are linked into a temporary pool, so a large pool is measured on a sample of itself.
The CPU's bfloat16 flags and the load average are printed beside the figures.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

from absl import flags

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
flags.DEFINE_string("pool", None, "A rendered pool (default: render a small one here).")
flags.DEFINE_integer("pairs", 0, "Measure on the first N pairs of --pool (0: all of it).")
flags.DEFINE_integer("batch_size", 4, "Batch size.")
flags.DEFINE_integer("crop", 256, "Crop side.")
flags.DEFINE_integer("batches", 200, "Timed batches per storage.")


def _rss_megabytes() -> dict[str, float]:
    """RssAnon and RssFile of this process, in MB (Linux)."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                values[key] = int(rest.split()[0]) / 1024
    return values


def _sample_pool(pool_dir: str, pairs: int, folder: str) -> str:
    """A pool of the first ``pairs`` complete pairs of ``pool_dir``, linked, not copied."""
    from kpac_tf.data import pool_arrays

    record = pool_arrays.read_pool_record(pool_dir)
    indices = pool_arrays.complete_indices(pool_dir, record["count"])[:pairs]
    sample = os.path.join(folder, "sample")
    for sub in pool_arrays.FOLDERS:
        os.makedirs(os.path.join(sample, sub))
    for new, index in enumerate(indices):
        for sub in pool_arrays.FOLDERS:
            os.symlink(os.path.abspath(os.path.join(pool_dir, sub, pool_arrays.pool_name(index))),
                       os.path.join(sample, sub, pool_arrays.pool_name(new)))
    with open(os.path.join(sample, pool_arrays.POOL_RECORD), "w", encoding="utf-8") as f:
        json.dump(dict(record, count=len(indices)), f)
    return sample


def _measure(pool_dir: str, packed: bool) -> dict[str, float]:
    """Open time (s), pipeline batches/s and memory held (MB) of one pool storage."""
    from kpac_tf.data import pipeline, pool

    before = _rss_megabytes()
    start = time.perf_counter()
    source = pool.PoolSource(pool_dir, with_radius=True, packed=packed)
    opened = time.perf_counter() - start
    config = pipeline.PipelineConfig(crop=FLAGS.crop, flip_rot=True, bit_depth=8, seed=0)
    iterator = iter(pipeline.make_train_dataset(source, config, per_replica_batch=FLAGS.batch_size))
    next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        next(iterator)
    rate = FLAGS.batches / (time.perf_counter() - start)
    after = _rss_megabytes()
    del iterator, source
    return {"open": opened, "rate": rate,
            "anon": after["RssAnon"] - before["RssAnon"], "file": after["RssFile"] - before["RssFile"]}


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    from kpac_tf import cpu
    from kpac_tf.data import pool, pool_arrays

    print(f"CPU bfloat16 features: {', '.join(cpu.bf16_features()) or 'none'}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as folder:
        if FLAGS.pool is None:
            pool_dir = os.path.join(folder, "pool")
            pool.render_pool(pool_dir, 24, kinds=["deadleaves"], size=FLAGS.crop + FLAGS.crop // 2)
        elif FLAGS.pairs:
            pool_dir = _sample_pool(FLAGS.pool, FLAGS.pairs, folder)
        else:
            pool_dir = FLAGS.pool
        record = pool_arrays.read_pool_record(pool_dir)
        pairs = len(pool_arrays.complete_indices(pool_dir, record["count"]))
        print(f"pool: {pairs} pairs of {record['size']}x{record['size']}, "
              f"{pool_arrays.pack_bytes(record['size'], pairs) / 2**30:.2f} GB decoded; "
              f"batch {FLAGS.batch_size} x {FLAGS.crop}x{FLAGS.crop}, {FLAGS.batches} batches")
        _measure(pool_dir, packed=False)  # untimed: TensorFlow's one-time start-up
        results = {"memory": _measure(pool_dir, packed=False)}
        if not pool_arrays.pack_is_current(pool_dir):
            results["packed, first open"] = _measure(pool_dir, packed=True)
        results["packed, reopened"] = _measure(pool_dir, packed=True)
    base = results["memory"]
    for name, got in results.items():
        print(f"{name:20s} open {got['open']:7.2f} s ({got['open'] / base['open']:6.2f}x memory)  "
              f"anon {got['anon']:8.0f} MB  file pages {got['file']:7.0f} MB  "
              f"{got['rate']:7.2f} batches/s ({got['rate'] / base['rate']:.2f}x memory)")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("benchmark_pool_storage.py", main)
