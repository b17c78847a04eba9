"""Natural photographs and photographic stamps from Debian's documentation and art packages.

The texture packages (:mod:`kpac_tf.data.texture_photos`) are lit flat; they teach a
network almost nothing about content that is soft by nature (shading, shadows, sky).
This module adds two allowed sources that carry it:

* ``opencv-doc``: the sample photographs of OpenCV's ``examples/data`` folder (fruits,
  a building, a home, a squirrel, graffiti, Leuven streets, aerial views, rendered
  scenes with soft shading ...), listed by name in :data:`OPENCV_PHOTOS`. Calibration
  chessboards, drawings, shapes, text scans and the two samples blurred on purpose
  (``text_defocus``, ``text_motion``, and ``licenseplate_motion``) are left out.
* ``tuxpaint-stamps-default``: the photographic stamps (objects, animals, plants with
  an alpha channel), outside the ``cartoon`` folders and told from drawings by their
  colour statistics (:func:`is_photographic_stamp`). The renderer composites them, with
  their own shading, over photo backgrounds as scene layers.

Photos are split by a stable hash of their *group* (near-duplicate pairs such as
``leuvenA``/``leuvenB`` share a group, so a pair never straddles two splits) into
``train/``, ``val/`` and ``heldout/``; stamps by their file name into
``stamps/{train,val,heldout}/``. :func:`focus_label` says, for the photos the benchmarks
feed sharp, whether a photo is sharp across the frame or holds real bokeh (an
out-of-focus background that a deblurring network may rightly sharpen).

Photos are written as 8-bit sRGB PNG (HWC), stamps as 8-bit RGBA PNG. Nothing is ever
committed: :func:`build_natural_folder` is how the folder is obtained.
"""
from __future__ import annotations

import os
import re
import tempfile
from typing import Iterator, Optional

import numpy as np
from absl import logging

from kpac_tf.data import texture_photos as _tp
from kpac_tf.files import atomic_write, write_json
from kpac_tf.images import codec

__all__ = [
    "FOCUS_LABELS",
    "NATURAL_PACKAGES",
    "OPENCV_PHOTOS",
    "build_natural_folder",
    "focus_label",
    "is_photographic_stamp",
    "photo_split",
]

#: The packages this module reads (never wallpaper or background packages).
NATURAL_PACKAGES = ("opencv-doc", "tuxpaint-stamps-default")

#: OpenCV's sample photographs: file stem -> group (near-duplicates share a group).
OPENCV_PHOTOS = {
    "Blender_Suzanne1": "Blender_Suzanne", "Blender_Suzanne2": "Blender_Suzanne",
    "aero1": "aero", "aero3": "aero", "aloeL": "aloe", "aloeR": "aloe",
    "apple": "apple", "baboon": "baboon", "basketball1": "basketball",
    "basketball2": "basketball", "blox": "blox", "board": "board", "box": "box",
    "box_in_scene": "box", "building": "building", "butterfly": "butterfly",
    "chicky_512": "chicky_512", "ela_modified": "ela", "ela_original": "ela",
    "fruits": "fruits", "graf1": "graf", "graf3": "graf", "home": "home",
    "leuvenA": "leuven", "leuvenB": "leuven", "messi5": "messi5", "orange": "orange",
    "rubberwhale1": "rubberwhale", "rubberwhale2": "rubberwhale", "smarties": "smarties",
    "squirrel_cls": "squirrel_cls", "stuff": "stuff",
}

#: Photos fed sharp by the benchmarks: "sharp" (in focus across the frame) or "bokeh"
#: (a real out-of-focus background or foreground). Labelled by eye at full size.
FOCUS_LABELS = {
    # OpenCV samples
    "Blender_Suzanne1": "sharp", "Blender_Suzanne2": "sharp", "aero1": "sharp",
    "aero3": "sharp", "aloeL": "sharp", "aloeR": "sharp", "apple": "sharp",
    "baboon": "sharp", "basketball1": "sharp", "basketball2": "sharp", "blox": "sharp",
    "board": "sharp", "box": "sharp", "box_in_scene": "sharp", "building": "sharp",
    "butterfly": "sharp", "chicky_512": "sharp", "ela_modified": "sharp",
    "ela_original": "sharp", "fruits": "sharp", "graf1": "sharp", "graf3": "sharp",
    "home": "sharp", "leuvenA": "sharp", "leuvenB": "sharp", "messi5": "bokeh",
    "orange": "sharp", "rubberwhale1": "sharp", "rubberwhale2": "sharp",
    "smarties": "sharp", "squirrel_cls": "bokeh", "stuff": "sharp",
    # scikit-image's held-out list
    "chelsea": "bokeh", "coffee": "bokeh", "coins": "sharp", "stereo_motorcycle": "sharp",
    "brick": "sharp",
}

#: Shares (percent) of photo groups kept for validation and for the held-out benchmark:
#: larger than the texture packages' 5/5, since there are about 20 groups.
VAL_PERCENT, HELDOUT_PERCENT = 15, 30


def focus_label(name: str) -> str:
    """"sharp", "bokeh" or "unknown" for a photo's file stem (or file name)."""
    stem = os.path.splitext(os.path.basename(name))[0]
    return FOCUS_LABELS.get(stem, "unknown")


