"""experiments/learning_curve.py: the in-run validation gain read back from the event
files kpac-train writes, a resumed run's repeated step counted once."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import tensorflow as tf

from kpac_tf.train_reports import summary_scalar

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "learning_curve.py"


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


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_curve_of_a_resumed_run(tmp_path):
    events = tmp_path / "run" / "tensorboard"
    _write_events(events, [(500, 30.5, 30.0), (1000, 31.0, 30.0), (1500, 29.0, 30.0)])
    _write_events(events, [(1500, 31.25, 30.0), (2000, 31.5, 30.25)])  # resumed at 1000
    done = _run(f"--run={tmp_path / 'run'}", "--columns=3")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert "| 500-1500 | +0.50 +1.00 +1.25 |" in lines
    assert "| 2000 | +1.25 |" in lines
    assert "best +1.25 dB at step 1500; last +1.25 dB at step 2000" in lines
    assert "4 validations" in lines[0]


def test_a_folder_without_events_is_one_error_line_and_the_others_still_print(tmp_path):
    events = tmp_path / "good" / "tensorboard"
    _write_events(events, [(500, 30.5, 30.0)])
    done = _run(f"--run={tmp_path / 'missing'},{tmp_path / 'good'}")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no tensorboard/ folder" in errors[0]
    assert "| 500 | +0.50 |" in done.stdout.splitlines()


def test_baseline_reproduces_the_in_run_validation_of_the_same_weights(tmp_path):
    """--baseline on a run's own final weights scores its validation scenes as the run
    did at its last step (the scenes do not depend on the data seed)."""
    workdir = tmp_path / "run"
    train = subprocess.run(
        [sys.executable, "-m", "kpac_tf.cli.train", "--data=synthetic:deadleaves", "--crop=32",
         "--val_crop=48", "--val_images=3", "--preset=kpac-2level", "--num_blocks=1",
         "--dilations=1,2", "--batch_size=2", "--lr=1e-3", "--steps=4", "--eval_every=4",
         "--summary_every=0", "--image_summary_every=0", "--progress=false", "--data_seed=7",
         f"--workdir={workdir}"],
        env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2"),
        capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    done = _run(f"--run={workdir}", f"--baseline={workdir / 'model.weights.npz'}",
                "--data=synthetic:deadleaves", "--val_images=3", "--val_crop=48")
    assert done.returncode == 0, done.stderr[-2000:]
    baseline = re.search(r"([+-]\d+\.\d+) dB on the same validation scenes \(3 images\)", done.stdout)
    last = re.search(r"last ([+-]\d+\.\d+) dB at step 4", done.stdout)
    assert baseline and last, done.stdout
    assert baseline.group(1) == last.group(1)


def test_baseline_without_data_is_a_usage_error(tmp_path):
    done = _run(f"--run={tmp_path}", "--baseline=kpac-3level")
    assert done.returncode != 0 and "--baseline needs --data" in done.stderr
