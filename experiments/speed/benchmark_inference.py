"""Inference benchmark: every route of the KPAC forward in one run, one table.

Prints, in one run:
- the CPU's bfloat16 features (amx_bf16, avx512_bf16) and what ``precision="auto"``
  picks here, and why;
- tf.matmul GFLOP/s on --matmul_size squared matrices in float32 and in bfloat16 (the
  machine's practical ceilings);
- the forward of one --width x --height photo (skimage's chelsea, resized) through each
  route: TF float32 (the Deblurrer's compiled function, the same network written with
  raw tf.nn ops as a reference for Keras' overhead, and model.predict), the TF
  bfloat16 routes (the library's bfloat16 copy, the same with its last conv computing
  3 channels instead of 16 (the A/B of that padding), the Keras mixed_bfloat16 policy as
  training uses it, the oneDNN bfloat16 graph rewrite), TFLite, ONNX Runtime float32,
  and OpenVINO float32 and bfloat16 (ONNX routes when the ``onnx`` extra is installed,
  OpenVINO when ``openvino`` is). Each route runs in its own process, back to back;
  each figure is the median of --repeats timed runs after one warm-up. Columns: time,
  speed-up against TF float32 measured in the same run, PSNR of the output against TF
  float32's, GFLOP/s from the analytic MACs and the share of the matching matmul
  ceiling (float32 or bfloat16);
- a tiled deblur of a --tiled_size random image (24 MP by default) under
  ``precision="auto"``: time, peak RSS, tile size and the precision chosen.

    python experiments/speed/benchmark_inference.py [--repeats=5] [--routes=tf_float32,...]
        [--width=1280 --height=720] [--skip_24mp] [--weights=kpac-3level]

Weights: the preset's bundled weights unless --weights names others (``--weights=random``:
seeded random weights; PSNR figures need trained weights, timings do not depend on the
values). Run it on a quiet machine:
other processes on the same cores change every figure.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import flags

from kpac_tf.cli import runner
from timing import median_seconds  # same folder

FLAGS = flags.FLAGS
ROUTES = (
    "tf_float32",
    "tf_nn_reference_float32",
    "keras_predict_float32",
    "tf_bfloat16",
    "tf_bfloat16_unpadded",
    "tf_mixed_policy",
    "tf_onednn_rewrite",
    "tflite_float32",
    "onnxruntime_float32",
    "openvino_float32",
    "openvino_bfloat16",
)
# Which matmul ceiling each route is compared with.
BFLOAT16_ROUTES = ("tf_bfloat16", "tf_bfloat16_unpadded", "tf_mixed_policy", "tf_onednn_rewrite", "openvino_bfloat16")
LABELS = {
    "tf_float32": "TF float32 (Deblurrer, tf.function)",
    "tf_nn_reference_float32": "TF float32, raw tf.nn ops (reference)",
    "keras_predict_float32": "TF float32, model.predict",
    "tf_bfloat16": "TF bfloat16 copy (precision=bfloat16)",
    "tf_bfloat16_unpadded": "TF bfloat16 copy, last conv to 3 channels",
    "tf_mixed_policy": "TF Keras mixed_bfloat16 (float32 last conv)",
    "tf_onednn_rewrite": "TF oneDNN bfloat16 graph rewrite",
    "tflite_float32": "TFLite float32",
    "onnxruntime_float32": "ONNX Runtime float32",
    "openvino_float32": "OpenVINO float32 (from ONNX)",
    "openvino_bfloat16": "OpenVINO bf16 hint (from ONNX)",
}

flags.DEFINE_string("preset", "kpac-3level", "Model preset.")
flags.DEFINE_string("weights", None, "Weights (preset name, *.weights.npz or authors' npz; "
                    "random: seeded random weights); default: the preset's bundled weights.")
flags.DEFINE_integer("repeats", 3, "Timed runs per figure (median reported).")
flags.DEFINE_integer("threads", None, "TFLite / ONNX Runtime threads (default: all cores).")
flags.DEFINE_integer("width", 1280, "Forward width in pixels.")
flags.DEFINE_integer("height", 720, "Forward height in pixels.")
flags.DEFINE_list("routes", list(ROUTES), f"Routes to measure: {', '.join(ROUTES)}.")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square matrices of the matmul ceiling.")
flags.DEFINE_boolean("skip_24mp", False, "Skip the tiled deblur under precision=auto.")
flags.DEFINE_string("tiled_size", "6000x4000", "WIDTHxHEIGHT of the tiled deblur.")
flags.DEFINE_float("memory_budget", 512, "Deblurrer memory budget (MB) for the tiled deblur.")
flags.DEFINE_string("child", None, "Internal: run one route (or 'tiled') and print JSON.")
flags.DEFINE_string("out", None, "Internal: where a child saves its output (.npy).")


# ---------------------------------------------------------------------------------------
# Figures measured in this process.


def matmul_gflops(size: int, dtype: str, repeats: int) -> float:
    """tf.matmul GFLOP/s on size x size matrices of ``dtype``."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((size, size)), dtype)
    b = tf.cast(tf.random.normal((size, size)), dtype)
    matmul = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    seconds = median_seconds(lambda: matmul().numpy(), repeats)
    return 2 * size**3 / seconds / 1e9