def photo_split(stem: str) -> str:
    """"train", "val" or "heldout" for an OpenCV photo stem, by its group's stable hash."""
    return _tp.split_of(OPENCV_PHOTOS.get(stem, stem), VAL_PERCENT, HELDOUT_PERCENT)


def is_photographic_stamp(rgba: np.ndarray, min_side: int = 96) -> bool:
    """Whether an RGBA stamp (uint8 HxWx4) is a photograph rather than a drawing.

    Drawings fill their shapes with a few flat colours and outlines; photographs have
    many distinct colours with no dominant few. Kept: both sides at least ``min_side``,
    at least 15% opaque pixels, at least 1500 distinct colours among the opaque pixels,
    and the 16 most common of them covering under 35% of those pixels.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4 or min(rgba.shape[:2]) < min_side:
        return False
    opaque = rgba[..., 3] >= 250
    if opaque.mean() < 0.15:
        return False
    pixels = rgba[..., :3][opaque].astype(np.uint32)
    codes = (pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]
    _, counts = np.unique(codes, return_counts=True)
    if counts.size < 1500:
        return False
    top = np.sort(counts)[-16:].sum() / float(codes.size)
    return bool(top < 0.35)


def _package_files(deb: str, pattern: re.Pattern) -> Iterator[tuple[str, str]]:
    """Yields (path inside the package, unpacked path) of files whose path matches."""
    with tempfile.TemporaryDirectory(prefix="kpac_deb_") as tmp:
        _tp._unpack_deb(deb, tmp)  # noqa: SLF001 - the one unpacking helper
        for root, _, files in sorted(os.walk(tmp)):
            for file in sorted(files):
                path = os.path.join(root, file)
                rel = os.path.relpath(path, tmp)
                if pattern.search(rel):
                    yield rel, path


def _write_opencv_photos(deb: str, out_dir: str, manifest: dict) -> None:
    pattern = re.compile(r"examples/data/[^/]+\.(jpg|png)$", re.IGNORECASE)
    for rel, path in _package_files(deb, pattern):
        stem = os.path.splitext(os.path.basename(rel))[0]
        if stem not in OPENCV_PHOTOS:
            continue
        split = photo_split(stem)
        target = os.path.join(out_dir, split, f"{stem}.png")
        image = codec.read_image(path)
        if not os.path.exists(target):
            codec.write_image(target, image.rgb, bit_depth=8)
        manifest["files"][f"{split}/{stem}.png"] = {
            "package": "opencv-doc", "member": rel, "height": image.height,
            "width": image.width, "focus": focus_label(stem)}


def _write_stamps(deb: str, out_dir: str, manifest: dict) -> None:
    from PIL import Image

    pattern = re.compile(r"stamps/.+\.png$", re.IGNORECASE)
    counts = {"drawing": 0}
    for rel, path in _package_files(deb, pattern):
        if "cartoon" in rel.split(os.sep):
            counts["drawing"] += 1
            continue
        with Image.open(path) as image:
            rgba = np.asarray(image.convert("RGBA"))
        if not is_photographic_stamp(rgba):
            counts["drawing"] += 1
            continue
        name = re.sub(r"[^A-Za-z0-9]+", "_", os.path.splitext(rel.split("stamps/", 1)[1])[0])
        split = _tp.split_of(name, VAL_PERCENT, HELDOUT_PERCENT)
        counts[split] = counts.get(split, 0) + 1
        target = os.path.join(out_dir, "stamps", split, f"{name}.png")
        if not os.path.exists(target):
            atomic_write(target, lambda f, a=rgba: Image.fromarray(a).save(f, format="PNG"))
    manifest["stamps"] = counts


def build_natural_folder(out_dir: str, *, download_dir: Optional[str] = None,
                         debs: Optional[dict] = None) -> dict:
    """Fetches both packages and writes ``out_dir/{train,val,heldout}/*.png`` (photos),
    ``out_dir/stamps/{train,val,heldout}/*.png`` (RGBA stamps) and
    ``out_dir/manifest.json`` (files, splits, focus labels, stamp counts).

    ``debs``: {package: path of an already downloaded .deb} (tests, offline use).
    Existing files are kept, so a rerun is cheap. Returns the manifest.
    """
    download_dir = download_dir or os.path.join(out_dir, "debs")
    manifest: dict = {"packages": list(NATURAL_PACKAGES), "files": {},
                      "val_percent": VAL_PERCENT, "heldout_percent": HELDOUT_PERCENT}
    for split in _tp.SPLITS:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        os.makedirs(os.path.join(out_dir, "stamps", split), exist_ok=True)
    debs = dict(debs or {})
    for package in NATURAL_PACKAGES:
        if package not in debs:
            debs[package] = _tp.download_package(package, download_dir,
                                                 allowed=NATURAL_PACKAGES)
    _write_opencv_photos(debs["opencv-doc"], out_dir, manifest)
    _write_stamps(debs["tuxpaint-stamps-default"], out_dir, manifest)
    manifest["counts"] = {split: sum(1 for f in manifest["files"] if f.startswith(split + "/"))
                          for split in _tp.SPLITS}
    logging.info("natural photos: %s; stamps: %s", manifest["counts"], manifest["stamps"])
    write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest
