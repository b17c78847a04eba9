"""The package's public surface: every name in ``kpac_tf.__all__`` resolves, the
numpy-only ``kpac_tf.analysis.inverse_kernels`` imports without TensorFlow (checked in a
fresh process, where nothing has imported TensorFlow yet), and the former flat modules
are gone (no re-export shims)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_FRESH = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import kpac_tf
    import kpac_tf.analysis.inverse_kernels as ik

    heavy = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
    size = float(ik.wiener_inverse(ik.gaussian_kernel(1.0, size=9), 1e-2).shape[0])
    names = {}
    for name in kpac_tf.__all__:
        value = getattr(kpac_tf, name)
        home = getattr(value, "__module__", None)
        names[name] = {
            "type": type(value).__name__,
            "module": home,
            "same": home is not None and getattr(sys.modules[home], name, None) is value,
            "in_dir": name in dir(kpac_tf),
        }
    print(json.dumps({"heavy_after_inverse_kernels": heavy, "size": size, "names": names}))
    """
)


@pytest.mark.process
def test_public_names_resolve_and_inverse_kernels_need_no_tensorflow():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _FRESH], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["heavy_after_inverse_kernels"] == []  # neither tensorflow nor keras
    assert out["size"] == 9.0
    names = out["names"]
    assert {"build_kpac", "load_model", "Deblurrer", "read_image", "write_image", "train",
            "export_saved_model"} <= set(names)
    for name, facts in names.items():
        assert facts["in_dir"], name
        if facts["type"] in ("function", "type", "ABCMeta"):
            assert facts["module"].startswith("kpac_tf.") and facts["same"], (name, facts)
    assert names["PRESETS"]["type"] == "dict"


#: The flat modules of the package before it was organised by concern (issue 38); their
#: code lives in model/, images/, train/, evaluation/, deploy/ and analysis/ now.
_FORMER_MODULES = ("io", "layers", "models", "padding", "weights", "complexity", "image_metadata",
                   "colour", "training", "train_config", "train_reports", "losses", "ema",
                   "distribution", "metrics", "lpips", "baselines", "export", "serving",
                   "blur_detection", "inverse_kernels", "data.synthetic", "data.sources")


def test_the_former_flat_modules_are_gone_without_shims():
    import importlib.util

    for name in _FORMER_MODULES:
        assert importlib.util.find_spec(f"kpac_tf.{name}") is None, name
    for name in ("analysis", "evaluation"):  # modules once, packages now
        assert importlib.util.find_spec(f"kpac_tf.{name}").submodule_search_locations, name
