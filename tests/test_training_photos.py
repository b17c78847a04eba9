"""Training photographs from a texture package, pre-rendered pools, the in-focus loss
weight and the automatic bfloat16 choice. Never fetches anything: a tiny fake Debian
package (a .pk3 zip of generated images) stands in for the real one."""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import types
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kpac_tf import cpu
from kpac_tf.data import pipeline, pool, texture_photos
from kpac_tf.data.pairs import SyntheticConfig
from kpac_tf.files import current_umask
from kpac_tf.model import builder, precision
from kpac_tf.train import loop
from kpac_tf.train.config import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(rng, size=(300, 320)) -> np.ndarray:
    """A colourful textured image (smooth colour field plus detail)."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w] / 40.0
    base = np.stack([np.sin(x + k) * np.cos(y * (k + 1)) for k in range(3)], axis=-1)
    image = 0.5 + 0.3 * base + 0.1 * rng.standard_normal((h, w, 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _fake_package(tmp_path, rng) -> str:
    """A .deb holding a .pk3 with photos, maps, a small, a gray, a flat, a duplicate."""
    members = {}
    for k in range(12):
        members[f"textures/tex_nature/rock{k:03d}.png"] = _png(_photo(rng))
    members["textures/tex_nature/rock000_nm.png"] = _png(_photo(rng))          # normal map
    members["textures/tex_nature/rock001_gloss.png"] = _png(_photo(rng))       # gloss map
    members["textures/tex_nature/pebble.png"] = _png(_photo(rng, (100, 400)))  # too small
    gray = _photo(rng)[..., :1].repeat(3, axis=2)
    members["textures/tex_nature/stone_bw.png"] = _png(gray)                    # gray
    members["textures/tex_nature/flat.png"] = _png(np.full((300, 300, 3), (90, 140, 60), np.uint8))
    members["textures/tex_nature/copy_of_rock.png"] = members["textures/tex_nature/rock003.png"]
    jpeg = io.BytesIO()
    Image.fromarray(_photo(rng)).save(jpeg, format="JPEG", quality=95)
    members["textures/tex_wood/plank.jpg"] = jpeg.getvalue()
    rgba = np.concatenate([_photo(rng), np.zeros((300, 320, 1), np.uint8)], axis=2)
    members["textures/tex_misc/decal.png"] = _png(rgba)                         # transparent
    package = tmp_path / "pkg"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN" / "control").write_text(
        "Package: ufoai-textures\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n")
    base = package / "usr" / "share" / "games" / "ufoai" / "base"
    base.mkdir(parents=True)
    with zipfile.ZipFile(base / "0textures.pk3", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    deb = tmp_path / "ufoai-textures_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(package), str(deb)],
                   check=True, capture_output=True)
    return str(deb)


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def test_split_is_a_stable_function_of_the_name():
    names = [f"textures/x/photo{k:04d}.png" for k in range(2000)]
    splits = [texture_photos.split_of(n) for n in names]
    assert splits == [texture_photos.split_of(n) for n in reversed(names)][::-1]
    assert texture_photos.split_of("a/b/photo0001.png") == texture_photos.split_of("photo0001.png")
    shares = {s: splits.count(s) / len(splits) for s in texture_photos.SPLITS}
    assert 0.85 < shares["train"] < 0.95 and 0.03 < shares["val"] < 0.07 and 0.03 < shares["heldout"] < 0.07


@pytest.mark.parametrize("name, reason", [("wall_nm.png", "map"), ("wall_norm.jpg", "map"),
                                          ("wall_gloss.png", "map"), ("wall_spec.png", "map"),
                                          ("wall_glow.png", "map"), ("wall_bump.png", "map")])
def test_maps_are_rejected_by_name(name, reason):
    assert texture_photos.reject_reason(name, None, texture_photos.PhotoFilter()) == reason


@needs_dpkg
def test_fake_package_becomes_a_split_photo_folder(tmp_path, rng):
    deb = _fake_package(tmp_path, rng)
    out = tmp_path / "photos"
    manifest = texture_photos.build_photo_folder(str(out), ["ufoai-textures"], debs={"ufoai-textures": deb})
    counts = manifest["packages"]["ufoai-textures"]
    assert counts["map"] == 2 and counts["small"] == 1 and counts["gray"] == 1
    assert counts["uniform"] == 1 and counts["duplicate"] == 1 and counts["alpha"] == 1
    kept = sum(counts.get(s, 0) for s in texture_photos.SPLITS)
    assert kept == 13  # 12 rocks (rock003 and its copy count once) + the plank
    on_disk = {split: sorted(os.listdir(out / split)) for split in texture_photos.SPLITS}
    assert sum(len(v) for v in on_disk.values()) == kept
    for split, files in on_disk.items():
        for file in files:
            member = manifest["files"][f"{split}/{file}"]["member"]
            assert texture_photos.split_of(member) == split
    assert not any("_nm" in f or "flat" in f or "decal" in f for f in sum(on_disk.values(), []))
    assert json.loads((out / "manifest.json").read_text())["counts"] == manifest["counts"]
    # A rerun gives the same folder (and does not rewrite existing photos).
    stamp = {f: os.path.getmtime(out / "train" / f) for f in on_disk["train"]}
    again = texture_photos.build_photo_folder(str(out), ["ufoai-textures"], debs={"ufoai-textures": deb})
    assert again["files"] == manifest["files"]
    assert stamp == {f: os.path.getmtime(out / "train" / f) for f in on_disk["train"]}


@pytest.mark.process
@needs_dpkg
def test_fetch_script_with_a_local_package_and_a_bad_one(tmp_path, rng):
    deb = _fake_package(tmp_path, rng)
    tool = [sys.executable, "-m", "kpac_tf.tools.fetch_training_photos"]
    ok = subprocess.run([*tool, f"--out={tmp_path / 'p'}", f"--deb={deb}"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "photos: train" in ok.stdout
    broken = tmp_path / "broken.deb"
    broken.write_bytes(b"not a deb")
    bad = subprocess.run([*tool, f"--out={tmp_path / 'q'}", f"--deb={broken}"],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    errors = [line for line in bad.stderr.splitlines()
              if line.startswith("python -m kpac_tf.tools.fetch_training_photos: error:")]
    assert len(errors) == 1 and "cannot be unpacked" in errors[0]
    wallpaper = subprocess.run([*tool, f"--out={tmp_path / 'r'}",
                                "--packages=desktop-base"], capture_output=True, text=True)
    assert wallpaper.returncode == 2 and "not one of" in wallpaper.stderr


def test_pool_renders_resumes_and_feeds_the_pipeline(tmp_path):
    out = str(tmp_path / "pool")
    record = pool.render_pool(out, 3, kinds=["deadleaves"], size=48, seed=3)
    assert record["count"] == 3 and record["kinds"] == ["deadleaves"]
    first = os.path.getmtime(os.path.join(out, "source", "p000000.png"))
    pool.render_pool(out, 4, kinds=["deadleaves"], size=48, seed=3)  # grows by one pair
    assert os.path.getmtime(os.path.join(out, "source", "p000000.png")) == first
    assert len(os.listdir(os.path.join(out, "target"))) == 4
    with pytest.raises(ValueError, match="other settings"):
        pool.render_pool(out, 4, kinds=["deadleaves"], size=64, seed=3)
    # A pool made before a renderer field existed (at its default then) still grows.
    record_path = os.path.join(out, pool.POOL_RECORD)
    with open(record_path) as handle:
        old = json.load(handle)
    del old["config"]["ground_patches"]
    with open(record_path, "w") as handle:
        json.dump(old, handle)
    assert pool.render_pool(out, 4, kinds=["deadleaves"], size=48, seed=3)["count"] == 4
    with pytest.raises(ValueError, match="other settings"):
        pool.render_pool(out, 4, kinds=["deadleaves"], size=48, seed=3,
                         config=SyntheticConfig(ground_patches=0.5))
    # Pair i of the pool is pair i of the seeded stream.
    from kpac_tf.data import pairs

    stream = pairs.SyntheticDefocusSource(48, photos=None, seed=3, crops_per_photo=4)
    expected = stream.pair(2)
    arrays = pool.load_pool_arrays(out)
    np.testing.assert_array_equal(arrays["target"][2], np.round(expected.sharp * 255).astype(np.uint8))
    np.testing.assert_allclose(arrays["radius"][2][..., 0], expected.radius, rtol=1e-3, atol=2e-3)  # float16

    source = pool.PoolSource(out, with_radius=True)
    assert source.num_items == 4
    config = pipeline.PipelineConfig(crop=32, flip_rot=True, seed=0)
    inputs, target, radius = next(iter(pipeline.make_train_dataset(source, config, per_replica_batch=2)))
    assert inputs.shape == (2, 32, 32, 3) and target.shape == (2, 32, 32, 3) and radius.shape == (2, 32, 32, 1)
    assert float(tf.reduce_max(radius)) > 1.0  # pixels, not [0, 1] levels
    plain = pool.PoolSource(out)
    assert len(next(iter(pipeline.make_train_dataset(plain, config, per_replica_batch=2)))) == 2


def test_pool_is_packed_once_and_feeds_the_same_batches_as_memory(tmp_path, monkeypatch):
    from kpac_tf.data import pool_arrays

    out = str(tmp_path / "pool")
    pool.render_pool(out, 3, kinds=["deadleaves"], size=40, seed=5)
    memory = pool.PoolSource(out, with_radius=True, packed=False)
    packed = pool.PoolSource(out, with_radius=True)
    assert (memory.storage, packed.storage) == ("memory", "packed")
    assert os.stat(os.path.join(out, "packed")).st_mode & 0o777 == 0o777 & ~current_umask()
    arrays = pool_arrays.packed_arrays(out)
    assert isinstance(arrays["input"], np.memmap) and arrays["radius"].shape == (3, 40, 40, 1)
    for key, decoded in pool.load_pool_arrays(out).items():
        np.testing.assert_array_equal(np.asarray(arrays[key]), np.stack(decoded))
    config = pipeline.PipelineConfig(crop=32, flip_rot=True, seed=7)
    for a, b in zip(next(iter(pipeline.make_train_dataset(memory, config, per_replica_batch=2))),
                    next(iter(pipeline.make_train_dataset(packed, config, per_replica_batch=2)))):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    stamp = os.path.getmtime(os.path.join(out, "packed", "input.npy"))
    assert pool.PoolSource(out).num_items == 3  # the pack is reused, not rewritten
    assert os.path.getmtime(os.path.join(out, "packed", "input.npy")) == stamp

    pool.render_pool(out, 4, kinds=["deadleaves"], size=40, seed=5)  # grown: packed again
    calls = []
    real = pool_arrays.decode_pair

    def failing(pool_dir, index):
        calls.append(index)
        if len(calls) == 3:
            raise OSError("disk error")
        return real(pool_dir, index)

    monkeypatch.setattr(pool_arrays, "decode_pair", failing)
    with pytest.raises(OSError, match="disk error"):
        pool_arrays.pack_pool(out)
    assert sorted(os.listdir(out)) == ["packed", "pool.json", "radius", "source", "target"]
    assert len(np.load(os.path.join(out, "packed", "input.npy"), mmap_mode="r")) == 3  # old pack kept
    monkeypatch.setattr(pool_arrays, "decode_pair", real)
    assert pool.PoolSource(out).num_items == 4


def test_pool_too_large_for_the_disk_is_decoded_into_memory(tmp_path, monkeypatch):
    from kpac_tf.data import pool_arrays

    out = str(tmp_path / "pool")
    pool.render_pool(out, 2, kinds=["deadleaves"], size=40, seed=1)
    monkeypatch.setattr(pool_arrays.shutil, "disk_usage", lambda path: types.SimpleNamespace(
        total=10 << 30, used=10 << 30, free=1 << 20))
    with pytest.raises(ValueError, match=r"needs 0\.0 GB of disk, 0\.0 GB free"):
        pool_arrays.pack_pool(out)
    source = pool.PoolSource(out)
    assert source.storage == "memory" and source.num_items == 2
    assert not os.path.exists(os.path.join(out, "packed"))


def test_pool_spec_resolves_with_validation_of_the_same_kinds(tmp_path):
    out = str(tmp_path / "pool")
    pool.render_pool(out, 2, kinds=["deadleaves"], size=40, seed=1)
    sources = pipeline.resolve_data(f"pool:{out}", crop=32, val_images=2, with_radius=True)
    assert sources.train.with_radius and sources.val.num_items == 2
    with pytest.raises(ValueError, match="not a rendered pool"):
        pipeline.resolve_data(f"pool:{tmp_path}", crop=32)


def test_several_pools_train_as_one_in_proportion_to_their_pairs(tmp_path):
    small, large = str(tmp_path / "small"), str(tmp_path / "large")
    pool.render_pool(small, 2, kinds=["deadleaves"], size=40, seed=1)
    pool.render_pool(large, 3, kinds=["deadleaves"], size=48, seed=2)
    sources = pipeline.resolve_data(f"pool:{small}, {large}", crop=32, val_images=2, with_radius=True)
    both = sources.train
    assert both.num_items == 5 and both.kinds == ["deadleaves"] and sources.val.num_items == 2
    assert "40x40" in both.describe() and "48x48" in both.describe()
    expected = pool.load_pool_arrays(small)["target"] + pool.load_pool_arrays(large)["target"]
    for index, target in enumerate(expected):  # pairs numbered one pool after the other
        loaded = both.load(tf.constant(index, tf.int64), tf.constant([0, 0], tf.int64))
        np.testing.assert_array_equal(loaded["target"].numpy(), target)
        assert loaded["radius"].shape[:2] == target.shape[:2]
    config = pipeline.PipelineConfig(crop=32, flip_rot=True, seed=0)
    inputs, _, _ = next(iter(pipeline.make_train_dataset(both, config, per_replica_batch=5)))
    assert inputs.shape == (5, 32, 32, 3)
    with pytest.raises(ValueError, match="each pool folder"):
        pipeline.resolve_data(f"pool:{small},", crop=32)
    with pytest.raises(ValueError, match="each pool folder once"):
        pool.PoolSource([small, small])


def test_a_pool_weight_draws_that_pool_n_times_as_often(tmp_path):
    small, large = str(tmp_path / "small"), str(tmp_path / "large")
    pool.render_pool(small, 2, kinds=["deadleaves"], size=40, seed=1)
    pool.render_pool(large, 3, kinds=["deadleaves"], size=40, seed=2)
    assert pool.parse_pool_list(f"{small}@3, {large}") == [(small, 3), (large, 1)]
    weighted = pipeline.resolve_data(f"pool:{small}@3,{large}", crop=32, val_images=2).train
    assert weighted.num_items == 3 * 2 + 3 and "weight 3" in weighted.describe()
    small_targets = pool.load_pool_arrays(small)["target"]
    large_targets = pool.load_pool_arrays(large)["target"]
    expected = small_targets * 3 + large_targets  # the weighted pool numbered three times over
    for index, target in enumerate(expected):
        loaded = weighted.load(tf.constant(index, tf.int64), tf.constant([0, 0], tf.int64))
        np.testing.assert_array_equal(loaded["target"].numpy(), target)
    # One epoch of the shuffled order draws each small pair three times, each large pair once.
    config = pipeline.PipelineConfig(crop=40, flip_rot=False, seed=4)
    _, targets = next(iter(pipeline.make_train_dataset(weighted, config, per_replica_batch=9)))
    drawn = [next(i for i, t in enumerate(small_targets + large_targets)
                  if np.array_equal(t, (image.numpy() * 255).round().astype(np.uint8)))
             for image in targets]
    assert sorted(drawn) == [0, 0, 0, 1, 1, 1, 2, 3, 4]
    for bad in (f"{small}@0", f"{small}@x", f"{small}@1.5", "@2"):
        with pytest.raises(ValueError, match="pool"):
            pipeline.resolve_data(f"pool:{bad}", crop=32)


def test_pool_validation_draws_dead_leaves_in_the_pools_share(tmp_path, rng, monkeypatch):
    """Validation of pools mixes dead-leaves scenes and photos as the pools were rendered
    (not half and half), so its figure follows what the run trains on."""
    for split in ("train", "val"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        Image.fromarray(_photo(rng, (80, 80))).save(tmp_path / "photos" / split / "p.png")
    mixed, leaves = str(tmp_path / "mixed"), str(tmp_path / "leaves")
    pool.render_pool(mixed, 3, kinds=[f"photos={tmp_path / 'photos'}", "deadleaves"], size=40,
                     dead_leaves_fraction=0.25, seed=1)
    pool.render_pool(leaves, 1, kinds=["deadleaves"], size=40, seed=2)
    assert pool.PoolSource([mixed, leaves]).dead_leaves_share == (3 * 0.25 + 1 * 1.0) / 4
    assert pool.PoolSource(mixed).dead_leaves_share == 0.25
    built = []
    real = pipeline.make_synthetic_source
    monkeypatch.setattr(pipeline, "make_synthetic_source",
                        lambda *args, **kwargs: built.append(kwargs) or real(*args, **kwargs))
    sources = pipeline.resolve_data(f"pool:{mixed},{leaves}", crop=32, val_images=2)
    assert built[-1]["dead_leaves_fraction"] == 0.4375 and built[-1]["held_out"]
    assert sources.val.num_items == 2


def test_photos_kind_uses_train_and_val_folders(tmp_path, rng):
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        Image.fromarray(_photo(rng, (80, 80))).save(tmp_path / split / f"{split}.png")
    photos, dead_leaves = pipeline.synthetic_photos([f"photos={tmp_path}", "deadleaves"])
    assert photos == [str(tmp_path / "train")] and dead_leaves
    assert pipeline.synthetic_photos([f"photos={tmp_path}"], held_out=True)[0] == [str(tmp_path / "val")]
    with pytest.raises(ValueError, match="fetch_training_photos"):
        pipeline.synthetic_photos([f"photos={tmp_path / 'missing'}"])


@pytest.fixture
def loss_case(rng):
    """(network, target, output, radius): a tiny network, random [0,1] NHWC images and a
    radius map [2,16,16,1] of 3 px whose top half is in focus (0.5 px)."""
    keras.utils.set_random_seed(0)
    network = builder.build_kpac("kpac-2level", num_blocks=1, dilations=(1, 2))
    target = tf.constant(rng.random((2, 16, 16, 3)).astype(np.float32))
    output = tf.constant(rng.random((2, 16, 16, 3)).astype(np.float32))
    radius = np.full((2, 16, 16, 1), 3.0, np.float32)
    radius[:, :8] = 0.5
    return network, target, output, radius


def test_in_focus_pixels_weigh_more_in_the_loss(loss_case):
    network, target, output, radius = loss_case
    trainer = loop.KPACTrainer(network, infocus_weight=5.0)
    got = trainer.per_example_losses(target, output, tf.constant(radius))["mae"].numpy()
    diff = np.abs(target.numpy() - output.numpy())
    weight = np.where(radius < loop.INFOCUS_RADIUS, 5.0, 1.0)
    np.testing.assert_allclose(got, (diff * weight).mean(axis=(1, 2, 3)), rtol=1e-6)
    plain = loop.KPACTrainer(network).per_example_losses(target, output, tf.constant(radius))["mae"]
    np.testing.assert_allclose(plain.numpy(), diff.mean(axis=(1, 2, 3)), rtol=1e-6)
    with pytest.raises(ValueError, match="infocus_weight"):
        TrainConfig(infocus_weight=0.0)


def test_mse_pixel_loss_is_weighted_like_the_mae(loss_case):
    network, target, output, radius = loss_case
    trainer = loop.KPACTrainer(network, infocus_weight=3.0, pixel_loss="mse")
    got = {k: v.numpy() for k, v in trainer.per_example_losses(target, output, tf.constant(radius)).items()}
    diff = target.numpy() - output.numpy()
    weight = np.where(radius < loop.INFOCUS_RADIUS, 3.0, 1.0)
    np.testing.assert_allclose(got["pixel"], (np.square(diff) * weight).mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(got["total"], got["pixel"], rtol=1e-6)
    # The MAE is still reported, weighted the same way, so that MSE phases stay comparable.
    np.testing.assert_allclose(got["mae"], (np.abs(diff) * weight).mean(axis=(1, 2, 3)), rtol=1e-6)
    with pytest.raises(ValueError, match="pixel_loss"):
        TrainConfig(pixel_loss="huber")
    with pytest.raises(ValueError, match="pixel_loss"):
        loop.KPACTrainer(network, pixel_loss="l2")


@pytest.mark.parametrize("flags, speedup, fast, words", [
    ({"fpu", "amx_bf16", "avx512_bf16"}, 0.5, True, "AMX-BF16"),
    ({"fpu", "avx512_bf16"}, 1.6, True, "probe ran 1.60x"),
    ({"fpu", "avx512_bf16"}, 0.51, False, "probe ran 0.51x"),
    ({"fpu", "avx2"}, 2.0, False, "neither"),
])
def test_bfloat16_choice_follows_the_cpu_flags_and_the_probe(monkeypatch, flags, speedup, fast, words):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    probes = []
    monkeypatch.setattr(precision, "bfloat16_conv_speedup", lambda: probes.append(1) or speedup)
    chosen, reason = precision.fast_bfloat16()
    assert chosen is fast and words in reason
    assert len(probes) == (1 if flags == {"fpu", "avx512_bf16"} else 0)  # only AVX512 alone is probed
    if "amx_bf16" not in flags and "avx512_bf16" in flags:
        assert precision.fast_bfloat16(include_avx512=False)[0] is False


def test_bfloat16_probe_measures_a_ratio():
    speedup = precision.bfloat16_conv_speedup(size=16, channels=8, repeats=2)
    assert math.isfinite(speedup) and 0.01 < speedup < 100


@pytest.mark.process
def test_pool_storage_benchmark_compares_memory_and_packed(tmp_path):
    out = str(tmp_path / "pool")
    pool.render_pool(out, 3, kinds=["deadleaves"], size=40, seed=2)
    script = os.path.join(ROOT, "experiments", "speed", "benchmark_pool_storage.py")
    done = subprocess.run([sys.executable, script, f"--pool={out}", "--pairs=2", "--crop=32",
                           "--batches=3"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" open ")[0].strip() for line in done.stdout.splitlines() if "batches/s" in line]
    assert rows == ["memory", "packed, first", "packed, reopened"]
    assert "pool: 2 pairs of 40x40" in done.stdout
    assert not os.path.exists(os.path.join(out, "packed"))  # the sample was packed, not the pool
