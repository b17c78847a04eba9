"""TFLite latency against the tf.function and exported-SavedModel paths, in one run.

Builds a preset (random weights by default: latency does not depend on the values, or
--weights), converts it with ``kpac_tf.deploy.tflite.convert_to_tflite`` (dynamic shapes),
and times one image at each size through:

- ``tf.function``: the Keras model called inside a tf.function with a dynamic-shape
  input signature (what kpac_tf's own inference compiles);
- ``SavedModel``: the exported ``serving_default`` signature loaded back with
  tf.saved_model.load (what TF Serving runs, including its input checks and clipping);
- ``TFLite``: the converted model in the TFLite interpreter (XNNPACK, --threads).

Each figure is the median of --repeats timed runs after one warm-up run at that size.

    python experiments/speed/benchmark_tflite.py [--preset=kpac-3level] [--repeats=3] [--threads=2]

``tflite_latency(...)`` returns the same figures as dicts for other scripts.
"""
from __future__ import annotations

import os
import tempfile

from absl import flags

from kpac_tf.cli import runner
from timing import median_seconds  # same folder

FLAGS = flags.FLAGS
flags.DEFINE_string("preset", "kpac-3level", "Model preset.")
flags.DEFINE_string("weights", None, "Weights (preset name, *.weights.npz or authors' npz); default: random.")
flags.DEFINE_list("sizes", ["256x256", "1280x720"], "Image sizes WIDTHxHEIGHT.")
flags.DEFINE_integer("repeats", 3, "Timed runs per figure (median reported).")
flags.DEFINE_integer("threads", None, "TFLite interpreter threads (default: all cores).")


def tflite_latency(model, sizes=((256, 256), (1280, 720)), repeats: int = 3,
                   num_threads: int | None = None) -> list[dict]:
    """Median latency in ms per path and size for a single-image KPAC Keras model.

    Args:
        model: a single-image model from kpac_tf.build_kpac.
        sizes: (width, height) pairs.
    Returns:
        One dict per size: width, height, tf_function_ms, saved_model_ms, tflite_ms,
        tflite_max_abs_diff (TFLite vs tf.function output, clipped, at that size).
    """
    import numpy as np
    import tensorflow as tf

    from kpac_tf.deploy import saved_model, signatures, tflite

    forward = tf.function(
        lambda x: tf.clip_by_value(model(x, training=False), 0.0, 1.0),
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
    )
    with tempfile.TemporaryDirectory(prefix="kpac_bench_") as folder:
        version = saved_model.export_saved_model(model, folder, "kpac")
        serving = tf.saved_model.load(str(version)).signatures[signatures.SERVING_SIGNATURE]
        runner = tflite.TFLiteDeblurrer(tflite.convert_to_tflite(model), num_threads=num_threads)
        rows = []
        rng = np.random.default_rng(0)
        for width, height in sizes:
            image = rng.random((1, height, width, 3), dtype=np.float32)
            tensor = tf.constant(image)
            reference = forward(tensor).numpy()
            rows.append({
                "width": width,
                "height": height,
                "tf_function_ms": 1000 * median_seconds(lambda: forward(tensor).numpy(), repeats),
                "saved_model_ms": 1000 * median_seconds(
                    lambda: serving(images=tensor)[signatures.OUTPUT_KEY].numpy(), repeats),
                "tflite_ms": 1000 * median_seconds(lambda: runner(image), repeats),
                "tflite_max_abs_diff": float(np.abs(runner(image) - reference).max()),
            })
    return rows


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    runner.import_tensorflow()
    import keras

    from kpac_tf import build_kpac, load_model

    if FLAGS.weights:
        model = load_model(FLAGS.weights, config=FLAGS.preset)
    else:
        keras.utils.set_random_seed(0)
        model = build_kpac(FLAGS.preset)
    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in FLAGS.sizes]
    threads = FLAGS.threads or os.cpu_count()
    weights = f"weights {os.path.basename(FLAGS.weights)}" if FLAGS.weights else "random weights"
    print(f"{FLAGS.preset}, {weights}, {os.cpu_count()} CPU cores, TFLite threads {threads}, "
          f"median of {FLAGS.repeats}, load average {os.getloadavg()[0]:.1f}")
    for row in tflite_latency(model, sizes, FLAGS.repeats, threads):
        print(
            f"{row['width']}x{row['height']}: tf.function {row['tf_function_ms']:.0f} ms, "
            f"SavedModel serving_default {row['saved_model_ms']:.0f} ms, "
            f"TFLite {row['tflite_ms']:.0f} ms "
            f"({row['tflite_ms'] / row['tf_function_ms']:.2f}x tf.function); "
            f"TFLite max |diff| {row['tflite_max_abs_diff']:.1e}"
        )
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("benchmark_tflite.py", main)
