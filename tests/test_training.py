"""The trainer: train/test steps, a short synthetic run, exact resume, NaN guard, init_from."""
from __future__ import annotations

import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kpac_tf.data import pipeline
from kpac_tf.model import builder, weights
from kpac_tf.train import checkpoints as kcheckpoints
from kpac_tf.train import loop, losses
from kpac_tf.train.config import TrainData
from tests.helpers import quiet_config, tiny_data, tiny_model


def _arrays(path):
    return weights.read_own_weights(path)[1]


def _trainer(perceptual_weight=0.0):
    keras.utils.set_random_seed(0)
    network = tiny_model()
    perceptual = losses.PerceptualLoss(weights=None) if perceptual_weight else None
    trainer = loop.KPACTrainer(network, perceptual, perceptual_weight)
    optimizer = loop.make_optimizer(quiet_config(steps=10))
    trainer.compile(optimizer=optimizer)
    return trainer


def test_train_step_loss_and_update(rng):
    trainer = _trainer(perceptual_weight=7e-4)
    blurred = tf.constant(rng.random((2, 32, 32, 3)).astype(np.float32))
    sharp = tf.constant(rng.random((2, 32, 32, 3)).astype(np.float32))
    output = trainer.network(blurred)
    expected_mae = float(tf.reduce_mean(tf.abs(output - sharp)))
    expected_perceptual = float(tf.reduce_mean(trainer.perceptual(sharp, output)))
    before = [v.numpy().copy() for v in trainer.network.trainable_variables]
    logs = trainer.train_step((blurred, sharp))  # eager: the compiled loop is tested below
    np.testing.assert_allclose(float(logs["mae"]), expected_mae, rtol=1e-5)
    np.testing.assert_allclose(float(logs["perceptual"]), expected_perceptual, rtol=1e-4)
    np.testing.assert_allclose(float(logs["loss"]), expected_mae + 7e-4 * expected_perceptual, rtol=1e-5)
    assert expected_perceptual > 0
    after = trainer.network.trainable_variables
    changed = [not np.allclose(b, a.numpy()) for b, a in zip(before, after)]
    assert all(changed)  # Adam moves every variable by about lr
    assert not trainer.perceptual.extractor.trainable_weights


def test_test_step_psnr(rng):
    trainer = _trainer()
    blurred = rng.random((3, 16, 16, 3)).astype(np.float32)
    sharp = rng.random((3, 16, 16, 3)).astype(np.float32)
    weight = np.array([1.0, 1.0, 0.0], np.float32)
    out = trainer.test_step((blurred, sharp, weight))
    output = np.clip(trainer.network(blurred).numpy(), 0, 1)
    psnr = 10 * np.log10(1 / ((output - sharp) ** 2).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(float(out["psnr_sum"]), psnr[:2].sum(), rtol=1e-4)
    input_psnr = 10 * np.log10(1 / ((blurred - sharp) ** 2).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(float(out["input_psnr_sum"]), input_psnr[:2].sum(), rtol=1e-4)
    assert float(out["count"]) == 2.0


def test_short_synthetic_run_lowers_loss_and_writes_outputs(tmp_path):
    data = tiny_data(val_images=8)
    config = quiet_config(steps=16, batch_size=4, learning_rate=2e-3, checkpoint_every=8, summary_every=4,
                          image_summary_every=8, eval_every=8)
    keras.utils.set_random_seed(config.seed)  # the initial model of the run
    initial = loop.KPACTrainer(tiny_model())
    (inputs, target, weight), = pipeline.make_eval_dataset(data.val, crop=32, per_replica_batch=8)
    initial_mae = float(initial.test_step((inputs, target, weight))["mae_sum"]) / 8
    progress = []
    result = loop.train(tiny_model, data, config, str(tmp_path),
                        on_progress=lambda step, total, logs: progress.append(step))
    assert result.step == 16 and progress == list(range(17))
    assert result.logs["val_images"] == 8
    assert result.logs["val_mae"] < 0.9 * initial_mae  # measured: 0.059 -> 0.049
    assert result.val_psnr is not None and np.isfinite(result.val_psnr)
    assert os.path.exists(result.weights_path) and result.weights_path.endswith(".weights.npz")
    rebuilt = weights.load_model(result.weights_path)
    assert builder.model_config(rebuilt) == builder.model_config(tiny_model())
    record = json.loads((tmp_path / kcheckpoints.RECORD_NAME).read_text())
    assert record["step"] == 16 and record["finished"] and record["wall_time_seconds"] > 0
    assert record["data"] == "synthetic:deadleaves" and record["model"]["levels"] == 2
    assert sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "checkpoints" / "*.index"))) == [
        "ckpt-16.index", "ckpt-8.index"]
    tags = set()
    for event_file in glob.glob(str(tmp_path / "tensorboard" / "events*")):
        for record_bytes in tf.data.TFRecordDataset(event_file):
            event = tf.compat.v1.Event.FromString(record_bytes.numpy())
            tags |= {(v.tag, v.metadata.plugin_data.plugin_name) for v in event.summary.value}
    assert {("train/loss", "scalars"), ("train/learning_rate", "scalars"), ("train/steps_per_sec", "scalars"),
            ("val/psnr", "scalars"), ("preview/input_output_target", "images")} <= tags


