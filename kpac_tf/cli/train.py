"""kpac-train: train KPAC (the paper's two-stage recipe, ablations, synthetic defocus).

    kpac-train --flagfile=experiments/configs/paper_stage1.flags --data=DPDD --workdir=runs/s1
    kpac-train --flagfile=experiments/configs/paper_stage2.flags --data=DPDD --workdir=runs/s2 \\
        --init_from=runs/s1/model.weights.npz
    kpac-train --data=synthetic:deadleaves,skimage --crop=256 --steps=5000 --workdir=runs/synth

``--data``: a DPDD folder (train split; validation on val), ``SOURCE_DIR,TARGET_DIR``,
a folder with ``source/`` and ``target/``, or ``synthetic[:deadleaves,skimage,FOLDER]``.
Rerunning the same command resumes from the last checkpoint in ``--workdir`` (step,
optimizer state, data position). SIGINT / SIGTERM save a checkpoint and stop. The
run ends with ``WORKDIR/model.weights.npz`` and ``WORKDIR/train_record.json``;
TensorBoard logs are in ``WORKDIR/tensorboard``.
"""
from __future__ import annotations

import shlex
import signal
import sys
import time

from absl import app, flags, logging

from kpac_tf.cli import common_flags  # noqa: F401  (--preset, --bit_depth, shared with the other commands)

FLAGS = flags.FLAGS
DEFAULT_PRESET = "kpac-3level"

# Model (--preset comes from common_flags; default here: kpac-3level; dual-pixel
# training: --preset=kpac-dual with DPDD data).
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
    "synthetic[:deadleaves,skimage,photos=DIR,PHOTO_FOLDER], or pool:DIR (pre-rendered pairs, "
    "experiments/render_pool.py).",
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
flags.DEFINE_integer("data_seed", 0, "Seed of the data stream (crops, order, augmentation).")

# Optimisation.
flags.DEFINE_integer("steps", 200_000, "Total training steps (a resumed run continues to this).")
flags.DEFINE_integer("batch_size", 4, "Global batch size.")
flags.DEFINE_float("lr", 1e-4, "Learning rate.")
flags.DEFINE_enum("lr_schedule", "constant", ["constant", "cosine"], "Learning-rate schedule.")
flags.DEFINE_float("beta1", 0.9, "Adam beta_1.")
flags.DEFINE_float("beta2", 0.99, "Adam beta_2.")
flags.DEFINE_float("perceptual_weight", 0.0, "Weight of the VGG19 conv4_4 loss (paper stage 2: 7e-4).")
flags.DEFINE_float("infocus_weight", 1.0, "MAE weight of pixels already in focus (oracle radius < 1 px; "
                   "synthetic and pool data only); 1: the paper's plain MAE.")
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
flags.DEFINE_boolean("progress", True, "Show a progress bar.")

# Distribution.
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "tf.distribute strategy (multi_worker reads TF_CONFIG).")
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu.")
flags.DEFINE_boolean("mixed_precision", None, "Mixed precision: mixed_float16 on a GPU, mixed_bfloat16 "
                     "on a TPU or a CPU; weights stay float32. Default: on where it is fast (a GPU, a "
                     "TPU, or a CPU with AMX-BF16 or AVX512-BF16), off elsewhere.")

# Test hook.
flags.DEFINE_integer("debug_nan_at_step", None, "Testing: make the inputs of this step NaN.")

_MODEL_OVERRIDES = ("levels", "num_blocks", "kernel_size", "kernel_sharing", "scale_attention",
                    "shape_attention", "block_type")


class _StopFlag:
    """Set by SIGINT/SIGTERM; the training loop saves a checkpoint and returns."""

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        if self.requested:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write(f"\nkpac-train: got signal {signum}; saving a checkpoint and stopping.\n")


def _model_config():
    from kpac_tf import models

    overrides = {name: FLAGS[name].value for name in _MODEL_OVERRIDES if FLAGS[name].value is not None}
    if FLAGS.dilations is not None:
        overrides["dilations"] = tuple(int(d) for d in FLAGS.dilations)
    return models.resolve_config(FLAGS.preset or DEFAULT_PRESET, **overrides)


def _progress(enabled: bool):
    """An on_progress callback that drives a tqdm bar (steps/s and ETA)."""
    state = {"bar": None, "last": None}

    def on_progress(step: int, total: int, logs: dict) -> None:
        if not enabled:
            return
        from tqdm import tqdm

        if state["bar"] is None:
            state["bar"] = tqdm(total=total, initial=step, unit="step", dynamic_ncols=True,
                                smoothing=0.05, desc="kpac-train")
        bar = state["bar"]
        if logs:
            postfix = {"loss": f"{logs['loss']:.4f}"}
            if "val_psnr" in logs:
                postfix["val_psnr"] = f"{logs['val_psnr']:.2f}"
            bar.set_postfix(postfix, refresh=False)
        bar.update(step - bar.n)
        if step >= total:
            bar.close()

    return on_progress


def _fail(message: str) -> int:
    sys.stderr.write(f"kpac-train: error: {message}\n")
    return 1


