"""kpac-train: train KPAC (the paper's two-stage recipe, ablations, synthetic defocus).

usage: kpac-train --data=DATA --workdir=DIR [flags]

    kpac-train --flagfile=$(python -m kpac_tf.tools.recipe paper_stage1) --data=DPDD \\
        --workdir=runs/s1
    kpac-train --flagfile=$(python -m kpac_tf.tools.recipe paper_stage2) --data=DPDD \\
        --workdir=runs/s2 --init_from=runs/s1/model.weights.npz
    kpac-train --data=synthetic:deadleaves,skimage --crop=256 --steps=5000 --workdir=runs/synth
    kpac-train --data=synthetic:deadleaves --preset=kpac-2level --num_blocks=1 --crop=32 \\
        --val_images=2 --val_crop=32 --batch_size=2 --steps=10 --workdir=runs/try   # a quick trial

``--data``: a DPDD folder (train split; validation on val), ``SOURCE_DIR,TARGET_DIR``,
a folder with ``source/`` and ``target/``, ``synthetic[:deadleaves,skimage,FOLDER]`` or
``pool:DIR[@N][,DIR[@N]...]``. ``--val_data=none`` skips validation, ``--val_images=N`` shortens it.
Photo folders come from ``python -m kpac_tf.tools.fetch_training_photos``, pools from
``python -m kpac_tf.tools.render_pool``; ``python -m kpac_tf.tools.recipe`` lists the
packaged recipes (flagfiles) and prints the path of one.
Rerunning the same command resumes from the last checkpoint in ``--workdir`` (step,
optimizer state, data position); a finished run is left alone ("nothing to do"), and
a resume with changed settings warns about each. Ctrl-C (SIGINT) and SIGTERM save a
checkpoint and stop (exit 130 / 143). The run ends with ``WORKDIR/model.weights.npz``
and ``WORKDIR/train_record.json`` (every invocation in its ``history``); TensorBoard
logs are in ``WORKDIR/tensorboard``. On a terminal a progress bar shows the steps;
elsewhere a line is printed every --log_every steps.

Exit status: 0 trained (or nothing to do); 1 training stopped on a NaN loss or a
TensorFlow error (the last checkpoint is kept); 2 nothing done (usage error, or data,
weights or work directory unusable); 130 / 143 stopped by SIGINT / SIGTERM after saving
a checkpoint.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time

from absl import flags, logging

from kpac_tf.cli import runner

FLAGS = flags.FLAGS
DEFAULT_PRESET = "kpac-3level"

# Model (dual-pixel training: --preset=kpac-dual with DPDD data).
flags.DEFINE_string("preset", None, f"Model architecture: kpac-2level, kpac-3level or kpac-dual "
                    f"(default: {DEFAULT_PRESET}); the overrides below change it.", allow_override=True)
flags.DEFINE_integer("levels", None, "Override: encoder levels (2 or 3).")
flags.DEFINE_integer("num_blocks", None, "Override: number of KPAC blocks.")
flags.DEFINE_integer("kernel_size", None, "Override: shared atrous kernel size.")
flags.DEFINE_list("dilations", None, "Override: atrous rates, e.g. 1,2,3,4,5.")
flags.DEFINE_boolean("kernel_sharing", None, "Override: one kernel for all rates.")
flags.DEFINE_boolean("scale_attention", None, "Override: scale attention.")
flags.DEFINE_boolean("shape_attention", None, "Override: shape attention.")
flags.DEFINE_enum("block_type", None, ["kpac", "resblock"], "Override: block type.")

# Data.
flags.DEFINE_string(
    "data", None,
    "Training data: a DPDD folder, SOURCE_DIR,TARGET_DIR, a folder with source/ and target/, "
    "synthetic[:deadleaves,skimage,photos=DIR,PHOTO_FOLDER], or pool:DIR[@N][,DIR[@N]...] "
    "(pre-rendered pairs, python -m kpac_tf.tools.render_pool; several pools are drawn in "
    "proportion to their sizes, times their weights N).",
)
flags.DEFINE_string("val_data", None, "Validation data (DPDD folder or folder pair), or 'none'; "
                    "default: DPDD's val split, or held-out synthetic scenes.")
flags.DEFINE_integer("val_images", 0, "Validate on the first N images (0: all; synthetic: 16).")
flags.DEFINE_integer("crop", 512, "Random square training crop (paper: 512).")
flags.DEFINE_integer("val_crop", 512, "Centre crop for validation (0: whole images).")
flags.DEFINE_boolean("flip_rot", False, "Random flips and 90-degree rotations (flips only for dual-pixel).")
flags.DEFINE_float("noise_sigma_max", 0.0, "Gaussian noise on inputs, sigma ~ U[0, this] "
                   "(paper Appendix G: 0.03).")
flags.DEFINE_list("synthetic_options", [], "Synthetic training pairs only: renderer settings as "
                  "NAME=VALUE (ranges LOW:HIGH), e.g. sharp_probability=0.1,photo_scale=0.6:1.4.")
flags.DEFINE_boolean("cache", False, "Keep decoded training images in memory.")
flags.DEFINE_integer("data_seed", 0, "Seed of the data stream (crops, order, augmentation); "
                     "synthetic and pool validation scenes stay the same whatever it is.")
flags.DEFINE_enum("bit_depth", "8", ["8", "16"], "Precision the training images are rounded to: 8 "
                  "(the paper) or 16.", allow_override=True)

# Optimisation.
flags.DEFINE_integer("steps", 200_000, "Total training steps (a resumed run continues to this).")
flags.DEFINE_integer("batch_size", 4, "Global batch size.")
flags.DEFINE_float("lr", 1e-4, "Learning rate.")
flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine"], "Learning-rate schedule.")
flags.DEFINE_integer("warmup_steps", 0, "Linear learning-rate warm-up from 0 over the first N steps "
                     "(useful with --init_from: Adam starts empty).")
flags.DEFINE_float("ema_decay", 0.0, "Above 0: keep a moving average of the weights with this decay "
                   "per step (e.g. 0.999); validation and the final weights use it.")
flags.DEFINE_float("beta1", 0.9, "Adam beta_1.")
flags.DEFINE_float("beta2", 0.99, "Adam beta_2.")
flags.DEFINE_float("perceptual_weight", 0.0, "Weight of the VGG19 conv4_4 loss (paper stage 2: 7e-4).")
flags.DEFINE_enum("pixel_loss", "mae", ["mae", "mse"], "Pixel loss: mae (the paper) or mse (the "
                  "distance PSNR scores, e.g. for a short final phase).")
flags.DEFINE_float("infocus_weight", 1.0, "Pixel-loss weight of pixels already in focus (oracle radius "
                   "< 1 px; synthetic and pool data only); 1: the paper's plain MAE.")
flags.DEFINE_float("anchor_weight", 0.0, "Above 0: add anchor_weight/2 * sum((w - w0)^2) to the loss, "
                   "w0 the --init_from weights (L2-SP), so a continued run keeps what it need "
                   "not change; needs --init_from.")
flags.DEFINE_enum("perceptual_distance", "squared", ["squared", "absolute"], "Feature distance.")
flags.DEFINE_string("vgg19_weights", None, "Local VGG19 'notop' .h5 weights (default: download).")
flags.DEFINE_string("init_from", None, "Initial weights (own file, authors' npz or preset) for a "
                    "new run; ignored when the workdir has a checkpoint.")
flags.DEFINE_integer("seed", 0, "Model initialisation seed.")
flags.DEFINE_boolean("deterministic", False, "Deterministic TensorFlow ops.")

# Bookkeeping.
flags.DEFINE_string("workdir", None, "Run directory: checkpoints, TensorBoard logs, final weights.")
flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint period in steps.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept.")
flags.DEFINE_integer("summary_every", 100, "TensorBoard scalar period (0: never).")
flags.DEFINE_integer("image_summary_every", 1000, "TensorBoard image period (0: never).")
flags.DEFINE_integer("eval_every", 5000, "Validation period (0: only at the end).")
flags.DEFINE_integer("val_batch_size", 1, "Global validation batch.")
flags.DEFINE_integer("steps_per_loop", 1, "Steps per compiled loop call.")
flags.DEFINE_boolean("progress", True, "Show progress: a bar on a terminal, else a line every "
                     "--log_every steps.")
flags.DEFINE_integer("log_every", 100, "Without a terminal: a progress line every N steps "
                     "(0: only the last step).")

# Distribution.
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")
flags.DEFINE_boolean("mixed_precision", None, "Mixed precision: mixed_float16 on a GPU, mixed_bfloat16 "
                     "on a TPU or a CPU; weights stay float32. Default: on where it is fast (a GPU, a "
                     "TPU, a CPU with AMX-BF16, or one with AVX512-BF16 where a short probe finds bfloat16 "
                     "faster), off elsewhere.")

# Test hook.
flags.DEFINE_integer("debug_nan_at_step", None, "Testing: make the inputs of this step NaN.")


_MODEL_OVERRIDES = ("levels", "num_blocks", "kernel_size", "kernel_sharing", "scale_attention",
                    "shape_attention", "block_type")
#: Flags that change how a run is shown, not what it trains, and the test hook: no warning
#: when they change on a resume.
_NOT_COMPARED = ("progress", "log_every", "workdir", "debug_nan_at_step")


class _StopFlag:
    """Set by SIGINT/SIGTERM; the training loop saves a checkpoint and returns.
    A second signal stops at once, without a checkpoint."""

    def __init__(self):
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __call__(self, signum, frame):
        start = "\n" if runner.progress_bar_wanted() else ""  # off the progress bar's line
        name = signal.Signals(signum).name
        if self.signum is not None:
            sys.stderr.write(f"{start}{runner.name()}: interrupted by a second {name}; stopped "
                             "without saving.\n")
            sys.exit(128 + signum)
        self.signum = signum
        note = f"got {name}; saving a checkpoint and stopping (once more: stop at once)."
        sys.stderr.write(f"{start}{runner.line('note', note)}\n")


class _Progress:
    """on_progress for kpac_tf.train.loop.train: a tqdm bar on a terminal, else a line every
    ``every`` steps (and at the last step) on stderr. ``notes`` are printed at the first
    call, once the checkpoint is restored and training starts."""

    def __init__(self, enabled: bool, bar: bool, every: int, notes: list[str] = ()):
        self.enabled, self.use_bar, self.every = enabled, bar, every
        self.notes = list(notes)
        self.bar = None
        self.last_step: int | None = None
        self.last_time = time.perf_counter()

    def __call__(self, step: int, total: int, logs: dict) -> None:
        while self.notes:
            runner.warning(self.notes.pop(0))
        if not self.enabled:
            return
        if self.use_bar:
            self._bar(step, total, logs)
        elif self.last_step is None:
            self.last_step, self.last_time = step, time.perf_counter()
        elif logs and (step >= total or (self.every and step // self.every > self.last_step // self.every)):
            now = time.perf_counter()
            rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
            self.last_step, self.last_time = step, now
            validation = f"  validation PSNR {logs['val_psnr']:.2f} dB" if "val_psnr" in logs else ""
            sys.stderr.write(f"step {step}/{total}  loss {logs['loss']:.4f}{validation}  "
                             f"{rate:.2f} steps/s\n")
            sys.stderr.flush()

    def _bar(self, step: int, total: int, logs: dict) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True,
                            smoothing=0.05, desc="kpac-train")
        if logs:
            postfix = {"loss": f"{logs['loss']:.4f}"}
            if "val_psnr" in logs:
                postfix["val_psnr"] = f"{logs['val_psnr']:.2f}"
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(step - self.bar.n)
        if step >= total:
            self.bar.close()


def _model_config():
    from kpac_tf.model import builder

    overrides = {name: FLAGS[name].value for name in _MODEL_OVERRIDES if FLAGS[name].value is not None}
    if FLAGS.dilations is not None:
        overrides["dilations"] = tuple(int(d) for d in FLAGS.dilations)
    return builder.resolve_config(FLAGS.preset or DEFAULT_PRESET, **overrides)


def _auto_mixed_precision(tf) -> tuple[bool, str]:
    """(use mixed precision, why) when --mixed_precision is not given."""
    from kpac_tf.model.precision import fast_bfloat16

    if FLAGS.strategy == "tpu" or tf.config.list_physical_devices("GPU"):
        return True, "automatic: an accelerator"
    fast, reason = fast_bfloat16()
    return fast, f"automatic: {reason}"


def _set_precision(tf, keras, distribution) -> str:
    """Set the Keras dtype policy from --mixed_precision (or the automatic choice); returns why."""
    mixed = FLAGS.mixed_precision
    why = "--mixed_precision" if mixed else "--nomixed_precision"
    if mixed is None:
        mixed, why = _auto_mixed_precision(tf)
    if mixed:
        keras.mixed_precision.set_global_policy(distribution.mixed_precision_policy(FLAGS.strategy))
    logging.info("Precision: %s (%s).", keras.mixed_precision.global_policy().name, why)
    return why


def _inputs():
    """(model config, TrainData, TrainConfig) from the flags; ValueError / FileNotFoundError
    for bad ones."""
    from kpac_tf.data import pipeline
    from kpac_tf.train.config import TrainConfig, TrainData

    config = _model_config()
    bit_depth = int(FLAGS.bit_depth)
    sources = pipeline.resolve_data(
        FLAGS.data, crop=FLAGS.crop or None, val_spec=FLAGS.val_data, val_crop=FLAGS.val_crop or None,
        val_images=FLAGS.val_images or None, dual_pixel=config.dual_pixel, bit_depth=bit_depth,
        cache=FLAGS.cache, seed=FLAGS.data_seed, synthetic_options=FLAGS.synthetic_options,
        with_radius=FLAGS.infocus_weight != 1.0,
    )
    data = TrainData(
        train=sources.train, val=sources.val, val_crop=FLAGS.val_crop or None,
        description=sources.description,
        pipeline=pipeline.PipelineConfig(
            crop=FLAGS.crop or None, flip_rot=FLAGS.flip_rot, noise_sigma_max=FLAGS.noise_sigma_max,
            bit_depth=bit_depth, seed=FLAGS.data_seed, nan_at_step=FLAGS.debug_nan_at_step,
        ),
    )
    train_config = TrainConfig(
        steps=FLAGS.steps, batch_size=FLAGS.batch_size, learning_rate=FLAGS.lr,
        lr_schedule=FLAGS.lr_schedule, warmup_steps=FLAGS.warmup_steps, ema_decay=FLAGS.ema_decay,
        beta_1=FLAGS.beta1, beta_2=FLAGS.beta2,
        perceptual_weight=FLAGS.perceptual_weight, perceptual_distance=FLAGS.perceptual_distance,
        pixel_loss=FLAGS.pixel_loss, infocus_weight=FLAGS.infocus_weight,
        anchor_weight=FLAGS.anchor_weight, vgg19_weights=FLAGS.vgg19_weights or "imagenet",
        checkpoint_every=FLAGS.checkpoint_every, keep_checkpoints=FLAGS.keep_checkpoints,
        summary_every=FLAGS.summary_every, image_summary_every=FLAGS.image_summary_every,
        eval_every=FLAGS.eval_every, steps_per_loop=FLAGS.steps_per_loop,
        val_batch_size=FLAGS.val_batch_size, seed=FLAGS.seed, deterministic=FLAGS.deterministic,
    )
    return config, data, train_config


def current_settings() -> dict:
    """This invocation's flags as the run record keeps them (JSON values)."""
    module = sys.modules[__name__]
    settings = {f.name: f.value for f in FLAGS.get_flags_for_module(module)}
    settings["preset"] = FLAGS.preset or DEFAULT_PRESET
    return json.loads(json.dumps(settings, default=str))


