"""The tools of kpac_tf/tools (``python -m kpac_tf.tools.NAME``): each answers --help, the
packaged recipes resolve, scikit-image's training list becomes a photo folder whose val/
photos are kept out of training, and nothing the package says names an experiments/
path (the package is installed without that folder)."""
from __future__ import annotations

import ast
import configparser
import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from kpac_tf.cli import runner
from kpac_tf.data.photos import SKIMAGE_HELDOUT_SAMPLES, SKIMAGE_TRAIN_SAMPLES
from kpac_tf.tools import export_skimage_photos, recipe

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "kpac_tf"
TOOLS = sorted(path.stem for path in (PACKAGE / "tools").glob("*.py") if path.stem != "__init__")


def test_the_tools_are_the_ones_a_user_is_told_to_run():
    assert TOOLS == ["average_weights", "convert_lpips_backbone", "export_skimage_photos",
                     "fetch_training_photos", "recipe", "render_pool"]


@pytest.mark.process
def test_every_tool_answers_help():
    """A process each: several tools define a flag of the same name (--out), and --help
    must work without TensorFlow loading (it takes a fraction of a second)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = {name: subprocess.Popen([sys.executable, "-m", f"kpac_tf.tools.{name}", "--help"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=env) for name in TOOLS}
    for name, process in started.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (name, err[-2000:])
        assert out.startswith(f"python -m kpac_tf.tools.{name}: "), (name, out[:200])
        assert f"usage: python -m kpac_tf.tools.{name}" in out and "flags:" in out, name
        assert "experiments/" not in out, name


def test_no_string_in_the_package_names_an_experiments_path():
    """Messages, help texts and docstrings of the installed package point to commands and
    tools (``python -m kpac_tf.tools.NAME``), never to the source tree's experiments/."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and "experiments/" in node.value:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, found


def test_every_packaged_recipe_resolves(capsys):
    names = recipe.recipe_names()
    assert names == sorted(path.stem for path in (PACKAGE / "recipes").glob("*.flags"))
    assert {"paper_stage1", "paper_stage2", "synthetic_cpu", "photos_cpu", "soft_cpu"} <= set(names)
    for name in names:
        path = recipe.recipe_path(name)
        assert path.is_absolute() and path.is_file() and path.parent == recipe.RECIPES_DIR
        assert recipe.recipe_path(f"{name}.flags") == path
        assert recipe.recipe_summary(name)
        assert runner.call_main("recipe", recipe.main, ["recipe", name]) == runner.EXIT_OK
        assert capsys.readouterr().out == f"{path}\n"
    assert runner.call_main("recipe", recipe.main, ["recipe"]) == runner.EXIT_OK
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == names


def test_an_unknown_recipe_is_one_line_naming_the_known_ones(capsys):
    assert runner.call_main("recipe", recipe.main, ["recipe", "paper"]) == runner.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recipe: error: there is no recipe 'paper'")
    assert all(name in lines[0] for name in recipe.recipe_names())
    with pytest.raises(KeyError):
        recipe.recipe_path("../recipes/soft_cpu")


def test_the_recipes_are_package_data():
    """setup.cfg installs every recipe file with the package (editable or not)."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["kpac_tf"].split(",")]
    for path in (PACKAGE / "recipes").glob("*.flags"):
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


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
