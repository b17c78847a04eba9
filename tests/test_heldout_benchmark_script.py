"""experiments/quality/heldout_benchmark.py on a tiny benchmark: the report's tables, including
the in-focus check, come from real kpac-eval runs."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # every test here starts a Python process

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "experiments" / "quality" / "heldout_benchmark.py"


def test_report_has_gain_per_photo_and_in_focus_tables(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    report = tmp_path / "report.md"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--count=2", "--baselines=identity", "--weights=kpac-3level",
         "--noensemble_rows", f"--benchmark_dir={tmp_path / 'bench'}",
         f"--results_dir={tmp_path / 'results'}", f"--report={report}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    text = report.read_text()
    assert re.search(r"\| blurred input \(identity\) \| [\d.]+ \| \+0\.00 \|", text)
    kpac = re.search(r"\| KPAC \(kpac-3level\) \| ([\d.]+) \| ([+-][\d.]+) \| (0\.\d+) \|", text)
    assert kpac and 20 < float(kpac.group(1)) < 50
    # Two pairs: the first two held-out photos; the in-focus check has one of each.
    assert "| method | chelsea (1) | coffee (1) |" in text
    in_focus = text.split("In-focus check")[1]
    assert "| method | brick (1) | chelsea (1) | coffee (1) | coins (1) | stereo_motorcycle (1) |" in in_focus
    changes = re.search(r"\| KPAC \(kpac-3level\) \|(.*)\|", in_focus).group(1).split("|")
    assert len(changes) == 5 and all(re.fullmatch(r" [+-]\d+\.\d\d ", cell) for cell in changes)
    input_psnr = float(re.search(r"mean input PSNR ([\d.]+) dB", in_focus).group(1))
    assert input_psnr > 35  # the in-focus inputs differ from the targets by noise only
    assert (tmp_path / "bench_in_focus" / "test_c" / "synthetic.json").exists()
    # chelsea's camera-defocused background band, scored apart from the rest of the frame;
    # its whole-frame gain is the per-photo gain kpac-eval measured (each printed to 0.01 dB,
    # from two deblurring runs whose float round-off can move a few 8-bit pixels).
    native = text.split("Real defocus in a source photo")[1]
    assert "| method | whole frame | background band | rest of the frame |" in native
    whole, inside, outside = (float(v) for v in re.search(
        r"\| KPAC \(kpac-3level\) \| ([+-][\d.]+) \| ([+-][\d.]+) \| ([+-][\d.]+) \|", native).groups())
    per_photo = re.search(r"\| KPAC \(kpac-3level\) \| ([+-][\d.]+) \| [+-][\d.]+ \|", text)
    assert abs(whole - float(per_photo.group(1))) <= 0.03
