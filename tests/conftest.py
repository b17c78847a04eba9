"""Test set-up: keep every HOME-writing library inside a temporary folder.

Keras, Jupyter, IPython and matplotlib write caches and config into $HOME; the
suite points them at a per-session temporary directory before any of them is
imported, so tests never touch the user's home.
"""
from __future__ import annotations

import os
import tempfile

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

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so every test is deterministic."""
    return np.random.default_rng(1234)
