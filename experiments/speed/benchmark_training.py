"""Benchmark: KPAC training speed and input-pipeline speed on this machine.

    python experiments/speed/benchmark_training.py                      # A/B at 4 x 256 and 8 x 384
    python experiments/speed/benchmark_training.py --steps=20 --preset=kpac-2level
    python experiments/speed/benchmark_training.py --profile --profile_form=direct   # op table

Measures, in one run:
  0. an A/B of the last conv's (d2_2, 96 -> 3, 5x5, full resolution) forms
     (kpac_tf.model.layers.OutputConv2D): "old" is the plain conv to 3 channels, "new" the
     defaults of ``build_kpac`` (the transposed form in training; under a bfloat16
     policy 16 computed channels), each as a whole training step in float32 and under
     the mixed policy at every ``--sizes`` entry (steps/s and megapixels/s), and the
     last conv alone (forward and both gradients) in every form, channel padding and
     precision (``--conv_forms``);
  1. training steps/s of the real training step (``KPACTrainer.train_step`` through the
     same compiled loop ``kpac-train`` uses; MAE loss; random data resident in memory,
     so nothing but the step is timed), in float32 (the baseline) and under the
     ``--mixed_precision`` policy of this machine (mixed_bfloat16 on a CPU), with the
     speed-up ratio; every training figure is the median of per-step times;
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
The CPU's bfloat16 flags are printed beside the figures. ``--loop`` (off by default,
to keep the default run to a few minutes on 2 cores) adds part 3.

oneDNN: TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX512
neural-network features. Elsewhere (e.g. AVX2-only CPUs) its own CPU kernels run, and
they reject the gradients of dilated convs, so KPAC cannot train there at all;
``--onednn`` (the default) sets ``TF_ENABLE_ONEDNN_OPTS=1`` before TensorFlow starts,
unless the environment already sets it. Without AVX-512, oneDNN has no bfloat16
kernels either, and TensorFlow's own bfloat16 kernels reject the same gradients: the
mixed policy's training step is then reported as not runnable (its last conv alone is
still timed, emulated and slow).

``--profile`` runs the float32 (or ``--profile_policy``) step once more in a child
process with ``ONEDNN_VERBOSE=1`` and prints where the time goes: oneDNN's primitive
executions of one step after warm-up, summed by kind, pass, implementation and shape.
Concurrent primitives overlap, so the sum can exceed the step's wall time.
"""
from __future__ import annotations

import collections
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

#: TF_ENABLE_ONEDNN_OPTS as the environment set it, read before kpac_tf (imported next)
#: gives it its default; see _set_up_onednn.
_ONEDNN_FROM_ENVIRONMENT = os.environ.get("TF_ENABLE_ONEDNN_OPTS")

from absl import flags  # noqa: E402

from kpac_tf.cli import runner  # noqa: E402

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
flags.DEFINE_string("photos", None, "A photo folder (python -m kpac_tf.tools.fetch_training_photos) "
                    "for the on-the-fly renderer (default: scikit-image's training photos).")
flags.DEFINE_boolean("loop", False, "Also time the training loop with its input pipeline.")
flags.DEFINE_list("sizes", ["4x256", "8x384"], "BATCHxCROP entries of the A/B of the last conv's "
                  "forms (empty: skip it).")
flags.DEFINE_integer("ab_steps", 3, "Timed steps per A/B configuration (median of per-step times).")
flags.DEFINE_boolean("conv_forms", True, "Time the last conv alone in every form and precision.")
flags.DEFINE_boolean("pipelines", True, "Time the input pipelines (part 2).")
flags.DEFINE_boolean("onednn", True, "Set TF_ENABLE_ONEDNN_OPTS=1 unless the environment sets it.")
flags.DEFINE_boolean("profile", False, "Print the oneDNN op table of one training step and stop.")
flags.DEFINE_string("profile_form", "new", "Last-conv form to profile: old or new.")
flags.DEFINE_string("profile_policy", "float32", "Dtype policy of the profiled step.")
flags.DEFINE_boolean("profile_child", False, "Internal: run the step to be profiled.")

