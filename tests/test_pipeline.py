"""tf.data pipeline: shapes, ranges, bit depth, determinism, resume, sharding, augmentation."""
from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from kpac_tf.data import augment, dpdd, pipeline


def _write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(array))


@pytest.fixture
def pairs16(tmp_path, rng):
    """Four 16-bit source/target pairs of 40x50 with values off the 8-bit grid."""
    for index in range(4):
        for role in ("source", "target"):
            image = rng.integers(0, 65536, size=(40, 50, 3)).astype(np.uint16)
            _write_png(str(tmp_path / role / f"img{index}.png"), image)
    return dpdd.list_folder_pairs(str(tmp_path / "source"), str(tmp_path / "target"))


def _take(dataset, count):
    return [tuple(np.asarray(t) for t in tf.nest.flatten(e)) for e in dataset.take(count)]


def test_shapes_dtypes_ranges(pairs16):
    source = pipeline.FilePairSource(pairs16)
    config = pipeline.PipelineConfig(crop=32, flip_rot=True, noise_sigma_max=0.03, seed=1)
    inputs, target = next(iter(pipeline.make_train_dataset(source, config, per_replica_batch=3)))
    assert inputs.shape == (3, 32, 32, 3) and target.shape == (3, 32, 32, 3)
    assert inputs.dtype == tf.float32 and target.dtype == tf.float32
    for tensor in (inputs, target):
        assert 0.0 <= float(tf.reduce_min(tensor)) and float(tf.reduce_max(tensor)) <= 1.0


def test_sixteen_bit_decode_and_eight_bit_quantisation(pairs16):
    source = pipeline.FilePairSource(pairs16)
    values = {}
    for bits in (8, 16):
        config = pipeline.PipelineConfig(crop=None, bit_depth=bits, seed=0)
        _, target = next(iter(pipeline.make_train_dataset(source, config, per_replica_batch=1)))
        values[bits] = target.numpy()[0]
    # Which image came first is the same for both (same seed): compare with the file.
    name = next(p for p in pairs16 if np.allclose(
        tf.io.decode_png(tf.io.read_file(p.target), dtype=tf.uint16).numpy() / 65535.0, values[16]))
    raw = tf.io.decode_png(tf.io.read_file(name.target), dtype=tf.uint16).numpy().astype(np.float64)
    np.testing.assert_allclose(values[16], raw / 65535.0, atol=1e-7)  # 16 bits kept exactly
    assert len(np.unique(values[16])) > 256
    np.testing.assert_allclose(values[8] * 255.0, np.round(values[8] * 255.0), atol=1e-4)  # on the 8-bit grid
    np.testing.assert_allclose(values[8], np.round(raw / 65535.0 * 255.0) / 255.0, atol=1e-6)


def test_deterministic_and_resumable(pairs16):
    source = pipeline.FilePairSource(pairs16)
    config = pipeline.PipelineConfig(crop=24, flip_rot=True, noise_sigma_max=0.02, seed=5)
    first = _take(pipeline.make_train_dataset(source, config, per_replica_batch=2), 6)
    again = _take(pipeline.make_train_dataset(source, config, per_replica_batch=2), 6)
    resumed = _take(pipeline.make_train_dataset(source, config, per_replica_batch=2, start_step=4), 2)
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    for a, b in zip(first[4:], resumed):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    other_seed = _take(pipeline.make_train_dataset(
        source, pipeline.PipelineConfig(crop=24, seed=6), per_replica_batch=2), 1)
    assert not np.array_equal(first[0][1], other_seed[0][1])


def test_epochs_visit_every_image_once(pairs16):
    source = pipeline.FilePairSource(pairs16)
    config = pipeline.PipelineConfig(crop=None, seed=3)
    targets = [t for _, t in _take(pipeline.make_train_dataset(source, config, per_replica_batch=1), 8)]
    originals = [tf.io.decode_png(tf.io.read_file(p.target), dtype=tf.uint16).numpy() / 65535.0 for p in pairs16]

    def which(image):
        return int(np.argmin([np.abs(image[0] - o).max() for o in originals]))

    order = [which(t) for t in targets]
    assert sorted(order[:4]) == [0, 1, 2, 3] and sorted(order[4:]) == [0, 1, 2, 3]
    assert order[:4] != order[4:]  # reshuffled per epoch (fixed seed, checked value)


def test_pipelines_split_the_global_batch(pairs16):
    """Two input pipelines (workers) together produce exactly the single-pipeline batches."""
    source = pipeline.FilePairSource(pairs16)
    config = pipeline.PipelineConfig(crop=16, flip_rot=True, seed=2)
    whole = _take(pipeline.make_train_dataset(source, config, per_replica_batch=4), 3)
    parts = [
        _take(pipeline.make_train_dataset(source, config, per_replica_batch=2, global_batch=4,
                                          pipeline_id=p, num_pipelines=2), 3)
        for p in (0, 1)
    ]
    for step in range(3):
        joined = np.concatenate([parts[0][step][0], parts[1][step][0]])
        np.testing.assert_array_equal(joined, whole[step][0])
    with pytest.raises(ValueError, match="does not split"):
        pipeline.make_train_dataset(source, config, per_replica_batch=2, global_batch=3, num_pipelines=2)


