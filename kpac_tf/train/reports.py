"""What a training run reports on its steps: TensorBoard scalars and image previews
(written with TensorFlow alone, no tensorboard package), and the validation pass.

Images are float32 NHWC in [0, 1].
"""
from __future__ import annotations

import keras
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from kpac_tf.data import pipeline as kpipe
from kpac_tf.train.config import TrainConfig, TrainData
from kpac_tf.train.distribution import run_and_sum


__all__ = ["Reporter", "due", "make_evaluator", "preview_batch", "preview_row", "summary_images",
           "summary_scalar"]


def due(step: int, every: int) -> bool:
    """Whether a period of ``every`` steps (0: never) ends at ``step``."""
    return every > 0 and step % every == 0


def _plugin_metadata(plugin: str) -> bytes:
    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin)
    ).SerializeToString()


def summary_scalar(name: str, value: float) -> None:
    """A TensorBoard scalar, written with TensorFlow alone (no tensorboard package)."""
    tf.summary.write(name, tf.constant(value, tf.float32), metadata=_plugin_metadata("scalars"))


def summary_images(name: str, images: tf.Tensor) -> None:
    """TensorBoard images (NHWC float in [0, 1]) as 8-bit PNGs, TensorFlow alone."""
    images = tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)
    encoded = [tf.io.encode_png(image) for image in tf.unstack(images)]
    shape = tf.shape(images)
    payload = tf.concat([tf.strings.as_string([shape[2], shape[1]]), tf.stack(encoded)], axis=0)
    tf.summary.write(name, payload, metadata=_plugin_metadata("images"))


def preview_row(inputs, target, output, max_images: int = 3) -> tf.Tensor:
    """[input | output | target] side by side, NHWC in [0, 1], for image summaries."""
    if isinstance(inputs, (tuple, list)):
        inputs = inputs[-1]  # the centre view
    row = tf.concat([inputs, tf.clip_by_value(output, 0.0, 1.0), target], axis=2)
    return row[:max_images]


def preview_batch(data: TrainData):
    """A small fixed batch (validation if available, else training) for image summaries."""
    if data.val is not None:
        dataset = kpipe.make_eval_dataset(data.val, crop=data.val_crop or 256, bit_depth=data.pipeline.bit_depth,
                                          per_replica_batch=1)
        inputs, target, _ = next(iter(dataset))
    else:
        batch = next(iter(kpipe.make_train_dataset(data.train, data.pipeline, per_replica_batch=1)))
        inputs, target = batch[0], batch[1]
    return inputs, target


def make_evaluator(strategy: tf.distribute.Strategy, trainer: keras.Model, data: TrainData,
                   config: TrainConfig):
    """A function running one distributed validation pass -> {"psnr", "input_psnr", "mae",
    "images"} (input_psnr: the blurred input itself, the score to beat)."""
    if config.val_batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"The validation batch {config.val_batch_size} does not split over "
            f"{strategy.num_replicas_in_sync} replicas; use a multiple of it."
        )

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return kpipe.make_eval_dataset(
            data.val, crop=data.val_crop, bit_depth=data.pipeline.bit_depth,
            per_replica_batch=context.get_per_replica_batch_size(config.val_batch_size),
            global_batch=config.val_batch_size,
            pipeline_id=context.input_pipeline_id,
            num_pipelines=context.num_input_pipelines,
        )

    dataset = strategy.distribute_datasets_from_function(dataset_fn)

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        return run_and_sum(strategy, trainer.test_step, batch)

    def evaluate() -> dict[str, float]:
        sums = {"psnr_sum": 0.0, "input_psnr_sum": 0.0, "mae_sum": 0.0, "count": 0.0}
        for batch in dataset:
            out = eval_step(batch)
            for k in sums:
                sums[k] += float(out[k].numpy())
        count = max(sums["count"], 1.0)
        return {"psnr": sums["psnr_sum"] / count, "input_psnr": sums["input_psnr_sum"] / count,
                "mae": sums["mae_sum"] / count, "images": int(sums["count"])}

    return evaluate


class Reporter:
    """TensorBoard scalars and previews, and the validation pass, on their steps.

    Args:
      strategy: the run's tf.distribute strategy.
      network: the model being trained (previews).
      trainer: its KPACTrainer (the validation step).
      data, config: the run's TrainData and TrainConfig.
      tensorboard_dir: where summaries go; None on a worker that is not the chief
        (nothing is written, validation still runs: it is a collective operation).
    """

    def __init__(self, strategy: tf.distribute.Strategy, network: keras.Model,
                 trainer: keras.Model, data: TrainData, config: TrainConfig,
                 tensorboard_dir: str | None):
        self.config = config
        self.network = network
        self.evaluate = (make_evaluator(strategy, trainer, data, config)
                         if data.val is not None else None)
        self.writer = (tf.summary.create_file_writer(tensorboard_dir) if tensorboard_dir
                       else tf.summary.create_noop_writer())
        self.preview = (preview_batch(data) if tensorboard_dir and config.image_summary_every
                        else None)

    def uses_network(self, step: int) -> bool:
        """Whether :meth:`report` at ``step`` runs the network (a preview or validation)."""
        config = self.config
        return ((self.preview is not None and due(step, config.image_summary_every))
                or (self.evaluate is not None and (due(step, config.eval_every) or step == config.steps)))

    def report(self, step: int, logs: dict[str, float]) -> float | None:
        """Writes what is due at ``step``. A validation pass adds val_* to ``logs`` and
        returns the validation PSNR (dB); otherwise None."""
        config, val_psnr = self.config, None
        with self.writer.as_default(step=step):
            if due(step, config.summary_every) or step == config.steps:
                for name, value in logs.items():
                    summary_scalar(f"train/{name}", value)
            if self.preview is not None and due(step, config.image_summary_every):
                inputs, target = self.preview
                output = tf.cast(self.network(inputs, training=False), tf.float32)
                summary_images("preview/input_output_target", preview_row(inputs, target, output))
            if self.evaluate is not None and (due(step, config.eval_every) or step == config.steps):
                val_logs = self.evaluate()
                val_psnr = val_logs["psnr"]
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
                for name, value in val_logs.items():
                    summary_scalar(f"val/{name}", value)
                logging.info("step %d: validation PSNR %.3f dB (input %.3f dB) over %d images.", step,
                             val_psnr, val_logs["input_psnr"], val_logs["images"])
        self.writer.flush()
        return val_psnr