#: The last conv's forms compared: build_kpac keyword arguments. "old" is the graph
#: before the output-conv work (a plain conv to 3 channels), "new" the defaults.
FORMS = {
    "old": {"output_conv_form": "direct", "output_conv_channels": 0},
    "new": {},
}
#: Output-conv-alone variants: (training form, computed channels; 0 = the plain 3).
CONV_VARIANTS = (("direct", 0), ("direct", 16), ("transposed", 0), ("transposed", 16))
_MARK_START, _MARK_END = "@@kpac-profile-start", "@@kpac-profile-end"

#: Renderer options of the photo recipe (kpac_tf/recipes/photos_cpu.flags).
RECIPE_OPTIONS = ("max_radius=1:16", "noise_sigma=0.002:0.008", "sharp_probability=0.2",
                  "photo_scale=0.8:1.5", "base_blur=0:1")


def _resident_data(tf, batch: int, crop: int):
    blurred = tf.random.stateless_uniform([batch, crop, crop, 3], seed=[1, 2])
    sharp = tf.clip_by_value(blurred + 0.05 * tf.random.stateless_normal(blurred.shape, seed=[3, 4]), 0, 1)
    radius = tf.random.stateless_uniform([batch, crop, crop, 1], seed=[5, 6], maxval=4.0)
    return tf.data.Dataset.from_tensors((blurred, sharp, radius)).repeat()


def _make_loop(tf, preset: str, batch: int, policy: str, build_kwargs: dict | None = None):
    """(compiled training loop, strategy) of a fresh model under the Keras dtype
    ``policy`` (set by the caller), with the photo recipe's in-focus weight."""
    from kpac_tf.model import builder as models
    from kpac_tf.train import loop as kloop
    from kpac_tf.train.config import TrainConfig

    strategy = tf.distribute.get_strategy()
    config = TrainConfig(steps=1, batch_size=batch)
    network = models.build_kpac(preset, **(build_kwargs or {}))
    trainer = kloop.KPACTrainer(network, infocus_weight=5.0)
    optimizer = kloop.make_optimizer(config)
    trainer.compile(optimizer=optimizer, jit_compile=False)
    optimizer.build(network.trainable_variables)
    return kloop.make_train_loop(strategy, trainer), strategy


def _time_training(tf, preset: str, batch: int, crop: int, warmup: int, steps: int,
                   policy: str = "float32", dataset=None, build_kwargs: dict | None = None) -> float:
    """Steps/s of the training loop under the Keras dtype ``policy`` (as kpac-train sets
    it), fed by ``dataset`` (default: one batch resident in memory, so only the step is
    timed): 1 / the median of ``steps`` per-step times after ``warmup`` steps.
    ``build_kwargs``: extra ``build_kpac`` arguments (the last conv's form)."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    try:
        loop, strategy = _make_loop(tf, preset, batch, policy, build_kwargs)
        if dataset is None:
            dataset = _resident_data(tf, batch, crop)
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        for _ in range(max(1, warmup)):
            float(loop(iterator, 1)[0]["loss"])
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            float(loop(iterator, 1)[0]["loss"])
            times.append(time.perf_counter() - start)
        return 1.0 / statistics.median(times)
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


def _set_up_onednn() -> str:
    """Turn oneDNN on (``--onednn``) before TensorFlow starts, unless the environment
    chose; returns what was done, in words."""
    chosen = _ONEDNN_FROM_ENVIRONMENT
    if chosen is not None:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = chosen
        return f"TF_ENABLE_ONEDNN_OPTS={chosen} (from the environment)"
    if FLAGS.onednn:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
        return "TF_ENABLE_ONEDNN_OPTS=1 (set by --onednn)"
    os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)  # kpac_tf's default, not the environment's
    return "TF_ENABLE_ONEDNN_OPTS unset (TensorFlow's choice for this CPU)"


def _cpu_line() -> str:
    """The CPU's bfloat16 features, AVX-512 presence and the load average."""
    from kpac_tf import cpu

    avx512 = "avx512f" in cpu.cpu_flags()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"CPU bfloat16 features: {', '.join(cpu.bf16_features()) or 'none'}; "
            f"AVX-512: {'yes' if avx512 else 'no'}; load average {load}")


