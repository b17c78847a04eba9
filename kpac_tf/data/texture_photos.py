"""All-in-focus training photographs from Debian's game-texture packages.

Debian's ``ufoai-textures`` package holds about 2,700 texture files, most of them
real photographs (walls, floors, wood, stone, soil, vegetation, doors, metal) that
are sharp across the frame; ``nexuiz-textures`` and ``openarena-081-textures`` add
game textures, partly painted. This module turns such a package into a folder of
colour photographs for the synthetic defocus renderer:

1. :func:`download_package` fetches the ``.deb`` (``apt-get download``, no root);
2. :func:`iter_package_images` unpacks it (``dpkg -x``) and yields every image
   file inside, including the members of the ``.pk3`` zip archives;
3. :func:`select_photos` keeps colour maps of at least ``min_side`` pixels and
   drops normal, bump, gloss, specular, glow, height and alpha maps, near-uniform
   images and exact duplicates;
4. :func:`split_of` splits by a stable hash of the file name into "train"
   (about 90%), "val" (5%: the training runs' validation scenes, which choose
   what gets bundled) and "heldout" (5%: the held-out benchmark, never used to
   choose anything), so the split never changes between runs.

:func:`build_photo_folder` runs the whole chain and writes ``train/``, ``val/``,
``heldout/`` and ``manifest.json`` (counts per reason and per split).
Nothing here is ever committed: the photos are fetched by the user.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import tempfile
import zipfile
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np
from absl import logging

from kpac_tf.files import write_json
from kpac_tf.images import codec
from kpac_tf.images.colour import luma

__all__ = [
    "PACKAGES",
    "PhotoFilter",
    "SPLITS",
    "build_photo_folder",
    "download_package",
    "iter_package_images",
    "reject_reason",
    "select_photos",
    "split_of",
]

#: The packages this project may train on (never wallpaper/background packages).
PACKAGES = ("ufoai-textures", "nexuiz-textures", "openarena-081-textures")

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tga")
#: Name endings of maps that are not photographs of colour (normal, bump, gloss,
#: specular, glow, height, alpha, mask, roughness ...).
_MAP_PATTERN = re.compile(
    r"(^|[_\-.])(nm|norm|normal|normals|bump|bumpmap|gloss|spec|specular|sm|gm|glow|"
    r"glowmap|luma|h|height|heightmap|alpha|mask|rm|rough|roughness|disp|ao|local|"
    r"addnormals|shirt|pants|reflect)$",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class PhotoFilter:
    """Which decoded images count as training photographs.

    min_side: both sides at least this many pixels.
    min_std: standard deviation of the luma ([0,1] units) below which an image is
        near-uniform (flat colour fills, blank masks).
    min_colour: mean absolute difference between channels below which an image is
        gray (many bump and height maps are stored as RGB gray).
    max_transparent: largest share of pixels with alpha < 0.5 (decals, cut-outs).
    val_percent, heldout_percent: shares of names (by a stable hash) kept out of
        training for validation and for the held-out benchmark.
    """

    min_side: int = 256
    min_std: float = 0.03
    min_colour: float = 0.004
    max_transparent: float = 0.01
    val_percent: int = 5
    heldout_percent: int = 5

    def __post_init__(self):
        if self.val_percent < 0 or self.heldout_percent < 0 or self.val_percent + self.heldout_percent >= 100:
            raise ValueError("val_percent and heldout_percent must be >= 0 and leave photos to train on.")


#: The folders a photo set is split into.
SPLITS = ("train", "val", "heldout")


def split_of(name: str, val_percent: int = 5, heldout_percent: int = 5) -> str:
    """"train", "val" or "heldout" for a file name, from a stable hash (SHA-1) of its
    base name (so the split never depends on the order or the other files)."""
    base = os.path.basename(name).lower()
    bucket = int(hashlib.sha1(base.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < heldout_percent:
        return "heldout"
    return "val" if bucket < heldout_percent + val_percent else "train"


def download_package(package: str, folder: str, allowed: Sequence[str] = PACKAGES) -> str:
    """Downloads ``package``'s ``.deb`` into ``folder`` with ``apt-get download``.

    ``allowed``: the package names this call may fetch (the texture packages by
    default; :mod:`kpac_tf.data.natural_photos` passes its own).
    Returns the path of the ``.deb``. Raises RuntimeError with apt's last line when
    the download fails (unknown package, no package index, no network).
    """
    if package not in allowed:
        raise ValueError(f"{package}: not one of the training-photo packages {', '.join(allowed)}.")
    os.makedirs(folder, exist_ok=True)
    existing = [f for f in os.listdir(folder) if f.startswith(package + "_") and f.endswith(".deb")]
    if existing:
        return os.path.join(folder, sorted(existing)[-1])
    result = subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True,
                            text=True, check=False)
    debs = [f for f in os.listdir(folder) if f.startswith(package + "_") and f.endswith(".deb")]
    if result.returncode != 0 or not debs:
        lines = [line for line in (result.stderr or result.stdout).splitlines()
                 if line.strip() and not line.startswith("W:")]
        raise RuntimeError(f"apt-get download {package} failed: "
                           f"{lines[-1] if lines else 'no .deb was written'}")
    return os.path.join(folder, sorted(debs)[-1])


def _unpack_deb(deb: str, folder: str) -> None:
    result = subprocess.run(["dpkg-deb", "-x", deb, folder], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{deb}: cannot be unpacked ({result.stderr.strip() or 'dpkg-deb failed'}).")


def iter_package_images(deb: str) -> Iterator[tuple[str, bytes]]:
    """Yields ``(name, encoded bytes)`` of every image file inside a ``.deb``.

    Names are "PATH" for plain files and "ARCHIVE.pk3/MEMBER" for members of the
    ``.pk3``/``.zip`` archives inside it.
    """
    with tempfile.TemporaryDirectory(prefix="kpac_deb_") as tmp:
        _unpack_deb(deb, tmp)
        for root, _, files in sorted(os.walk(tmp)):
            for file in sorted(files):
                path = os.path.join(root, file)
                rel = os.path.relpath(path, tmp)
                lower = file.lower()
                if lower.endswith((".pk3", ".zip")):
                    yield from _iter_archive(path, os.path.basename(rel))
                elif lower.endswith(_IMAGE_SUFFIXES):
                    with open(path, "rb") as f:
                        yield rel, f.read()


def _iter_archive(path: str, label: str) -> Iterator[tuple[str, bytes]]:
    try:
        with zipfile.ZipFile(path) as archive:
            for member in sorted(archive.namelist()):
                if member.lower().endswith(_IMAGE_SUFFIXES):
                    yield f"{label}/{member}", archive.read(member)
    except zipfile.BadZipFile:
        logging.warning("%s: not a zip archive; skipped.", label)


def _decode(name: str, data: bytes) -> Optional[codec.ImageData]:
    if name.lower().endswith(".tga"):
        import io

        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as image:
                image = image.convert("RGBA")
                array = np.asarray(image, np.float32) / np.float32(255.0)
        except Exception:  # noqa: BLE001 - any undecodable file is just skipped
            return None
        return codec.ImageData(pixels=array, bit_depth=8, grayscale=False, format="tga")
    try:
        return codec.decode_image_bytes(data, name)
    except codec.ImageError:
        return None


def reject_reason(name: str, image: Optional[codec.ImageData], rules: PhotoFilter) -> Optional[str]:
    """Why an image is not a training photograph (None: keep it)."""
    stem = os.path.splitext(os.path.basename(name))[0]
    if _MAP_PATTERN.search(stem):
        return "map"
    if image is None:
        return "undecodable"
    if min(image.height, image.width) < rules.min_side:
        return "small"
    if image.alpha is not None and float(np.mean(image.alpha < 0.5)) > rules.max_transparent:
        return "alpha"
    rgb = image.rgb
    if image.grayscale or float(np.mean(np.abs(rgb - rgb.mean(axis=2, keepdims=True)))) < rules.min_colour:
        return "gray"
    if float(luma(rgb).std()) < rules.min_std:
        return "uniform"
    return None


def select_photos(items: Iterable[tuple[str, bytes]], rules: PhotoFilter = PhotoFilter()
                  ) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Filters ``(name, bytes)`` items; yields ``(name, rgb HxWx3 float32 [0,1], info)``
    for photographs, and ``(name, None, info)`` for rejected ones (``info["reason"]``).

    Exact duplicates (same decoded pixels) keep their first occurrence only.
    """
    seen: set[str] = set()
    for name, data in items:
        image = None if _MAP_PATTERN.search(os.path.splitext(os.path.basename(name))[0]) \
            else _decode(name, data)
        reason = reject_reason(name, image, rules)
        if reason is None:
            rgb = image.rgb  # converted once: each access makes a new array
            digest = hashlib.sha1(rgb.tobytes()).hexdigest()
            if digest in seen:
                reason = "duplicate"
            seen.add(digest)
        if reason is not None:
            yield name, None, {"reason": reason}
        else:
            yield name, rgb, {"height": image.height, "width": image.width,
                              "split": split_of(name, rules.val_percent, rules.heldout_percent)}


