"""kpac-train checkpoints as weights sources, and checkpoint averaging
(kpac_tf.model.weights.average_weights, python -m kpac_tf.tools.average_weights)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kpac_tf.model import builder, weights
from kpac_tf.train import checkpoints
from tests.helpers import tiny_model

REPO = Path(__file__).resolve().parents[1]
TOOL = [sys.executable, "-m", "kpac_tf.tools.average_weights"]


@pytest.fixture
def run_dir(tiny_run) -> Path:
    """The shared finished 4-step run, checkpoints at steps 2 and 4 (read only)."""
    return tiny_run


def _arrays(source, config=None):
    return weights.get_arrays(weights.load_model(str(source), config))


def test_a_checkpoint_loads_as_the_weights_of_its_step(run_dir):
    final = weights.read_own_weights(run_dir / checkpoints.WEIGHTS_NAME)[1]
    prefix = run_dir / "checkpoints" / "ckpt-4"
    assert weights.is_checkpoint(prefix) and not weights.is_checkpoint(run_dir / "checkpoints" / "ckpt-3")
    model = weights.load_model(str(prefix))  # the model comes from the run's record
    assert builder.model_config(model) == builder.model_config(tiny_model())
    assert len(model.variables) == len(model.trainable_variables)  # nothing else to restore
    for a, b in zip(final, weights.get_arrays(model)):
        np.testing.assert_array_equal(a, b)
    early = _arrays(run_dir / "checkpoints" / "ckpt-2")
    assert any(not np.array_equal(a, b) for a, b in zip(early, final))  # training moved them


def test_average_is_the_elementwise_mean(run_dir):
    sources = [str(run_dir / "checkpoints" / "ckpt-2"), str(run_dir / checkpoints.WEIGHTS_NAME)]
    expected = [(a + b) / 2 for a, b in zip(_arrays(sources[0]), _arrays(sources[1]))]
    averaged = weights.get_arrays(weights.average_weights(sources))
    assert len(averaged) == len(expected)
    for a, b in zip(averaged, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="Nothing to average"):
        weights.average_weights([])


def test_another_variant_is_refused_before_anything_is_restored(run_dir, tmp_path):
    prefix = run_dir / "checkpoints" / "ckpt-4"
    other = builder.build_kpac("kpac-2level", num_blocks=2, dilations=(1, 2))
    before = weights.get_arrays(other)
    expected = r"ckpt-4: variable 29 \(block2/dc1/kernel\) has shape .*another model variant"
    with pytest.raises(weights.WeightsMismatchError, match=expected):
        weights.load_weights(other, str(prefix))
    for a, b in zip(before, weights.get_arrays(other)):  # nothing was assigned
        np.testing.assert_array_equal(a, b)
    # A checkpoint that is not kpac-train's: one clear sentence.
    import tensorflow as tf

    tf.train.Checkpoint(value=tf.Variable(1.0)).write(str(tmp_path / "foreign"))
    with pytest.raises(ValueError, match="foreign: not a kpac-train checkpoint"):
        weights.load_weights(tiny_model(), str(tmp_path / "foreign"))
    with pytest.raises(weights.WeightsMismatchError, match=r"variable 0 \(c0/kernel\) has shape"):
        weights.load_weights(builder.build_kpac("kpac-dual"), str(prefix))


def test_a_checkpoint_without_its_record_needs_the_model(run_dir, tmp_path):
    for name in ("ckpt-4.index", "ckpt-4.data-00000-of-00001"):
        shutil.copy(run_dir / "checkpoints" / name, tmp_path / name)
    with pytest.raises(ValueError, match=r"cannot tell its model.*\(--preset\)"):
        weights.load_model(str(tmp_path / "ckpt-4"))
    config = builder.model_config(tiny_model())
    for a, b in zip(_arrays(tmp_path / "ckpt-4", config), _arrays(run_dir / "checkpoints" / "ckpt-4")):
        np.testing.assert_array_equal(a, b)


def _scripts(*calls: list[str]) -> list[subprocess.CompletedProcess]:
    """The script run once per argument list, all at once (it defines absl flags that the
    commands imported by other tests define too, hence a process each)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    started = [subprocess.Popen([*TOOL, *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for args in calls]
    results = []
    for process in started:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


@pytest.mark.process
def test_the_script_averages_a_run_and_refuses_bad_input(run_dir, tmp_path):
    out = tmp_path / "avg.weights.npz"
    missing = tmp_path / "missing.weights.npz"
    source = run_dir / checkpoints.WEIGHTS_NAME
    before = source.read_bytes()
    done, failed, bad, clash = _scripts(
        [f"--run={run_dir}", "--checkpoint_steps=2:4:2", f"--out={out}"],
        [f"--run={run_dir}", "--checkpoint_steps=2,3", f"--out={missing}"],
        [f"--run={run_dir}", "--checkpoint_steps=4:2:1", f"--out={missing}"],
        [f"--weights={source},{run_dir / 'checkpoints' / 'ckpt-2'}", f"--out={source}"],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"averaged 2 sources into {out}"
    expected = weights.get_arrays(weights.average_weights(
        [str(run_dir / "checkpoints" / "ckpt-2"), str(run_dir / "checkpoints" / "ckpt-4")]))
    for a, b in zip(weights.read_own_weights(out)[1], expected):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # A step with no checkpoint: one line, non-zero, no output file.
    assert failed.returncode == 1 and not missing.exists()
    assert failed.stderr.strip().splitlines()[-1].startswith(
        "python -m kpac_tf.tools.average_weights: error: ")
    assert "ckpt-3: no such weights file" in failed.stderr
    assert bad.returncode == 1 and "expected FIRST:LAST:EVERY" in bad.stderr and not missing.exists()
    # The output may not overwrite one of its sources.
    assert clash.returncode == 1 and "is also a source" in clash.stderr and source.read_bytes() == before