def test_cache_gives_the_same_samples(pairs16):
    config = pipeline.PipelineConfig(crop=20, flip_rot=True, bit_depth=16, seed=4)
    plain = _take(pipeline.make_train_dataset(pipeline.FilePairSource(pairs16), config, per_replica_batch=2), 3)
    cached_source = pipeline.FilePairSource(pairs16, cache=True, cache_bits=16)
    cached = _take(pipeline.make_train_dataset(cached_source, config, per_replica_batch=2), 3)
    for a, b in zip(plain, cached):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, atol=1e-7)


def test_crop_larger_than_image_is_a_clear_error(pairs16):
    source = pipeline.FilePairSource(pairs16)
    dataset = pipeline.make_train_dataset(source, pipeline.PipelineConfig(crop=64), per_replica_batch=1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the 64x64 crop"):
        next(iter(dataset))


def test_noise_augmentation_range(rng):
    image = tf.fill([64, 64, 3], 0.5)
    sigmas = []
    for index in range(40):
        noisy = augment.add_gaussian_noise(image, 0.03, tf.constant([7, index], tf.int64))
        sigmas.append(float(tf.math.reduce_std(noisy - image)))
    sigmas = np.array(sigmas)
    assert sigmas.max() <= 0.033 and sigmas.min() < 0.01 and sigmas.max() > 0.02
    assert augment.add_gaussian_noise(image, 0.0, tf.constant([0, 0])) is image


def test_dihedral_same_transform_and_dual_pixel_swap():
    base = tf.reshape(tf.range(4 * 4 * 3, dtype=tf.float32), [4, 4, 3]) / 48.0
    sample = {"input": base, "target": base * 0.5}
    seen = set()
    for index in range(64):
        out = augment.random_dihedral(sample, tf.constant([1, index], tf.int64))
        np.testing.assert_allclose(out["target"].numpy(), out["input"].numpy() * 0.5)
        seen.add(out["input"].numpy().tobytes())
    assert len(seen) == 8  # all symmetries of the square occur
    left, right = base, tf.reverse(base, axis=[0])
    dual = {"left": left, "right": right, "centre": base, "target": base}
    flipped = [augment.random_dihedral(dual, tf.constant([2, i], tf.int64), rotate=False, dual_pixel=True)
               for i in range(12)]
    swapped = [o for o in flipped if np.array_equal(o["centre"].numpy(), base[:, ::-1].numpy())]
    assert swapped  # some horizontal flips happened
    for o in swapped:  # a horizontal mirror turns the right view into the left one
        np.testing.assert_array_equal(o["left"].numpy(), right.numpy()[:, ::-1])
    with pytest.raises(ValueError, match="dual-pixel"):
        augment.random_dihedral(dual, tf.constant([0, 0]), rotate=True, dual_pixel=True)


def _dual_pixel_values(root, flip_rot: bool) -> dict[str, np.ndarray]:
    """One batch of 2 from a dual-pixel layout, in 8-bit levels per role."""
    data = pipeline.resolve_data(str(root), crop=16, dual_pixel=True)
    inputs, target = next(iter(pipeline.make_train_dataset(
        data.train, pipeline.PipelineConfig(crop=16, flip_rot=flip_rot), per_replica_batch=2)))
    assert isinstance(inputs, tuple) and len(inputs) == 3
    assert all(t.shape == (2, 16, 16, 3) for t in inputs) and target.shape == (2, 16, 16, 3)
    return {role: np.round(tensor.numpy() * 255) for role, tensor in
            zip(("left", "right", "source", "target"), (*inputs, target))}


def test_dual_pixel_elements(tmp_path):
    """Each view is a constant image of its own value (plus the item's index), so a
    swapped, repeated or mispaired view shows in the values."""
    marks = {"left": 40, "right": 80, "source": 120, "target": 200}
    for role, folder in (("source", "train_c/source"), ("target", "train_c/target"),
                         ("left", "train_l/source"), ("right", "train_r/source")):
        for index in range(2):
            image = np.full((30, 30, 3), marks[role] + index, np.uint8)
            _write_png(str(tmp_path / folder / f"x{index}.png"), image)
    values = _dual_pixel_values(tmp_path, flip_rot=False)
    for b in range(2):
        index = values["target"][b, 0, 0, 0] - marks["target"]
        assert index in (0, 1)
        for role, mark in marks.items():  # (left, right, centre) in order, one item
            np.testing.assert_array_equal(values[role][b], mark + index, err_msg=role)
    # With flips, a horizontal mirror swaps left and right (the disparity's sign flips).
    values = _dual_pixel_values(tmp_path, flip_rot=True)
    for b in range(2):
        index = values["target"][b, 0, 0, 0] - marks["target"]
        np.testing.assert_array_equal(values["source"][b], marks["source"] + index)
        sides = {float(values["left"][b, 0, 0, 0]), float(values["right"][b, 0, 0, 0])}
        assert sides == {marks["left"] + index, marks["right"] + index}
        assert np.ptp(values["left"][b]) == np.ptp(values["right"][b]) == 0


def test_eval_dataset_pads_with_zero_weight(pairs16):
    source = pipeline.FilePairSource(pairs16[:3])
    batches = list(pipeline.make_eval_dataset(source, crop=20, per_replica_batch=2))
    weights = np.concatenate([w.numpy() for _, _, w in batches])
    np.testing.assert_array_equal(weights, [1, 1, 1, 0])
    assert batches[0][0].shape == (2, 20, 20, 3)
    whole = list(pipeline.make_eval_dataset(source, crop=None, per_replica_batch=1))
    assert whole[0][0].shape == (1, 40, 50, 3) and len(whole) == 3


def test_nan_hook_poisons_one_step(pairs16):
    source = pipeline.FilePairSource(pairs16)
    config = pipeline.PipelineConfig(crop=8, seed=0, nan_at_step=2)
    elements = _take(pipeline.make_train_dataset(source, config, per_replica_batch=2), 3)
    assert [bool(np.isnan(e[0]).any()) for e in elements] == [False, True, False]
    assert not np.isnan(elements[1][1]).any()  # targets stay clean


def test_synthetic_source_stream(tmp_path):
    data = pipeline.resolve_data("synthetic:deadleaves", crop=24, val_images=2, seed=1)
    config = pipeline.PipelineConfig(crop=24, seed=1)
    (a_in, a_t), = _take(pipeline.make_train_dataset(data.train, config, per_replica_batch=2), 1)
    (b_in, b_t), = _take(pipeline.make_train_dataset(data.train, config, per_replica_batch=2), 1)
    assert a_in.shape == (2, 24, 24, 3) and 0 <= a_in.min() and a_in.max() <= 1
    np.testing.assert_array_equal(a_in, b_in)  # scene k is a pure function of k
    assert not np.array_equal(a_in[0], a_in[1])
    assert np.abs(a_in - a_t).mean() > 1e-3  # the input is a blurred version of the target
    assert data.val.num_items == 2
    val = list(pipeline.make_eval_dataset(data.val, crop=24, per_replica_batch=1))
    assert len(val) == 2 and not np.array_equal(val[0][1].numpy()[0], a_t[0])


def test_validation_scenes_do_not_depend_on_the_data_seed():
    one = pipeline.resolve_data("synthetic:deadleaves", crop=24, val_images=2, seed=1)
    two = pipeline.resolve_data("synthetic:deadleaves", crop=24, val_images=2, seed=2)
    config = pipeline.PipelineConfig(crop=24, seed=1)
    (a_in, _), = _take(pipeline.make_train_dataset(one.train, config, per_replica_batch=1), 1)
    (b_in, _), = _take(pipeline.make_train_dataset(two.train, config, per_replica_batch=1), 1)
    assert not np.array_equal(a_in, b_in)  # the seed changes the training scenes
    for first, second in zip(pipeline.make_eval_dataset(one.val, crop=24, per_replica_batch=1),
                             pipeline.make_eval_dataset(two.val, crop=24, per_replica_batch=1)):
        np.testing.assert_array_equal(first[0].numpy(), second[0].numpy())
        np.testing.assert_array_equal(first[1].numpy(), second[1].numpy())


def test_resolve_data_errors(tmp_path):
    with pytest.raises(ValueError, match="neither a DPDD folder"):
        pipeline.resolve_data(str(tmp_path), crop=16)
    with pytest.raises(ValueError, match="Unknown synthetic scene kind"):
        pipeline.resolve_data("synthetic:clouds", crop=16)
    with pytest.raises(ValueError, match="dual-pixel"):
        pipeline.resolve_data("synthetic", crop=16, dual_pixel=True)
    with pytest.raises(ValueError, match="synthetic only"):
        pipeline.resolve_data(str(tmp_path), crop=16, synthetic_options=["sharp_probability=1"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        pipeline.resolve_data("synthetic", crop=16, synthetic_options=["clouds=1"])


def test_synthetic_options_change_training_pairs_only():
    data = pipeline.resolve_data("synthetic:deadleaves", crop=24, val_images=2, seed=1,
                                 synthetic_options=["sharp_probability=1", "noise_sigma=0"])
    config = pipeline.PipelineConfig(crop=24, seed=1)
    (inputs, targets), = _take(pipeline.make_train_dataset(data.train, config, per_replica_batch=2), 1)
    np.testing.assert_allclose(inputs, targets, atol=2e-3)  # nothing left to deblur
    val_in, val_target, _ = next(iter(pipeline.make_eval_dataset(data.val, crop=24, per_replica_batch=1)))
    assert np.abs(val_in.numpy() - val_target.numpy()).mean() > 1e-3  # validation: default renderer


def test_broken_files_fail_at_start(pairs16, tmp_path):
    bad = tmp_path / "source" / "img1.png"
    bad.write_bytes(b"")  # e.g. an interrupted copy
    with pytest.raises(ValueError, match=r"1 file\(s\) are not readable .*img1\.png"):
        pipeline.FilePairSource(pairs16)
