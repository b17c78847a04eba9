"""The kpac-train command in real processes: kill -9 and resume, NaN stop, user errors, flagfiles."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "experiments" / "configs"
TINY = [
    "--data=synthetic:deadleaves", "--crop=32", "--val_data=none", "--preset=kpac-2level",
    "--num_blocks=1", "--dilations=1,2", "--batch_size=2", "--lr=1e-3", "--checkpoint_every=2",
    "--summary_every=0", "--image_summary_every=0", "--eval_every=0", "--progress=false",
]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _command(*args):
    return [sys.executable, "-m", "kpac_tf.cli.train", *args]


def _run(*args, timeout=180):
    return subprocess.run(_command(*args), env=_env(), capture_output=True, text=True, timeout=timeout)


def _latest_step(workdir: Path) -> int | None:
    state = workdir / "checkpoints" / "checkpoint"
    if not state.exists():
        return None
    match = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else None


def _start_and_wait(workdir: Path, at_least: int) -> subprocess.Popen:
    """Start a long run and return once it has a checkpoint at step >= ``at_least``."""
    process = subprocess.Popen(_command(*TINY, "--steps=100000", f"--workdir={workdir}"), env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 150
    while (_latest_step(workdir) or 0) < at_least:
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint at step {at_least} in time (exit code {process.poll()})")
        time.sleep(0.2)
    return process


def test_sigterm_kill_9_resume_and_nan_stop(tmp_path):
    workdir = tmp_path / "run"
    # SIGTERM: the run saves a checkpoint at the current step and exits cleanly.
    process = _start_and_wait(workdir, 2)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    stopped = int(re.search(r"Stopped at step (\d+)/100000", stdout).group(1))
    assert _latest_step(workdir) == stopped
    # SIGKILL of the resumed run (while training, often while saving).
    process = _start_and_wait(workdir, stopped + 4)
    try:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    saved = _latest_step(workdir)
    assert saved is not None and saved >= stopped + 4
    # The same command (with a reachable step count) resumes from the last checkpoint.
    done = _run(*TINY, f"--steps={saved + 2}", f"--workdir={workdir}")
    assert done.returncode == 0, done.stderr
    assert f"Trained steps {saved}..{saved + 2}" in done.stdout
    record = json.loads((workdir / "train_record.json").read_text())
    assert record["start_step"] == saved and record["step"] == saved + 2 and record["finished"]
    assert "--workdir" in record["command"] and record["flags"]["crop"] == 32
    assert (workdir / "model.weights.npz").exists()
    # A NaN loss at step saved+4 stops the run; the checkpoint of step saved+2 stays the latest.
    weights_before = (workdir / "model.weights.npz").read_bytes()
    nan = _run(*TINY, f"--steps={saved + 10}", f"--workdir={workdir}", f"--debug_nan_at_step={saved + 4}")
    assert nan.returncode == 1
    assert f"loss became NaN or infinite at step {saved + 4}" in nan.stderr
    assert f"last good checkpoint (step {saved + 2})" in nan.stderr
    assert "Traceback" not in nan.stderr
    assert _latest_step(workdir) == saved + 2
    assert (workdir / "model.weights.npz").read_bytes() == weights_before


def test_user_errors_are_one_line_before_training(tmp_path):
    missing = _run("--data=" + str(tmp_path / "nowhere"), f"--workdir={tmp_path / 'a'}")
    assert missing.returncode == 1
    assert "kpac-train: error: --data=" in missing.stderr and "neither a DPDD folder" in missing.stderr
    assert "Traceback" not in missing.stderr
    vgg = _run(*TINY, "--steps=2", "--perceptual_weight=7e-4", "--vgg19_weights=" + str(tmp_path / "vgg.h5"),
               f"--workdir={tmp_path / 'b'}")
    assert vgg.returncode == 1
    assert "kpac-train: error: VGG19 weights file" in vgg.stderr and "--vgg19_weights=PATH" in vgg.stderr
    assert "Traceback" not in vgg.stderr
    assert _latest_step(tmp_path / "b") is None  # nothing trained, nothing saved
    option = _run("--data=synthetic", "--crop=32", "--synthetic_options=clouds=1", f"--workdir={tmp_path / 'c'}")
    assert option.returncode == 1 and "kpac-train: error: Synthetic option 'clouds=1'" in option.stderr
    assert "Traceback" not in option.stderr
    usage = _run("--workdir=x")
    assert usage.returncode == 1 and "--data is required" in usage.stderr


def test_flagfiles_hold_the_paper_recipes():
    """Parse every flagfile with the command's own flag definitions."""
    script = (
        "import json, sys\n"
        "from absl import flags\n"
        "import kpac_tf.cli.train\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    FLAGS = flags.FLAGS\n"
        "    FLAGS.unparse_flags()\n"
        "    FLAGS(['kpac-train', '--flagfile=' + path])\n"
        "    out[path] = {k: FLAGS[k].value for k in ('steps', 'batch_size', 'crop', 'lr', 'beta1', 'beta2',"
        " 'perceptual_weight', 'perceptual_distance', 'bit_depth', 'lr_schedule', 'data', 'preset')}\n"
        "print(json.dumps(out))\n"
    )
    paths = sorted(str(p) for p in CONFIGS.glob("*.flags"))
    result = subprocess.run([sys.executable, "-c", script, *paths], env=_env(), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    values = {Path(k).name: v for k, v in json.loads(result.stdout.strip().splitlines()[-1]).items()}
    stage1, stage2 = values["paper_stage1.flags"], values["paper_stage2.flags"]
    common = dict(batch_size=4, crop=512, beta1=0.9, beta2=0.99, bit_depth="8", lr_schedule="constant")
    for recipe in (stage1, stage2):
        assert {k: recipe[k] for k in common} == common
    assert (stage1["steps"], stage1["lr"], stage1["perceptual_weight"]) == (200000, 1e-4, 0.0)
    assert (stage2["steps"], stage2["lr"], stage2["perceptual_weight"]) == (100000, 5e-5, 7e-4)
    assert stage2["perceptual_distance"] == "squared"
    cpu = values["synthetic_cpu.flags"]
    assert cpu["data"] == "synthetic:deadleaves,skimage" and cpu["crop"] == 256 and cpu["preset"] == "kpac-3level"


def test_mixed_precision_trains_and_resumes_in_float32(tmp_path):
    """--mixed_precision on a CPU trains in bfloat16; its checkpoint resumes in float32."""
    import numpy as np

    mixed = _run(*TINY, "--steps=2", "--mixed_precision", f"--workdir={tmp_path}")
    assert mixed.returncode == 0, mixed.stderr
    record = json.loads((tmp_path / "train_record.json").read_text())
    assert record["dtype_policy"] == "mixed_bfloat16" and record["step"] == 2
    with np.load(tmp_path / "model.weights.npz") as arrays:
        kernels = [arrays[name] for name in arrays.files if ":" in name]
    assert kernels and all(a.dtype == np.float32 and np.isfinite(a).all() for a in kernels)
    full = _run(*TINY, "--steps=4", f"--workdir={tmp_path}")
    assert full.returncode == 0, full.stderr
    assert "Trained steps 2..4" in full.stdout
    assert json.loads((tmp_path / "train_record.json").read_text())["dtype_policy"] == "float32"