def test_resume_continues_exactly(tmp_path):
    config = quiet_config(checkpoint_every=2)
    straight = loop.train(tiny_model, tiny_data(), dataclasses_replace(config, steps=6), str(tmp_path / "a"))
    first = loop.train(tiny_model, tiny_data(), dataclasses_replace(config, steps=4), str(tmp_path / "b"))
    assert first.step == 4 and first.weights_path is not None
    resumed = loop.train(tiny_model, tiny_data(), dataclasses_replace(config, steps=6), str(tmp_path / "b"))
    assert resumed.start_step == 4 and resumed.step == 6
    for a, b in zip(_arrays(straight.weights_path), _arrays(resumed.weights_path)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert [(h["start_step"], h["step"]) for h in resumed.record["history"]] == [(0, 4), (4, 6)]
    assert resumed.seconds > 0 and resumed.wall_time > resumed.seconds
    # Finished runs restart as no-ops that write nothing (no weights, record or TensorBoard file).
    files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "b").rglob("*") if p.is_file()}
    again = loop.train(tiny_model, tiny_data(), dataclasses_replace(config, steps=6), str(tmp_path / "b"))
    assert again.start_step == 6 and again.step == 6 and again.seconds == 0
    assert again.record["final_logs"] == resumed.record["final_logs"] and again.val_psnr == resumed.val_psnr
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "b").rglob("*") if p.is_file()} == files
    # A checkpoint from another architecture is refused with one clear sentence.
    with pytest.raises(ValueError, match="does not fit this model"):
        loop.train(lambda: builder.build_kpac("kpac-2level", num_blocks=2, dilations=(1, 2)), tiny_data(),
                   dataclasses_replace(config, steps=8), str(tmp_path / "b"))


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
    config = quiet_config(steps=8, checkpoint_every=2)
    with pytest.raises(loop.NonFiniteLossError, match=r"at step 5;.*last good checkpoint \(step 4\)"):
        loop.train(tiny_model, tiny_data(nan_at_step=5), config, str(tmp_path))
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
    assert not (tmp_path / kcheckpoints.WEIGHTS_NAME).exists()
    # With several steps per loop the failing step is still named exactly.
    looped = quiet_config(steps=8, checkpoint_every=4, steps_per_loop=4)
    with pytest.raises(loop.NonFiniteLossError, match="at step 7;"):
        loop.train(tiny_model, tiny_data(nan_at_step=7), looped, str(tmp_path / "looped"))
    assert tf.train.latest_checkpoint(str(tmp_path / "looped" / "checkpoints")).endswith("ckpt-4")
    # The run resumes from the good checkpoint once the data is fixed.
    result = loop.train(tiny_model, tiny_data(), config, str(tmp_path))
    assert result.start_step == 4 and result.step == 8


