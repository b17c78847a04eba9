"""What every command shares: --help / -h, only the flags it uses, usage errors (exit 2),
quiet logs; and kpac-demo on the bundled sample and on a photo of one's own.

Help, usage errors and output-folder checks run in the test process (``commands``);
a command's own flag set and a console free of TensorFlow lines need a process of
its own."""
from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import COMMANDS

REPO = Path(__file__).resolve().parents[1]
#: Flags each command must list in its help (a few of its own and of the shared groups).
OWN_FLAGS = {
    "deblur": ["--weights", "--preset", "--tile", "--overlap", "--memory_budget", "--ensemble",
               "--output_dir", "--overwrite", "--suffix", "--dual_pixel"],
    "demo": ["--weights", "--preset", "--output_dir", "--sample"],
    "evaluate": ["--weights", "--preset", "--tile", "--ensemble", "--bit_depth", "--output_dir",
                 "--overwrite", "--baseline", "--dpdd_root", "--lpips"],
    "export": ["--weights", "--preset", "--export_dir", "--model_name", "--version", "--tflite"],
    "train": ["--data", "--workdir", "--preset", "--bit_depth", "--init_from", "--steps",
              "--val_data", "--val_images", "--mixed_precision", "--infocus_weight", "--pixel_loss", "--log_every"],
}
#: Flags a command must not accept (each was once accepted and ignored).
REJECTED = [
    ("train", "--weights=kpac-3level"),
    ("deblur", "--bit_depth=16"),
    ("export", "--output_dir=out"),
    ("export", "--bit_depth=16"),
    ("export", "--ensemble"),
    ("demo", "--tile=64"),
]
#: A line from TensorFlow's C++ logger (absl format) or its Python logger.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages|.*absl::InitializeLog"
                         r"|WARNING:tensorflow|To enable the following instructions)")


