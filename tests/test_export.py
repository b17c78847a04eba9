"""Export for TF Serving, TFLite and ONNX: layout, signatures, parity, bad inputs, the
pixel limit, the CLI.

Small models with seeded random weights: the 2-level preset (exported once through
the kpac-export command, with --attention and --tflite) and the dual-pixel preset
(exported once in-process). Parity is checked in a fresh Python process that loads
the SavedModel with TensorFlow alone.
"""
from __future__ import annotations

import importlib.util

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from kpac_tf.deploy import onnx as konnx
from kpac_tf.deploy import saved_model
from kpac_tf.deploy import signatures as ksignatures
from kpac_tf.deploy import tflite
from kpac_tf.model.builder import build_kpac
from kpac_tf.model.weights import load_model, save_weights

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-5


def _env(with_repo: bool = True) -> dict:
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    if with_repo:
        paths.insert(0, str(REPO))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The 2-level model with seeded random weights, exported by the CLI (in this process;
    ``fresh`` loads the export in a process of its own)."""
    from tests.helpers import run_command_in_process

    root = tmp_path_factory.mktemp("export_single")
    keras.utils.set_random_seed(11)
    weights = save_weights(build_kpac("kpac-2level"), root / "random2.weights.npz")
    status = run_command_in_process(
        "export", f"--weights={weights}", f"--export_dir={root / 'models'}", "--model_name=kpac2",
        "--attention", "--tflite",
    )
    version_dir = root / "models" / "kpac2" / "1"
    assert status == 0 and (version_dir / "saved_model.pb").exists(), status
    return {
        "root": root,
        "dir": version_dir,
        "weights": weights,
        "model": load_model(weights),
        "attention_model": load_model(weights, return_attention=True),
    }


@pytest.fixture(scope="module")
def dual(tmp_path_factory):
    """The dual-pixel preset with seeded random weights, exported in-process."""
    root = tmp_path_factory.mktemp("export_dual")
    keras.utils.set_random_seed(12)
    model = build_kpac("kpac-dual")
    return {"dir": saved_model.export_saved_model(model, root, "dual"), "model": model}


def _keras(model, *images) -> np.ndarray:
    output = model(list(images) if len(images) > 1 else images[0], training=False)
    if isinstance(output, dict):
        output = output["output"]
    return np.clip(np.asarray(output), 0.0, 1.0)


# ---------------------------------------------------------------------------------------
# Layout.


def test_cli_writes_tf_serving_layout_with_metadata(single):
    version_dir = single["dir"]
    assert version_dir.name == "1" and version_dir.parent.name == "kpac2"
    assert sorted(p.name for p in version_dir.parent.iterdir()) == ["1"]  # no partial folder left
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables").is_dir()
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(version_dir.stat().st_mode) == 0o777 & ~umask  # readable by a server
    metadata = json.loads((version_dir / "assets.extra" / saved_model.METADATA_FILE).read_text())
    assert metadata["config"]["levels"] == 2 and metadata["config"]["dual_pixel"] is False
    assert metadata["weights"] == "random2.weights.npz"  # file name only, no folders
    assert set(metadata["signatures"]) == {"serving_default", "encoded", "attention"}
    assert metadata["signatures"]["serving_default"]["inputs"]["images"]["shape"] == [None, None, None, 3]
    assert metadata["max_pixels"] == ksignatures.DEFAULT_MAX_PIXELS == 16_000_000


def test_next_version_and_existing_version_is_never_replaced(single, tmp_path):
    base = tmp_path / "kpac"
    for name in ("1", "3", "notes", ".4.partial-x"):
        (base / name).mkdir(parents=True)
    (base / "7").write_text("a file, not a version folder")
    assert saved_model.next_version(base) == 4
    assert saved_model.next_version(tmp_path / "missing") == 1

    before = (single["dir"] / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match="never replaced"):
        saved_model.export_saved_model(single["model"], single["dir"].parents[1], "kpac2", version=1)
    assert (single["dir"] / "saved_model.pb").read_bytes() == before


def test_failed_export_leaves_nothing_behind(single, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", broken_save)
    monkeypatch.setattr(saved_model, "build_serving_module", lambda model, **options: (tf.Module(), {}))
    with pytest.raises(OSError, match="disk full"):
        saved_model.export_saved_model(single["model"], tmp_path, "kpac")
    assert list((tmp_path / "kpac").iterdir()) == []


def test_export_rejects_bad_names_versions_and_models(single, tmp_path):
    with pytest.raises(ValueError, match="folder name"):
        saved_model.export_saved_model(single["model"], tmp_path, "../escape")
    with pytest.raises(ValueError, match="positive integer"):
        saved_model.export_saved_model(single["model"], tmp_path, "kpac", version=0)
    override = build_kpac("kpac-2level", alpha_override=True)
    with pytest.raises(ValueError, match="alpha_override"):
        saved_model.export_saved_model(override, tmp_path, "kpac")
    plain = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(3, 3, padding="same")])
    with pytest.raises(ValueError, match="not built by"):
        saved_model.export_saved_model(plain, tmp_path, "kpac")


@pytest.mark.process
def test_saved_model_cli_lists_signatures_with_dynamic_shapes(single):
    command = shutil.which("saved_model_cli")
    argv = [command] if command else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    result = subprocess.run(
        [*argv, "show", "--dir", str(single["dir"]), "--all"],
        capture_output=True, text=True, env=_env(with_repo=False), timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    text = result.stdout
    for name in ("serving_default", "encoded", "attention"):
        assert f"signature_def['{name}']" in text
    blocks = {b.split("']", 1)[0]: b for b in text.split("signature_def['")[1:]}
    assert "inputs['images']" in blocks["serving_default"]
    assert "shape: (-1, -1, -1, 3)" in blocks["serving_default"]
    assert "outputs['deblurred']" in blocks["serving_default"]
    assert "inputs['image_bytes']" in blocks["encoded"] and "shape: (-1)" in blocks["encoded"]
    assert "outputs['png_bytes']" in blocks["encoded"]
    assert "outputs['block1_alpha']" in blocks["attention"]
    assert "shape: (-1, -1, -1, 5)" in blocks["attention"]


# ---------------------------------------------------------------------------------------
# Parity in a fresh process (TensorFlow only).

_FRESH = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import tensorflow as tf

    jobs = json.loads(Path(sys.argv[1]).read_text())
    for job in jobs:
        function = tf.saved_model.load(job["dir"]).signatures[job["signature"]]
        feeds = {}
        if job.get("floats"):
            with np.load(job["floats"]) as data:
                feeds.update({key: tf.constant(data[key]) for key in data.files})
        for key, paths in job.get("bytes", {}).items():
            feeds[key] = tf.constant([Path(p).read_bytes() for p in paths])
        outputs = function(**feeds)
        out = Path(job["out"])
        out.mkdir()
        arrays = {}
        for key, value in outputs.items():
            if value.dtype == tf.string:
                for index, item in enumerate(value.numpy()):
                    (out / f"{key}_{index}.png").write_bytes(item)
            else:
                arrays[key] = value.numpy()
        np.savez(out / "floats.npz", **arrays)
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "kpac_tf")))
    """
)


