"""kpac-eval end to end on tiny data: CSV, JSON and Markdown contents, skip and error paths.

The command runs in a subprocess (as users run it), so its absl flags never meet
other commands' flags in the test process.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kpac_tf.evaluation import metrics
from kpac_tf.images import codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("img_a", "img_b", "img_c")


class _Run:
    """One kpac-eval subprocess, started at once; ``wait()`` gives the finished process."""

    def __init__(self, args, cwd):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env["KPAC_TF_LPIPS_DIR"] = str(cwd / "no_lpips_here")  # no backbone unless given
        self.args = [sys.executable, "-m", "kpac_tf.cli.evaluate", *args]
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=cwd)
        self.result = None

    def wait(self) -> subprocess.CompletedProcess:
        if self.result is None:
            out, err = self.proc.communicate(timeout=600)
            self.result = subprocess.CompletedProcess(self.args, self.proc.returncode, out, err)
        return self.result


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _write_pairs(source_dir, target_dir, rng, bit_depth=8):
    source_dir.mkdir(parents=True)
    target_dir.mkdir(parents=True)
    yy, xx = np.mgrid[0:32, 0:48] / 48.0
    for i, name in enumerate(NAMES):
        target = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (yy * (i + 1) + xx * c))
                           for c in (1, 2, 3)], -1)
        source = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
        codec.write_image(source_dir / f"{name}.png", source, bit_depth=bit_depth)
        codec.write_image(target_dir / f"{name}.png", target, bit_depth=bit_depth)


def _prepare_model_run(tmp):
    """A random 2-level KPAC on a DPDD layout with one corrupt file, LPIPS, subsets."""
    import keras

    from kpac_tf import build_kpac
    from kpac_tf.evaluation.lpips import random_backbone
    from kpac_tf.model.weights import save_weights

    rng = np.random.default_rng(7)
    _write_pairs(tmp / "dpdd" / "test_c" / "source", tmp / "dpdd" / "test_c" / "target", rng)
    (tmp / "dpdd" / "test_c" / "source" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nxx")
    codec.write_image(tmp / "dpdd" / "test_c" / "target" / "broken.png", np.zeros((32, 48, 3)))
    keras.utils.set_random_seed(7)
    weights = save_weights(build_kpac("kpac-2level"), tmp / "random")
    np.savez(tmp / "lpips_alex.npz", net=np.array("alex"), **random_backbone("alex", seed=2))
    (tmp / "indoor.txt").write_text("img_a\nimg_b.png  # a comment\n")
    (tmp / "outdoor.txt").write_text("img_c\n")
    return [f"--weights={weights}", "--dpdd_root=dpdd", "--split=test", "--output_dir=out",
            "--indoor_list=indoor.txt", "--outdoor_list=outdoor.txt", "--save_outputs",
            "--lpips_weights=lpips_alex.npz", "--precision=float32"]


def _prepare_saved_model_run(tmp):
    """A SavedModel (a known affine map) on plain folders at 16 bits, no LPIPS weights."""
    import tensorflow as tf

    _write_pairs(tmp / "blurred", tmp / "sharp", np.random.default_rng(3), bit_depth=16)

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def serve(self, image):
            return {"output_0": image * 1.2 - 0.1}

    module = Affine()
    tf.saved_model.save(module, str(tmp / "exported"), signatures={"serving_default": module.serve})
    return ["--saved_model=exported", "--source_dir=blurred", "--target_dir=sharp",
            "--bit_depth=16", "--output_dir=out"]


def _prepare_two_step_run(tmp):
    from kpac_tf.data import dpdd_writer

    dpdd_writer.write_dpdd_layout(tmp / "syn", 2, "test", size=(40, 56), seed=5)
    return ["--baseline=two_step", "--dpdd_root=syn", "--nolpips", "--output_dir=out"]


def _prepare_identical_run(tmp):
    _write_pairs(tmp / "a", tmp / "b", np.random.default_rng(1))
    return ["--baseline=identity", "--source_dir=b", "--target_dir=b", "--nolpips",
            "--output_dir=out"]


def _prepare_unpaired_run(tmp):
    _write_pairs(tmp / "blurred", tmp / "sharp", np.random.default_rng(0))
    os.remove(tmp / "sharp" / "img_b.png")
    return ["--baseline=identity", "--source_dir=blurred", "--target_dir=sharp"]


_SCENARIOS = {
    "model": _prepare_model_run,
    "saved_model": _prepare_saved_model_run,
    "two_step": _prepare_two_step_run,
    "identical": _prepare_identical_run,
    "unpaired": _prepare_unpaired_run,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every scenario's data, and its kpac-eval process started (they run concurrently)."""
    started = {}
    for name, prepare in _SCENARIOS.items():
        tmp = tmp_path_factory.mktemp(name)
        started[name] = (tmp, _Run(prepare(tmp), tmp))
    yield {name: (tmp, run) for name, (tmp, run) in started.items()}
    for _, run in started.values():
        if run.proc.poll() is None:
            run.proc.kill()
        run.wait()