def _parse_size(text: str) -> tuple[int, int]:
    batch, crop = text.lower().split("x")
    return int(batch), int(crop)


def main(argv: list[str]) -> int:
    runner.no_arguments(argv)
    onednn = _set_up_onednn()
    if FLAGS.profile:
        return _profile()
    runner.import_tensorflow()
    if FLAGS.profile_child:
        _profile_child()
        return runner.EXIT_OK
    import tensorflow as tf

    _quiet_retracing(tf)

    from kpac_tf.train import distribution

    batch, crop = FLAGS.batch_size, FLAGS.crop
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores; {FLAGS.preset}; {onednn}")
    print(_cpu_line())
    mixed = distribution.mixed_precision_policy()
    ab_rates = _form_ab(tf, [_parse_size(size) for size in FLAGS.sizes], mixed) if FLAGS.sizes else {}
    if FLAGS.conv_forms:
        _conv_forms(tf, batch, crop, mixed)
    print(f"\n{FLAGS.preset}, batch {batch} x {crop}x{crop}, last conv: the defaults")
    rates = {}
    for policy in ("float32", mixed):
        rate = ab_rates.get((batch, crop, policy, "new"))  # measured already in the A/B
        if rate is None:
            rate = _guarded_rate(tf, batch, crop, policy, {}, FLAGS.warmup, FLAGS.steps)
        if rate is None:
            continue
        rates[policy] = rate
        print(f"training {policy:15s} {rate:8.3f} steps/s  ({1 / rate:.2f} s/step, "
              f"{rate * batch * crop * crop / 1e6:.2f} Mpixel/s) = {rate / rates['float32']:.2f}x float32")
    print(_cpu_line())
    if FLAGS.pipelines:
        _time_pipelines(tf, max(rates.values()), batch, crop)
    if FLAGS.loop:
        from kpac_tf.data import pipeline

        config = pipeline.PipelineConfig(crop=crop, flip_rot=True, bit_depth=8, seed=0)
        _time_loops(tf, rates, config, batch, crop)
    return runner.EXIT_OK


def _time_pipelines(tf, step_rate: float, batch: int, crop: int) -> None:
    """Part 2: batches/s of each input pipeline against the faster training step."""
    from kpac_tf.data import pipeline

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
        print(f"pipeline {name:42s} {rate:8.3f} batches/s = {rate / step_rate:6.1f}x the training "
              f"step  [{verdict}]")


def _mixed_runnable(policy: str) -> tuple[bool, str]:
    """(the training step can run under ``policy`` here, why not)."""
    from kpac_tf import cpu

    if policy == "float32" or "avx512f" in cpu.cpu_flags():
        return True, ""
    return False, ("not runnable on this CPU: without AVX-512 oneDNN has no bfloat16 kernels, "
                   "and TensorFlow's own reject the gradients of dilated convs")


def _guarded_rate(tf, batch: int, crop: int, policy: str, build_kwargs: dict,
                  warmup: int, steps: int) -> float | None:
    """Steps/s on resident data, or None (with the reason printed) where the step cannot
    run under ``policy`` on this CPU."""
    runnable, why = _mixed_runnable(policy)
    if runnable:
        try:
            return _time_training(tf, FLAGS.preset, batch, crop, warmup, steps, policy,
                                  build_kwargs=build_kwargs)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            lines = [line.strip() for line in str(error).splitlines()
                     if line.strip() and not line.strip().startswith("[[")]
            why = "failed: " + lines[-1][:160]
    print(f"training {policy:15s} {why}")
    return None