def _auto_mixed_precision(tf) -> tuple[bool, str]:
    """(use mixed precision, why) when --mixed_precision is not given."""
    from kpac_tf import cpu

    if FLAGS.strategy == "tpu" or tf.config.list_physical_devices("GPU"):
        return True, "automatic: an accelerator"
    fast, reason = cpu.fast_bfloat16()
    return fast, f"automatic: {reason}"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}; every option is a --flag.")
    if not FLAGS.data:
        raise app.UsageError("--data is required (a DPDD folder, SOURCE_DIR,TARGET_DIR or synthetic).")
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required (checkpoints and results go there).")

    import tensorflow as tf

    from kpac_tf import losses, models, training
    from kpac_tf.data import pipeline

    # The strategy first: multi-worker collectives must be set up before other TF ops.
    strategy = training.make_strategy(FLAGS.strategy, FLAGS.tpu)
    import keras

    mixed, why = FLAGS.mixed_precision, "--mixed_precision"
    if mixed is None:
        mixed, why = _auto_mixed_precision(tf)
    if mixed:
        policy = training.mixed_precision_policy(FLAGS.strategy)
        keras.mixed_precision.set_global_policy(policy)
    logging.info("Precision: %s (%s).", keras.mixed_precision.global_policy().name, why)

    try:
        config = _model_config()
        bit_depth = int(FLAGS.bit_depth)
        sources = pipeline.resolve_data(
            FLAGS.data, crop=FLAGS.crop or None, val_spec=FLAGS.val_data, val_crop=FLAGS.val_crop or None,
            val_images=FLAGS.val_images or None, dual_pixel=config.dual_pixel, bit_depth=bit_depth,
            cache=FLAGS.cache, seed=FLAGS.data_seed, synthetic_options=FLAGS.synthetic_options,
            with_radius=FLAGS.infocus_weight != 1.0,
        )
        data = training.TrainData(
            train=sources.train,
            val=sources.val,
            val_crop=FLAGS.val_crop or None,
            description=sources.description,
            pipeline=pipeline.PipelineConfig(
                crop=FLAGS.crop or None, flip_rot=FLAGS.flip_rot, noise_sigma_max=FLAGS.noise_sigma_max,
                bit_depth=bit_depth, seed=FLAGS.data_seed, nan_at_step=FLAGS.debug_nan_at_step,
            ),
        )
        train_config = training.TrainConfig(
            steps=FLAGS.steps, batch_size=FLAGS.batch_size, learning_rate=FLAGS.lr,
            lr_schedule=FLAGS.lr_schedule, beta_1=FLAGS.beta1, beta_2=FLAGS.beta2,
            perceptual_weight=FLAGS.perceptual_weight, perceptual_distance=FLAGS.perceptual_distance,
            infocus_weight=FLAGS.infocus_weight, vgg19_weights=FLAGS.vgg19_weights or "imagenet", checkpoint_every=FLAGS.checkpoint_every,
            keep_checkpoints=FLAGS.keep_checkpoints, summary_every=FLAGS.summary_every,
            image_summary_every=FLAGS.image_summary_every, eval_every=FLAGS.eval_every,
            steps_per_loop=FLAGS.steps_per_loop, val_batch_size=FLAGS.val_batch_size,
            seed=FLAGS.seed, deterministic=FLAGS.deterministic,
        )
    except (ValueError, FileNotFoundError) as error:
        return _fail(str(error))

    stop = _StopFlag()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    chief = training.is_chief(strategy)
    record_extra = {
        "command": " ".join(["kpac-train", *(shlex.quote(a) for a in sys.argv[1:])]),
        "flags": {**{f.name: f.value for f in FLAGS.get_flags_for_module(sys.modules[__name__])},
                  "preset": FLAGS.preset or DEFAULT_PRESET, "bit_depth": FLAGS.bit_depth},
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "precision_reason": why,
    }
    started = time.time()
    try:
        result = training.train(
            lambda: models.build_kpac(config),
            data,
            train_config,
            FLAGS.workdir,
            strategy=strategy,
            init_from=FLAGS.init_from,
            on_progress=_progress(FLAGS.progress and chief),
            should_stop=lambda: stop.requested,
            record_extra=record_extra,
        )
    except training.NonFiniteLossError as error:
        return _fail(str(error))
    except (losses.VGGWeightsError, FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    except tf.errors.OpError as error:
        first = (error.message or type(error).__name__).splitlines()[0]
        return _fail(f"TensorFlow stopped the run ({type(error).__name__}: {first[:300]}); the last "
                     "checkpoint is kept: fix the cause and rerun the same command to resume.")
    if not chief:
        return 0
    if result.step < train_config.steps:
        sys.stdout.write(f"Stopped at step {result.step}/{train_config.steps}; rerun the same command "
                         "to resume.\n")
        return 0
    psnr = f", validation PSNR {result.val_psnr:.2f} dB" if result.val_psnr is not None else ""
    sys.stdout.write(
        f"Trained steps {result.start_step}..{result.step} in {time.time() - started:.0f} s "
        f"(total {result.wall_time:.0f} s){psnr}; weights: {result.weights_path}\n"
    )
    return 0


def run():
    app.run(main)


if __name__ == "__main__":
    run()