@pytest.mark.process
def test_model_run_reports_bad_file_once_and_exits_1(runs):
    tmp, run = runs["model"]
    proc = run.wait()
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kpac-eval: error:")]
    assert len(errors) == 1 and "broken.png" in errors[0], proc.stderr
    assert "3 evaluated, 1 failed (8-bit)" in proc.stdout


def _read_levels(path) -> np.ndarray:
    """A PNG's samples scaled to [0, 1] (float64; 8- or 16-bit), decoded by TensorFlow,
    not kpac_tf.images.codec (PIL would drop 16-bit colour to its high byte)."""
    import tensorflow as tf

    samples = tf.io.decode_png(tf.io.read_file(str(path)), dtype=tf.uint16).numpy()
    return samples.astype(np.float64) / 65535.0


def _round_to(image: np.ndarray, bit_depth: int) -> np.ndarray:
    levels = 2**bit_depth - 1
    return np.floor(np.clip(image, 0, 1) * levels + 0.5) / levels


def _scores(out: np.ndarray, target: np.ndarray) -> dict:
    """PSNR, SSIM and MAE of rounded images, written out here (the DPDD protocol)."""
    from skimage.metrics import structural_similarity

    mse = np.mean((out - target) ** 2)
    return {"psnr": 10 * np.log10(1.0 / mse) if mse else np.inf,
            "ssim": structural_similarity(out, target, data_range=1.0, channel_axis=-1),
            "mae": np.mean(np.abs(out - target))}


@pytest.mark.process
def test_model_run_scores_match_the_saved_outputs(runs):
    from kpac_tf.evaluation.lpips import LPIPS
    from kpac_tf.inference import Deblurrer
    from kpac_tf.model.weights import load_model

    tmp, run = runs["model"]
    run.wait()
    rows = _read_csv(tmp / "out" / "per_image.csv")
    assert list(rows[0]) == ["name", "psnr", "ssim", "mae", "lpips", "seconds"]
    assert [r["name"] for r in rows] == list(NAMES)
    deblurrer = Deblurrer(load_model(str(tmp / "random.weights.npz")), precision="float32")
    lp = LPIPS("alex", backbone_weights=tmp / "lpips_alex.npz")
    for row in rows:
        source = _read_levels(tmp / "dpdd" / "test_c" / "source" / f"{row['name']}.png")
        target = _read_levels(tmp / "dpdd" / "test_c" / "target" / f"{row['name']}.png")
        want = _round_to(deblurrer.deblur(source.astype(np.float32)), 8)
        changed = np.mean(np.abs(want - source) > 1.5 / 255)
        assert changed > 0.5, changed  # the model changes most pixels
        saved = _read_levels(tmp / "out" / "outputs" / f"{row['name']}.png")
        np.testing.assert_allclose(saved, want, atol=1 / 255 + 1e-9)
        expected = _scores(want, target)
        for key in ("psnr", "ssim", "mae"):
            assert float(row[key]) == pytest.approx(expected[key], abs=1e-4), key
        assert float(row["lpips"]) == pytest.approx(
            lp.distance(want.astype(np.float32), target.astype(np.float32)), abs=1e-5)
        assert float(row["seconds"]) > 0