def _interleaved_rates(tf, batch: int, crop: int, policy: str) -> dict:
    """Steps/s of every :data:`FORMS` entry under ``policy`` on resident data: one loop
    per form, one warm-up step each, then ``--ab_steps`` rounds of one step per form
    (so a change of the machine's load hits every form alike); 1 / median step time."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
    try:
        runs = {}
        for name, kwargs in FORMS.items():
            loop, strategy = _make_loop(tf, FLAGS.preset, batch, policy, kwargs)
            iterator = iter(strategy.experimental_distribute_dataset(_resident_data(tf, batch, crop)))
            float(loop(iterator, 1)[0]["loss"])
            runs[name] = (loop, iterator, [])
        for _ in range(FLAGS.ab_steps):
            for loop, iterator, times in runs.values():
                start = time.perf_counter()
                float(loop(iterator, 1)[0]["loss"])
                times.append(time.perf_counter() - start)
        return {name: 1.0 / statistics.median(times) for name, (_, _, times) in runs.items()}
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _form_ab(tf, sizes: list[tuple[int, int]], mixed: str) -> dict:
    """Part 0a: whole training steps with the old and the new last conv, in float32 and
    under ``mixed``, at each (batch, crop), interleaved. Returns the steps/s by (batch,
    crop, policy, form name)."""
    results = {}
    print("\nA/B of the last conv's form: whole training step, resident data, median of "
          f"{FLAGS.ab_steps} steps per form, old and new steps alternating")
    print(f"{'batch x crop':12s} {'policy':15s} {'form':5s} {'steps/s':>8s} {'s/step':>7s} "
          f"{'Mpx/s':>7s} {'new/old':>8s}")
    for batch, crop in sizes:
        for policy in ("float32", mixed):
            runnable, why = _mixed_runnable(policy)
            if not runnable:
                print(f"{batch:3d} x {crop:<6d} {policy:15s} {why}")
                continue
            rates = _interleaved_rates(tf, batch, crop, policy)
            for name, rate in rates.items():
                results[(batch, crop, policy, name)] = rate
                ratio = f"{rate / rates['old']:8.2f}" if name != "old" else ""
                print(f"{batch:3d} x {crop:<6d} {policy:15s} {name:5s} {rate:8.3f} {1 / rate:7.2f} "
                      f"{rate * batch * crop * crop / 1e6:7.3f} {ratio}", flush=True)
        print(f"  ({_cpu_line()})")
    return results


def _time_output_conv(tf, batch: int, crop: int, dtype: str, form: str, channels: int,
                      repeats: int = 3) -> float:
    """Best seconds of the last conv alone (96 -> 3, 5x5) in ``form`` with ``channels``
    computed channels, ``dtype`` its compute dtype: forward with ``training=True`` plus
    the gradients of its input and its variables, on a [batch, crop, crop, 96] input."""
    import numpy as np

    from kpac_tf.model import layers as kl

    policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
    layer = kl.output_conv(3, 5, pad_channels=channels, training_form=form, dtype=policy)
    inputs = tf.cast(tf.random.stateless_normal([batch, crop, crop, 96], seed=[1, 2]), dtype)
    layer.build(inputs.shape)
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(size=(5, 5, 96, 3)).astype("float32") * 0.03,
                       np.zeros(3, "float32")])

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(tf.abs(tf.cast(layer(x, training=True), tf.float32)))
        return tape.gradient(loss, [x, *layer.trainable_variables])

    [g.numpy() for g in step(inputs)]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        [g.numpy() for g in step(inputs)]
        best = min(best, time.perf_counter() - start)
    return best


def _conv_forms(tf, batch: int, crop: int, mixed: str) -> None:
    """Part 0b: the last conv alone in every form, channel padding and precision. Where
    bfloat16 is emulated (no AVX-512), it runs at a quarter of the side: it is slow."""
    runnable, _ = _mixed_runnable(mixed)
    print(f"\nThe last conv alone (96 -> 3, 5x5, forward + both gradients), best of 3; {_cpu_line()}")
    for dtype in ("float32", "bfloat16"):
        side = crop if dtype == "float32" or runnable else crop // 4
        note = "" if side == crop else f" (emulated bfloat16: {side}x{side} instead of {crop}x{crop})"
        base = None
        for form, channels in CONV_VARIANTS:
            seconds = _time_output_conv(tf, batch, side, dtype, form, channels)
            base = base or seconds
            shown = channels or 3
            print(f"  {dtype:8s} {batch} x {side}x{side}  {form:10s} {shown:2d} channels "
                  f"{seconds * 1e3:9.1f} ms = {base / seconds:5.2f}x direct/3{note}", flush=True)


def _profile() -> int:
    """Run one step in a child with ONEDNN_VERBOSE=1 and print its oneDNN op table."""
    env = dict(os.environ, ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, os.path.abspath(__file__), "--profile_child",
               f"--preset={FLAGS.preset}", f"--batch_size={FLAGS.batch_size}", f"--crop={FLAGS.crop}",
               f"--profile_form={FLAGS.profile_form}", f"--profile_policy={FLAGS.profile_policy}"]
    print(f"{' '.join(command[1:])}\n{_cpu_line()}")
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        runner.error(f"the profiled step failed (exit {result.returncode}):")
        sys.stderr.write(result.stderr[-2000:])
        return runner.EXIT_FAILED
    print(_op_table(result.stdout.splitlines()))
    return runner.EXIT_OK


def _profile_child() -> None:
    """Warm up, then run one step between two marker lines (see :func:`_op_table`)."""
    import keras
    import tensorflow as tf

    keras.mixed_precision.set_global_policy(FLAGS.profile_policy)
    batch, crop = FLAGS.batch_size, FLAGS.crop
    loop, strategy = _make_loop(tf, FLAGS.preset, batch, FLAGS.profile_policy, FORMS[FLAGS.profile_form])
    iterator = iter(strategy.experimental_distribute_dataset(_resident_data(tf, batch, crop)))
    for _ in range(2):
        float(loop(iterator, 1)[0]["loss"])
    print(_MARK_START, flush=True)
    start = time.perf_counter()
    float(loop(iterator, 1)[0]["loss"])
    print(f"{_MARK_END} {time.perf_counter() - start:.4f}", flush=True)


def _op_table(lines: list[str], top: int = 20) -> str:
    """oneDNN ``exec`` lines between the markers, summed by (kind, pass, implementation,
    shape); the last conv's rows (96 -> 3/N or, transposed, 3/N -> 96, 5x5 at the
    full side) summed apart."""
    start = lines.index(_MARK_START)
    end = next(i for i, line in enumerate(lines) if line.startswith(_MARK_END))
    wall = float(lines[end].split()[1])
    totals = collections.defaultdict(lambda: [0.0, 0])
    for line in lines[start:end]:
        fields = line.split(",")
        if len(fields) < 10 or fields[0] != "onednn_verbose" or fields[3] != "exec":
            continue
        shape = re.search(r"(?:mb\d+_)?(ic\d+oc\d+_ih\d+oh\d+kh\d+)", fields[-2])
        key = (fields[5], fields[7], fields[6], shape.group(1) if shape else fields[-2][:32])
        totals[key][0] += float(fields[-1])
        totals[key][1] += 1
    side = FLAGS.crop
    last = re.compile(rf"^ic(96oc\d+|\d+oc96)_ih{side}oh{side}kh5$")
    out_conv = sum(v[0] for k, v in totals.items() if k[0] == "convolution" and last.match(k[3]))
    total = sum(v[0] for v in totals.values())
    rows = [f"step wall {wall * 1e3:.0f} ms; oneDNN exec sum {total:.0f} ms; last conv "
            f"{out_conv:.0f} ms ({out_conv / max(total, 1e-9):.0%} of the sum)",
            f"{'ms':>9s} {'runs':>4s}  {'kind':11s} {'pass':17s} {'implementation':36s} shape"]
    for key, (ms, count) in sorted(totals.items(), key=lambda item: -item[1][0])[:top]:
        rows.append(f"{ms:9.1f} {count:4d}  {key[0]:11s} {key[1]:17s} {key[2]:36s} {key[3]}")
    return "\n".join(rows)


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
    from kpac_tf.data import pipeline

    print(_cpu_line())
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
    runner.run_command("benchmark_training.py", main)
