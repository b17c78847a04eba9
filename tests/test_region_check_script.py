"""experiments/region_check.py: PSNR inside and outside a column band of one photo's
pairs, on a tiny hand-written benchmark."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kpac_tf import io

pytestmark = pytest.mark.process  # every test here starts a Python process

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "region_check.py"


def _write_benchmark(root: Path, rng: np.random.Generator) -> None:
    """Three pairs (two of "chelsea", one of "coins"); the right quarter of each input
    carries strong noise, the rest weak noise."""
    folder = root / "test_c"
    (folder / "source").mkdir(parents=True)
    (folder / "target").mkdir()
    images = {}
    for index, photo in enumerate(("chelsea", "coins", "chelsea")):
        name = f"synth_{index:04d}.png"
        target = rng.uniform(0.2, 0.8, (40, 64, 3)).astype(np.float32)
        noise = rng.normal(0.0, 0.01, target.shape).astype(np.float32)
        noise[:, 48:] *= 10.0
        io.write_image(folder / "target" / name, target, bit_depth=16)
        io.write_image(folder / "source" / name, np.clip(target + noise, 0, 1), bit_depth=16)
        images[name] = {"source": photo}
    (folder / "synthetic.json").write_text(json.dumps({"images": images}))


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_scores_band_and_rest_of_the_photo_pairs(tmp_path, rng):
    _write_benchmark(tmp_path / "bench", rng)
    figure = tmp_path / "band.png"
    result = _run([f"--benchmark_dir={tmp_path / 'bench'}", "--photo=chelsea", "--columns=0.75:1",
                   "--weights=kpac-3level", f"--figure={figure}"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = re.findall(r"\| (synth_\d+) \| input \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", result.stdout)
    assert [r[0] for r in rows] == ["synth_0000", "synth_0002"]  # only chelsea's pairs
    for _, whole, inside, outside in rows:
        whole, inside, outside = float(whole), float(inside), float(outside)
        assert inside < whole < outside  # the noisy band is the band scored
        assert 18 < inside < 25 and 36 < outside < 42  # sigma 0.1 and 0.01
    assert len(re.findall(r"\| synth_\d+ \| kpac-3level \|", result.stdout)) == 2
    assert re.search(r"mean gain of kpac-3level: whole [+-]\d+\.\d\d dB, inside band "
                     r"[+-]\d+\.\d\d dB, outside band [+-]\d+\.\d\d dB", result.stdout)
    panel = io.read_image(figure).rgb
    assert panel.shape == (80, 2 * 2 * 16, 3)  # input | output of the 16-column band, 2x


def test_unknown_photo_or_bad_band_is_one_error_line(tmp_path, rng):
    _write_benchmark(tmp_path / "bench", rng)
    for args, message in (
        (["--photo=astronaut"], "sources: chelsea, coins."),
        (["--columns=0.9:0.2"], "--columns must be LOW:HIGH"),
        ([f"--benchmark_dir={tmp_path / 'missing'}"], "write the benchmark first"),
    ):
        if not any(a.startswith("--benchmark_dir") for a in args):
            args = [f"--benchmark_dir={tmp_path / 'bench'}", *args]
        result = _run(args, tmp_path)
        assert result.returncode == 1
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], result.stderr[-1000:]
