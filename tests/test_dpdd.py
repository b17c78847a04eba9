"""Pairing of DPDD folders and plain source/target folders by file name."""
from __future__ import annotations

import os

import pytest

from kpac_tf.data import dpdd


def _touch(folder, *names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        with open(os.path.join(folder, name), "wb") as stream:
            stream.write(b"x")


def _dpdd(root, split="train", names=("a.png", "b.png"), views=True, suffix=True):
    _touch(os.path.join(root, f"{split}_c", "source"), *names)
    _touch(os.path.join(root, f"{split}_c", "target"), *names)
    if views:
        stem = [os.path.splitext(n)[0] for n in names]
        _touch(os.path.join(root, f"{split}_l", "source"), *[s + ("_L" if suffix else "") + ".png" for s in stem])
        _touch(os.path.join(root, f"{split}_r", "source"), *[s + ("_R" if suffix else "") + ".png" for s in stem])


def test_folder_pairs_match_by_name_not_order(tmp_path):
    # Same stems, different extensions and a non-image file: paired by stem.
    _touch(tmp_path / "src", "c.png", "a.png", "b.jpg", "notes.txt")
    _touch(tmp_path / "tgt", "b.png", "c.png", "a.png")
    pairs = dpdd.list_folder_pairs(str(tmp_path / "src"), str(tmp_path / "tgt"))
    assert [p.name for p in pairs] == ["a", "b", "c"]
    assert os.path.basename(pairs[1].source) == "b.jpg"
    assert os.path.basename(pairs[1].target) == "b.png"
    assert not pairs[0].dual_pixel


def test_unmatched_files_are_all_listed(tmp_path):
    _touch(tmp_path / "src", "a.png", "b.png", "only_src.png")
    _touch(tmp_path / "tgt", "a.png", "b.png", "only_tgt1.png", "only_tgt2.png")
    with pytest.raises(dpdd.PairingError) as info:
        dpdd.list_folder_pairs(str(tmp_path / "src"), str(tmp_path / "tgt"))
    message = str(info.value)
    assert "only_src.png" in message and "only_tgt1.png" in message and "only_tgt2.png" in message
    assert "1 image(s) have no target" in message and "2 image(s) have no source" in message


def test_long_lists_are_shortened(tmp_path):
    _touch(tmp_path / "src", *[f"s{i:02d}.png" for i in range(30)], "x.png")
    _touch(tmp_path / "tgt", "x.png")
    with pytest.raises(dpdd.PairingError, match="and 18 more"):
        dpdd.list_folder_pairs(str(tmp_path / "src"), str(tmp_path / "tgt"))


def test_missing_and_empty_folders(tmp_path):
    _touch(tmp_path / "src", "a.png")
    with pytest.raises(FileNotFoundError, match="target folder"):
        dpdd.list_folder_pairs(str(tmp_path / "src"), str(tmp_path / "nope"))
    _touch(tmp_path / "empty", "readme.txt")
    with pytest.raises(dpdd.PairingError, match="holds no images"):
        dpdd.list_folder_pairs(str(tmp_path / "src"), str(tmp_path / "empty"))


def test_duplicate_stems_rejected(tmp_path):
    _touch(tmp_path / "src", "a.png", "a.jpg")
    _touch(tmp_path / "tgt", "a.png")
    with pytest.raises(dpdd.PairingError, match="a.jpg / a.png|a.png / a.jpg"):
        dpdd.list_folder_pairs(str(tmp_path / "src"), str(tmp_path / "tgt"))


@pytest.mark.parametrize("suffix", [True, False])
def test_dpdd_dual_pixel_views(tmp_path, suffix):
    _dpdd(str(tmp_path), "train", suffix=suffix)
    assert dpdd.is_dpdd_root(str(tmp_path))
    single = dpdd.list_dpdd(str(tmp_path), "train")
    assert [p.name for p in single] == ["a", "b"] and single[0].left is None
    dual = dpdd.list_dpdd(str(tmp_path), "train", dual_pixel=True)
    assert all(p.dual_pixel for p in dual)
    assert os.path.basename(dual[0].left) == ("a_L.png" if suffix else "a.png")
    assert os.path.basename(dual[1].right) == ("b_R.png" if suffix else "b.png")
    assert dual[0].source.endswith(os.path.join("train_c", "source", "a.png"))
    assert dual[0].target.endswith(os.path.join("train_c", "target", "a.png"))


def test_dpdd_missing_view_is_reported(tmp_path):
    _dpdd(str(tmp_path), "val")
    os.remove(tmp_path / "val_r" / "source" / "b_R.png")
    with pytest.raises(dpdd.PairingError, match=r"no right file .*b\.png"):
        dpdd.list_dpdd(str(tmp_path), "val", dual_pixel=True)
    # The single-image view does not need the dual-pixel folders.
    assert len(dpdd.list_dpdd(str(tmp_path), "val")) == 2


def test_dpdd_bad_split_and_missing_split(tmp_path):
    _dpdd(str(tmp_path), "train", views=False)
    with pytest.raises(ValueError, match="Unknown DPDD split"):
        dpdd.list_dpdd(str(tmp_path), "training")
    with pytest.raises(FileNotFoundError, match="test_c"):
        dpdd.list_dpdd(str(tmp_path), "test")
    assert not dpdd.is_dpdd_root(str(tmp_path / "train_c"))


def test_list_images_formats_patterns_and_hidden_files(tmp_path):
    _touch(tmp_path / "f", "a.png", "b.gif", "c.tif", ".d.png", "out_e.jpg", "notes.txt")
    assert sorted(dpdd.list_images(str(tmp_path / "f"), "source")) == ["a", "b", "out_e"]
    wide = dpdd.list_images(str(tmp_path / "f"), "image", extensions=(".png", ".tif"))
    assert sorted(wide) == ["a", "c"]  # hidden files never count
    assert list(dpdd.list_images(str(tmp_path / "f"), "image", include="out_*")) == ["out_e"]
    with pytest.raises(dpdd.PairingError, match="matching 'zzz\\*'.*include pattern"):
        dpdd.list_images(str(tmp_path / "f"), "image", include="zzz*")


def test_pair_by_name_names_what_each_item_lacks(tmp_path):
    folders = {"image": {"a": "i/a.jpg", "b": "i/b.jpg"}, "mask": {"a": "m/a.png", "c": "m/c.png"}}
    dirs = {"image": "i", "mask": "m"}
    assert dpdd.pair_by_name({"image": folders["image"]}, dirs) == ["a", "b"]
    with pytest.raises(dpdd.PairingError) as info:
        dpdd.pair_by_name(folders, dirs, lacking={"image": "mask", "mask": "image"},
                          advice="Give every image a mask")
    message = str(info.value)
    assert "1 mask(s) have no image file in i: c.png" in message
    assert "1 image(s) have no mask file in m: b.jpg" in message
    assert message.endswith("Give every image a mask.")
