"""kpac-deblur: formats kept, bad inputs reported one line each, nothing lost, checks
before the work, quiet console output, file modes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from kpac_tf import build_kpac
from kpac_tf.cli import deblur, runner
from kpac_tf.images import codec
from kpac_tf.inference import Deblurrer
from kpac_tf.model.weights import load_model, save_weights


def _strong_residual(preset: str, seed: int = 0):
    """Random weights with the last conv scaled up: the output is far from the input."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_kpac(preset)
    last = model.get_layer("d2_2")
    last.kernel.assign(last.kernel.numpy() * 3)
    return model


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return save_weights(_strong_residual("kpac-2level"), tmp_path_factory.mktemp("w") / "random")


def _assert_within_one_level(path, want: np.ndarray) -> None:
    """The result file's pixels equal ``want`` (HWC in [0,1]) to one level of its depth."""
    got = codec.read_image(path)
    np.testing.assert_allclose(got.rgb, want, rtol=0, atol=1.0 / (2**got.bit_depth - 1) + 1e-6,
                               err_msg=str(path))


def _expected(weights, *views: np.ndarray, **options) -> np.ndarray:
    """What the Deblurrer with the command's settings gives for the input files' pixels."""
    deblurrer = Deblurrer(load_model(str(weights)), **options)
    if len(views) == 3:
        return deblurrer.deblur_dual(*views)
    return deblurrer.deblur(views[0])


def _run(argv):
    flags.FLAGS.unparse_flags()
    remaining = flags.FLAGS(["kpac-deblur", *argv])
    return runner.call_main("kpac-deblur", deblur.main, remaining)


def _write_inputs(folder, rng):
    folder.mkdir()
    rgb = rng.random((30, 41, 3)).astype(np.float32)
    codec.write_image(folder / "rgb8.png", rgb)
    codec.write_image(folder / "rgb16.png", rgb, bit_depth=16)
    codec.write_image(folder / "gray.png", rgb, grayscale=True)
    codec.write_image(folder / "alpha.png", rgb, alpha=rng.random((30, 41, 1)))
    codec.write_image(folder / "photo.jpg", rgb)
    codec.write_image(folder / "scan.tif", rgb, bit_depth=16)
    good = (folder / "rgb8.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("not an image")
    return folder


def test_folder_with_good_and_bad_files(tmp_path, rng, weights_file, capsys):
    inputs = _write_inputs(tmp_path / "in", rng)
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    out = tmp_path / "out"
    status = _run([f"--weights={weights_file}", f"--output_dir={out}", str(inputs), str(tmp_path / "missing.png")])
    captured = capsys.readouterr()
    assert status == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("kpac-deblur: error:")]
    assert len(errors) == 4
    for name in ("truncated.png", "empty.png", "notes.jpg", "missing.png"):
        assert sum(name in line for line in errors) == 1
    assert "6 deblurred, 4 failed" in captured.out
    results = {p.name: codec.read_image(p) for p in out.iterdir()}
    assert sorted(results) == sorted(
        f"{stem}_deblurred{ext}" for stem, ext in
        [("rgb8", ".png"), ("rgb16", ".png"), ("gray", ".png"), ("alpha", ".png"), ("photo", ".jpg"), ("scan", ".tif")]
    )
    assert results["rgb8_deblurred.png"].bit_depth == 8
    assert results["rgb16_deblurred.png"].bit_depth == 16
    assert results["scan_deblurred.tif"].bit_depth == 16
    assert results["gray_deblurred.png"].grayscale
    np.testing.assert_allclose(
        results["alpha_deblurred.png"].alpha, codec.read_image(inputs / "alpha.png").alpha, atol=1 / 255
    )
    assert results["rgb8_deblurred.png"].rgb.shape == (30, 41, 3)
    # The pixels are the Deblurrer's (default settings) to one level; the input differs.
    deblurrer = Deblurrer(load_model(str(weights_file)))
    for stem, ext in (("rgb8", ".png"), ("rgb16", ".png"), ("alpha", ".png"), ("scan", ".tif")):
        source = codec.read_image(inputs / f"{stem}{ext}")
        want = deblurrer.deblur(source.stored_rgb)
        assert np.abs(want - source.rgb).mean() > 0.05
        _assert_within_one_level(out / f"{stem}_deblurred{ext}", want)
    gray = codec.read_image(inputs / "gray.png")
    want_gray = deblurrer.deblur(gray.stored_rgb)
    np.testing.assert_allclose(results["gray_deblurred.png"].rgb[..., 0],
                               want_gray @ np.array([0.299, 0.587, 0.114], np.float32),
                               atol=1 / 255 + 1e-3)
    # Inputs untouched, no temporary files left anywhere.
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before