def previous_settings(workdir: str) -> dict | None:
    """The flags of the run's last invocation, if the work directory has a checkpoint
    and a record to resume (None for a new run)."""
    record = os.path.join(workdir, "train_record.json")
    if not os.path.exists(os.path.join(workdir, "checkpoints", "checkpoint")) or not os.path.isfile(record):
        return None
    try:
        with open(record, encoding="utf-8") as stream:
            return json.load(stream).get("flags") or {}
    except (OSError, ValueError):
        return None


def changed_settings(before: dict, now: dict) -> list[str]:
    """One line per setting that differs from the run's last invocation."""
    lines = []
    for name in sorted(now):
        if name in _NOT_COMPARED or name not in before or before[name] == now[name]:
            continue
        lines.append(f"--{name} is now {_shown(now[name])}; this run used {_shown(before[name])} until now.")
    return lines


def _shown(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)


def _op_error_summary(error) -> str:
    """The sentence of a TensorFlow error, without "Graph execution error:" and the
    Python traceback of the node that TensorFlow adds around it."""
    lines = [line.strip() for line in (error.message or "").splitlines()
             if line.strip() and not line[:1].isspace()
             and not line.startswith(("Graph execution error", "Detected at node"))]
    return lines[0] if lines else type(error).__name__


def _check_usage(argv: list[str]) -> None:
    runner.no_arguments(argv)
    if not FLAGS.data:
        raise runner.usage_error("--data is required (a DPDD folder, SOURCE_DIR,TARGET_DIR, synthetic "
                                 "or pool:DIR).")
    if not FLAGS.workdir:
        raise runner.usage_error("--workdir is required (checkpoints and results go there).")
    if FLAGS.log_every < 0:
        raise runner.usage_error(f"--log_every must be 0 or more, got {FLAGS.log_every}.")
    runner.check_output_dir(FLAGS.workdir, "--workdir")


