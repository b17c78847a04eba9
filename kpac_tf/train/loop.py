"""The trainer: one custom train step, run by a custom loop under any tf.distribute strategy.

:class:`KPACTrainer` is a Keras model wrapper whose ``train_step`` computes
``pixel + perceptual_weight * perceptual`` (pixel: MAE as in the paper, or MSE) under
``tf.GradientTape``, averaged over the *global* batch with ``tf.nn.compute_average_loss``
(Keras' optimizer sums gradients over replicas), and whose ``test_step`` reports PSNR.
:func:`train` runs that same ``train_step`` through ``strategy.run`` for every strategy
(default, mirrored, multi-worker, TPU): Keras 3 ``fit`` does not work under
MultiWorkerMirroredStrategy, so there is one loop and one step function for all of them.

:func:`train` also owns the run's life cycle in a work directory::

    WORKDIR/checkpoints/   tf.train.Checkpoint of model, optimizer, step, wall time
    WORKDIR/tensorboard/   scalars (losses, learning rate, steps/s, validation PSNR), images
    WORKDIR/model.weights.npz  final weights (kpac_tf.model.weights format)
    WORKDIR/train_record.json  what was run: command, data, steps, wall time, results, and
                               every invocation of the run ("history")

- Resuming: rerunning in the same work directory restores the latest checkpoint
  (model, optimizer state, step) and restarts the data stream at that step: the
  pipeline is indexed by sample number (:mod:`kpac_tf.data.pipeline`), so the data
  position is the step. TensorFlow writes checkpoint files under temporary names and
  updates the ``checkpoint`` index atomically, so a run killed at any moment (even
  SIGKILL during a save) resumes from its last complete checkpoint. A checkpoint that
  does not read (its data file cut short by a full disk or a broken copy, its index
  missing) is named in one warning and the run resumes from the newest one that reads
  (the record's ``damaged_checkpoints`` and ``resumed_from`` say so); when none reads,
  :class:`~kpac_tf.train.checkpoints.CheckpointsUnreadableError` names them all. A finished run
  (checkpoint at ``steps``, weights and record written) is left alone: ``train``
  returns its result and writes nothing.
- NaN guard: a non-finite loss stops the run with :class:`NonFiniteLossError` before
  anything else is saved; the last good checkpoint stays the latest.
- Multi-worker: every worker runs the same loop; only the chief writes summaries,
  weights and the record (the others write throw-away checkpoints, because saving
  is a collective operation).

Strategies, precision and the chief live in :mod:`kpac_tf.train.distribution`; summaries,
previews and the validation pass in :mod:`kpac_tf.train.reports`; the work directory,
its checkpoints and the record in :mod:`kpac_tf.train.checkpoints`.

Images everywhere are float32 NHWC in [0, 1].
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from typing import Any, Callable

import keras
import tensorflow as tf
from absl import logging

from kpac_tf.data import pipeline as kpipe
from kpac_tf.evaluation.metrics import batch_psnr
from kpac_tf.files import error_line
from kpac_tf.train import anchor as kanchor
from kpac_tf.train import checkpoints as kckpt
from kpac_tf.train import ema as kema
from kpac_tf.train import losses as klosses
from kpac_tf.train.config import TrainConfig, TrainData
from kpac_tf.train.distribution import is_chief, run_and_sum, strategy_name, worker_task
from kpac_tf.train.reports import Reporter, due

__all__ = [
    "KPACTrainer",
    "NonFiniteLossError",
    "TrainResult",
    "make_optimizer",
    "make_train_loop",
    "train",
]

#: Test hook: when this environment variable holds a step number, the training process
#: kills itself with SIGKILL right after that step (and its checkpoint, if one is due),
#: so tests can kill a run at a known step. Unset or empty: no effect.
KILL_AT_STEP_ENV = "KPAC_TF_TEST_KILL_AT_STEP"
_MAX_PSNR = 100.0
#: Pixels whose oracle blur radius is below this (pixels) count as in focus.
INFOCUS_RADIUS = 1.0


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped without saving."""


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train` (``network``: the trained Keras model; ``wall_time``: the
    run's training time over all invocations, ``seconds``: this invocation's, in seconds)."""

    step: int
    start_step: int
    logs: dict[str, float]
    val_psnr: float | None
    weights_path: str | None
    wall_time: float
    record: dict[str, Any]
    network: keras.Model | None = None
    seconds: float = 0.0


def train(
    model_fn: Callable[[], keras.Model],
    data: TrainData,
    config: TrainConfig,
    workdir: str,
    *,
    strategy: tf.distribute.Strategy | None = None,
    init_from: str | None = None,
    on_progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    record_extra: dict | None = None,
) -> TrainResult:
    """Train (or resume training) a KPAC model.

    Args:
        model_fn: builds the network (called inside the strategy's scope).
        data: training / validation sources and the pipeline config.
        config: optimisation and bookkeeping settings.
        workdir: the run's directory (created; holds checkpoints, summaries, outputs).
        strategy: a tf.distribute strategy (default: the current one).
        init_from: weights to start from when the run has no checkpoint yet (anything
            :func:`kpac_tf.model.weights.load_weights` reads: own file, authors' npz, preset).
        on_progress: called as ``on_progress(step, total_steps, logs)`` after every
            loop call (the command drives its progress bar with it).
        should_stop: polled between loop calls; True saves a checkpoint and returns early
            (e.g. on SIGTERM).
        record_extra: extra fields for the JSON record (command line, ...).

    Mixed precision: set the Keras dtype policy before calling; under
    "mixed_float16" the optimizer gets dynamic loss scaling.

    Returns:
        A :class:`TrainResult`.

    Raises:
        NonFiniteLossError: the loss became NaN/inf (nothing saved after it).
        ValueError: bad data or settings, found before the first step.
        VGGWeightsError / FileNotFoundError: perceptual loss weights unavailable.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if config.anchor_weight > 0 and not init_from:
        raise ValueError("anchor_weight pulls toward the init_from weights; give init_from.")
    paths = _open_workdir(strategy, config, workdir)
    _check_data(data)
    keras.utils.set_random_seed(config.seed)
    run = _build_run(model_fn, config, strategy, paths)
    _restore_or_initialise(run, init_from)
    if run.trainer.anchor:
        kanchor.load_anchor(run.trainer.anchor, model_fn, init_from)
    if _already_finished(run, config):
        logging.info("Already at step %d of %d: nothing to do; nothing is written.", run.start_step,
                     config.steps)
        return _finished_result(paths, run.start_step, run.wall_before, run.network)
    iterator = _train_iterator(strategy, data, config, run.start_step)
    train_loop = make_train_loop(strategy, run.trainer)
    reporter = Reporter(strategy, run.network, run.trainer, data, config,
                        run.paths.tensorboard if run.paths.chief else None)

    run.start_clock()
    if on_progress is not None:
        on_progress(run.step, config.steps, {})
    try:
        if _train_steps(run, train_loop, iterator, reporter, config, on_progress, should_stop):
            if run.last_saved != run.step:
                run.save()
            logging.info("Stopped at step %d on request; checkpoint saved.", run.step)
    finally:
        reporter.writer.flush()
        paths.cleanup()

    wall_time = run.wall_before + run.seconds()
    record = _run_record(run, data, config, strategy, init_from, wall_time)
    record.update(record_extra or {})
    return _finish(run, record, config, wall_time)


# ---------------------------------------------------------------------------------------
# The Keras wrapper with the one step function.


class KPACTrainer(keras.Model):
    """Wraps a KPAC model with its training and evaluation steps.

    Args:
        network: the KPAC Keras model (images [0,1] NHWC in and out).
        perceptual: a :class:`kpac_tf.train.losses.PerceptualLoss`, or None for MAE only.
        perceptual_weight: its weight in the total loss.
        infocus_weight: pixel-loss weight of in-focus pixels (radius < ``INFOCUS_RADIUS``)
            for batches that carry radius maps.
        pixel_loss: "mae" (the paper) or "mse" (see :data:`kpac_tf.train.losses.PIXEL_LOSSES`).
        anchor_weight: above 0, the L2 pull toward the start weights
            (:mod:`kpac_tf.train.anchor`); ``anchor`` then holds them (filled by the caller).

    ``train_step`` logs ``loss`` (the total, with the pull), ``mae`` (the weighted MAE, whatever the
    pixel loss, so that runs stay comparable) and ``perceptual``.

    ``train_step((inputs, target[, radius]))`` returns the global-batch mean losses *of this
    replica's share*: summed over replicas (``strategy.reduce(SUM)``) they give the
    global mean. ``test_step((inputs, target[, weight]))`` returns weighted sums
    (``psnr_sum`` of the clipped output, ``input_psnr_sum`` of the blurred input,
    ``mae_sum``, ``count``) to be summed over replicas and batches.
    """

    def __init__(self, network: keras.Model, perceptual: klosses.PerceptualLoss | None = None,
                 perceptual_weight: float = 0.0, infocus_weight: float = 1.0,
                 pixel_loss: str = "mae", anchor_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if perceptual_weight > 0 and perceptual is None:
            raise ValueError("A positive perceptual weight needs a PerceptualLoss.")
        self.pixel_loss = klosses.check_pixel_loss(pixel_loss)
        self.network = network
        self.perceptual = perceptual
        self.perceptual_weight = float(perceptual_weight)
        self.infocus_weight = float(infocus_weight)
        self.anchor_weight = float(anchor_weight)
        self.anchor = kanchor.anchor_variables(network) if anchor_weight > 0 else []

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def per_example_losses(self, target: tf.Tensor, output: tf.Tensor,
                           radius: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
        """{"pixel", "mae", "perceptual", "total"}: [N] float32 each. With ``radius``
        [N,H,W,1] (pixels), the pixel loss and the MAE weigh in-focus pixels by
        ``infocus_weight``."""
        weight = None
        if radius is not None and self.infocus_weight != 1.0:
            weight = tf.where(radius < INFOCUS_RADIUS, self.infocus_weight, 1.0)
        mae = klosses.pixel_loss(target, output, "mae", weight)
        pixel = mae if self.pixel_loss == "mae" else klosses.pixel_loss(target, output, self.pixel_loss, weight)
        if self.perceptual is not None and self.perceptual_weight > 0:
            perceptual = self.perceptual(target, output)
        else:
            perceptual = tf.zeros_like(mae)
        return {"pixel": pixel, "mae": mae, "perceptual": perceptual,
                "total": pixel + self.perceptual_weight * perceptual}

    def train_step(self, data):
        inputs, target = data[0], data[1]
        radius = data[2] if len(data) > 2 else None
        variables = self.network.trainable_variables
        with tf.GradientTape() as tape:
            output = tf.cast(self.network(inputs, training=True), tf.float32)
            per_example = self.per_example_losses(target, output, radius)
            loss = tf.nn.compute_average_loss(per_example["total"])
            if self.anchor:  # once per global batch: each replica adds its share
                loss += tf.nn.scale_regularization_loss(
                    kanchor.anchor_penalty(variables, self.anchor, self.anchor_weight))
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return {
            "loss": loss,
            "mae": tf.nn.compute_average_loss(per_example["mae"]),
            "perceptual": tf.nn.compute_average_loss(per_example["perceptual"]),
        }

    def test_step(self, data):
        if len(data) == 3:
            inputs, target, weight = data
        else:
            (inputs, target), weight = data, None
        output = tf.clip_by_value(tf.cast(self.network(inputs, training=False), tf.float32), 0.0, 1.0)
        target = tf.cast(target, tf.float32)
        if weight is None:
            weight = tf.ones([tf.shape(target)[0]], tf.float32)
        blurred = tf.cast(inputs[-1] if isinstance(inputs, (tuple, list)) else inputs, tf.float32)
        mae = tf.reduce_mean(tf.abs(output - target), axis=[1, 2, 3])
        return {
            "psnr_sum": tf.reduce_sum(batch_psnr(output, target, _MAX_PSNR) * weight),
            "input_psnr_sum": tf.reduce_sum(batch_psnr(blurred, target, _MAX_PSNR) * weight),
            "mae_sum": tf.reduce_sum(mae * weight),
            "count": tf.reduce_sum(weight),
        }


def make_train_loop(strategy: tf.distribute.Strategy, trainer: KPACTrainer):
    """``train_loop(iterator, num_steps) -> (mean_logs, bad_index)``, compiled.

    Runs ``trainer.train_step`` through ``strategy.run`` ``num_steps`` times on
    batches from a distributed ``iterator``; ``mean_logs`` are the global-batch losses
    averaged over the steps, ``bad_index`` the 0-based index of the first step whose
    loss was not finite (-1 if none). One step is a plain function (quicker to
    compile); several run in a ``tf.while_loop`` (less host overhead, e.g. on TPUs).
    """

    def step(iterator):
        return run_and_sum(strategy, trainer.train_step, next(iterator))

    @tf.function
    def single(iterator):
        logs = step(iterator)
        return logs, tf.where(tf.math.is_finite(logs["loss"]), -1, 0)

    @tf.function
    def several(iterator, num_steps):
        zero = tf.constant(0.0, tf.float32)
        totals = {"loss": zero, "mae": zero, "perceptual": zero}
        bad_index = tf.constant(-1, tf.int32)
        for index in tf.range(num_steps):
            logs = step(iterator)
            finite = tf.math.is_finite(logs["loss"])
            bad_index = tf.where(tf.logical_and(bad_index < 0, tf.logical_not(finite)), index, bad_index)
            totals = {k: totals[k] + logs[k] for k in totals}
        count = tf.cast(num_steps, tf.float32)
        return {k: v / count for k, v in totals.items()}, bad_index

    def train_loop(iterator, num_steps: int):
        if num_steps == 1:
            return single(iterator)
        return several(iterator, tf.constant(num_steps, tf.int32))

    return train_loop


def make_optimizer(config: TrainConfig, loss_scaling: bool = False) -> keras.optimizers.Optimizer:
    """Adam as configured (a constant or cosine learning rate, after an optional linear
    warm-up; a moving average of the weights if ``ema_decay``); ``loss_scaling``
    wraps it in a LossScaleOptimizer for float16 training."""
    learning_rate: Any = config.learning_rate
    if config.lr_schedule == "cosine" or config.warmup_steps:
        # alpha=1 holds the rate constant after the warm-up; alpha=0 decays it to 0 at ``steps``.
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0 if config.warmup_steps else config.learning_rate,
            decay_steps=config.steps - config.warmup_steps,
            alpha=0.0 if config.lr_schedule == "cosine" else 1.0,
            warmup_target=config.learning_rate if config.warmup_steps else None,
            warmup_steps=config.warmup_steps,
        )
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate, beta_1=config.beta_1, beta_2=config.beta_2, epsilon=config.epsilon,
        use_ema=config.ema_decay > 0, ema_momentum=config.ema_decay or 0.99,
    )
    if loss_scaling:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


# ---------------------------------------------------------------------------------------
# The run's state and the phases of its life cycle.


@dataclasses.dataclass
class _Run:
    """What the phases of one :func:`train` invocation share: the model, its trainer and
    optimizer, the checkpoint, and where the run stands (steps, wall time, last logs)."""

    network: keras.Model
    trainer: KPACTrainer
    optimizer: keras.optimizers.Optimizer
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    step_var: tf.Variable
    wall_var: tf.Variable
    paths: kckpt.Workdir
    start_step: int = 0
    step: int = 0
    last_saved: int | None = None
    wall_before: float = 0.0
    started: float = 0.0
    logs: dict = dataclasses.field(default_factory=dict)
    val_psnr: float | None = None
    resumed_from: str | None = None
    damaged_checkpoints: list = dataclasses.field(default_factory=list)

    def start_clock(self) -> None:
        """This invocation's training time counts from now."""
        self.started = time.time()

    def seconds(self) -> float:
        """Seconds since :meth:`start_clock`."""
        return time.time() - self.started

    def save(self) -> None:
        """A checkpoint at the current step, with the run's wall time so far."""
        self.wall_var.assign(self.wall_before + self.seconds())
        self.manager.save(checkpoint_number=self.step)
        self.last_saved = self.step


def _open_workdir(strategy: tf.distribute.Strategy, config: TrainConfig, workdir: str) -> kckpt.Workdir:
    """Checks the batch against the replicas, creates the work directory and sets op
    determinism when asked."""
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(
            f"The batch size {config.batch_size} does not split over {replicas} replicas; "
            f"use a multiple of {replicas}."
        )
    _, task_id = worker_task(strategy)
    paths = kckpt.Workdir(workdir, is_chief(strategy), task_id)
    tf.io.gfile.makedirs(workdir)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    return paths


def _build_run(model_fn: Callable[[], keras.Model], config: TrainConfig,
               strategy: tf.distribute.Strategy, paths: kckpt.Workdir) -> _Run:
    """The network, trainer, optimizer and checkpoint, built in the strategy's scope."""
    with strategy.scope():
        network = model_fn()
        perceptual = None
        if config.perceptual_weight > 0:
            perceptual = klosses.PerceptualLoss(config.vgg19_weights, config.perceptual_distance)
        trainer = KPACTrainer(network, perceptual, config.perceptual_weight, config.infocus_weight,
                              config.pixel_loss, config.anchor_weight)
        loss_scaling = keras.mixed_precision.global_policy().name == "mixed_float16"
        optimizer = make_optimizer(config, loss_scaling)
        trainer.compile(optimizer=optimizer, jit_compile=False)
        optimizer.build(network.trainable_variables)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        wall_var = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="wall_time")
    checkpoint = tf.train.Checkpoint(model=network, optimizer=optimizer, step=step_var, wall_time=wall_var)
    manager = tf.train.CheckpointManager(
        checkpoint, paths.write_checkpoints, max_to_keep=config.keep_checkpoints, checkpoint_name="ckpt"
    )
    return _Run(network, trainer, optimizer, checkpoint, manager, step_var, wall_var, paths)


def _restore_or_initialise(run: _Run, init_from: str | None) -> None:
    """Resumes from the newest checkpoint that reads, else loads ``init_from`` (if any);
    sets where the run starts. Newer checkpoints that do not read (cut short, index
    missing) are named in one warning line and kept in ``run.damaged_checkpoints``."""
    from kpac_tf.model import weights as kweights

    latest, run.damaged_checkpoints = kckpt.newest_readable_checkpoint(run.paths.checkpoints)
    if latest:
        kckpt.check_same_averaging(run.paths.record, run.optimizer)
        kckpt.restore(run.checkpoint, latest)
        run.resumed_from = latest
        logging.info("Resumed from %s (step %d).", latest, int(run.step_var.numpy()))
        if init_from:
            logging.info("Ignoring init_from=%s: the run resumes from its checkpoint.", init_from)
    elif init_from:
        kweights.load_weights(run.network, init_from)
        logging.info("Initialised the model from %s.", init_from)
    run.start_step = run.step = int(run.step_var.numpy())
    run.last_saved = run.start_step if latest else None
    run.wall_before = float(run.wall_var.numpy())


def _already_finished(run: _Run, config: TrainConfig) -> bool:
    paths = run.paths
    return (run.start_step >= config.steps and tf.io.gfile.exists(paths.weights)
            and tf.io.gfile.exists(paths.record))


def _finished_result(paths: kckpt.Workdir, step: int, wall_time: float, network) -> TrainResult:
    """The result of a run that was already finished, from its files (nothing is written)."""
    record = kckpt.read_record(paths.record)
    return TrainResult(step=step, start_step=step, logs=record.get("final_logs", {}),
                       val_psnr=record.get("val_psnr"), weights_path=paths.weights,
                       wall_time=wall_time, record=record, network=network)


def _check_data(data: TrainData) -> None:
    """Build one training sample eagerly, so bad data fails before training starts."""
    dataset = kpipe.make_train_dataset(data.train, data.pipeline, per_replica_batch=1)
    try:
        next(iter(dataset))
    except tf.errors.OpError as error:
        raise ValueError(f"The training data cannot be read: {error_line(error)}") from None


def _train_iterator(strategy: tf.distribute.Strategy, data: TrainData, config: TrainConfig,
                    start_step: int):
    """The distributed training stream, starting at ``start_step`` (the data position)."""

    def train_dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return kpipe.make_train_dataset(
            data.train, data.pipeline,
            per_replica_batch=context.get_per_replica_batch_size(config.batch_size),
            global_batch=config.batch_size,
            pipeline_id=context.input_pipeline_id,
            num_pipelines=context.num_input_pipelines,
            start_step=start_step,
        )

    return iter(strategy.distribute_datasets_from_function(train_dataset_fn))


# ---------------------------------------------------------------------------------------
# The loop.


def _train_steps(run: _Run, train_loop: Callable, iterator: Any, reporter: Reporter,
                 config: TrainConfig, on_progress: Callable[[int, int, dict], None] | None,
                 should_stop: Callable[[], bool] | None) -> bool:
    """Train from ``run.step`` to ``config.steps``: chunks of steps, then validation and
    summaries (on the moving average when there is one), checkpoints and progress.
    Returns True when ``should_stop`` ended it early."""
    while run.step < config.steps:
        if should_stop is not None and should_stop():
            return True
        _train_chunk(run, train_loop, iterator, _next_chunk(run.step, config))
        with kema.averaged_weights(run.optimizer, run.network.trainable_variables,
                                   reporter.uses_network(run.step)):
            val_psnr = reporter.report(run.step, run.logs)
        run.val_psnr = run.val_psnr if val_psnr is None else val_psnr
        if due(run.step, config.checkpoint_every) or run.step == config.steps:
            run.save()
        _kill_if_asked(run.step)
        if on_progress is not None:
            on_progress(run.step, config.steps, run.logs)
        if due(run.step, config.summary_every):
            logging.info("step %d/%d: %s", run.step, config.steps,
                         ", ".join(f"{k} {v:.5g}" for k, v in run.logs.items()))
    return False


def _next_chunk(step: int, config: TrainConfig) -> int:
    """Steps of the next loop call from ``step``: at most ``steps_per_loop``, ending on
    the next checkpoint, summary, image-summary or evaluation step, or the run's end."""
    boundaries = [config.steps, config.steps_per_loop + step]
    for every in (config.checkpoint_every, config.summary_every, config.image_summary_every,
                  config.eval_every):
        if every > 0:
            boundaries.append((step // every + 1) * every)
    return min(boundaries) - step


def _train_chunk(run: _Run, train_loop, iterator, num_steps: int) -> None:
    """``num_steps`` training steps; the run's step and logs move on (NonFiniteLossError,
    nothing saved, if a loss is not finite)."""
    loop_start = time.time()
    mean_logs, bad_index = train_loop(iterator, num_steps)
    bad_index = int(bad_index.numpy())
    if bad_index >= 0:
        where = (f"the last good checkpoint (step {run.last_saved}) is kept in {run.paths.checkpoints}"
                 if run.last_saved is not None else "no checkpoint had been written yet")
        raise NonFiniteLossError(
            f"The training loss became NaN or infinite at step {run.step + bad_index + 1}; "
            f"training stopped without saving and {where}. Lower the learning rate or "
            "check the data, then rerun to resume."
        )
    elapsed = time.time() - loop_start
    run.step += num_steps
    run.step_var.assign(run.step)
    run.logs = {k: float(v.numpy()) for k, v in mean_logs.items()}
    run.logs["learning_rate"] = _current_lr(run.optimizer)
    run.logs["steps_per_sec"] = num_steps / max(elapsed, 1e-9)


def _current_lr(optimizer) -> float:
    value = optimizer.learning_rate
    return float(value.numpy() if hasattr(value, "numpy") else value)


def _kill_if_asked(step: int) -> None:
    """The :data:`KILL_AT_STEP_ENV` test hook: SIGKILL this process at that step."""
    kill_at = os.environ.get(KILL_AT_STEP_ENV)
    if kill_at and step >= int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)


def _run_record(run: _Run, data: TrainData, config: TrainConfig, strategy, init_from,
                wall_time: float) -> dict:
    """The JSON record of this invocation (before history and weights)."""
    from kpac_tf.model import builder as kmodels

    network = run.network
    return {
        "data": data.description,
        "train_source": data.train.describe(),
        "val_source": data.val.describe() if data.val is not None else None,
        "pipeline": dataclasses.asdict(data.pipeline),
        "config": dataclasses.asdict(config),
        "model": kmodels.model_config(network).to_dict() if hasattr(network, "kpac_config") else None,
        "strategy": strategy_name(strategy),
        "replicas": strategy.num_replicas_in_sync,
        "start_step": run.start_step,
        "step": run.step,
        "finished": run.step >= config.steps,
        "init_from": init_from,
        "wall_time_seconds": round(wall_time, 3),
        "final_logs": run.logs,
        "val_psnr": run.val_psnr,
        "resumed_from": run.resumed_from,
        "damaged_checkpoints": run.damaged_checkpoints,
    }


def _finish(run: _Run, record: dict, config: TrainConfig, wall_time: float) -> TrainResult:
    """Writes the final weights (a finished run) and the record with the run's history
    (chief only); an invocation that trained nothing keeps the run's record."""
    from kpac_tf.model import weights as kweights

    paths, weights_path = run.paths, None
    seconds = run.seconds()
    if run.step == run.start_step and paths.chief and tf.io.gfile.exists(paths.record):
        # Nothing trained (stopped before the first step): keep the run's record.
        record = kckpt.read_record(paths.record)
        run.logs, run.val_psnr = record.get("final_logs", {}), record.get("val_psnr")
    elif paths.chief:
        record["history"] = kckpt.history(paths.record, record, seconds)
    if paths.chief:
        if run.step >= config.steps:
            kema.use_average(run.optimizer, run.network.trainable_variables)
            weights_path = str(kweights.save_weights(run.network, paths.weights))
            record["weights"] = weights_path
        kckpt.write_record(paths.record, record)
    return TrainResult(step=run.step, start_step=run.start_step, logs=run.logs,
                       val_psnr=run.val_psnr, weights_path=weights_path, wall_time=wall_time,
                       record=record, network=run.network, seconds=seconds)
