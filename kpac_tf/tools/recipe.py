"""python -m kpac_tf.tools.recipe: the training recipes that ship with the package.

usage: python -m kpac_tf.tools.recipe [NAME]

    python -m kpac_tf.tools.recipe
    kpac-train --flagfile=$(python -m kpac_tf.tools.recipe soft_cpu) --data=... --workdir=runs/soft

A recipe is a kpac-train flagfile (``kpac_tf/recipes/NAME.flags``): the flags of one
training recipe, with a header comment saying what it is, where its data comes from and
how to run it. Flags given after --flagfile on the command line win.

Without NAME: one line per recipe, its name and the first line of its header comment. With NAME
(``.flags`` may be added): the absolute path of the recipe file, for --flagfile.

Exit status: 0 done; 2 an unknown NAME (the error line names the known ones) or a usage
error.
"""
from __future__ import annotations

from pathlib import Path

from kpac_tf.cli import runner

__all__ = ["RECIPES_DIR", "recipe_names", "recipe_path", "recipe_summary"]

#: Where the recipes are installed: ``kpac_tf/recipes/`` (package data).
RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
_SUFFIX = ".flags"


def main(argv: list[str]) -> int:
    if len(argv) > 2:
        raise runner.usage_error(f"give one recipe name at most, got {len(argv) - 1}.")
    if len(argv) == 2:
        try:
            print(recipe_path(argv[1]))
        except KeyError as error:
            raise runner.setup_error(error.args[0]) from None
        return runner.EXIT_OK
    names = recipe_names()
    width = max(map(len, names), default=0)
    for name in names:
        print(f"{name:<{width}}  {recipe_summary(name)}")
    return runner.EXIT_OK


def recipe_names() -> list[str]:
    """The packaged recipes' names (file names without ``.flags``), sorted."""
    return sorted(path.name[:-len(_SUFFIX)] for path in RECIPES_DIR.glob(f"*{_SUFFIX}"))


def recipe_path(name: str) -> Path:
    """The absolute path of recipe ``name`` (``.flags`` may be added); KeyError whose
    message names the known recipes when there is none of that name."""
    stem = name[:-len(_SUFFIX)] if name.endswith(_SUFFIX) else name
    path = RECIPES_DIR / f"{stem}{_SUFFIX}"
    if "/" in stem or stem not in recipe_names():
        known = ", ".join(recipe_names()) or "none (the package was installed without them)"
        raise KeyError(f"there is no recipe {name!r}; the recipes are: {known}.")
    return path


def recipe_summary(name: str) -> str:
    """The first line of recipe ``name``'s header comment, without the ``#`` ("..." added
    when its sentence goes on)."""
    for line in recipe_path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip()
            return text if text.endswith(".") else f"{text} ..."
    return ""


def run() -> None:
    """Entry point of ``python -m kpac_tf.tools.recipe``."""
    runner.run_command("python -m kpac_tf.tools.recipe", main)


if __name__ == "__main__":
    run()