def _png(array01: np.ndarray, bits: int) -> bytes:
    levels = 255 if bits == 8 else 65535
    dtype = tf.uint8 if bits == 8 else tf.uint16
    return tf.io.encode_png(tf.constant(np.round(array01 * levels).astype(dtype.as_numpy_dtype))).numpy()


@pytest.fixture(scope="module")
def fresh(single, dual, tmp_path_factory):
    """Every signature run once in a fresh process that has TensorFlow only; returns the
    inputs fed ([0,1] floats, NHWC; encoded photos) and a reader of each job's outputs."""
    root = tmp_path_factory.mktemp("fresh")
    rng = np.random.default_rng(1234)
    inputs = {
        "single": {"images": rng.random((2, 37, 53, 3), dtype=np.float32)},
        "small": {"images": rng.random((1, 5, 3, 3), dtype=np.float32)},  # under one stride
        "views": {v: rng.random((1, 21, 19, 3), dtype=np.float32) for v in ("left", "right", "centre")},
        "photo": rng.random((29, 34, 3), dtype=np.float32),
    }
    np.savez(root / "single.npz", **inputs["single"])
    np.savez(root / "small.npz", **inputs["small"])
    np.savez(root / "dual.npz", **inputs["views"])
    photo = inputs["photo"]
    files = {
        "png8": _png(photo, 8),
        "png16": _png(photo, 16),
        "jpeg": tf.io.encode_jpeg(np.round(photo * 255).astype(np.uint8), quality=90).numpy(),
        "gray8": _png(photo[:, :, :1], 8),
    }
    inputs["files"] = files
    for name, data in files.items():
        (root / name).write_bytes(data)
    for view, array in inputs["views"].items():
        (root / f"dual_{view}.png").write_bytes(_png(array[0], 16))

    def job(directory, signature, out, floats=None, byte_files=None):
        return {"dir": str(directory), "signature": signature, "out": str(root / out),
                "floats": str(root / floats) if floats else None,
                "bytes": {k: [str(root / n) for n in v] for k, v in (byte_files or {}).items()}}

    jobs = [
        job(single["dir"], "serving_default", "o1", floats="single.npz"),
        job(single["dir"], "serving_default", "o2", floats="small.npz"),
        job(single["dir"], "attention", "o3", floats="single.npz"),
        job(single["dir"], "encoded", "o4", byte_files={"image_bytes": list(files)}),
        job(dual["dir"], "serving_default", "o5", floats="dual.npz"),
        job(dual["dir"], "encoded", "o6",
            byte_files={f"{v}_bytes": [f"dual_{v}.png"] for v in inputs["views"]}),
    ]
    (root / "jobs.json").write_text(json.dumps(jobs))
    (root / "fresh.py").write_text(_FRESH)
    result = subprocess.run(
        [sys.executable, str(root / "fresh.py"), str(root / "jobs.json")],
        capture_output=True, text=True, env=_env(with_repo=False), cwd=root, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = json.loads(result.stdout.strip().splitlines()[-1])

    def floats(name: str) -> dict:
        with np.load(root / name / "floats.npz") as data:
            return {key: data[key] for key in data.files}

    return {"inputs": inputs, "imported": imported, "floats": floats, "root": root}


@pytest.mark.process
def test_fresh_process_needs_tensorflow_only(fresh):
    assert fresh["imported"] == []  # kpac_tf never imported


@pytest.mark.process
def test_serving_default_matches_keras_at_odd_and_tiny_sizes(fresh, single):
    # A batch of 2 at an odd size, and an image smaller than the stride.
    for job, key in (("o1", "single"), ("o2", "small")):
        images = fresh["inputs"][key]["images"]
        got = fresh["floats"](job)["deblurred"]
        assert got.shape == images.shape
        assert np.abs(got - _keras(single["model"], images)).max() <= TOL
        assert got.min() >= 0.0 and got.max() <= 1.0


@pytest.mark.process
def test_attention_signature_matches_keras_maps(fresh, single):
    got = fresh["floats"]("o3")
    want = single["attention_model"](fresh["inputs"]["single"]["images"], training=False)
    assert np.abs(got["deblurred"] - np.clip(want["output"], 0, 1)).max() <= TOL
    for key in ("block1_alpha", "block1_beta", "block2_alpha", "block2_beta"):
        assert got[key].shape == tuple(want[key].shape)
        assert np.abs(got[key] - np.asarray(want[key])).max() <= TOL
    assert got["block1_alpha"].shape == (2, 10, 14, 5)  # padded 40x56 / 4


@pytest.mark.process
def test_encoded_signature_keeps_bit_depth_and_matches_keras(fresh, single):
    # PNG out with the input's bit depth, pixels = quantised Keras output.
    photo, files = fresh["inputs"]["photo"], fresh["inputs"]["files"]
    references = {
        "png8": (np.round(photo * 255) / 255, 8),
        "png16": (np.round(photo * 65535) / 65535, 16),
        "jpeg": (tf.io.decode_jpeg(files["jpeg"]).numpy() / 255.0, 8),
        "gray8": (np.repeat(np.round(photo[:, :, :1] * 255) / 255, 3, axis=2), 8),
    }
    for index, (name, (decoded, bits)) in enumerate(references.items()):
        data = (fresh["root"] / "o4" / f"png_bytes_{index}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[24] == bits, name
        got = tf.io.decode_png(data, dtype=tf.uint8 if bits == 8 else tf.uint16).numpy()
        want = _keras(single["model"], decoded[None].astype(np.float32))[0]
        want = np.round(want * (2**bits - 1))
        assert got.shape == (29, 34, 3), name
        assert np.abs(got.astype(np.int64) - want).max() <= 1, name  # rounding ties only


@pytest.mark.process
def test_dual_pixel_signatures_match_keras(fresh, dual):
    # Three inputs in, one output; float and encoded.
    views = fresh["inputs"]["views"]
    got = fresh["floats"]("o5")["deblurred"]
    want = _keras(dual["model"], views["left"], views["right"], views["centre"])
    assert got.shape == (1, 21, 19, 3) and np.abs(got - want).max() <= TOL
    data = (fresh["root"] / "o6" / "png_bytes_0.png").read_bytes()
    assert data[24] == 16
    decoded = [np.round(views[v] * 65535) / 65535 for v in ("left", "right", "centre")]
    want = np.round(_keras(dual["model"], *[d.astype(np.float32) for d in decoded])[0] * 65535)
    assert np.abs(tf.io.decode_png(data, dtype=tf.uint16).numpy().astype(np.int64) - want).max() <= 1


def test_dual_pixel_export_has_three_inputs(dual):
    loaded = tf.saved_model.load(str(dual["dir"]))
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert set(inputs) == {"left", "right", "centre"}
    assert set(loaded.signatures["encoded"].structured_input_signature[1]) == {
        "left_bytes", "right_bytes", "centre_bytes"}


# ---------------------------------------------------------------------------------------
# Bad inputs.


def _error_text(call) -> str:
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        call()
    return str(info.value)


def test_signatures_reject_bad_inputs_with_clear_messages(single, dual, rng):
    signatures = tf.saved_model.load(str(single["dir"])).signatures
    serve, encoded = signatures["serving_default"], signatures["encoded"]
    good = rng.random((1, 9, 11, 3), dtype=np.float32)
    cases = {
        "must have 3 channels": np.concatenate([good, good[..., :1]], axis=-1),
        "shaped [N, H, W, 3]; got a tensor of rank": good[0],
        "values in [0, 1] (divide 8-bit data by 255)": good * 255.0,
        "finite values": np.where(good > 0.5, np.nan, good).astype(np.float32),
        "at least 1 pixel": np.zeros((1, 0, 4, 3), np.float32),
    }
    for message, images in cases.items():
        assert message in _error_text(lambda: serve(images=tf.constant(images))), message

    png = _png(good[0], 8)
    # Repeated: the check must win every time, never a race with other header reads.
    for data in (b"not an image at all", b"", b"GIF89a" + png[6:]) * 4:
        text = _error_text(lambda: encoded(image_bytes=tf.constant([png, data])))
        assert "image_bytes must hold a PNG (8 or 16-bit) or JPEG file" in text, text
    assert "PNG" in _error_text(lambda: encoded(image_bytes=tf.constant([png[:60]])))
    assert "1-D tensor" in _error_text(lambda: encoded(image_bytes=tf.constant([[png]])))

    dual_signatures = tf.saved_model.load(str(dual["dir"])).signatures
    views = {"left": good, "right": good, "centre": good[:, :8]}
    feeds = {key: tf.constant(value) for key, value in views.items()}
    text = _error_text(lambda: dual_signatures["serving_default"](**feeds))
    assert "left and centre must have the same shape" in text
    text = _error_text(lambda: dual_signatures["encoded"](
        left_bytes=tf.constant([png]), right_bytes=tf.constant([png]), centre_bytes=tf.constant([png, png])))
    assert "must list the same number of images" in text


def _export_in_process(argv: list[str]) -> int:
    """kpac-export in this process (its exit status)."""
    from absl import flags

    from kpac_tf.cli import export as export_cli
    from kpac_tf.cli import runner

    flags.FLAGS.unparse_flags()
    remaining = flags.FLAGS(["kpac-export", *argv])
    return runner.call_main("kpac-export", export_cli.main, remaining)


def test_cli_version_flag(tmp_path, capsys):
    """--version=N writes version N (printed); the same N again is refused, untouched."""
    keras.utils.set_random_seed(13)
    weights = save_weights(build_kpac("kpac-2level", num_blocks=1), tmp_path / "tiny")
    models = tmp_path / "models"
    args = [f"--weights={weights}", f"--export_dir={models}", "--model_name=tiny"]
    assert _export_in_process([*args, "--version=7"]) == 0
    assert capsys.readouterr().out == f"{models / 'tiny' / '7'}\n"
    assert sorted(p.name for p in (models / "tiny").iterdir()) == ["7"]
    saved = models / "tiny" / "7" / "saved_model.pb"
    before = (saved.stat().st_mtime_ns, saved.read_bytes())
    assert _export_in_process([*args, "--version=7"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"kpac-export: error: {models / 'tiny' / '7'} already exists and is never replaced; pick "
        "another --version or leave it out to use the next free number."]
    assert (saved.stat().st_mtime_ns, saved.read_bytes()) == before
    assert _export_in_process([*args, "--version=0"]) == 2
    assert "--version must be a positive integer" in capsys.readouterr().err
    assert saved_model.next_version(models / "tiny") == 8


def test_cli_fails_with_one_line_for_missing_weights(tmp_path, commands):
    result = commands("export", f"--weights={tmp_path / 'missing.weights.npz'}", f"--export_dir={tmp_path}")
    assert result.returncode == 2  # a set-up error: nothing was done
    lines = [line for line in result.stderr.splitlines() if line.startswith("kpac-export:")]
    assert len(lines) == 1 and "no such weights file" in lines[0]
    assert not (tmp_path / "kpac").exists()


# ---------------------------------------------------------------------------------------
# TFLite.


def test_tflite_matches_keras_with_dynamic_shapes(single, rng):
    path = single["dir"] / "assets.extra" / saved_model.TFLITE_FILE
    runner = tflite.TFLiteDeblurrer(path, num_threads=2)
    assert runner.input_names == ("images",)
    for shape in ((1, 37, 53, 3), (2, 16, 24, 3), (1, 7, 5, 3)):
        images = rng.random(shape, dtype=np.float32)
        got = runner(images)
        assert got.shape == shape
        assert np.abs(got - _keras(single["model"], images)).max() <= TOL, shape
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        runner(rng.random((1, 8, 8, 4), dtype=np.float32))


def test_tflite_of_the_dual_pixel_preset_takes_the_three_views(dual, rng):
    runner = tflite.TFLiteDeblurrer(tflite.convert_to_tflite(dual["model"]), num_threads=2)
    assert runner.input_names == ("left", "right", "centre")
    for shape in ((1, 24, 40, 3), (2, 9, 13, 3)):
        left, right, centre = (rng.random(shape, dtype=np.float32) for _ in range(3))
        got = runner(left, right, centre)
        assert got.shape == shape
        assert np.abs(got - _keras(dual["model"], left, right, centre)).max() <= TOL, shape
        assert np.abs(got - _keras(dual["model"], right, left, centre)).max() > 1e-3  # views matter


# ---------------------------------------------------------------------------------------
# The pixel limit.


def _large_png(width: int, height: int) -> bytes:
    """A valid 8-bit gray PNG of any size (all black), compressed row by row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = bytes(1 + width)  # filter byte + one byte per pixel
    compressor = zlib.compressobj(1)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


_FRESH_LIMIT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import numpy as np
    import tensorflow as tf

    directory, files = sys.argv[1], sys.argv[2:]
    encoded = tf.saved_model.load(directory).signatures["encoded"]
    small = Path(files[0]).read_bytes()
    encoded(image_bytes=tf.constant([small]))  # warm up, as a server would be
    results = {}
    for path in files[1:]:
        request = tf.constant([small, Path(path).read_bytes()])
        start = time.perf_counter()
        try:
            encoded(image_bytes=request)
            message = None
        except tf.errors.InvalidArgumentError as error:
            message = str(error)
        results[Path(path).name] = {"seconds": time.perf_counter() - start, "message": message}
    results["modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "kpac_tf")
    print(json.dumps(results))
    """
)


@pytest.mark.process
def test_over_limit_files_are_refused_fast_in_a_fresh_process(single, tmp_path, rng):
    """The CLI export (default limit 16 MP) refuses a valid 54 MP PNG and JPEG from their
    headers, before decoding, within a second."""
    (tmp_path / "small.png").write_bytes(_png(rng.random((9, 11, 3), dtype=np.float32), 8))
    (tmp_path / "large.png").write_bytes(_large_png(9000, 6000))
    jpeg = tf.io.encode_jpeg(tf.zeros((6000, 9000, 1), tf.uint8), quality=50).numpy()
    (tmp_path / "large.jpg").write_bytes(jpeg)
    (tmp_path / "fresh.py").write_text(_FRESH_LIMIT)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "fresh.py"), str(single["dir"]),
         *(str(tmp_path / name) for name in ("small.png", "large.png", "large.jpg"))],
        capture_output=True, text=True, env=_env(with_repo=False), cwd=tmp_path, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout.strip().splitlines()[-1])
    assert results.pop("modules") == []  # kpac_tf never imported
    for name in ("large.png", "large.jpg"):
        message = results[name]["message"]
        assert message is not None, name
        assert "image_bytes: an image of 9000x6000 pixels (54000000) exceeds the pixel limit " \
            "of this export (16000000 pixels, max_pixels)" in message, message
        assert "tile larger photos on the client or export again with a larger --max_pixels" in message
        assert results[name]["seconds"] < 1.0, results[name]


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """The 2-level preset exported with a 4096-pixel limit."""
    keras.utils.set_random_seed(13)
    model = build_kpac("kpac-2level")
    directory = saved_model.export_saved_model(
        model, tmp_path_factory.mktemp("export_limited"), "small", max_pixels=4096
    )
    return {"dir": directory, "model": model}


