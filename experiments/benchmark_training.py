"""Benchmark: KPAC training speed and input-pipeline speed on this machine.

    python experiments/benchmark_training.py                      # 3-level, batch 4 x 256x256
    python experiments/benchmark_training.py --steps=20 --preset=kpac-2level

Measures, in one run:
  1. training steps/s of the real training step (``KPACTrainer.train_step`` through the
     same compiled loop ``kpac-train`` uses; MAE loss; random data resident in memory,
     so nothing but the step is timed), in float32 (the baseline) and under the
     ``--mixed_precision`` policy of this machine (mixed_bfloat16 on a CPU), with the
     speed-up ratio;
  2. the input pipelines alone (batches/s of ``make_train_dataset``): synthetic defocus
     (dead leaves + scikit-image photos, the default synthetic training data) and
     DPDD-like files (16-bit 1680x1120 PNGs, random crops), decoded for every sample
     or cached in memory (``--cache``);
and prints how many times faster each pipeline is than the faster of the two training
steps (it should be at least 5x, so that input never stalls training);
  3. the real training loop WITH its input pipeline, in float32 and in the mixed
     precision of this machine, fed by the synthetic renderer on the fly (photos, the
     photo recipe's renderer options) and by a pre-rendered pool (``--pool``, or a small
     pool rendered into a temporary folder), and the share of each step's time that
     goes to making its input: 1 - (loop steps/s) / (steps/s on resident data).
The CPU's bfloat16 flags are printed beside the figures.
"""
from __future__ import annotations

import os
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "kpac-3level", "Model preset.")
flags.DEFINE_integer("batch_size", 4, "Batch size.")
flags.DEFINE_integer("crop", 256, "Crop side.")
flags.DEFINE_integer("warmup", 2, "Untimed training steps (tracing, allocation).")
flags.DEFINE_integer("steps", 10, "Timed training steps.")
flags.DEFINE_integer("pipeline_batches", 20, "Timed batches per input pipeline.")
flags.DEFINE_integer("dpdd_files", 8, "DPDD-like file pairs to write for the file pipeline.")
flags.DEFINE_string("pool", None, "A rendered pool for the loop benchmark (default: a small "
                    "temporary one).")
flags.DEFINE_string("photos", None, "A photo folder (fetch_training_photos.py) for the on-the-fly "
                    "renderer (default: scikit-image's training photos).")
flags.DEFINE_boolean("loop", True, "Also time the training loop with its input pipeline.")

#: Renderer options of the photo recipe (experiments/configs/photos_cpu.flags).
RECIPE_OPTIONS = ("max_radius=1:16", "noise_sigma=0.002:0.008", "sharp_probability=0.2",
                  "photo_scale=0.8:1.5", "base_blur=0:1")


def _resident_data(tf, batch: int, crop: int):
    blurred = tf.random.stateless_uniform([batch, crop, crop, 3], seed=[1, 2])
    sharp = tf.clip_by_value(blurred + 0.05 * tf.random.stateless_normal(blurred.shape, seed=[3, 4]), 0, 1)
    radius = tf.random.stateless_uniform([batch, crop, crop, 1], seed=[5, 6], maxval=4.0)
    return tf.data.Dataset.from_tensors((blurred, sharp, radius)).repeat()


