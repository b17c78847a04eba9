"""Test set-up and shared fixtures.

Keras, Jupyter, IPython and matplotlib write caches and config into $HOME; the
suite points them at a per-session temporary directory before any of them is
imported, so tests never touch the user's home.

Shared fixtures: ``commands`` (kpac-* commands run in the test process), the tiny
model / data / config helpers, ``tiny_run`` (one finished tiny kpac-train run, read
only) and ``preset_model`` (built presets, cached and read only).
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Callable

_SANDBOX = tempfile.mkdtemp(prefix="kpac_tf_tests_home_")
for _var, _sub in (
    ("HOME", ""),
    ("KERAS_HOME", "keras"),
    ("MPLCONFIGDIR", "matplotlib"),
    ("JUPYTER_CONFIG_DIR", "jupyter/config"),
    ("JUPYTER_DATA_DIR", "jupyter/data"),
    ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"),
    ("IPYTHONDIR", "ipython"),
):
    _path = os.path.join(_SANDBOX, _sub)
    os.makedirs(_path, exist_ok=True)
    os.environ[_var] = _path
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Before TensorFlow loads (test modules import it before kpac_tf): oneDNN's CPU kernels
# differentiate dilated convs, TensorFlow's own do not (see kpac_tf/__init__.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests import helpers  # noqa: E402

@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so every test is deterministic."""
    return np.random.default_rng(1234)


@pytest.fixture
def commands(capsys, monkeypatch) -> helpers.InProcessCommands:
    """``commands("deblur", *args, cwd=..., env=...)``: a kpac-* command run in the test
    process; gives its exit status, stdout and stderr."""
    return helpers.InProcessCommands(capsys, monkeypatch)


@pytest.fixture(scope="session")
def tiny_model() -> Callable:
    """Builds the 1-block 2-level test model (a new one each call)."""
    return helpers.tiny_model


@pytest.fixture(scope="session")
def tiny_data() -> Callable:
    """Makes synthetic training data for the tiny model (see helpers.tiny_data)."""
    return helpers.tiny_data


@pytest.fixture(scope="session")
def quiet_config() -> Callable:
    """Makes a quiet TrainConfig (see helpers.quiet_config)."""
    return helpers.quiet_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny kpac-train run (helpers.TINY_RUN_FLAGS): checkpoints ckpt-2 and
    ckpt-4, model.weights.npz, train_record.json and TensorBoard events with one validation.
    Shared by several modules: read it, never change it."""
    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    status = helpers.run_command_in_process("train", *helpers.TINY_RUN_FLAGS, f"--workdir={workdir}")
    assert status == 0 and (workdir / "model.weights.npz").exists(), status
    return workdir


@pytest.fixture(scope="session")
def preset_model() -> Callable:
    """``preset_model("kpac-3level")``: the preset with random weights, built once per
    session, for tests that read its structure or run it. Shared: never assign to its
    weights, and seed before drawing random numbers of your own."""

    @functools.lru_cache(maxsize=None)
    def build(preset: str):
        from kpac_tf import build_kpac

        return build_kpac(preset)

    return build
