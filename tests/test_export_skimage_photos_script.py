"""experiments/export_skimage_photos.py: scikit-image's training list as a photo folder
whose val/ photos are kept out of training."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "experiments"))

import export_skimage_photos  # noqa: E402

from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES, SKIMAGE_TRAIN_SAMPLES  # noqa: E402


def test_val_photos_are_kept_apart_and_held_out_photos_never_written(tmp_path):
    manifest = export_skimage_photos.export_photos(str(tmp_path), ["moon", "cell"])
    train = sorted(p.stem for p in (tmp_path / "train").iterdir())
    val = sorted(p.stem for p in (tmp_path / "val").iterdir())
    assert val == ["cell", "moon"]
    assert sorted(train + val) == sorted(SKIMAGE_TRAIN_SAMPLES)
    assert not set(train + val) & set(SKIMAGE_HELDOUT_SAMPLES)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    moon = Image.open(tmp_path / "val" / "moon.png")
    assert moon.mode == "RGB" and moon.size == (512, 512)  # a grey photo as three channels


@pytest.mark.parametrize("val, message", [(["brick"], "not in the scikit-image training list"),
                                          (list(SKIMAGE_TRAIN_SAMPLES), "keep at least one")])
def test_bad_val_lists_are_refused_before_anything_is_written(tmp_path, val, message):
    with pytest.raises(ValueError, match=message):
        export_skimage_photos.export_photos(str(tmp_path / "out"), val)
    assert not (tmp_path / "out").exists()