def test_init_from_weights_file(tmp_path):
    keras.utils.set_random_seed(42)
    path = weights.save_weights(tiny_model(), tmp_path / "init.weights.npz")
    config = quiet_config(steps=1, learning_rate=1e-9, seed=7)
    keras.utils.set_random_seed(config.seed)
    fresh = weights.get_arrays(tiny_model())  # what the run would start from without init_from
    assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(_arrays(path), fresh))
    result = loop.train(tiny_model, tiny_data(), config, str(tmp_path / "run"), init_from=str(path))
    for a, b in zip(_arrays(path), _arrays(result.weights_path)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_settings_fail_before_training(tmp_path):
    with pytest.raises(ValueError, match="learning rate"):
        quiet_config(learning_rate=0.0)
    data = tiny_data(crop=32)
    data.pipeline = pipeline.PipelineConfig(crop=64)  # the synthetic scenes are only 32x32
    with pytest.raises(ValueError, match="cannot be read: .*smaller than the 64x64 crop"):
        loop.train(tiny_model, data, quiet_config(steps=2), str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()


def test_dual_pixel_dpdd_run(tmp_path, rng):
    """A DPDD-layout dual-pixel run: (left, right, centre) inputs, whole-image validation."""
    for split in ("train", "val"):
        for folder in (f"{split}_c/source", f"{split}_c/target", f"{split}_l/source", f"{split}_r/source"):
            os.makedirs(tmp_path / "dpdd" / folder)
            for index in range(3):
                image = (rng.random((40, 48, 3)) * 65535).astype(np.uint16)
                tf.io.write_file(str(tmp_path / "dpdd" / folder / f"p{index}.png"), tf.io.encode_png(image))
    sources = pipeline.resolve_data(str(tmp_path / "dpdd"), crop=32, dual_pixel=True, bit_depth=16)
    data = TrainData(train=sources.train, val=sources.val, val_crop=None,
                     pipeline=pipeline.PipelineConfig(crop=32, flip_rot=True, bit_depth=16))
    result = loop.train(lambda: builder.build_kpac("kpac-dual", num_blocks=1, dilations=(1, 2)), data,
                        quiet_config(steps=2, image_summary_every=2), str(tmp_path / "run"))
    assert result.step == 2 and np.isfinite(result.logs["loss"])
    assert result.logs["val_images"] == 3  # whole 40x48 images, one per batch
    assert builder.model_config(result.network).dual_pixel


def test_cosine_learning_rate_and_kept_checkpoints(tmp_path):
    """--lr_schedule=cosine: half the rate at half the steps, 0 at the end; with
    keep_checkpoints=2 only the last two checkpoints remain."""
    config = quiet_config(steps=4, learning_rate=1e-3, lr_schedule="cosine", checkpoint_every=1,
                          keep_checkpoints=2)
    rates = {}
    loop.train(tiny_model, tiny_data(val_images=1), config, str(tmp_path),
               on_progress=lambda step, total, logs: rates.setdefault(step, logs.get("learning_rate")))
    assert rates[1] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi / 4)), rel=1e-5)
    assert rates[2] == pytest.approx(0.5e-3, rel=1e-5)  # half the rate at half the steps
    assert rates[4] == pytest.approx(0.0, abs=1e-9)
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.index")) == ["ckpt-3.index", "ckpt-4.index"]
    state = tf.train.get_checkpoint_state(str(checkpoints))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-3", "ckpt-4"]
    # The paper's constant rate stays put.
    constant = loop.make_optimizer(quiet_config(steps=4, learning_rate=1e-3))
    constant.iterations.assign(2)
    assert loop._current_lr(constant) == pytest.approx(1e-3)


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_warmup_rises_linearly_then_follows_the_schedule(schedule):
    """warmup_steps=4 of 12: 0, 1/4, ... of the rate over the first steps; then the
    cosine decays to 0 at the last step over the 8 steps left, or the rate holds."""
    optimizer = loop.make_optimizer(quiet_config(steps=12, learning_rate=1e-3, lr_schedule=schedule,
                                                 warmup_steps=4))

    def rate_at(step: int) -> float:
        optimizer.iterations.assign(step)
        return loop._current_lr(optimizer)

    assert [rate_at(s) for s in range(5)] == pytest.approx([0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3], abs=1e-9)
    if schedule == "cosine":
        assert rate_at(8) == pytest.approx(0.5e-3, rel=1e-5)  # half-way through the decay
        assert rate_at(12) == pytest.approx(0.0, abs=1e-9)
    else:
        assert rate_at(12) == pytest.approx(1e-3, rel=1e-5)
    with pytest.raises(ValueError, match="warmup_steps"):
        quiet_config(steps=12, warmup_steps=12)