def default_env() -> dict:
    """The environment of a user who set nothing: no TF_CPP_MIN_LOG_LEVEL."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return env


def run_command(name: str, *args: str, timeout: int = 300, cwd=None, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"kpac_tf.cli.{name}", *args], capture_output=True,
                          text=True, timeout=timeout, env={**default_env(), **env}, cwd=cwd)


def tf_log_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if TF_LOG_LINE.match(line)]


def test_all_commands_import_into_one_process():
    from absl import flags

    modules = {name: importlib.import_module(f"kpac_tf.cli.{name}")  # a duplicate flag raises
               for name in COMMANDS}
    defined = set(flags.FLAGS)
    for name, module in modules.items():
        assert callable(module.main), name
        # Every command's flags are defined side by side (shared names once).
        missing = {flag[2:] for flag in OWN_FLAGS[name]} - defined
        assert not missing, (name, sorted(missing))


@pytest.mark.process  # the help lists the flags of a process that imported this command alone
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_shows_usage_and_the_commands_own_flags(name):
    for option in ("--help", "-h"):
        result = run_command(name, option, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{COMMANDS[name]}: ")
        assert "usage:" in result.stdout and "Exit status:" in result.stdout
        assert "Try --helpfull" not in result.stdout and not result.stderr
        listed = set(re.findall(r"^  (?:--\[no\]|--)(\w+)", result.stdout, re.MULTILINE))
        for flag in OWN_FLAGS[name]:
            assert flag[2:] in listed, (name, flag)
        assert "logtostderr" not in listed and "only_check_args" not in listed  # absl's stay in --helpfull
    default_dir = {"deblur": "deblurred", "demo": "demo_output", "evaluate": "eval_results"}.get(name)
    if default_dir:
        assert f"default: {default_dir}" in " ".join(result.stdout.split())


@pytest.fixture(scope="module")
def rejected_runs() -> dict:
    """Each REJECTED command line in a process of its own (only that command's flags are
    defined there), all started at once."""
    started = {(name, flag): subprocess.Popen(
        [sys.executable, "-m", f"kpac_tf.cli.{name}", flag], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=default_env()) for name, flag in REJECTED}
    results = {}
    for key, process in started.items():
        out, err = process.communicate(timeout=300)
        results[key] = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    return results


@pytest.mark.process
@pytest.mark.parametrize("name, flag", REJECTED)
def test_flags_a_command_does_not_use_are_rejected(name, flag, rejected_runs):
    result = rejected_runs[(name, flag)]
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == f"{COMMANDS[name]}: error: Unknown command line flag '{flag[2:].split('=')[0]}'"
    assert f"{COMMANDS[name]} --help" in lines[1] and len(lines) == 2


@pytest.mark.parametrize("name, args", [
    ("deblur", []), ("export", []), ("export", ["--export_dir=x", "extra"]), ("train", ["--workdir=x"]),
    ("train", ["--data=synthetic", "--workdir=x", "extra"]), ("demo", ["a.png", "b.png"]),
    ("evaluate", ["extra"]),
])
def test_usage_errors_exit_2_with_one_line_and_a_pointer_to_help(name, args, tmp_path, commands):
    result = commands(name, *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{COMMANDS[name]}: error: ")
    assert lines[1] == f"Run '{COMMANDS[name]} --help' for its usage and flags."
    if "extra" in args and name != "demo":
        assert "unexpected arguments extra; every option is a --flag." in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


OUTPUT_FLAG_ARGS = {
    "deblur": ("--output_dir", ["in.png", "--weights=absent.npz"]),
    "demo": ("--output_dir", ["--weights=absent.npz"]),
    "export": ("--export_dir", ["--weights=absent.npz"]),
    "train": ("--workdir", ["--data=synthetic"]),
    "evaluate": ("--output_dir", ["--baseline=identity", "--source_dir=s", "--target_dir=t", "--nolpips"]),
}


@pytest.mark.parametrize("name", sorted(OUTPUT_FLAG_ARGS))
def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(name, tmp_path, commands):
    """Checked before the weights are loaded (they are absent here) or the inputs read."""
    flag, args = OUTPUT_FLAG_ARGS[name]
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "in.png").write_bytes(b"")
    for folder in ("s", "t"):
        (tmp_path / folder).mkdir()
    for target, problem in (("a_file", "is a file, not a folder."),
                            ("a_file/sub", "cannot be created: a_file is not a folder.")):
        result = commands(name, *args, f"{flag}={target}", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [f"{COMMANDS[name]}: error: {flag}={target} {problem}"]


@pytest.mark.process
def test_demo_sample_quietly_writes_the_result_and_the_figure(tmp_path):
    from kpac_tf import build_kpac
    from kpac_tf.images.codec import read_image
    from kpac_tf.model.weights import save_weights

    weights = save_weights(build_kpac("kpac-3level"), tmp_path / "random")
    # A first run: matplotlib builds its font cache (and would say so) in an empty folder.
    result = run_command("demo", f"--weights={weights}", f"--output_dir={tmp_path / 'out'}",
                         MPLCONFIGDIR=str(tmp_path / "matplotlib"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # no TensorFlow, absl or matplotlib lines
    assert "input   : PSNR" in result.stdout and "deblurred: PSNR" in result.stdout
    figure = read_image(tmp_path / "out" / "stereo_motorcycle_before_after.png")
    assert figure.width > 1000
    assert read_image(tmp_path / "out" / "stereo_motorcycle_deblurred.png").rgb.shape == (500, 741, 3)


@pytest.mark.process
def test_demo_deblurs_a_photo_of_ones_own(tmp_path, rng):
    from kpac_tf import build_kpac
    from kpac_tf.images.codec import read_image, write_image
    from kpac_tf.model.weights import save_weights

    weights = save_weights(build_kpac("kpac-2level", num_blocks=1), tmp_path / "random")
    write_image(tmp_path / "holiday.jpg", rng.random((48, 64, 3)))
    out = tmp_path / "out"
    result = run_command("demo", str(tmp_path / "holiday.jpg"), f"--weights={weights}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert tf_log_lines(result.stderr) == [] and result.stderr == ""
    assert "PSNR" not in result.stdout and "holiday.jpg (64x48)" in result.stdout
    assert read_image(out / "holiday_deblurred.png").rgb.shape == (48, 64, 3)
    assert read_image(out / "holiday_before_after.png").width > 500
    assert sorted(p.name for p in out.iterdir()) == ["holiday_before_after.png", "holiday_deblurred.png"]
    missing = run_command("demo", str(tmp_path / "absent.jpg"), f"--weights={weights}", f"--output_dir={out}")
    assert missing.returncode == 1
    assert missing.stderr.splitlines() == [f"kpac-demo: error: {tmp_path / 'absent.jpg'}: file not found."]


@pytest.mark.process
def test_export_prints_only_the_version_folder(tmp_path):
    from kpac_tf import build_kpac
    from kpac_tf.model.weights import save_weights

    weights = save_weights(build_kpac("kpac-2level", num_blocks=1), tmp_path / "random")
    result = run_command("export", f"--weights={weights}", f"--export_dir={tmp_path / 'models'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # none of TensorFlow's SavedModel lines
    assert result.stdout == f"{tmp_path / 'models' / 'kpac' / '1'}\n"


def _demo_in_process(argv: list[str]) -> int:
    """kpac-demo in this process (its exit status)."""
    from absl import flags

    from kpac_tf.cli import demo, runner

    flags.FLAGS.unparse_flags()
    remaining = flags.FLAGS(["kpac-demo", *argv])
    return runner.call_main("kpac-demo", demo.main, remaining)


def test_demo_sample_flag_picks_the_named_sample(tmp_path, monkeypatch, capsys):
    """--sample=NAME deblurs NAME_blurred.png of the samples folder and scores it against
    NAME_sharp.png; an unknown name is a usage error."""
    import keras
    import numpy as np

    from kpac_tf import build_kpac
    from kpac_tf.cli import demo
    from kpac_tf.images.codec import read_image, write_image
    from kpac_tf.inference import Deblurrer
    from kpac_tf.model.weights import load_model, save_weights

    samples = tmp_path / "samples"
    samples.mkdir()
    rng = np.random.default_rng(5)
    sharp = rng.random((40, 56, 3))
    blurred = np.clip(sharp + rng.normal(0, 0.1, sharp.shape), 0, 1)
    write_image(samples / "tiny_sharp.png", sharp)
    write_image(samples / "tiny_blurred.png", blurred)
    monkeypatch.setattr(demo, "SAMPLES_DIR", samples)
    keras.utils.set_random_seed(5)
    weights = save_weights(build_kpac("kpac-2level", num_blocks=1), tmp_path / "random")
    out = tmp_path / "out"
    args = [f"--weights={weights}", f"--output_dir={out}", "--precision=float32"]
    assert _demo_in_process([*args, "--sample=tiny"]) == 0
    printed = capsys.readouterr().out
    assert "sample 'tiny' (56x40)" in printed
    source = read_image(samples / "tiny_blurred.png").rgb.astype(np.float64)
    target = read_image(samples / "tiny_sharp.png").rgb.astype(np.float64)
    input_psnr = 10 * np.log10(1 / np.mean((source - target) ** 2))
    assert f"input   : PSNR {input_psnr:6.2f} dB" in printed
    want = Deblurrer(load_model(str(weights)), precision="float32").deblur(source.astype(np.float32))
    got = read_image(out / "tiny_deblurred.png").rgb
    assert np.abs(got - want).max() <= 1 / 255 + 1e-6
    assert sorted(p.name for p in out.iterdir()) == [
        "tiny_before_after.png", "tiny_deblurred.png", "tiny_input.png"]
    assert _demo_in_process([*args, "--sample=absent"]) == 2
    assert "there is no bundled sample 'absent'" in capsys.readouterr().err


def test_tile_flags_that_cannot_work_are_refused_in_words_about_the_flag(tmp_path, rng, commands):
    """Impossible values are refused while the flags are parsed; a memory budget that
    cannot hold tiles for the overlap says which budget would (none of them mentions a
    flag the user did not set)."""
    from kpac_tf.images.codec import write_image

    write_image(tmp_path / "photo.png", rng.random((24, 24, 3)))
    for args, message in (
        (["--tile=32"], "flag --tile=32: tiles must be at least 64 px"),
        (["--overlap=-1"], "flag --overlap=-1: the overlap between tiles must be 0 px or more."),
    ):
        result = commands("deblur", *args, "photo.png", cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.startswith(f"kpac-deblur: error: {message}"), args
    budget = commands("deblur", "--memory_budget=0", "--precision=float32", "photo.png", cwd=tmp_path)
    assert budget.returncode == 2 and budget.stderr.splitlines() == [
        "kpac-deblur: error: The memory budget must be a positive number of MB, got 0; 69 MB is the "
        "smallest that works with a tile overlap of 128 px (tiles of 264 px)."]
    small = commands("deblur", "--memory_budget=10", "--precision=float32", "photo.png", cwd=tmp_path)
    assert small.returncode == 2 and "A memory budget of 10 MB gives tiles of 96 px, too small for a " \
        "tile overlap of 128 px" in small.stderr and "at least 69 MB" in small.stderr
    assert not (tmp_path / "deblurred").exists()


@pytest.mark.process  # kpac-export defines its own --max_pixels in a process that imports both
def test_max_pixels_of_zero_is_refused_while_parsing(tmp_path):
    result = run_command("deblur", "--max_pixels=0", "photo.png", timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("kpac-deblur: error: flag --max_pixels=0: the largest image read "
                                    "must be at least 1 pixel")


def test_a_weights_file_cut_short_is_one_true_line(tiny_run, tmp_path, rng, commands):
    """A truncated *.weights.npz (a copy cut short) is named with what is wrong with it."""
    from kpac_tf.images.codec import write_image

    whole = (tiny_run / "model.weights.npz").read_bytes()
    (tmp_path / "cut.weights.npz").write_bytes(whole[: len(whole) // 2])
    write_image(tmp_path / "photo.png", rng.random((24, 24, 3)))
    result = commands("deblur", "--weights=cut.weights.npz", "photo.png", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "kpac-deblur: error: cut.weights.npz: not a readable weights file (File is not a zip file)."]
    assert not (tmp_path / "deblurred").exists()


def test_a_flag_value_that_does_not_parse_is_one_usage_line_naming_the_flag(capsys):
    from kpac_tf.analysis.blur_detection import parse_threshold
    from kpac_tf.cli import runner

    seen = []

    def main(argv):
        seen.append(runner.parsed_flag("threshold", argv[1], parse_threshold))
        return runner.EXIT_OK

    assert runner.call_main("paper.py", main, ["paper.py", "0.25"]) == runner.EXIT_OK
    assert runner.call_main("paper.py", main, ["paper.py", "otsu"]) == runner.EXIT_OK
    assert seen == [0.25, "otsu"]
    assert runner.call_main("paper.py", main, ["paper.py", "1.5"]) == runner.EXIT_USAGE
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("paper.py: error: --threshold: ")
    assert lines[1] == "Run 'paper.py --help' for its usage and flags."
