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
    assert result.returncode == 0
    for flag in ("--weights", "--preset", "--bit_depth"):
        assert flag in result.stdout