def test_float_signatures_limit_the_pixels_of_the_batch(limited, rng):
    signatures = tf.saved_model.load(str(limited["dir"])).signatures
    serve, encoded = signatures["serving_default"], signatures["encoded"]
    at_limit = rng.random((1, 64, 64, 3), dtype=np.float32)
    got = serve(images=tf.constant(at_limit))["deblurred"].numpy()
    assert np.abs(got - _keras(limited["model"], at_limit)).max() <= TOL
    text = _error_text(lambda: serve(images=tf.constant(rng.random((1, 64, 65, 3), dtype=np.float32))))
    assert "images: a batch of 1 image(s) of 65x64 pixels (4160 in all) exceeds the pixel " \
        "limit of this export (4096 pixels, max_pixels)" in text, text
    batch = rng.random((2, 48, 48, 3), dtype=np.float32)  # each image fits, the batch does not
    assert "a batch of 2 image(s) of 48x48 pixels (4608 in all)" in _error_text(
        lambda: serve(images=tf.constant(batch)))
    png = _png(rng.random((64, 65, 3), dtype=np.float32), 16)
    assert "image_bytes: an image of 65x64 pixels (4160)" in _error_text(
        lambda: encoded(image_bytes=tf.constant([png])))
    # Two files that each fit are decoded one after the other, so they pass together.
    fits = _png(rng.random((60, 60, 3), dtype=np.float32), 8)
    assert encoded(image_bytes=tf.constant([fits, fits]))["png_bytes"].shape == (2,)
    metadata = json.loads((limited["dir"] / "assets.extra" / saved_model.METADATA_FILE).read_text())
    assert metadata["max_pixels"] == 4096