def cpu_summary() -> dict:
    from kpac_tf import cpu
    from kpac_tf.inference import resolve_precision

    precision, reason = resolve_precision("auto")
    return {"bf16_flags": list(cpu.bf16_features()), "auto": precision, "auto_reason": reason}


# ---------------------------------------------------------------------------------------
# Children: one route each.


def _model():
    from kpac_tf import build_kpac
    from kpac_tf.model import weights

    if FLAGS.weights == "random":
        import keras

        keras.utils.set_random_seed(0)
        return build_kpac(FLAGS.preset)
    return weights.load_model(FLAGS.weights or FLAGS.preset)


def _photo():
    import numpy as np
    import skimage.data
    import skimage.transform

    image = skimage.transform.resize(
        skimage.data.chelsea(), (FLAGS.height, FLAGS.width), anti_aliasing=True
    )
    return image.astype(np.float32)[np.newaxis]


def _unpadded_bfloat16_copy(model):
    """The bfloat16 copy as it was before the last conv's channel padding: d2_2 in
    bfloat16, computing its 3 output channels only (the A/B of that padding)."""
    import keras

    from kpac_tf.model.builder import build_kpac, model_config
    from kpac_tf.model.weights import get_arrays, set_arrays

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        twin = build_kpac(model_config(model), float32_last_conv=False, output_conv_channels=0)
    finally:
        keras.config.set_dtype_policy(previous)
    set_arrays(twin, get_arrays(model), f"model {model.name!r}")
    return twin


