"""kpac-deblur: formats kept, bad inputs reported one line each, nothing lost."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from kpac_tf import build_kpac, io as kio
from kpac_tf.cli import deblur
from kpac_tf.weights import save_weights


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return save_weights(build_kpac("kpac-2level"), tmp_path_factory.mktemp("w") / "random")


def _run(argv):
    flags.FLAGS.unparse_flags()
    remaining = flags.FLAGS(["kpac-deblur", *argv])
    return deblur.main(remaining)


def _write_inputs(folder, rng):
    folder.mkdir()
    rgb = rng.random((30, 41, 3)).astype(np.float32)
    kio.write_image(folder / "rgb8.png", rgb)
    kio.write_image(folder / "rgb16.png", rgb, bit_depth=16)
    kio.write_image(folder / "gray.png", rgb, grayscale=True)
    kio.write_image(folder / "alpha.png", rgb, alpha=rng.random((30, 41, 1)))
    kio.write_image(folder / "photo.jpg", rgb)
    kio.write_image(folder / "scan.tif", rgb, bit_depth=16)
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
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    for name in ("truncated.png", "empty.png", "notes.jpg", "missing.png"):
        assert sum(name in line for line in errors) == 1
    assert "6 deblurred, 4 failed" in captured.out
    results = {p.name: kio.read_image(p) for p in out.iterdir()}
    assert sorted(results) == sorted(
        f"{stem}_deblurred{ext}" for stem, ext in
        [("rgb8", ".png"), ("rgb16", ".png"), ("gray", ".png"), ("alpha", ".png"), ("photo", ".jpg"), ("scan", ".tif")]
    )
    assert results["rgb8_deblurred.png"].bit_depth == 8
    assert results["rgb16_deblurred.png"].bit_depth == 16
    assert results["scan_deblurred.tif"].bit_depth == 16
    assert results["gray_deblurred.png"].grayscale
    np.testing.assert_allclose(
        results["alpha_deblurred.png"].alpha, kio.read_image(inputs / "alpha.png").alpha, atol=1 / 255
    )
    assert results["rgb8_deblurred.png"].rgb.shape == (30, 41, 3)
    # Inputs untouched, no temporary files left anywhere.
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before


def test_never_overwrites_inputs_or_existing_results(tmp_path, rng, weights_file, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    kio.write_image(inputs / "a.png", rng.random((20, 20, 3)))
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
        kio.write_image(inputs / name, rng.random((90, 130, 3)))
    out = tmp_path / "out"
    status = _run([f"--weights={weights_file}", f"--output_dir={out}", "--tile=64", "--overlap=16",
                   str(inputs / "*.png"), str(tmp_path / "nothing*.png")])
    assert status == 1
    assert "no file matches this pattern" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["x_deblurred.png", "y_deblurred.png"]


def test_missing_weights_is_one_line_and_exit_2(tmp_path, rng, capsys):
    image = tmp_path / "a.png"
    kio.write_image(image, rng.random((8, 8, 3)))
    status = _run([f"--weights={tmp_path / 'nope.weights.npz'}", f"--output_dir={tmp_path / 'o'}", str(image)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "no such weights file" in err[0]


def test_dual_pixel_triples(tmp_path, rng, capsys):
    weights = save_weights(build_kpac("kpac-dual"), tmp_path / "dual")
    names = []
    for view in ("l", "r", "c"):
        path = tmp_path / f"scene_{view}.png"
        kio.write_image(path, rng.random((24, 40, 3)), bit_depth=16)
        names.append(str(path))
    out = tmp_path / "out"
    assert _run([f"--weights={weights}", "--dual_pixel", f"--output_dir={out}", *names]) == 0
    result = kio.read_image(out / "scene_c_deblurred.png")
    assert result.bit_depth == 16 and result.rgb.shape == (24, 40, 3)
    assert _run([f"--weights={weights}", "--dual_pixel", f"--output_dir={out}", *names[:2]]) == 2
    assert "triples" in capsys.readouterr().err


def test_console_entry_point_exit_status(tmp_path):
    """The installed command's process exits non-zero with one error line."""
    result = subprocess.run(
        [sys.executable, "-m", "kpac_tf.cli.deblur", str(tmp_path / "absent.png"),
         f"--weights={tmp_path / 'absent.weights.npz'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "no such weights file" in result.stderr