def test_unlimited_export_and_bad_limits(single, tmp_path, rng):
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        saved_model.export_saved_model(single["model"], tmp_path, "kpac", max_pixels=0)
    for bad in (-5, 2.5, True):
        with pytest.raises(ValueError, match="max_pixels"):
            ksignatures.build_serving_module(single["model"], max_pixels=bad)
    _, signatures = ksignatures.build_serving_module(single["model"], max_pixels=None)
    images = rng.random((1, 40, 40, 3), dtype=np.float32)
    got = signatures[ksignatures.SERVING_SIGNATURE](images=tf.constant(images))["deblurred"].numpy()
    assert np.abs(got - _keras(single["model"], images)).max() <= TOL


# ---------------------------------------------------------------------------------------
# ONNX.

_ONNX, _ONNX_REASON = konnx.onnx_available()
needs_onnx = pytest.mark.skipif(not _ONNX, reason=f"the onnx extra is missing ({_ONNX_REASON})")


@needs_onnx
def test_onnx_export_runs_in_onnxruntime_at_parity(single, dual, tmp_path, rng):
    directory = saved_model.export_saved_model(single["model"], tmp_path, "onnx", onnx=True)
    path = directory / saved_model.ONNX_FILE
    assert path.is_file() and (directory / "saved_model.pb").is_file()
    runner = konnx.OnnxDeblurrer(path, num_threads=2)
    assert runner.input_names == ("images",)
    for shape in ((1, 37, 53, 3), (2, 16, 24, 3), (1, 5, 3, 3)):
        images = rng.random(shape, dtype=np.float32)
        got = runner(images)
        assert got.shape == shape and got.dtype == np.float32
        assert np.abs(got - _keras(single["model"], images)).max() <= 1e-4, shape
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        runner(rng.random((1, 8, 8, 4), dtype=np.float32))

    dual_runner = konnx.OnnxDeblurrer(konnx.convert_to_onnx(dual["model"]))
    assert dual_runner.input_names == ("left", "right", "centre")
    views = [rng.random((1, 21, 19, 3), dtype=np.float32) for _ in range(3)]
    assert np.abs(dual_runner(*views) - _keras(dual["model"], *views)).max() <= 1e-4