def _report(result, steps: int, stop: _StopFlag) -> int:
    """Print the outcome; the exit status."""
    if result.step == result.start_step and result.step >= steps:
        where = f"{result.step}/{steps}" if result.step == steps else f"{result.step}, past --steps={steps}"
        print(f"Already at step {where}, nothing to do; weights: {result.weights_path}")
        return runner.EXIT_OK
    if result.step < steps:
        name = signal.Signals(stop.signum).name if stop.requested else "a request"
        sys.stderr.write(f"{runner.name()}: interrupted by {name} at step {result.step}/{steps}; checkpoint "
                         "saved, rerun the same command to resume.\n")
        return 128 + stop.signum if stop.requested else runner.EXIT_FAILED
    psnr = f", validation PSNR {result.val_psnr:.2f} dB" if result.val_psnr is not None else ""
    total = (f" (the run: {result.step} steps in {result.wall_time:.0f} s)"
             if result.start_step else "")
    print(f"Trained steps {result.start_step}..{result.step} in {result.seconds:.0f} s{total}{psnr}; "
          f"weights: {result.weights_path}")
    return runner.EXIT_OK


def main(argv: list[str]) -> int:
    _check_usage(argv)
    settings = current_settings()
    before = previous_settings(FLAGS.workdir)
    changes = changed_settings(before, settings) if before is not None else []
    runner.import_tensorflow()
    import keras
    import tensorflow as tf

    from kpac_tf.model import builder
    from kpac_tf.train import distribution, loop, losses

    # The strategy first: multi-worker collectives must be set up before other TF ops.
    strategy = distribution.make_strategy(FLAGS.strategy, FLAGS.tpu)
    why = _set_precision(tf, keras, distribution)
    try:
        config, data, train_config = _inputs()
    except (ValueError, FileNotFoundError) as error:
        raise runner.setup_error(str(error)) from None
    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    chief = distribution.is_chief(strategy)
    record_extra = {
        "command": " ".join(["kpac-train", *(shlex.quote(a) for a in sys.argv[1:])]),
        "flags": settings,
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "precision_reason": why,
    }
    try:
        result = loop.train(
            lambda: builder.build_kpac(config), data, train_config, FLAGS.workdir,
            strategy=strategy, init_from=FLAGS.init_from,
            on_progress=_Progress(FLAGS.progress and chief, runner.progress_bar_wanted(), FLAGS.log_every,
                                  changes if chief else []),
            should_stop=lambda: stop.requested, record_extra=record_extra,
        )
    except loop.NonFiniteLossError as error:
        raise runner.CommandError(str(error), runner.EXIT_FAILED) from None
    except (losses.VGGWeightsError, FileNotFoundError, ValueError) as error:
        raise runner.setup_error(str(error)) from None
    except tf.errors.OpError as error:
        raise runner.CommandError(
            f"TensorFlow stopped the run ({type(error).__name__}: {_op_error_summary(error)[:300]}); the "
            "last checkpoint is kept: fix the cause and rerun the same command to resume.",
            runner.EXIT_FAILED) from None
    return _report(result, train_config.steps, stop) if chief else runner.EXIT_OK


def run():
    """Console-script entry point."""
    runner.run_command("kpac-train", main)


if __name__ == "__main__":
    run()
