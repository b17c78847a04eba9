"""The commands coexist: every absl flag is defined once, and each command's --help works."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

COMMANDS = ["deblur", "demo", "evaluate", "export", "train"]


def test_all_commands_import_into_one_process():
    for name in COMMANDS:
        importlib.import_module(f"kpac_tf.cli.{name}")  # a duplicate flag would raise here


@pytest.mark.parametrize("name", ["deblur", "train"])
def test_help_lists_the_shared_flags(name):
    result = subprocess.run(
        [sys.executable, "-m", f"kpac_tf.cli.{name}", "--helpfull"],
        capture_output=True, text=True, timeout=120,
    )
    assert "Traceback" not in result.stderr  # absl exits 1 after printing help
    for flag in ("--weights", "--preset", "--bit_depth"):
        assert flag in result.stdout


def test_demo_writes_the_result_and_the_figure(tmp_path):
    from kpac_tf import build_kpac
    from kpac_tf.io import read_image
    from kpac_tf.weights import save_weights

    weights = save_weights(build_kpac("kpac-3level"), tmp_path / "random")
    result = subprocess.run(
        [sys.executable, "-m", "kpac_tf.cli.demo", f"--weights={weights}", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "input   : PSNR" in result.stdout and "deblurred: PSNR" in result.stdout
    figure = read_image(tmp_path / "out" / "coffee_before_after.png")
    assert figure.width > 1000
    assert read_image(tmp_path / "out" / "coffee_deblurred.png").rgb.shape == (400, 600, 3)
