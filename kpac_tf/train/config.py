"""What a training run is given: its optimisation and bookkeeping settings
(:class:`TrainConfig`) and its data (:class:`TrainData`)."""
from __future__ import annotations

import dataclasses

from kpac_tf.data import pipeline as kpipe
from kpac_tf.train import losses as klosses

__all__ = ["LR_SCHEDULES", "TrainConfig", "TrainData"]

LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings (defaults: the paper's stage 1).

    steps: total optimisation steps of the run (a resumed run continues to this).
    batch_size: global batch (over all replicas); crop size lives in the PipelineConfig.
    learning_rate, lr_schedule: Adam's step size; "constant" (the paper) or "cosine"
        (decays to 0 at ``steps``).
    warmup_steps: the rate rises linearly from 0 over this many first steps (0: none),
        then follows the schedule over the remaining steps. A run continued from other
        weights starts with an empty Adam state, whose first updates are full-size
        whatever the gradient; a warm-up keeps them from undoing the weights it starts
        from.
    beta_1, beta_2, epsilon: Adam (paper: 0.9, 0.99; epsilon as TF1's Adam).
    ema_decay: above 0, the optimizer keeps an exponential moving average of the
        weights with this decay per step (:mod:`kpac_tf.train.ema`; 0.999 averages over about
        the last 1000 steps); validation, previews and the final weights use it.
    perceptual_weight: weight of the VGG19 block4_conv4 loss (paper stage 2: 7e-4).
    pixel_loss: "mae" (the paper's) or "mse" (the distance PSNR scores; e.g. for a short
        final phase of a run trained with MAE).
    infocus_weight: weight in the pixel loss of pixels already in focus (oracle blur radius
        below ``kpac_tf.train.loop.INFOCUS_RADIUS`` px) when the data carries radius
        maps (synthetic and pooled pairs); other pixels weigh 1. Above 1 it penalises
        changing in-focus content; 1 is the paper's plain MAE.
    anchor_weight: above 0, the loss adds ``anchor_weight / 2 * sum((w - w0) ** 2)``
        over the trainable weights, ``w0`` being the ``init_from`` weights the run
        started from (L2-SP, :mod:`kpac_tf.train.anchor`), so a continued run keeps
        what it does not need to change; needs ``init_from``. 0: no pull.
    perceptual_distance: "squared" or "absolute" feature distance.
    vgg19_weights: "imagenet" (download), a local notop .h5 path, or None (random;
        tests only).
    checkpoint_every, keep_checkpoints: checkpoint period (steps) and how many to keep.
    summary_every, image_summary_every, eval_every: TensorBoard periods (0 = never).
    steps_per_loop: training steps per compiled loop call (more: less host overhead).
    val_batch_size: global batch of the validation pass.
    seed: model initialisation seed (the data seed is in the PipelineConfig).
    deterministic: make TensorFlow ops deterministic (slower on some devices).
    """

    steps: int = 200_000
    batch_size: int = 4
    learning_rate: float = 1e-4
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    beta_1: float = 0.9
    beta_2: float = 0.99
    epsilon: float = 1e-8
    ema_decay: float = 0.0
    perceptual_weight: float = 0.0
    pixel_loss: str = "mae"
    infocus_weight: float = 1.0
    anchor_weight: float = 0.0
    perceptual_distance: str = "squared"
    vgg19_weights: str | None = "imagenet"
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    summary_every: int = 100
    image_summary_every: int = 1000
    eval_every: int = 5000
    steps_per_loop: int = 1
    val_batch_size: int = 1
    seed: int = 0
    deterministic: bool = False

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.learning_rate <= 0:
            raise ValueError(f"The learning rate must be positive, got {self.learning_rate}.")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}.")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps} of {self.steps}.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}.")
        if self.perceptual_weight < 0:
            raise ValueError(f"perceptual_weight must be >= 0, got {self.perceptual_weight}.")
        klosses.check_pixel_loss(self.pixel_loss)
        if self.infocus_weight <= 0:
            raise ValueError(f"infocus_weight must be positive, got {self.infocus_weight}.")
        if self.anchor_weight < 0:
            raise ValueError(f"anchor_weight must be >= 0, got {self.anchor_weight}.")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}.")
        if self.steps_per_loop < 1:
            raise ValueError(f"steps_per_loop must be at least 1, got {self.steps_per_loop}.")


@dataclasses.dataclass
class TrainData:
    """What to train on.

    train: the training source; val: an optional validation source (finite).
    pipeline: crops, augmentation, bit depth and data seed.
    val_crop: centre-crop side for validation (None: whole images).
    description: free text for the run record (e.g. the --data value).
    """

    train: kpipe.PairSource
    pipeline: kpipe.PipelineConfig
    val: kpipe.PairSource | None = None
    val_crop: int | None = None
    description: str = ""