def _time_training(tf, preset: str, batch: int, crop: int, warmup: int, steps: int,
                   policy: str = "float32", dataset=None) -> float:
    """Steps/s of the training loop under the Keras dtype ``policy`` (as kpac-train sets
    it), fed by ``dataset`` (default: one batch resident in memory, so only the step is
    timed), with the photo recipe's in-focus weight."""
    import keras

    from kpac_tf import models, training

    keras.mixed_precision.set_global_policy(policy)
    try:
        strategy = tf.distribute.get_strategy()
        config = training.TrainConfig(steps=warmup + steps, batch_size=batch)
        network = models.build_kpac(preset)
        trainer = training.KPACTrainer(network, infocus_weight=5.0)
        optimizer = training.make_optimizer(config)
        trainer.compile(optimizer=optimizer, jit_compile=False)
        optimizer.build(network.trainable_variables)
        if dataset is None:
            dataset = _resident_data(tf, batch, crop)
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        loop = training.make_train_loop(strategy, trainer)
        logs, _ = loop(iterator, warmup)
        float(logs["loss"])
        start = time.perf_counter()
        logs, _ = loop(iterator, steps)
        float(logs["loss"])
        return steps / (time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _time_pipeline(dataset, batches: int) -> float:
    iterator = iter(dataset)
    next(iterator)  # start-up (threads, first decode)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def _write_dpdd_like(tf, folder: str, count: int) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for role in ("source", "target"):
        os.makedirs(os.path.join(folder, "train_c", role), exist_ok=True)
    for index in range(count):
        base = rng.random((1120 // 8, 1680 // 8, 3))
        image = np.kron(base, np.ones((8, 8, 1))) + 0.02 * rng.standard_normal((1120, 1680, 3))
        for role in ("source", "target"):
            pixels = np.clip(image, 0, 1) * 65535
            tf.io.write_file(os.path.join(folder, "train_c", role, f"im{index:03d}.png"),
                             tf.io.encode_png(pixels.astype(np.uint16)))


def _quiet_retracing(tf) -> None:
    """Drop TensorFlow's retracing warning: every timed configuration builds its own
    model and compiled loop on purpose, which its detector reports as retracing."""
    tf.get_logger().addFilter(
        lambda record: "triggered tf.function retracing" not in record.getMessage())


def main(argv):
    del argv
    import tensorflow as tf

    _quiet_retracing(tf)

    from kpac_tf import distribution
    from kpac_tf.data import pipeline

    batch, crop = FLAGS.batch_size, FLAGS.crop
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores; {FLAGS.preset}, batch {batch} x {crop}x{crop}")
    rates = {}
    for policy in ("float32", distribution.mixed_precision_policy()):
        rates[policy] = _time_training(tf, FLAGS.preset, batch, crop, FLAGS.warmup, FLAGS.steps, policy)
        rate = rates[policy]
        print(f"training {policy:15s} {rate:8.3f} steps/s  ({1 / rate:.2f} s/step, "
              f"{rate * batch * crop * crop / 1e6:.2f} Mpixel/s) = {rate / rates['float32']:.2f}x float32")
    step_rate = max(rates.values())  # the pipelines must keep up with the faster step

    config = pipeline.PipelineConfig(crop=crop, flip_rot=True, bit_depth=8, seed=0)
    results = {}
    synthetic = pipeline.resolve_data("synthetic", crop=crop, val_spec="none").train
    results["synthetic (dead leaves + skimage)"] = _time_pipeline(
        pipeline.make_train_dataset(synthetic, config, per_replica_batch=batch), FLAGS.pipeline_batches)
    with tempfile.TemporaryDirectory() as folder:
        _write_dpdd_like(tf, folder, FLAGS.dpdd_files)
        for cache in (False, True):
            files = pipeline.resolve_data(folder, crop=crop, bit_depth=8, cache=cache).train
            name = "DPDD-like 16-bit PNGs" + (", --cache" if cache else ", decoded per sample")
            results[name] = _time_pipeline(
                pipeline.make_train_dataset(files, config, per_replica_batch=batch), FLAGS.pipeline_batches)
    for name, rate in results.items():
        verdict = "ok" if rate >= 5 * step_rate else "TOO SLOW (< 5x)"
        print(f"pipeline {name:42s} {rate:8.3f} batches/s = {rate / step_rate:6.1f}x the training step  [{verdict}]")
    if FLAGS.loop:
        _time_loops(tf, rates, config, batch, crop)


def _loop_sources(crop: int, folder: str) -> dict:
    """The recipe's input pipelines: the renderer on the fly, and a pool."""
    from kpac_tf.data import pipeline, pool
    from kpac_tf.data.pairs import synthetic_config_from_overrides

    kinds = [f"photos={FLAGS.photos}" if FLAGS.photos else "skimage", "deadleaves"]
    config = synthetic_config_from_overrides(RECIPE_OPTIONS)
    live = pipeline.make_synthetic_source(kinds, crop, config=config, with_radius=True)
    pool_dir = FLAGS.pool
    if pool_dir is None:
        pool_dir = os.path.join(folder, "pool")
        pool.render_pool(pool_dir, 48, kinds=kinds, size=crop + crop // 2, config=config)
    return {"renderer on the fly": live, f"pool ({os.path.basename(pool_dir.rstrip('/'))})":
            pool.PoolSource(pool_dir, with_radius=True)}


def _time_loops(tf, rates: dict, config, batch: int, crop: int) -> None:
    from kpac_tf import cpu
    from kpac_tf.data import pipeline

    print(f"CPU bfloat16 features: {', '.join(cpu.bf16_features()) or 'none'}")
    with tempfile.TemporaryDirectory() as folder:
        for name, source in _loop_sources(crop, folder).items():
            for policy, resident in rates.items():
                dataset = pipeline.make_train_dataset(source, config, per_replica_batch=batch)
                rate = _time_training(tf, FLAGS.preset, batch, crop, FLAGS.warmup, FLAGS.steps,
                                      policy, dataset)
                share = max(0.0, 1.0 - rate / resident)
                print(f"loop {policy:15s} + {name:28s} {rate:8.3f} steps/s = "
                      f"{rate / rates['float32']:.2f}x float32 resident; input share {share:5.1%}")


if __name__ == "__main__":
    app.run(main)