def _tf_route(model, image, precision: str | None = None, last_float32: bool = False,
              unpadded: bool = False):
    import tensorflow as tf

    from kpac_tf.inference import Deblurrer, bfloat16_copy

    if precision is not None:
        forward = Deblurrer(model, memory_budget_mb=1e6, precision=precision)._forward
    else:
        twin = _unpadded_bfloat16_copy(model) if unpadded else bfloat16_copy(
            model, float32_last_conv=last_float32)
        forward = tf.function(
            lambda x: twin(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        )
    tensor = tf.constant(image)
    return lambda: forward(tensor).numpy()


def _openvino_route(model, image, hint: str):
    import numpy as np
    import openvino

    from kpac_tf.deploy import onnx, saved_model

    with tempfile.TemporaryDirectory(prefix="kpac_ov_") as folder:
        path = os.path.join(folder, saved_model.ONNX_FILE)
        with open(path, "wb") as f:
            f.write(onnx.convert_to_onnx(model))
        core = openvino.Core()
        network = core.read_model(path)
        network.reshape({network.inputs[0].get_any_name(): list(image.shape)})
        compiled = core.compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    return lambda: np.asarray(request.infer({0: image})[compiled.outputs[0]])


def raw_forward(model):
    """The single-image forward written with raw tf.nn ops on ``model``'s variables
    (float32 NHWC [0,1] in, clipped [0,1] out): the reference for Keras' overhead."""
    import tensorflow as tf

    from kpac_tf.model.builder import _DECODER, _ENCODER, model_config
    from kpac_tf.model.padding import pad_to_multiple

    config = model_config(model)

    def conv(x, layer, activation=tf.nn.leaky_relu, stride=1):
        y = tf.nn.conv2d(x, layer.kernel, stride, "SAME", dilations=layer.dilation_rate)
        return activation(y + layer.bias) if activation else y + layer.bias

    def block(x, layer):
        rates = [tf.nn.leaky_relu(tf.nn.conv2d(x, layer.atrous.kernel_for(i), 1, "SAME", dilations=rate))
                 for i, rate in enumerate(layer.dilations)]
        alpha = x
        for hidden in layer.scale_attention.hidden:
            alpha = conv(alpha, hidden)
        alpha = conv(alpha, layer.scale_attention.head, tf.sigmoid)
        beta = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        beta = conv(conv(beta, layer.shape_attention.squeeze), layer.shape_attention.excite, tf.sigmoid)
        weighted = [branch * alpha[..., i:i + 1] * beta for i, branch in enumerate(rates)]
        return conv(tf.concat(weighted, -1), layer.fusion)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def forward(image):
        padded, (height, width) = pad_to_multiple(image, config.multiple)
        x = base = padded * 2.0 - 1.0
        skips = []
        for name, _, _, stride in _ENCODER[: 2 * (config.levels + 1)]:
            x = conv(x, model.get_layer(name), stride=stride)
            if name in ("c0_2", "c2_2", "c3_2")[: config.levels]:
                skips.append(x)
        stack = [x]
        for index in range(1, config.num_blocks + 1):
            x = block(x, model.get_layer(f"block{index}"))
            stack.append(x)
        x = conv(conv(tf.concat(stack, -1), model.get_layer("cm_1")), model.get_layer("cm_2"))
        for (up, _, name, _, _), skip in zip(_DECODER[-config.levels:], reversed(skips)):
            layer = model.get_layer(up)
            shape = tf.shape(skip)
            x = tf.nn.conv2d_transpose(x, layer.kernel, [shape[0], shape[1], shape[2], layer.filters],
                                       2, "SAME")
            x = tf.concat([tf.nn.leaky_relu(x + layer.bias), skip], -1)
            x = conv(x, model.get_layer(name), None if name == "d2_2" else tf.nn.leaky_relu)
        x = (x + base)[:, :height, :width, :]
        return tf.clip_by_value((x + 1.0) * 0.5, 0.0, 1.0)

    return forward


def route_function(route: str, model, image):
    """A no-argument function returning the route's [1,H,W,3] output, or a skip reason."""
    from kpac_tf.deploy import onnx, tflite

    if route == "tf_float32":
        return _tf_route(model, image, "float32")
    if route == "tf_nn_reference_float32":
        config = model.kpac_config
        if config.dual_pixel or config.block_type != "kpac" or not (
                config.scale_attention and config.shape_attention):
            return "the raw tf.nn reference covers single-image KPAC blocks with both attentions"
        import tensorflow as tf

        forward, tensor = raw_forward(model), tf.constant(image)
        return lambda: forward(tensor).numpy()
    if route == "keras_predict_float32":
        return lambda: model.predict(image, verbose=0)
    if route == "tf_bfloat16":
        return _tf_route(model, image, "bfloat16")
    if route == "tf_bfloat16_unpadded":
        return _tf_route(model, image, unpadded=True)
    if route == "tf_mixed_policy":
        return _tf_route(model, image, last_float32=True)
    if route == "tf_onednn_rewrite":
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
        return _tf_route(model, image, "float32")
    if route == "tflite_float32":
        runner = tflite.TFLiteDeblurrer(tflite.convert_to_tflite(model), num_threads=FLAGS.threads)
        return lambda: runner(image)
    if route == "onnxruntime_float32":
        available, reason = onnx.onnx_available()
        if not available:
            return reason
        runner = onnx.OnnxDeblurrer(onnx.convert_to_onnx(model), num_threads=FLAGS.threads)
        return lambda: runner(image)
    if route in ("openvino_float32", "openvino_bfloat16"):
        try:
            import openvino  # noqa: F401
        except ImportError:
            return "openvino not installed (pip install openvino)"
        if not onnx.onnx_available()[0]:
            return onnx.onnx_available()[1]
        return _openvino_route(model, image, "f32" if route == "openvino_float32" else "bf16")
    raise ValueError(f"Unknown route {route!r}; choose from {', '.join(ROUTES)}.")


def child_route(route: str) -> None:
    import numpy as np

    function = route_function(route, _model(), _photo())
    if isinstance(function, str):
        print(json.dumps({"skipped": function}))
        return
    seconds = median_seconds(function, FLAGS.repeats)
    np.save(FLAGS.out, np.clip(np.asarray(function(), np.float32), 0.0, 1.0))
    print(json.dumps({"seconds": seconds}))


def child_tiled() -> None:
    import numpy as np

    from kpac_tf.inference import Deblurrer

    width, height = (int(v) for v in FLAGS.tiled_size.lower().split("x"))
    deblurrer = Deblurrer(_model(), memory_budget_mb=FLAGS.memory_budget, precision="auto")
    # 8-bit samples, as kpac-deblur passes a photo's stored pixels.
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    start = time.perf_counter()
    result = deblurrer.deblur(image)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "seconds": seconds, "peak_rss_mb": peak_mb, "tile": deblurrer.tile_size,
        "overlap": deblurrer.overlap, "shape": list(result.shape),
        "precision": deblurrer.precision, "bytes_per_pixel": peak_mb * 2**20 / (width * height),
    }))


# ---------------------------------------------------------------------------------------
# The parent: run the children, make the table.


