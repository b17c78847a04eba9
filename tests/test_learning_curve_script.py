"""experiments/quality/learning_curve.py: the in-run validation gain read back from the event
files kpac-train writes, a resumed run's repeated step counted once."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from kpac_tf.train.reports import summary_scalar

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "quality" / "learning_curve.py"
pytestmark = pytest.mark.process  # the script defines absl flags the commands define too


def _write_events(folder: Path, points: list[tuple[int, float, float]]) -> None:
    """One event file of (step, val psnr, val input psnr), plus a training scalar."""
    writer = tf.summary.create_file_writer(str(folder))
    with writer.as_default():
        for step, psnr, before in points:
            tf.summary.experimental.set_step(step)
            summary_scalar("train/loss", 0.05)
            summary_scalar("val/psnr", psnr)
            summary_scalar("val/input_psnr", before)
    writer.close()
    time.sleep(1.1)  # event file names carry the second they were opened


class _Script:
    """One learning_curve.py process, started at once; ``wait()`` gives the finished one
    (the script defines absl flags that the commands imported by other tests define too)."""

    def __init__(self, *args: str):
        env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.result: subprocess.CompletedProcess | None = None

    def wait(self) -> subprocess.CompletedProcess:
        if self.result is None:
            out, err = self.process.communicate(timeout=300)
            self.result = subprocess.CompletedProcess(self.process.args, self.process.returncode, out, err)
        return self.result


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run):
    """Every test's script process, started together (they run concurrently)."""
    resumed = tmp_path_factory.mktemp("resumed")
    events = resumed / "run" / "tensorboard"
    _write_events(events, [(500, 30.5, 30.0), (1000, 31.0, 30.0), (1500, 29.0, 30.0)])
    _write_events(events, [(1500, 31.25, 30.0), (2000, 31.5, 30.25)])  # resumed at 1000
    partly = tmp_path_factory.mktemp("partly")
    _write_events(partly / "good" / "tensorboard", [(500, 30.5, 30.0)])
    started = {
        "resumed": _Script(f"--run={resumed / 'run'}", "--columns=3"),
        "partly": _Script(f"--run={partly / 'missing'},{partly / 'good'}"),
        # The shared tiny run validated 3 scenes of 48 px at its last step, 4.
        "baseline": _Script(f"--run={tiny_run}", f"--baseline={tiny_run / 'model.weights.npz'}",
                            "--data=synthetic:deadleaves", "--val_images=3", "--val_crop=48"),
        "no_data": _Script(f"--run={partly}", "--baseline=kpac-3level"),
    }
    yield started
    for script in started.values():
        if script.process.poll() is None:
            script.process.kill()
        script.wait()



def test_curve_of_a_resumed_run(runs):
    done = runs["resumed"].wait()
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "| 500-1500 | +0.50 +1.00 +1.25 |" in lines
    assert "| 2000 | +1.25 |" in lines
    assert "best +1.25 dB at step 1500; last +1.25 dB at step 2000" in lines
    assert "4 validations" in lines[0]


def test_a_folder_without_events_is_one_error_line_and_the_others_still_print(runs):
    done = runs["partly"].wait()
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("learning_curve.py: error:")]
    assert len(errors) == 1 and "no tensorboard/ folder" in errors[0]
    assert "| 500 | +0.50 |" in done.stdout.splitlines()


def test_baseline_reproduces_the_in_run_validation_of_the_same_weights(runs):
    """--baseline on a run's own final weights scores its validation scenes as the run
    did at its last step (the scenes do not depend on the data seed)."""
    done = runs["baseline"].wait()
    assert done.returncode == 0, done.stderr[-2000:]
    baseline = re.search(r"([+-]\d+\.\d+) dB on the same validation scenes \(3 images\)", done.stdout)
    last = re.search(r"last ([+-]\d+\.\d+) dB at step 4", done.stdout)
    assert baseline and last, done.stdout
    assert baseline.group(1) == last.group(1)


def test_baseline_without_data_is_a_usage_error(runs):
    done = runs["no_data"].wait()
    assert done.returncode != 0 and "--baseline needs --data" in done.stderr
