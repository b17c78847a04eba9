"""The kpac-train command: signals (exit 130 / 143) and kill -9 at a known step then
resume, NaN stop, file modes and a quiet console in real processes; reruns (nothing to
do, changed settings, history), damaged checkpoints, user errors and flagfiles in the
test process."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_RUN_FLAGS
from tests.helpers import TINY_TRAIN_FLAGS as TINY

REPO = Path(__file__).resolve().parents[1]
#: kpac_tf.train.loop.KILL_AT_STEP_ENV.
KILL_AT_STEP_ENV = "KPAC_TF_TEST_KILL_AT_STEP"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _command(*args):
    return [sys.executable, "-m", "kpac_tf.cli.train", *args]


def _latest_step(workdir: Path) -> int | None:
    state = workdir / "checkpoints" / "checkpoint"
    if not state.exists():
        return None
    match = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', state.read_text(), re.MULTILINE)
    return int(match.group(1)) if match else None


def _start_and_wait(workdir: Path, at_least: int) -> subprocess.Popen:
    """Start a long run and return once it has a checkpoint at step >= ``at_least``."""
    process = subprocess.Popen(_command(*TINY, "--steps=100000", f"--workdir={workdir}"), env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 150
    while (_latest_step(workdir) or 0) < at_least:
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint at step {at_least} in time (exit code {process.poll()})")
        time.sleep(0.2)
    return process


def _interrupt(process: subprocess.Popen, signum: int) -> int:
    """Send ``signum``; the step the run says it stopped at (its exit code is 128 + signum)."""
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr
    name = signal.Signals(signum).name
    assert f"kpac-train: note: got {name}; saving a checkpoint and stopping" in stderr
    match = re.search(rf"^kpac-train: interrupted by {name} at step (\d+)/100000; checkpoint saved", stderr,
                      re.MULTILINE)
    assert match and stdout == "", stderr
    return int(match.group(1))


@pytest.mark.process
def test_signals_kill_9_resume_and_nan_stop(tmp_path, commands):
    workdir = tmp_path / "run"
    # Ctrl-C (SIGINT): the run saves a checkpoint at the current step and exits 130.
    process = _start_and_wait(workdir, 2)
    stopped = _interrupt(process, signal.SIGINT)
    assert _latest_step(workdir) == stopped
    # SIGTERM: the same, exit 143.
    process = _start_and_wait(workdir, stopped + 2)
    stopped = _interrupt(process, signal.SIGTERM)
    assert _latest_step(workdir) == stopped
    # SIGKILL of the resumed run at a known step, through the training loop's test hook:
    # the run dies right after step kill_at; checkpoints come every 2 steps.
    kill_at = stopped + 5
    killed = subprocess.run(_command(*TINY, f"--steps={kill_at + 20}", f"--workdir={workdir}"),
                            env={**_env(), KILL_AT_STEP_ENV: str(kill_at)}, capture_output=True,
                            text=True, timeout=180)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    saved = _latest_step(workdir)
    assert saved == kill_at - kill_at % 2  # the last checkpoint before the kill, nothing after
    # The same command (with a reachable step count) resumes from the last checkpoint.
    done = commands("train", *TINY, f"--steps={saved + 2}", f"--workdir={workdir}")
    assert done.returncode == 0, done.stderr
    assert f"Trained steps {saved}..{saved + 2}" in done.stdout
    record = json.loads((workdir / "train_record.json").read_text())
    assert record["start_step"] == saved and record["step"] == saved + 2 and record["finished"]
    assert "--workdir" in record["command"] and record["flags"]["crop"] == 32
    assert len(record["history"]) == 3  # SIGINT, SIGTERM, this one (the killed run wrote no record)
    assert (workdir / "model.weights.npz").exists()
    # A NaN loss at step saved+4 stops the run; the checkpoint of step saved+2 stays the latest.
    weights_before = (workdir / "model.weights.npz").read_bytes()
    nan = commands("train", *TINY, f"--steps={saved + 10}", f"--workdir={workdir}",
                   f"--debug_nan_at_step={saved + 4}")
    assert nan.returncode == 1
    warning, error = nan.stderr.splitlines()
    assert warning == f"kpac-train: warning: --steps is now {saved + 10}; this run used {saved + 2} until now."
    assert error.startswith(f"kpac-train: error: The training loss became NaN or infinite at step {saved + 4};")
    assert f"last good checkpoint (step {saved + 2})" in nan.stderr
    assert "Traceback" not in nan.stderr
    assert _latest_step(workdir) == saved + 2
    assert (workdir / "model.weights.npz").read_bytes() == weights_before


def _files(workdir: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file of a run: (mode, mtime in ns, content)."""
    return {str(p.relative_to(workdir)): (p.stat().st_mode & 0o777, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(workdir.rglob("*")) if p.is_file()}


def _quiet_env() -> dict:
    env = _env()
    env.pop("TF_CPP_MIN_LOG_LEVEL")  # a user who set nothing
    return env


@pytest.mark.process
def test_quiet_output_modes_reruns_changes_and_history(tmp_path, commands):
    workdir = tmp_path / "run"
    quick = [opt for opt in TINY if not opt.startswith(("--progress", "--val_data"))]
    quick += ["--val_images=1", "--val_crop=32", f"--workdir={workdir}", "--log_every=2"]
    first = subprocess.run(_command(*quick, "--steps=4"), env=_quiet_env(), capture_output=True, text=True,
                           timeout=180, preexec_fn=lambda: os.umask(0o027))
    assert first.returncode == 0, first.stderr
    # Quiet: progress lines every 2 steps (stderr is no terminal: no bar, no carriage returns), then the result.
    assert "\r" not in first.stderr
    assert [line.split("  ")[0] for line in first.stderr.splitlines()] == ["step 2/4", "step 4/4"]
    assert re.fullmatch(r"Trained steps 0\.\.4 in \d+ s, validation PSNR [\d.]+ dB; weights: "
                        + re.escape(str(workdir / "model.weights.npz")) + "\n", first.stdout)
    # Every file honours the umask (027: rw-r-----), the weights too (no 600 from mkstemp).
    files = _files(workdir)
    assert "model.weights.npz" in files and any(name.startswith("tensorboard/") for name in files)
    assert {name: mode for name, (mode, _, _) in files.items()} == {name: 0o640 for name in files}
    # The same command again: nothing to do, nothing touched (not even a new TensorBoard file).
    again = commands("train", *quick, "--steps=4")
    assert again.returncode == 0 and again.stderr == "", again.stderr
    assert again.stdout == f"Already at step 4/4, nothing to do; weights: {workdir / 'model.weights.npz'}\n"
    assert _files(workdir) == files
    # Resumed with changed settings: one warning for each; the record keeps both invocations.
    more = commands("train", *quick, "--steps=6", "--lr=2e-3", "--crop=48")
    assert more.returncode == 0, more.stderr
    warnings = [line for line in more.stderr.splitlines() if "warning" in line]
    assert warnings == ["kpac-train: warning: --crop is now 48; this run used 32 until now.",
                        "kpac-train: warning: --lr is now 0.002; this run used 0.001 until now.",
                        "kpac-train: warning: --steps is now 6; this run used 4 until now."]
    assert re.match(r"Trained steps 4\.\.6 in \d+ s \(the run: 6 steps in \d+ s\)", more.stdout)
    record = json.loads((workdir / "train_record.json").read_text())
    assert [(h["start_step"], h["step"]) for h in record["history"]] == [(0, 4), (4, 6)]
    assert "--steps=4" in record["history"][0]["command"] and "--lr=2e-3" in record["history"][1]["command"]
    assert record["history"][1]["flags"]["crop"] == 48 and record["flags"]["lr"] == 2e-3
    # Resumed with other model flags: one line, no TensorFlow checkpoint warnings.
    wrong = commands("train", *quick, "--steps=8", "--crop=48", "--lr=2e-3", "--num_blocks=2")
    assert wrong.returncode == 2
    lines = wrong.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kpac-train: error: The checkpoint ")
    assert "does not fit this model" in lines[0] and wrong.stdout == ""


def test_user_errors_are_one_line_before_training(tmp_path, commands):
    def _run(*args):
        return commands("train", *args)

    missing = _run("--data=" + str(tmp_path / "nowhere"), f"--workdir={tmp_path / 'a'}")
    assert missing.returncode == 2
    assert "kpac-train: error: --data=" in missing.stderr and "neither a DPDD folder" in missing.stderr
    assert "Traceback" not in missing.stderr
    vgg = _run(*TINY, "--steps=2", "--perceptual_weight=7e-4", "--vgg19_weights=" + str(tmp_path / "vgg.h5"),
               f"--workdir={tmp_path / 'b'}")
    assert vgg.returncode == 2
    assert "kpac-train: error: VGG19 weights file" in vgg.stderr and "--vgg19_weights=PATH" in vgg.stderr
    assert "Traceback" not in vgg.stderr
    assert _latest_step(tmp_path / "b") is None  # nothing trained, nothing saved
    option = _run("--data=synthetic", "--crop=32", "--synthetic_options=clouds=1", f"--workdir={tmp_path / 'c'}")
    assert option.returncode == 2 and "kpac-train: error: Synthetic option 'clouds=1'" in option.stderr
    assert "Traceback" not in option.stderr
    usage = _run("--workdir=x")
    assert usage.returncode == 2 and "kpac-train: error: --data is required" in usage.stderr


def test_flagfiles_hold_the_paper_recipes():
    """Parse every packaged recipe (kpac_tf/recipes, found by kpac_tf.tools.recipe) with the
    command's flag definitions; each flag it sets is one of kpac-train's own (the test
    process also defines the other commands' flags)."""
    from absl import flags

    from kpac_tf.cli import train
    from kpac_tf.tools.recipe import recipe_names, recipe_path

    FLAGS = flags.FLAGS
    # The flags kpac_tf/cli/train.py defines (another command may define a flag of the same
    # name in this process and replace its object, so the names come from the source).
    own = set(re.findall(r"flags\.DEFINE_\w+\(\s*\"(\w+)\"", Path(train.__file__).read_text()))
    keys = ("steps", "batch_size", "crop", "lr", "beta1", "beta2", "perceptual_weight",
            "perceptual_distance", "bit_depth", "lr_schedule", "data", "preset")
    out = {}
    try:
        for path in map(recipe_path, recipe_names()):
            named = re.findall(r"^--(\w+)", path.read_text(), re.MULTILINE)
            foreign = [n for n in named if n not in own and not (n.startswith("no") and n[2:] in own)]
            assert named and not foreign, (path, foreign)
            FLAGS.unparse_flags()
            FLAGS(["kpac-train", f"--flagfile={path}"])
            out[str(path)] = {k: FLAGS[k].value for k in keys}
    finally:
        FLAGS.unparse_flags()
    values = {Path(k).name: v for k, v in out.items()}
    stage1, stage2 = values["paper_stage1.flags"], values["paper_stage2.flags"]
    common = dict(batch_size=4, crop=512, beta1=0.9, beta2=0.99, bit_depth="8", lr_schedule="constant")
    for recipe in (stage1, stage2):
        assert {k: recipe[k] for k in common} == common
    assert (stage1["steps"], stage1["lr"], stage1["perceptual_weight"]) == (200000, 1e-4, 0.0)
    assert (stage2["steps"], stage2["lr"], stage2["perceptual_weight"]) == (100000, 5e-5, 7e-4)
    assert stage2["perceptual_distance"] == "squared"
    cpu = values["synthetic_cpu.flags"]
    assert cpu["data"] == "synthetic:deadleaves,skimage" and cpu["crop"] == 256 and cpu["preset"] == "kpac-3level"


def test_mixed_precision_trains_and_resumes_in_float32(tmp_path, commands):
    """--mixed_precision on a CPU trains in bfloat16; its checkpoint resumes in float32."""
    import numpy as np

    def _run(*args):
        return commands("train", *args)

    mixed = _run(*TINY, "--steps=2", "--mixed_precision", f"--workdir={tmp_path}")
    assert mixed.returncode == 0, mixed.stderr
    record = json.loads((tmp_path / "train_record.json").read_text())
    assert record["dtype_policy"] == "mixed_bfloat16" and record["step"] == 2
    with np.load(tmp_path / "model.weights.npz") as arrays:
        kernels = [arrays[name] for name in arrays.files if ":" in name]
    assert kernels and all(a.dtype == np.float32 and np.isfinite(a).all() for a in kernels)
    # --nomixed_precision: left unset, a CPU with AMX-BF16 would choose bfloat16 again.
    # The resumed phase also switches the pixel loss to MSE (a final phase of a MAE run).
    full = _run(*TINY, "--steps=4", "--nomixed_precision", "--pixel_loss=mse", f"--workdir={tmp_path}")
    assert full.returncode == 0, full.stderr
    assert "Trained steps 2..4" in full.stdout
    assert "kpac-train: warning: --pixel_loss is now mse; this run used mae until now." in full.stderr
    record = json.loads((tmp_path / "train_record.json").read_text())
    assert record["dtype_policy"] == "float32" and record["flags"]["pixel_loss"] == "mse"


def _tiny_run_copy(tiny_run: Path, folder: Path) -> Path:
    """A copy of the shared tiny run (checkpoints at steps 2 and 4) to damage."""
    return Path(shutil.copytree(tiny_run, folder / "run"))


def test_a_damaged_newest_checkpoint_is_named_and_the_run_resumes_from_the_last_good_one(
        tiny_run, tmp_path, commands):
    workdir = _tiny_run_copy(tiny_run, tmp_path)
    data = workdir / "checkpoints" / "ckpt-4.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a copy cut short
    (workdir / "model.weights.npz").unlink()  # the step-4 result must be made again
    done = commands("train", *TINY_RUN_FLAGS, f"--workdir={workdir}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"kpac-train: warning: Checkpoint ckpt-4 (Read less bytes than requested) in "
        f"{workdir / 'checkpoints'} does not read; resuming from ckpt-2 instead."]
    assert done.stdout.startswith("Trained steps 2..4 ")
    record = json.loads((workdir / "train_record.json").read_text())
    assert record["resumed_from"] == str(workdir / "checkpoints" / "ckpt-2")
    assert record["damaged_checkpoints"] == [
        {"checkpoint": "ckpt-4", "problem": "Read less bytes than requested"}]
    assert record["history"][-1]["damaged_checkpoints"] == record["damaged_checkpoints"]
    assert _latest_step(workdir) == 4 and (workdir / "model.weights.npz").exists()


def test_a_damaged_run_record_is_named_in_one_line(tiny_run, tmp_path, commands):
    """A finished run whose record was cut short: one error line naming the file; a
    resumed run whose record was cut short: one warning, and its history starts over."""
    workdir = _tiny_run_copy(tiny_run, tmp_path)
    record_path = workdir / "train_record.json"
    record_path.write_text(record_path.read_text()[:40])
    failed = commands("train", *TINY_RUN_FLAGS, f"--workdir={workdir}")
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.splitlines() == [
        f"kpac-train: error: The run record {record_path} is damaged (not JSON: "
        + failed.stderr.split("(not JSON: ", 1)[1].split("\n")[0]]
    assert "restore it from a copy, or use a new work directory." in failed.stderr
    more = commands("train", *TINY_RUN_FLAGS, "--steps=6", f"--workdir={workdir}")
    assert more.returncode == 0, more.stderr
    assert "The history of the earlier invocations is lost" in more.stderr
    history = json.loads(record_path.read_text())["history"]
    assert len(history) == 1 and history[0]["start_step"] == 4 and history[0]["step"] == 6


def test_a_run_whose_checkpoints_all_fail_to_read_is_one_error_line(tiny_run, tmp_path, commands):
    workdir = _tiny_run_copy(tiny_run, tmp_path)
    checkpoints = workdir / "checkpoints"
    (checkpoints / "ckpt-4.index").unlink()  # an index lost: the data file is still found
    data = checkpoints / "ckpt-2.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    before = _files(workdir)
    failed = commands("train", *TINY_RUN_FLAGS, "--steps=6", f"--workdir={workdir}")
    assert failed.returncode == 2 and failed.stdout == ""
    lines = failed.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert lines[0] == (
        f"kpac-train: error: Checkpoints ckpt-4 (its index file ckpt-4.index is missing), ckpt-2 (Read "
        f"less bytes than requested) in {checkpoints} do not read, and the run has no other; move "
        f"{checkpoints} aside to start the run afresh, or use a new work directory.")
    assert _files(workdir) == before  # nothing trained, nothing written