@needs_onnx
@pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                    reason="openvino is not installed (pip install 'kpac_tf[openvino]')")
def test_openvino_runs_the_onnx_file_and_reads_the_saved_model(single, tmp_path, rng):
    """The README's two OpenVINO routes: the exported model.onnx, and the SavedModel
    read by OpenVINO's own TensorFlow front end, both at Keras parity (float32)."""
    import openvino as ov

    directory = saved_model.export_saved_model(single["model"], tmp_path, "ov", onnx=True)
    images = rng.random((1, 37, 53, 3), dtype=np.float32)
    expected = _keras(single["model"], images)
    core = ov.Core()
    for model in (core.read_model(str(directory / saved_model.ONNX_FILE)),
                  ov.convert_model(str(directory))):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        got = compiled(images)[compiled.outputs[0]]
        assert got.shape == images.shape
        assert np.abs(got - expected).max() <= 1e-4


def test_onnx_export_without_the_extra_says_what_to_install(single, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'kpac_tf\[onnx\]'"):
        saved_model.export_saved_model(single["model"], tmp_path, "kpac", onnx=True)
    assert list((tmp_path / "kpac").iterdir()) == []  # refused before writing anything
    with pytest.raises(ImportError, match="tf2onnx"):
        konnx.convert_to_onnx(single["model"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    available, reason = konnx.onnx_available()
    assert not available and "tf2onnx and onnxruntime not installed" in reason