def test_moving_average_is_validated_saved_and_read_from_checkpoints(tmp_path):
    """ema_decay=0.5: the final weights are the average of the raw weights of steps 1..4
    (0.5 per step, the first step's weights to start); a checkpoint read as weights
    gives the average too; resuming without the average is refused."""
    config = quiet_config(steps=4, ema_decay=0.5, checkpoint_every=1, keep_checkpoints=5, eval_every=2)
    result = loop.train(tiny_model, tiny_data(val_images=1), config, str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    raw = []
    for step in range(1, 5):
        reader = tf.train.load_checkpoint(str(checkpoints / f"ckpt-{step}"))
        raw.append([reader.get_tensor(weights._CHECKPOINT_KEY.format(i))
                    for i in range(len(result.network.trainable_variables))])
    expected = raw[0]
    for step_weights in raw[1:]:
        expected = [0.5 * a + 0.5 * w for a, w in zip(expected, step_weights)]
    saved = [v.numpy() for v in result.network.trainable_variables]
    for got, want in zip(saved, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert any(not np.allclose(a, w) for a, w in zip(expected, raw[-1]))  # not the raw weights
    from_file = _arrays(tmp_path / "model.weights.npz")
    from_checkpoint = tiny_model()
    weights.restore_checkpoint(from_checkpoint, str(checkpoints / "ckpt-4"))
    for a, b in zip(from_file, from_checkpoint.trainable_variables):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="moving average"):
        loop.train(tiny_model, tiny_data(val_images=1), quiet_config(steps=6), str(tmp_path))


def test_without_moving_average_a_checkpoint_gives_the_raw_weights(tmp_path):
    result = loop.train(tiny_model, tiny_data(val_images=1), quiet_config(steps=2, checkpoint_every=1),
                        str(tmp_path))
    model = tiny_model()
    weights.restore_checkpoint(model, str(tmp_path / "checkpoints" / "ckpt-2"))
    for a, b in zip(result.network.trainable_variables, model.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_float16_loss_scaling_skips_overflowing_steps():
    """make_optimizer(loss_scaling=True) under mixed_float16: normal steps update every
    variable; a step whose float16 gradients overflow is skipped and the scale halved."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        # No dilated conv (one atrous rate, no scale attention): CPUs without float16
        # hardware compute float16 conv gradients only undilated. float16 is the GPU
        # policy; this test is about the loss scale.
        network = builder.build_kpac("kpac-2level", num_blocks=1, dilations=(1,),
                                     scale_attention=False)
        trainer = loop.KPACTrainer(network)
        optimizer = loop.make_optimizer(quiet_config(steps=10), loss_scaling=True)
        trainer.compile(optimizer=optimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert network.get_layer("block1").compute_dtype == "float16"
    rng = np.random.default_rng(0)
    blurred = tf.constant(rng.random((2, 16, 16, 3), np.float32))
    sharp = tf.constant(rng.random((2, 16, 16, 3), np.float32))
    before = [v.numpy().copy() for v in network.trainable_variables]
    assert np.isfinite(float(trainer.train_step((blurred, sharp))["loss"]))
    after = [v.numpy() for v in network.trainable_variables]
    assert all(not np.array_equal(b, a) and np.isfinite(a).all() for b, a in zip(before, after))
    scale = float(optimizer.dynamic_scale.numpy())
    assert scale == 2.0**15  # Keras' initial dynamic scale, kept after a finite step
    # Inputs 1e5 overflow float16: the update is skipped, the weights stay finite.
    assert not np.isfinite(float(trainer.train_step((blurred * 1e5, sharp))["loss"]))
    for a, v in zip(after, network.trainable_variables):
        np.testing.assert_array_equal(v.numpy(), a)
    assert float(optimizer.dynamic_scale.numpy()) == scale / 2


def test_the_anchor_adds_half_its_weight_times_the_squared_distance(rng, tmp_path):
    from kpac_tf.train import anchor

    keras.utils.set_random_seed(0)
    trainer = loop.KPACTrainer(tiny_model(), anchor_weight=10.0)
    trainer.compile(optimizer=loop.make_optimizer(quiet_config(steps=10, learning_rate=1e-9)))
    path = weights.save_weights(trainer.network, tmp_path / "start.weights.npz")
    anchor.load_anchor(trainer.anchor, tiny_model, str(path))
    for a, w in zip(trainer.anchor, trainer.network.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), w.numpy())
    trainer.anchor[0].assign_add(tf.fill(trainer.anchor[0].shape, 0.5))  # w - w0 = -0.5
    blurred = tf.constant(rng.random((2, 32, 32, 3)).astype(np.float32))
    sharp = tf.constant(rng.random((2, 32, 32, 3)).astype(np.float32))
    mae = float(tf.reduce_mean(tf.abs(trainer.network(blurred) - sharp)))
    logs = trainer.train_step((blurred, sharp))
    penalty = 10.0 / 2 * 0.25 * trainer.anchor[0].shape.num_elements()
    np.testing.assert_allclose(float(logs["loss"]), mae + penalty, rtol=1e-5)
    np.testing.assert_allclose(float(logs["mae"]), mae, rtol=1e-5)
    with pytest.raises(ValueError, match="anchor_weight"):
        quiet_config(anchor_weight=-1.0)


def test_an_anchored_run_stays_nearer_its_start_and_needs_init_from(tmp_path):
    keras.utils.set_random_seed(42)
    path = str(weights.save_weights(tiny_model(), tmp_path / "init.weights.npz"))
    start = _arrays(path)

    def distance(anchor_weight: float, name: str) -> float:
        config = quiet_config(steps=6, batch_size=4, learning_rate=3e-3, anchor_weight=anchor_weight)
        result = loop.train(tiny_model, tiny_data(), config, str(tmp_path / name), init_from=path)
        assert result.record["config"]["anchor_weight"] == anchor_weight
        return sum(float(((a - b) ** 2).sum()) for a, b in zip(_arrays(result.weights_path), start))

    free, pulled = distance(0.0, "free"), distance(3e3, "pulled")
    assert pulled < 0.5 * free
    with pytest.raises(ValueError, match="init_from"):
        loop.train(tiny_model, tiny_data(), quiet_config(steps=2, anchor_weight=1.0),
                   str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()