def _output_name(package: str, name: str) -> str:
    stem = os.path.splitext(name)[0]
    flat = re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_")
    return f"{package.split('-')[0]}_{flat}.png"


def build_photo_folder(out_dir: str, packages: Sequence[str] = ("ufoai-textures",), *,
                       rules: PhotoFilter = PhotoFilter(), download_dir: Optional[str] = None,
                       debs: Optional[dict] = None) -> dict:
    """Fetches, filters and splits the packages' photographs into ``out_dir``.

    Writes ``out_dir/{train,val,heldout}/*.png`` (8-bit PNG, names
    prefixed by the package) and ``out_dir/manifest.json`` with the counts per
    package, split and rejection reason, and the file list. Existing photos are
    rewritten only when missing, so a rerun is cheap.

    Args:
      out_dir: destination folder.
      packages: names from :data:`PACKAGES`.
      rules: the photo filter.
      download_dir: where ``.deb`` files go (default ``out_dir/debs``).
      debs: {package: path of an already downloaded .deb} (tests).

    Returns:
      The manifest dictionary.
    """
    download_dir = download_dir or os.path.join(out_dir, "debs")
    manifest: dict = {"packages": {}, "filter": dataclasses.asdict(rules), "files": {}}
    for split in SPLITS:
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    for package in packages:
        deb = (debs or {}).get(package) or download_package(package, download_dir)
        counts: dict[str, int] = {}
        for name, rgb, info in select_photos(iter_package_images(deb), rules):
            key = info.get("reason") or info["split"]
            counts[key] = counts.get(key, 0) + 1
            if rgb is None:
                continue
            file = _output_name(package, name)
            path = os.path.join(out_dir, info["split"], file)
            if not os.path.exists(path):
                codec.write_image(path, rgb, bit_depth=8)
            manifest["files"][f"{info['split']}/{file}"] = {"package": package, "member": name,
                                                            "height": info["height"],
                                                            "width": info["width"]}
        manifest["packages"][package] = counts
        logging.info("%s: %s", package, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    manifest["counts"] = {split: sum(1 for f in manifest["files"] if f.startswith(split + "/"))
                          for split in SPLITS}
    write_json(os.path.join(out_dir, "manifest.json"), manifest)
    return manifest
