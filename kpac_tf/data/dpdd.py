"""Find training pairs on disk: the DPDD layout and plain source/target folder pairs.

DPDD (Abuolaim & Brown, ECCV 2020) is laid out as::

    ROOT/{train,val,test}_c/source/*.png   combined (centre) view: the blurred input
    ROOT/{train,val,test}_c/target/*.png   all-in-focus target
    ROOT/{train,val,test}_l/source/*.png   left dual-pixel view   (dual-pixel only)
    ROOT/{train,val,test}_r/source/*.png   right dual-pixel view  (dual-pixel only)

Files are paired by name, never by sort order (:func:`list_images`,
:func:`pair_by_name`, also used for blur-detection masks): a source and a target belong
together when their file stems are equal. In the view folders a trailing ``_L`` / ``_R`` / ``_C``
(any case) on the stem is ignored, so ``1P0A1031_L.png`` pairs with ``1P0A1031.png``.
Anything that cannot be paired raises :class:`PairingError`, which lists the files.

Only paths are handled here (local paths, or any scheme ``tf.io.gfile`` reads, e.g.
cloud buckets); decoding happens in :mod:`kpac_tf.data.pipeline`.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from typing import Iterable, Sequence

import tensorflow as tf

from kpac_tf.images.tensors import TENSOR_EXTENSIONS

__all__ = [
    "SPLITS",
    "ImagePair",
    "PairingError",
    "describe_pairs",
    "is_dpdd_root",
    "list_dpdd",
    "list_folder_pairs",
    "list_images",
    "pair_by_name",
    "short_list",
]

#: The DPDD splits.
SPLITS = ("train", "val", "test")

_VIEW_SUFFIX = re.compile(r"_(l|r|c)$", re.IGNORECASE)
_MAX_LISTED = 12


class PairingError(ValueError):
    """Source, target (and view) folders do not hold the same set of image names."""


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """One training/evaluation example on disk.

    Attributes:
        name: the shared file stem (the pairing key).
        source: blurred input (DPDD: combined view).
        target: sharp target.
        left, right: dual-pixel views (None for single-image data).
    """

    name: str
    source: str
    target: str
    left: str | None = None
    right: str | None = None

    @property
    def dual_pixel(self) -> bool:
        return self.left is not None and self.right is not None


def _key(name: str, strip_view_suffix: bool) -> str:
    stem = os.path.splitext(name)[0]
    return _VIEW_SUFFIX.sub("", stem) if strip_view_suffix else stem


def list_images(folder: str, what: str, *, extensions: Sequence[str] = TENSOR_EXTENSIONS,
                include: str = "*", strip_view_suffix: bool = False) -> dict[str, str]:
    """Map pairing key (the file stem) -> full path for the images in ``folder``.

    Args:
        folder: a local path or any path ``tf.io.gfile`` reads.
        what: the folder's role in error messages ("source", "mask", ...).
        extensions: file extensions taken (lower case); the default is what the
            tf.data decoder reads (:data:`kpac_tf.images.tensors.TENSOR_EXTENSIONS`).
        include: shell pattern the file names must match.
        strip_view_suffix: drop a trailing ``_L`` / ``_R`` / ``_C`` from the stems.

    Raises:
        FileNotFoundError: the folder does not exist.
        PairingError: two images share a key, or there is no image.
    """
    if not tf.io.gfile.isdir(folder):
        raise FileNotFoundError(f"The {what} folder {folder} does not exist; check the data path.")
    names = sorted(n.rstrip("/") for n in tf.io.gfile.listdir(folder) if not n.endswith("/"))
    images: dict[str, str] = {}
    clashes: list[str] = []
    for name in names:
        if (name.startswith(".") or os.path.splitext(name)[1].lower() not in extensions
                or not fnmatch.fnmatch(name, include)):
            continue
        key = _key(name, strip_view_suffix)
        if key in images:
            clashes.append(f"{os.path.basename(images[key])} / {name}")
            continue
        images[key] = os.path.join(folder, name)
    if clashes:
        raise PairingError(
            f"The {what} folder {folder} holds several images with the same name: "
            f"{short_list(clashes)}; keep one file per name."
        )
    if not images:
        pattern = f" matching {include!r}" if include != "*" else ""
        raise PairingError(
            f"The {what} folder {folder} holds no images{pattern} "
            f"({', '.join(extensions)}); check the data path"
            + (" and the include pattern." if pattern else ".")
        )
    return images


def short_list(items: Sequence[str]) -> str:
    """'a, b, c and N more': at most a few names for an error message."""
    items = list(items)
    shown = ", ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f" and {len(items) - _MAX_LISTED} more"
    return shown


def pair_by_name(folders: dict[str, dict[str, str]], dirs: dict[str, str], *,
                 lacking: dict[str, str] | None = None,
                 advice: str = "Add or remove files so every folder holds the same names") -> list[str]:
    """The sorted keys present in every folder (role -> :func:`list_images` result).

    Raises PairingError listing every mismatch: "N <item>(s) have no <role> file in
    <dir>: names", where ``lacking[role]`` names the items that lack that role
    (default "image"), followed by ``advice``.
    """
    all_keys = set().union(*(set(m) for m in folders.values()))
    problems = []
    for role, mapping in folders.items():
        missing = sorted(all_keys - set(mapping))
        if missing:
            names = [_example_name(folders, key) for key in missing]
            item = (lacking or {}).get(role, "image")
            problems.append(
                f"{len(missing)} {item}(s) have no {role} file in {dirs[role]}: {short_list(names)}"
            )
    if problems:
        raise PairingError("Cannot pair the images by file name: " + "; ".join(problems)
                           + f". {advice}.")
    return sorted(all_keys)


def _example_name(folders: dict[str, dict[str, str]], key: str) -> str:
    for mapping in folders.values():
        if key in mapping:
            return os.path.basename(mapping[key])
    return key


def list_folder_pairs(
    source_dir: str,
    target_dir: str,
    *,
    left_dir: str | None = None,
    right_dir: str | None = None,
) -> list[ImagePair]:
    """Pair the images of a source folder (blurred) with a target folder (sharp) by name.

    Args:
        source_dir, target_dir: folders of images; stems must match one to one.
        left_dir, right_dir: optional dual-pixel view folders (both or neither).

    Returns:
        ImagePairs sorted by name.

    Raises:
        FileNotFoundError: a folder does not exist.
        PairingError: a folder is empty, holds duplicate names, or some name lacks a
            partner; the message lists the files.
    """
    if (left_dir is None) != (right_dir is None):
        raise ValueError("Give both left_dir and right_dir for dual-pixel data, or neither.")
    dirs = {"source": source_dir, "target": target_dir}
    dual = left_dir is not None
    if dual:
        dirs.update(left=left_dir, right=right_dir)
    folders = {
        role: list_images(folder, role, strip_view_suffix=dual) for role, folder in dirs.items()
    }
    keys = pair_by_name(folders, dirs)
    return [
        ImagePair(
            name=key,
            source=folders["source"][key],
            target=folders["target"][key],
            left=folders["left"][key] if dual else None,
            right=folders["right"][key] if dual else None,
        )
        for key in keys
    ]


def is_dpdd_root(path: str) -> bool:
    """True if ``path`` looks like a DPDD root (has ``train_c/source`` or ``test_c/source``)."""
    return any(tf.io.gfile.isdir(os.path.join(path, f"{split}_c", "source")) for split in SPLITS)


def list_dpdd(root: str, split: str = "train", *, dual_pixel: bool = False) -> list[ImagePair]:
    """The pairs of one DPDD split.

    Args:
        root: the folder holding ``train_c``, ``val_c``, ``test_c`` (and ``*_l``, ``*_r``).
        split: "train", "val" or "test".
        dual_pixel: also pair the left/right views (``{split}_l/source``, ``{split}_r/source``).

    Raises:
        ValueError: unknown split.
        FileNotFoundError: a split folder is missing.
        PairingError: files cannot be paired (the message lists them).
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown DPDD split {split!r}; choose one of {', '.join(SPLITS)}.")
    combined = os.path.join(root, f"{split}_c")
    views = {}
    if dual_pixel:
        views = dict(
            left_dir=os.path.join(root, f"{split}_l", "source"),
            right_dir=os.path.join(root, f"{split}_r", "source"),
        )
    return list_folder_pairs(
        os.path.join(combined, "source"), os.path.join(combined, "target"), **views
    )


def describe_pairs(pairs: Iterable[ImagePair]) -> str:
    """A short human description, e.g. '350 pairs (dual-pixel)'."""
    pairs = list(pairs)
    kind = " (dual-pixel)" if pairs and pairs[0].dual_pixel else ""
    return f"{len(pairs)} pairs{kind}"