def _run_child(*args: str) -> dict:
    passed = [f"--{name}={FLAGS[name].value}" for name in ("preset", "repeats", "width", "height",
                                                            "tiled_size", "memory_budget")]
    passed += [f"--{name}={FLAGS[name].value}" for name in ("weights", "threads")
               if FLAGS[name].value is not None]
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *passed, *args],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if result.returncode != 0:
        return {"failed": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "?"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_routes(routes, folder: str) -> dict:
    import numpy as np

    figures = {}
    for route in routes:
        path = os.path.join(folder, f"{route}.npy")
        figures[route] = _run_child(f"--child={route}", f"--out={path}")
        if os.path.exists(path):
            figures[route]["output"] = np.load(path)
    return figures


def _psnr(a, b) -> float:
    from kpac_tf.evaluation.metrics import signal_psnr

    return signal_psnr(a, b)


def table(figures: dict, macs: int, ceilings: dict) -> list[str]:
    """Markdown rows: route, time, speed-up, PSNR and max |diff| vs TF float32, GFLOP/s."""
    baseline = figures.get("tf_float32", {})
    rows = [
        "| route | time | vs TF float32 | PSNR vs TF float32 | max abs diff | GFLOP/s | of matmul |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for route, f in figures.items():
        if "seconds" not in f:
            rows.append(f"| {LABELS[route]} | {f.get('skipped') or 'failed: ' + f.get('failed', '?')} "
                        "| | | | | |")
            continue
        speed = f"{baseline['seconds'] / f['seconds']:.2f}x" if "seconds" in baseline else "-"
        psnr = diff = "-"
        if "output" in baseline and route != "tf_float32":
            psnr = f"{_psnr(f['output'], baseline['output']):.1f} dB"
            diff = f"{float(abs(f['output'] - baseline['output']).max()):.1e}"
        gflops = 2 * macs / f["seconds"] / 1e9
        ceiling = ceilings["bfloat16" if route in BFLOAT16_ROUTES else "float32"]
        rows.append(f"| {LABELS[route]} | {f['seconds'] * 1000:.0f} ms | {speed} | {psnr} | {diff} "
                    f"| {gflops:.1f} | {100 * gflops / ceiling:.0f}% |")
    return rows


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    unknown = sorted(set(FLAGS.routes) - set(ROUTES))
    if unknown:
        raise runner.usage_error(f"Unknown routes {unknown}; choose from {', '.join(ROUTES)}.")
    runner.import_tensorflow()
    if FLAGS.child == "tiled":
        child_tiled()
        return runner.EXIT_OK
    if FLAGS.child:
        child_route(FLAGS.child)
        return runner.EXIT_OK
    from kpac_tf import analytic_macs

    summary = cpu_summary()
    flags_text = ", ".join(summary["bf16_flags"]) or "neither amx_bf16 nor avx512_bf16"
    print(f"CPU bfloat16 flags: {flags_text}; precision=auto -> {summary['auto']} ({summary['auto_reason']})")
    ceilings = {dtype: matmul_gflops(FLAGS.matmul_size, dtype, FLAGS.repeats)
                for dtype in ("float32", "bfloat16")}
    print(f"tf.matmul {FLAGS.matmul_size}x{FLAGS.matmul_size}: float32 {ceilings['float32']:.1f} "
          f"GFLOP/s, bfloat16 {ceilings['bfloat16']:.1f} GFLOP/s "
          f"({ceilings['bfloat16'] / ceilings['float32']:.2f}x)")
    macs = analytic_macs(FLAGS.preset, FLAGS.height, FLAGS.width)
    routes = [r for r in ROUTES if r in FLAGS.routes]
    with tempfile.TemporaryDirectory(prefix="kpac_bench_") as folder:
        figures = measure_routes(routes, folder)
    print(f"\n{FLAGS.preset} forward, {FLAGS.width}x{FLAGS.height} ({macs / 1e9:.1f} GMAC), "
          f"median of {FLAGS.repeats}, CPU bfloat16 flags: {flags_text}\n")
    print("\n".join(table(figures, macs, ceilings)))
    if not FLAGS.skip_24mp:
        t = _run_child("--child=tiled")
        if "seconds" in t:
            print(f"\nTiled {FLAGS.tiled_size} deblur of 8-bit samples, precision=auto ({t['precision']}): "
                  f"{t['seconds']:.1f} s, peak RSS {t['peak_rss_mb'] / 1024:.2f} GB "
                  f"({t['bytes_per_pixel']:.0f} bytes per pixel), tiles {t['tile']} px, "
                  f"overlap {t['overlap']} px")
        else:
            print(f"\nTiled {FLAGS.tiled_size} deblur failed: {t.get('failed')}")
    return runner.EXIT_OK


if __name__ == "__main__":
    runner.run_command("benchmark_inference.py", main)