@pytest.mark.process
def test_model_run_summary_and_table(runs):
    tmp, run = runs["model"]
    run.wait()
    rows = _read_csv(tmp / "out" / "per_image.csv")
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    assert summary["num_images"] == 3 and summary["num_failed"] == 1
    assert summary["protocol"]["bit_depth"] == 8 and summary["protocol"]["lpips_net"] == "alex"
    assert summary["lpips_skipped"] is None
    means = summary["means"]
    assert means["all"]["psnr"]["mean"] == pytest.approx(
        np.mean([float(r["psnr"]) for r in rows]), abs=1e-5)
    assert means["indoor"]["ssim"]["count"] == 2 and means["outdoor"]["ssim"]["count"] == 1
    assert means["outdoor"]["mae"]["mean"] == pytest.approx(float(rows[2]["mae"]), abs=1e-6)
    table = (tmp / "out" / "results.md").read_text()
    assert metrics.Protocol(bit_depth=8, lpips_net="alex").describe() in table
    indoor = [line for line in table.splitlines() if line.startswith("| indoor |")][0]
    psnr_in = np.mean([float(r["psnr"]) for r in rows[:2]])
    assert indoor.startswith(f"| indoor | 2 | {psnr_in:.2f} |")
    assert "broken.png" in table


@pytest.mark.process
def test_saved_model_at_16_bit_with_lpips_skipped(runs):
    tmp, run = runs["saved_model"]
    proc = run.wait()
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "LPIPS skipped" in line]
    assert len(notes) == 1 and "python -m kpac_tf.tools.convert_lpips_backbone" in notes[0]
    rows = _read_csv(tmp / "out" / "per_image.csv")
    assert len(rows) == 3
    protocol = metrics.Protocol(bit_depth=16, lpips_net=None)
    for row in rows:
        source = codec.read_image(tmp / "blurred" / f"{row['name']}.png").rgb
        target = codec.read_image(tmp / "sharp" / f"{row['name']}.png").rgb
        want = metrics.score_pair(source * np.float32(1.2) - np.float32(0.1), target, protocol)
        assert float(row["psnr"]) == pytest.approx(want["psnr"], abs=1e-4)
        assert float(row["ssim"]) == pytest.approx(want["ssim"], abs=1e-5)
        assert row["lpips"] == ""
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    assert summary["protocol"]["bit_depth"] == 16 and summary["protocol"]["lpips_net"] is None
    assert "python -m kpac_tf.tools.convert_lpips_backbone" in summary["lpips_skipped"]
    table = (tmp / "out" / "results.md").read_text()
    assert "Protocol: 16-bit." in table and "LPIPS not computed" in table
    assert "| subset | images | PSNR (dB) | SSIM | MAE |" in table  # no LPIPS column


