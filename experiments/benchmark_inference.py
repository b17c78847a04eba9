"""Inference benchmark: KPAC forward throughput against this machine's matmul, and memory.

Prints, in one run:
- tf.matmul fp32 GFLOP/s on 4096x4096 (the machine's practical peak, the baseline);
- 2-level and 3-level forward latency at 1280x720 (fp32, after warm-up) through the
  Deblurrer's compiled function and through model.predict, the achieved GFLOP/s from
  the analytic MACs (2 FLOPs per MAC), and the ratio to the matmul figure;
- the 3-level TFLite latency at 1280x720 next to the tf.function and SavedModel paths;
- the peak resident memory of a tiled 24-megapixel (6000x4000) deblur, measured in a
  child process so that nothing else counts.

    python experiments/benchmark_inference.py [--repeats=5] [--skip_24mp] [--skip_tflite]
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

from benchmark_tflite import median_seconds, tflite_latency  # same folder

FLAGS = flags.FLAGS
# --repeats (timed runs per figure, median reported) comes with benchmark_tflite's flags.
flags.DEFINE_boolean("skip_24mp", False, "Skip the 24-megapixel tiled memory run.")
flags.DEFINE_boolean("skip_tflite", False, "Skip the TFLite latency.")
flags.DEFINE_float("memory_budget", 512, "Deblurrer memory budget (MB) for the 24 MP run.")
flags.DEFINE_boolean("child_24mp", False, "Internal: run the 24 MP job and print JSON.")


def matmul_gflops(repeats: int) -> float:
    import tensorflow as tf

    a = tf.random.normal((4096, 4096))
    b = tf.random.normal((4096, 4096))
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    matmul()
    seconds = median_seconds(lambda: matmul().numpy(), repeats)
    return 2 * 4096**3 / seconds / 1e9


def forward_figures(preset: str, repeats: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from kpac_tf import analytic_macs, build_kpac
    from kpac_tf.inference import Deblurrer

    model = build_kpac(preset)
    deblurrer = Deblurrer(model, memory_budget_mb=4096)
    image = tf.constant(np.random.default_rng(0).random((1, 720, 1280, 3), dtype=np.float32))
    compiled = lambda: deblurrer._forward(image).numpy()  # noqa: E731
    seconds = median_seconds(compiled, repeats)
    predict = lambda: model.predict(image, verbose=0)  # noqa: E731
    predict_seconds = median_seconds(predict, max(2, repeats // 2))
    macs = analytic_macs(preset, 720, 1280)
    return {
        "preset": preset,
        "gmac": macs / 1e9,
        "seconds": seconds,
        "gflops": 2 * macs / seconds / 1e9,
        "predict_seconds": predict_seconds,
    }


def child_24mp() -> None:
    import numpy as np

    from kpac_tf import build_kpac
    from kpac_tf.inference import Deblurrer

    model = build_kpac("kpac-3level")
    deblurrer = Deblurrer(model, memory_budget_mb=FLAGS.memory_budget)
    image = np.random.default_rng(0).random((4000, 6000, 3), dtype=np.float32)
    start = time.perf_counter()
    result = deblurrer.deblur(image)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "seconds": seconds, "peak_rss_mb": peak_mb, "tile": deblurrer.tile_size,
        "overlap": deblurrer.overlap, "shape": list(result.shape),
    }))


def main(argv):
    del argv
    if FLAGS.child_24mp:
        child_24mp()
        return
    peak = matmul_gflops(FLAGS.repeats)
    print(f"tf.matmul fp32 4096x4096: {peak:.1f} GFLOP/s")
    for preset in ("kpac-2level", "kpac-3level"):
        f = forward_figures(preset, FLAGS.repeats)
        print(
            f"{preset} 1280x720 fp32: {f['seconds'] * 1000:.0f} ms ({f['gmac']:.1f} GMAC), "
            f"{f['gflops']:.1f} GFLOP/s = {100 * f['gflops'] / peak:.0f}% of matmul; "
            f"model.predict {f['predict_seconds'] * 1000:.0f} ms "
            f"({f['predict_seconds'] / f['seconds']:.2f}x the compiled path)"
        )
    if not FLAGS.skip_tflite:
        from kpac_tf import build_kpac

        (row,) = tflite_latency(build_kpac("kpac-3level"), sizes=((1280, 720),), repeats=FLAGS.repeats)
        print(
            f"kpac-3level 1280x720 TFLite: {row['tflite_ms']:.0f} ms vs tf.function "
            f"{row['tf_function_ms']:.0f} ms and SavedModel {row['saved_model_ms']:.0f} ms "
            f"(max abs difference {row['tflite_max_abs_diff']:.1e})"
        )
    if not FLAGS.skip_24mp:
        output = subprocess.run(
            [sys.executable, __file__, "--child_24mp", f"--memory_budget={FLAGS.memory_budget}"],
            capture_output=True, text=True, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        ).stdout.strip().splitlines()[-1]
        figures = json.loads(output)
        print(
            f"24 MP (6000x4000) tiled, 3-level: peak RSS {figures['peak_rss_mb'] / 1024:.2f} GB "
            f"(target <= 3 GB), {figures['seconds']:.0f} s, tiles {figures['tile']} px, "
            f"overlap {figures['overlap']} px"
        )


if __name__ == "__main__":
    app.run(main)
