"""experiments/quality/defocus_scores.py and defocus_benchmark.py: region gains from the oracle
radius maps, checked against hand-made images and a tiny rendered photo folder."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments" / "quality"))

import defocus_scores  # noqa: E402


def test_region_gain_counts_only_the_masked_pixels(rng):
    target = rng.random((40, 40, 3))
    blurred = np.clip(target + 0.05 * rng.standard_normal(target.shape), 0, 1)
    mask = np.zeros((40, 40), bool)
    mask[:20] = True
    output = blurred.copy()
    output[20:] = target[20:]  # perfect outside the mask, untouched inside
    assert defocus_scores.region_gain(output, blurred, target, mask) == 0.0
    assert math.isinf(defocus_scores.region_gain(output, blurred, target, ~mask))
    halfway = blurred.copy()
    halfway[:20] = blurred[:20] + (target[:20] - blurred[:20]) / 2  # error halved: +6.02 dB
    gain = defocus_scores.region_gain(halfway, blurred, target, mask)
    assert abs(gain - 20 * math.log10(2)) < 0.2  # 8-bit rounding moves it a little
    tiny = np.zeros((40, 40), bool)
    tiny[0, 0] = True  # under 1% of the frame
    assert math.isnan(defocus_scores.region_gain(output, blurred, target, tiny))


def test_summary_skips_pairs_without_the_region():
    scores = [defocus_scores.PairScore("a", "photos", 20.0, 22.0, 0.5, 0.6, 2.5, float("nan")),
              defocus_scores.PairScore("b", "photos", 30.0, 29.0, 0.7, 0.8, 0.5, -1.0)]
    summary = defocus_scores.summarise(scores)
    assert summary["gain"] == 0.5 and summary["worst_gain"] == -1.0
    assert summary["defocused_gain"] == 1.5 and summary["in_focus_gain"] == -1.0
    assert summary["in_focus_pairs"] == 1 and abs(summary["ssim"] - 0.7) < 1e-12


def test_gain_by_radius_bin_in_the_summary_and_its_table():
    nan = float("nan")
    scores = [defocus_scores.PairScore("a", "photos", 20.0, 22.0, 0.5, 0.6, 2.0, 0.5,
                                       (0.5, 1.0, 2.0, nan, 3.0)),
              defocus_scores.PairScore("b", "photos", 30.0, 31.0, 0.7, 0.8, 1.0, 0.0,
                                       (0.0, 2.0, nan, nan, 1.0))]
    summary = defocus_scores.summarise(scores)
    assert summary["radius_bins"] == ["0-1", "1-2", "2-4", "4-8", "8+"]
    assert summary["radius_gains"][:3] == [0.25, 1.5, 2.0] and math.isnan(summary["radius_gains"][3])
    assert summary["radius_pairs"] == [2, 2, 1, 0, 2]
    lines = defocus_scores.markdown({"w": {"photos": summary}})
    assert "| weights | photos | 0-1 | 1-2 | 2-4 | 4-8 | 8+ |" in lines
    assert "| w | photos | +0.25 (2) | +1.50 (2) | +2.00 (1) | - | +2.00 (2) |" in lines


def test_radius_bins_split_the_pixels_by_their_oracle_radius(rng, monkeypatch, tmp_path):
    """score_weights: a network that restores only the pixels of radius 2-4 px gains
    there and nowhere else."""
    target = rng.random((60, 60, 3))
    blurred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1)
    radius = np.zeros((60, 60), np.float32)
    radius[20:40] = 3.0
    radius[40:] = 10.0
    middle = (radius >= 2) & (radius < 4)

    class HalfFix:
        def __init__(self, model):
            pass

        def deblur(self, image):
            out = image.copy()
            out[middle] = image[middle] + (target[middle] - image[middle]) / 2
            return out

    from kpac_tf import inference
    from kpac_tf.model import weights as kweights

    monkeypatch.setattr(inference, "Deblurrer", HalfFix)
    monkeypatch.setattr(kweights, "load_model", lambda spec: None)
    monkeypatch.setattr(defocus_scores, "_pairs", lambda group_dir: iter([("p.png", blurred, target, radius, "p")]))
    (tmp_path / "photos").mkdir()
    [score] = defocus_scores.score_weights(tmp_path, "any")
    gains = dict(zip(defocus_scores.radius_bin_names(), score.radius_gains))
    assert gains["0-1"] == 0.0 and gains["8+"] == 0.0 and math.isnan(gains["1-2"])
    assert math.isnan(gains["4-8"]) and abs(gains["2-4"] - 20 * math.log10(2)) < 0.3


def test_paired_difference_matches_pairs_by_name_and_reports_its_noise():
    def score(name, psnr, group="photos"):
        return defocus_scores.PairScore(name, group, 20.0, psnr, 0.5, 0.6, 0.0, 0.0)

    first = [score("a", 21.0), score("b", 25.0), score("c", 30.0)]
    other = [score("c", 30.4), score("a", 21.2), score("b", 25.3)]  # another order
    d = defocus_scores.paired_difference(first, other)
    assert d["pairs"] == 3 and abs(d["mean"] - 0.3) < 1e-9
    assert abs(d["stderr"] - 0.1 / math.sqrt(3)) < 1e-9  # differences 0.2, 0.3, 0.4
    assert abs(d["t"] - 0.3 / (0.1 / math.sqrt(3))) < 1e-6
    one = defocus_scores.paired_difference(first[:1], other[1:2])
    assert math.isnan(one["stderr"]) and math.isnan(one["t"])
    summary = defocus_scores.summarise(other)
    lines = defocus_scores.markdown({"old": {"photos": defocus_scores.summarise(first)},
                                     "new": {"photos": dict(summary, vs_first=d)}})
    assert "Paired against old (PSNR difference per pair, dB):" in lines
    assert "| new | photos | 3 | +0.300 | 0.058 | +5.2 |" in lines


@pytest.mark.process
def test_cli_on_a_tiny_photo_folder(tmp_path, rng):
    folder = tmp_path / "photos" / "val"
    folder.mkdir(parents=True)
    for k in range(2):
        y, x = np.mgrid[0:72, 0:80] / 6.0
        image = 0.5 + 0.4 * np.stack([np.sin(x + k), np.cos(y), np.sin(x * y / 9)], -1)
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / f"p{k}.png")
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "quality" / "defocus_benchmark.py"),
         f"--photos={tmp_path / 'photos'}", "--split=val", "--skimage_pairs=0",
         f"--benchmark_dir={tmp_path / 'bench'}", "--weights=kpac-3level",
         f"--json={tmp_path / 'scores.json'}"],
        env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| kpac-3level | photos | 2 |" in result.stdout
    radius_maps = sorted((tmp_path / "bench" / "val" / "photos" / "test_c" / "radius").iterdir())
    assert len(radius_maps) == 2
    missing = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "quality" / "defocus_benchmark.py"),
         f"--photos={tmp_path / 'nowhere'}", "--split=heldout", f"--benchmark_dir={tmp_path / 'b2'}"],
        env=env, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 1
    assert [line for line in missing.stderr.splitlines() if line.startswith("defocus_benchmark.py: error:")]


def test_pairs_per_photo_renders_several_pairs_of_each_photo(tmp_path):
    folder = tmp_path / "photos" / "val"
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:64, 0:72] / 5.0
    image = 0.5 + 0.4 * np.stack([np.sin(x), np.cos(y), np.sin(x * y / 7)], -1)
    Image.fromarray((image * 255).astype(np.uint8)).save(folder / "only.png")
    split = defocus_scores.render_split(tmp_path / "bench", str(tmp_path / "photos"), "val",
                                        skimage_pairs=0, seed=3, pairs_per_photo=3)
    sources = sorted((split / "photos" / "test_c" / "source").iterdir())
    assert len(sources) == 3
    blurred = [np.asarray(Image.open(p), np.float64) for p in sources]
    assert not np.array_equal(blurred[0], blurred[1])  # other defocus, not copies
    again = defocus_scores.render_split(tmp_path / "bench", str(tmp_path / "photos"), "val",
                                        skimage_pairs=0, seed=3, pairs_per_photo=3)
    assert sorted((again / "photos" / "test_c" / "source").iterdir()) == sources
    try:
        defocus_scores.render_split(tmp_path / "bench", str(tmp_path / "photos"), "val",
                                    skimage_pairs=0, seed=3, pairs_per_photo=2)
    except ValueError as error:
        assert "holds 3 pairs, not 2" in str(error)
    else:
        raise AssertionError("a folder rendered with another pair count was reused")


def _flat_stamps(root: Path, colours: dict[str, tuple[int, int, int]]) -> Path:
    """A stamps/ folder: per split one opaque disc stamp of one pure colour."""
    yy, xx = np.mgrid[0:40, 0:40]
    alpha = (((yy - 20) ** 2 + (xx - 20) ** 2) < 18 ** 2) * 255
    for split, colour in colours.items():
        (root / "stamps" / split).mkdir(parents=True)
        rgb = np.broadcast_to(np.array(colour), (40, 40, 3))
        Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8)).save(root / "stamps" / split / "disc.png")
    return root / "stamps"


def test_stamp_pairs_paste_the_same_splits_stamps_over_its_photos(tmp_path):
    """render_split: the "stamps" set holds stamp_pairs pairs of the split's photos with
    that split's stamps pasted into the sharp target (val stamps for val, held-out
    stamps for held-out, never the training ones)."""
    for split in ("val", "heldout"):
        (tmp_path / "photos" / split).mkdir(parents=True)
        Image.fromarray(np.full((64, 72, 3), 128, np.uint8)).save(tmp_path / "photos" / split / "grey.png")
    stamps = _flat_stamps(tmp_path, {"train": (0, 0, 255), "val": (255, 0, 0), "heldout": (0, 255, 0)})
    for split, channel in (("val", 0), ("heldout", 1)):
        folder = defocus_scores.render_split(tmp_path / "bench", str(tmp_path / "photos"), split,
                                             skimage_pairs=0, seed=5, stamps=str(stamps), stamp_pairs=2)
        targets = sorted((folder / "stamps" / "test_c" / "target").iterdir())
        assert len(targets) == 2 and len(list((folder / "photos" / "test_c" / "target").iterdir())) == 1
        for path in targets:
            image = np.asarray(Image.open(path), np.float64)
            pure = image[..., channel] > 0.9 * image.max()
            assert pure.mean() > 0.02  # the split's stamp is in the sharp scene
            assert (image[..., 2] < 0.9 * image.max()).all()  # no training stamp
    alone = defocus_scores.render_split(tmp_path / "b4", str(tmp_path / "photos"), "val", skimage_pairs=0,
                                        seed=5, pairs_per_photo=0, stamps=str(stamps), stamp_pairs=1)
    assert sorted(p.name for p in alone.iterdir()) == ["stamps"]
    with pytest.raises(ValueError, match="give --photos"):
        defocus_scores.render_split(tmp_path / "b2", None, "val", skimage_pairs=1, seed=5,
                                    stamps=str(stamps), stamp_pairs=2)
    with pytest.raises(ValueError, match="no stamps"):
        defocus_scores.render_split(tmp_path / "b3", str(tmp_path / "photos"), "val", skimage_pairs=0,
                                    seed=5, stamps=str(tmp_path / "nowhere"), stamp_pairs=2)


def test_pairs_group_by_the_focus_label_or_the_photo_they_come_from(monkeypatch, tmp_path):
    """run_benchmark: with grouping "focus" a bokeh photo's pairs are summarised apart
    from sharp ones, with "photo" each source photo is a row; the paired difference
    stays within each group."""
    pairs = {"chelsea": 30.0, "coins": 40.0, "brick": 20.0}  # input PSNR by source photo

    def scores(folder, spec):
        bonus = 1.0 if spec == "new" else 0.0
        return [defocus_scores.PairScore(f"{name}{k}.png", "skimage", psnr, psnr + bonus * (k + 1),
                                         0.5, 0.6, 0.0, -bonus if name == "chelsea" else bonus,
                                         source=name)
                for name, psnr in pairs.items() for k in range(2)]

    monkeypatch.setattr(defocus_scores, "render_split", lambda *args: tmp_path)
    monkeypatch.setattr(defocus_scores, "score_weights", scores)
    by_focus = defocus_scores.run_benchmark(None, "heldout", str(tmp_path), ["old", "new"],
                                            grouping="focus")
    assert sorted(by_focus["new"]) == ["skimage/bokeh", "skimage/sharp"]
    sharp, bokeh = by_focus["new"]["skimage/sharp"], by_focus["new"]["skimage/bokeh"]
    assert (sharp["pairs"], sharp["in_focus_gain"], bokeh["pairs"], bokeh["in_focus_gain"]) == (4, 1.0, 2, -1.0)
    assert sharp["vs_first"]["pairs"] == 4 and abs(sharp["vs_first"]["mean"] - 1.5) < 1e-9
    by_photo = defocus_scores.run_benchmark(None, "heldout", str(tmp_path), ["old"], grouping="photo")
    assert sorted(by_photo["old"]) == ["skimage/brick", "skimage/chelsea", "skimage/coins"]
    assert by_photo["old"]["skimage/coins"]["input_psnr"] == 40.0
    by_set = defocus_scores.run_benchmark(None, "heldout", str(tmp_path), ["old"])
    assert list(by_set["old"]) == ["skimage"] and by_set["old"]["skimage"]["pairs"] == 6
    with pytest.raises(ValueError, match="Group pairs by one of set, focus, photo"):
        defocus_scores.run_benchmark(None, "heldout", str(tmp_path), ["old"], grouping="radius")