def test_never_overwrites_inputs_or_existing_results(tmp_path, rng, weights_file, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    codec.write_image(inputs / "a.png", rng.random((20, 20, 3)))
    original = (inputs / "a.png").read_bytes()
    status = _run([f"--weights={weights_file}", f"--output_dir={inputs}", "--suffix=", str(inputs / "a.png")])
    assert status == 1 and "would replace an input" in capsys.readouterr().err
    assert (inputs / "a.png").read_bytes() == original
    out = tmp_path / "out"
    assert _run([f"--weights={weights_file}", f"--output_dir={out}", str(inputs / "a.png")]) == 0
    assert _run([f"--weights={weights_file}", f"--output_dir={out}", str(inputs / "a.png")]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert _run([f"--weights={weights_file}", f"--output_dir={out}", "--overwrite", str(inputs / "a.png")]) == 0


def test_globs_and_tiling_flags(tmp_path, rng, weights_file, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("x.png", "y.png"):
        codec.write_image(inputs / name, rng.random((90, 130, 3)))
    out = tmp_path / "out"
    status = _run([f"--weights={weights_file}", f"--output_dir={out}", "--tile=64", "--overlap=16",
                   str(inputs / "*.png"), str(tmp_path / "nothing*.png")])
    assert status == 1
    assert "no file matches this pattern" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["x_deblurred.png", "y_deblurred.png"]
    for name in ("x", "y"):
        source = codec.read_image(inputs / f"{name}.png").rgb
        tiled = _expected(weights_file, source, tile_size=64, overlap=16)
        whole = _expected(weights_file, source)
        assert np.abs(tiled - whole).max() > 3 / 255  # the tiles really show in the pixels
        _assert_within_one_level(out / f"{name}_deblurred.png", tiled)


def test_ensemble_flag(tmp_path, rng, weights_file):
    codec.write_image(tmp_path / "a.png", rng.random((24, 40, 3)))
    out = tmp_path / "out"
    assert _run([f"--weights={weights_file}", f"--output_dir={out}", "--ensemble", str(tmp_path / "a.png")]) == 0
    source = codec.read_image(tmp_path / "a.png").rgb
    ensembled = _expected(weights_file, source, ensemble=True)
    assert np.abs(ensembled - _expected(weights_file, source)).max() > 3 / 255
    _assert_within_one_level(out / "a_deblurred.png", ensembled)


def test_missing_weights_is_one_line_and_exit_2(tmp_path, rng, capsys):
    image = tmp_path / "a.png"
    codec.write_image(image, rng.random((8, 8, 3)))
    status = _run([f"--weights={tmp_path / 'nope.weights.npz'}", f"--output_dir={tmp_path / 'o'}", str(image)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "no such weights file" in err[0]


def test_dual_pixel_triples(tmp_path, rng, capsys):
    weights = save_weights(_strong_residual("kpac-dual"), tmp_path / "dual")
    names = []
    for view in ("l", "r", "c"):
        path = tmp_path / f"scene_{view}.png"
        codec.write_image(path, rng.random((24, 40, 3)), bit_depth=16)
        names.append(str(path))
    out = tmp_path / "out"
    assert _run([f"--weights={weights}", "--dual_pixel", f"--output_dir={out}", *names]) == 0
    result = codec.read_image(out / "scene_c_deblurred.png")
    assert result.bit_depth == 16 and result.rgb.shape == (24, 40, 3)
    left, right, centre = (codec.read_image(name).rgb for name in names)
    want = _expected(weights, left, right, centre)
    swapped = _expected(weights, right, left, centre)
    assert np.abs(want - swapped).max() > 0.01  # the order of the views matters
    assert np.abs(want - centre).mean() > 0.05
    _assert_within_one_level(out / "scene_c_deblurred.png", want)
    assert _run([f"--weights={weights}", "--dual_pixel", f"--output_dir={out}", *names[:2]]) == 2
    assert "triples" in capsys.readouterr().err


@pytest.mark.process
def test_default_console_output_is_the_commands_own(tmp_path, rng, weights_file):
    """A real process, no TF_CPP_MIN_LOG_LEVEL: one error line, one summary line, nothing else."""
    codec.write_image(tmp_path / "good.png", rng.random((24, 32, 3)))
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "kpac_tf.cli.deblur", "good.png", "bad.jpg", f"--weights={weights_file}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "kpac-deblur: error: bad.jpg: not a supported image (expected PNG, JPEG, TIFF, BMP, GIF, WebP, HEIC or AVIF data)."
    ]
    out = result.stdout.splitlines()
    assert len(out) == 1 and out[0].startswith("1 deblurred, 1 failed, ")
    assert out[0].endswith(" s; results in deblurred/")
    assert (tmp_path / "deblurred" / "good_deblurred.png").is_file()


@pytest.mark.process
def test_missing_weights_in_a_process_exit_2(tmp_path):
    """The installed command's process exits 2 with one error line."""
    (tmp_path / "a.png").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "kpac_tf.cli.deblur", str(tmp_path / "a.png"),
         f"--weights={tmp_path / 'absent.weights.npz'}", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "no such weights file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_checks_come_before_the_model(tmp_path, rng, monkeypatch, capsys):
    """Missing inputs or an unusable output folder never load a model or create a folder."""
    def no_model(weights):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(deblur, "load_deblurrer", no_model)
    out = tmp_path / "out"
    assert _run([f"--output_dir={out}", str(tmp_path / "a.png"), str(tmp_path / "b*.png")]) == 1
    err = capsys.readouterr()
    assert err.err.splitlines() == [f"kpac-deblur: error: {tmp_path / 'b*.png'}: no file matches this pattern.",
                                    f"kpac-deblur: error: {tmp_path / 'a.png'}: file not found."]
    assert err.out.startswith("0 deblurred, 2 failed") and not out.exists()
    codec.write_image(tmp_path / "a.png", rng.random((8, 8, 3)))
    (tmp_path / "file").write_text("")
    for target, problem in ((tmp_path / "file", "is a file, not a folder."),
                            (tmp_path / "file" / "sub", f"cannot be created: {tmp_path / 'file'} is not a folder.")):
        assert _run([f"--output_dir={target}", str(tmp_path / "a.png")]) == 2
        assert capsys.readouterr().err.splitlines() == [f"kpac-deblur: error: --output_dir={target} {problem}"]


@pytest.mark.process
def test_results_honour_the_umask(tmp_path, rng, weights_file):
    codec.write_image(tmp_path / "a.png", rng.random((8, 8, 3)))
    previous = os.umask(0o027)
    try:
        assert _run([f"--weights={weights_file}", f"--output_dir={tmp_path / 'out'}", str(tmp_path / "a.png")]) == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "out" / "a_deblurred.png").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o750


def _on_a_terminal(args, cwd) -> str:
    """Run kpac-deblur with stderr on a pseudo-terminal; everything it wrote there."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    process = subprocess.Popen([sys.executable, "-m", "kpac_tf.cli.deblur", *args], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=300)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.process
def test_progress_bar_on_a_terminal_log_lines_only_with_v(tmp_path, rng, weights_file):
    """The bar is drawn on a terminal with no log line inside it; -v trades it for log lines."""
    for name in ("a.png", "b.png"):
        codec.write_image(tmp_path / name, rng.random((16, 16, 3)))
    quiet = _on_a_terminal(["a.png", f"--weights={weights_file}", "--output_dir=q"], tmp_path)
    assert "deblurring: 100%" in quiet and "\r" in quiet
    assert "->" not in quiet and "Loaded" not in quiet
    verbose = _on_a_terminal(["b.png", f"--weights={weights_file}", "--output_dir=v", "-v"], tmp_path)
    assert "deblurring:" not in verbose
    assert "b.png -> v/b_deblurred.png" in verbose and "Loaded" in verbose


@pytest.mark.process
def test_ctrl_c_exits_130_with_one_line(tmp_path, rng, weights_file):
    import signal
    import time

    # 60 images, and the signal is sent once the first result is written: the command is
    # then mid-batch however fast or slow the machine.
    (tmp_path / "in").mkdir()
    for k in range(60):
        codec.write_image(tmp_path / "in" / f"a{k:02d}.png", rng.random((192, 192, 3)))
    # A suite started in the background of a script inherits an ignored SIGINT; the child
    # gets the default disposition back, as a terminal's Ctrl-C would find it.
    process = subprocess.Popen([sys.executable, "-m", "kpac_tf.cli.deblur", "in", f"--weights={weights_file}"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list((tmp_path / "deblurred").glob("*_deblurred.png")):
        assert process.poll() is None and time.monotonic() < deadline, "no result written"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert len(list((tmp_path / "deblurred").glob("*.png"))) < 60
    assert stderr.strip() == "kpac-deblur: interrupted." and stdout == ""