def _oracle_two_step(split, name: str, with_json: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(two-step restoration, target), both at 8 bits, with the oracle blur read here:
    the 16-bit radius PNG (pixels = value * 0.001) and (``with_json``) the
    synthetic.json entry (the PSF's Gaussian share)."""
    from kpac_tf.evaluation import baselines

    info = {}
    if with_json:
        info = dict(json.loads((split / "synthetic.json").read_text())["images"][name + ".png"])
    info["radius_map"] = (_read_levels(split / "radius" / f"{name}.png")[..., 0] * 65535 * 0.001).astype(np.float32)
    # The files are 16-bit; the protocol rounds input and target to 8 bits.
    blurred = _round_to(_read_levels(split / "source" / f"{name}.png"), 8).astype(np.float32)
    out = baselines.TwoStep()(blurred, info)
    return _round_to(out, 8), _round_to(_read_levels(split / "target" / f"{name}.png"), 8)


@pytest.mark.process
def test_two_step_baseline_on_synthetic_layout(runs):
    tmp, run = runs["two_step"]
    proc = run.wait()
    assert proc.returncode == 0, proc.stderr
    rows = _read_csv(tmp / "out" / "per_image.csv")
    assert len(rows) == 2
    split = tmp / "syn" / "test_c"
    for row in rows:
        out, target = _oracle_two_step(split, row["name"])
        blurred = _round_to(_read_levels(split / "source" / f"{row['name']}.png"), 8)
        assert np.abs(out - blurred).max() > 0.2  # the restoration changes pixels
        # 1e-4 dB: radius maps decoded here differ in float32 rounding (a wrong blur, e.g.
        # half the radii or the mean radius only, moves PSNR by 0.24 dB or more).
        assert float(row["psnr"]) == pytest.approx(_scores(out, target)["psnr"], abs=1e-4)
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    assert summary["method"] == "baseline: two_step"
    assert summary["lpips_skipped"] == "disabled with --nolpips"


@pytest.mark.process
def test_setup_errors_exit_2_with_one_line(runs):
    proc = runs["unpaired"][1].wait()
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("kpac-eval: error:")]
    assert len(errors) == 1 and "img_b" in errors[0], proc.stderr
    assert not (runs["unpaired"][0] / "eval_results").exists()  # nothing written


@pytest.mark.process
def test_identical_pairs_print_inf(runs):
    tmp, run = runs["identical"]
    proc = run.wait()
    assert proc.returncode == 0, proc.stderr
    rows = _read_csv(tmp / "out" / "per_image.csv")
    assert all(r["psnr"] == "inf" and float(r["ssim"]) == 1.0 for r in rows)
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    assert summary["means"]["all"]["psnr"] == {"mean": "inf", "count": 3, "n_infinite": 3,
                                               "n_missing": 0}
    assert "| all | 3 | inf | 1.0000 | 0.0000 |" in (tmp / "out" / "results.md").read_text()


@pytest.mark.process
def test_default_weights_and_earlier_results_are_never_replaced_silently(tmp_path, commands):
    """No method flag: the bundled kpac-3level weights, in a process with a quiet console.
    A second run into the same folder is refused (exit 2, files untouched) unless
    --overwrite is given (those two in the test process)."""
    _write_pairs(tmp_path / "blurred", tmp_path / "sharp", np.random.default_rng(3))
    args = ["--source_dir=blurred", "--target_dir=sharp", "--nolpips", "--limit=1"]
    first = _Run(args, tmp_path).wait()
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""  # quiet: no TensorFlow lines, no note for a disabled LPIPS
    summary = json.loads((tmp_path / "eval_results" / "summary.json").read_text())
    assert "kpac-3level" in summary["method"]
    before = {p.name: p.read_bytes() for p in (tmp_path / "eval_results").iterdir()}
    lpips_dir = {"KPAC_TF_LPIPS_DIR": str(tmp_path / "no_lpips_here")}
    again = commands("evaluate", *args, "--baseline=identity", cwd=tmp_path, env=lpips_dir)
    assert again.returncode == 2
    assert again.stderr.splitlines() == [
        "kpac-eval: error: eval_results holds the results of an earlier evaluation (per_image.csv, "
        "summary.json, results.md); pass --overwrite to replace them, or choose another --output_dir."]
    assert {p.name: p.read_bytes() for p in (tmp_path / "eval_results").iterdir()} == before
    replaced = commands("evaluate", *args, "--baseline=identity", "--overwrite", cwd=tmp_path, env=lpips_dir)
    assert replaced.returncode == 0, replaced.stderr
    summary = json.loads((tmp_path / "eval_results" / "summary.json").read_text())
    assert summary["method"] == "baseline: identity"


# ------------------------------------------------------------------ flags, in-process
def _eval(argv: list[str]) -> int:
    """kpac-eval in this process (its exit status); only the exit code needs the command."""
    from absl import flags

    from kpac_tf.cli import evaluate, runner

    flags.FLAGS.unparse_flags()
    remaining = flags.FLAGS(["kpac-eval", *argv])
    return runner.call_main("kpac-eval", evaluate.main, remaining)


@pytest.fixture(scope="module")
def synthetic_split(tmp_path_factory):
    """Three synthetic pairs with their oracle blur (radius maps, synthetic.json)."""
    from kpac_tf.data import dpdd_writer

    root = tmp_path_factory.mktemp("blur_flags") / "syn"
    dpdd_writer.write_dpdd_layout(root, 3, "test", size=(40, 56), seed=5)
    return root / "test_c"


def test_limit_radius_dir_and_blur_info_on_plain_folders(synthetic_split, tmp_path, capsys):
    split = synthetic_split
    folders = [f"--source_dir={split / 'source'}", f"--target_dir={split / 'target'}", "--nolpips"]
    names = sorted(p.stem for p in (split / "source").iterdir())
    # Plain folders carry no oracle blur: the baseline needs one of the two flags.
    assert _eval(["--baseline=two_step", *folders, f"--output_dir={tmp_path / 'none'}"]) == 2
    assert "needs the oracle blur" in capsys.readouterr().err
    # --radius_dir: the maps; --limit=2: the first two pairs by name.
    out = tmp_path / "radius"
    assert _eval(["--baseline=two_step", *folders, f"--radius_dir={split / 'radius'}", "--limit=2",
                  f"--output_dir={out}"]) == 0
    rows = _read_csv(out / "per_image.csv")
    assert [r["name"] for r in rows] == names[:2]
    for row in rows:
        restored, target = _oracle_two_step(split, row["name"], with_json=False)
        assert float(row["psnr"]) == pytest.approx(_scores(restored, target)["psnr"], abs=1e-4)
    # --blur_info: the synthetic.json facts (Wiener needs the mean radius and PSF mix).
    from kpac_tf.evaluation import baselines

    out = tmp_path / "json"
    assert _eval(["--baseline=wiener", *folders, f"--blur_info={split / 'synthetic.json'}",
                  f"--output_dir={out}"]) == 0
    rows = _read_csv(out / "per_image.csv")
    assert [r["name"] for r in rows] == names
    meta = json.loads((split / "synthetic.json").read_text())["images"]
    for row in rows:
        blurred = _round_to(_read_levels(split / "source" / f"{row['name']}.png"), 8)
        target = _round_to(_read_levels(split / "target" / f"{row['name']}.png"), 8)
        restored = _round_to(baselines.Wiener()(blurred.astype(np.float32), meta[row["name"] + ".png"]), 8)
        assert float(row["psnr"]) == pytest.approx(_scores(restored, target)["psnr"], abs=1e-4)


def test_lpips_vgg(synthetic_split, tmp_path, monkeypatch, capsys):
    """--lpips_net=vgg: skipped with a note naming the VGG file when it is absent; a file
    of the other network is refused; a VGG file gives VGG distances."""
    from kpac_tf.evaluation.lpips import LPIPS, random_backbone

    monkeypatch.setenv("KPAC_TF_LPIPS_DIR", str(tmp_path / "nothing_here"))
    split = synthetic_split
    common = ["--baseline=identity", f"--source_dir={split / 'source'}",
              f"--target_dir={split / 'target'}", "--lpips_net=vgg", "--limit=1"]
    assert _eval([*common, f"--output_dir={tmp_path / 'absent'}"]) == 0
    note = capsys.readouterr().err
    assert "LPIPS skipped" in note and "lpips_vgg_backbone.npz" in note
    alex = tmp_path / "alex.npz"
    np.savez(alex, net=np.array("alex"), **random_backbone("alex", seed=1))
    assert _eval([*common, f"--lpips_weights={alex}", f"--output_dir={tmp_path / 'wrong'}"]) == 2
    assert "holds the alex network, not vgg" in capsys.readouterr().err
    vgg = tmp_path / "vgg.npz"
    np.savez(vgg, net=np.array("vgg"), **random_backbone("vgg", seed=1))
    out = tmp_path / "vgg"
    assert _eval([*common, f"--lpips_weights={vgg}", f"--output_dir={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["lpips_net"] == "vgg" and summary["lpips_skipped"] is None
    row = _read_csv(out / "per_image.csv")[0]
    blurred = _round_to(_read_levels(split / "source" / f"{row['name']}.png"), 8).astype(np.float32)
    target = _round_to(_read_levels(split / "target" / f"{row['name']}.png"), 8).astype(np.float32)
    want = LPIPS("vgg", backbone_weights=vgg).distance(blurred, target)
    assert want > 1e-4 and float(row["lpips"]) == pytest.approx(want, rel=1e-4)
