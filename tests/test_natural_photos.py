"""Natural photographs and photographic stamps: selection, splits and focus labels."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from kpac_tf.data import natural_photos as nat


def _stamp(rng, photographic: bool, size=(140, 160)) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    alpha = (((yy - h / 2) / (h / 2.2)) ** 2 + ((xx - w / 2) / (w / 2.2)) ** 2 < 1) * 255
    if photographic:
        rgb = np.clip(rng.normal(120, 40, (h, w, 3)) + yy[..., None] * 0.5, 0, 255)
    else:  # a drawing: two flat colours and an outline
        rgb = np.where((xx < w / 2)[..., None], [200, 40, 40], [30, 90, 200])
    return np.dstack([rgb, alpha]).astype(np.uint8)


def test_photographic_stamps_are_told_from_drawings(rng):
    assert nat.is_photographic_stamp(_stamp(rng, True))
    assert not nat.is_photographic_stamp(_stamp(rng, False))
    assert not nat.is_photographic_stamp(_stamp(rng, True, size=(40, 60)))  # too small


def test_groups_never_straddle_splits_and_labels_cover_the_list():
    for stem, group in nat.OPENCV_PHOTOS.items():
        assert nat.photo_split(stem) == nat.photo_split(group)
    assert set(nat.OPENCV_PHOTOS) <= set(nat.FOCUS_LABELS)
    assert {nat.focus_label(s) for s in nat.FOCUS_LABELS} == {"sharp", "bokeh"}
    assert nat.focus_label("heldout/graf1.png") == nat.FOCUS_LABELS["graf1"]
    assert nat.focus_label("unknown_photo") == "unknown"
    for dropped in ("text_defocus", "text_motion", "licenseplate_motion", "chessboard"):
        assert dropped not in nat.OPENCV_PHOTOS


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _deb(tmp_path, name: str, files: dict) -> str:
    root = tmp_path / name
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n")
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    deb = tmp_path / f"{name}_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)],
                   check=True, capture_output=True)
    return str(deb)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_fake_packages_become_a_split_folder(tmp_path, rng):
    data = "usr/share/doc/opencv-doc/examples/data/"
    photo = (rng.random((120, 150, 3)) * 255).astype(np.uint8)
    ocv = _deb(tmp_path, "opencv-doc", {
        data + "leuvenA.png": _png(photo), data + "leuvenB.png": _png(photo[::-1]),
        data + "fruits.png": _png(photo[:, ::-1]), data + "text_defocus.png": _png(photo),
        data + "chessboard.png": _png(photo)})
    stamps = "usr/share/tuxpaint/stamps/"
    tux = _deb(tmp_path, "tuxpaint-stamps-default", {
        stamps + "animals/fox.png": _png(_stamp(rng, True)),
        stamps + "animals/cartoon/fox.png": _png(_stamp(rng, True)),
        stamps + "symbols/flag.png": _png(_stamp(rng, False))})
    out = tmp_path / "natural"
    manifest = nat.build_natural_folder(str(out), debs={"opencv-doc": ocv,
                                                        "tuxpaint-stamps-default": tux})
    files = sorted(os.path.basename(f) for f in manifest["files"])
    assert files == ["fruits.png", "leuvenA.png", "leuvenB.png"]
    for key, info in manifest["files"].items():
        split, name = key.split("/")
        assert (out / split / name).is_file() and split == nat.photo_split(name[:-4])
        assert info["focus"] == nat.focus_label(name)
    assert manifest["stamps"]["drawing"] == 2
    kept = [f for s in ("train", "val", "heldout") for f in os.listdir(out / "stamps" / s)]
    assert kept == ["animals_fox.png"]
    assert json.loads((out / "manifest.json").read_text())["counts"] == manifest["counts"]
