"""What every kpac-* command shares: help, flag errors, exit codes, quiet logs, Ctrl-C.

A command module defines its flags at the top, a ``main(argv) -> int`` and
``run()`` calling :func:`run_command`. This module then gives it:

- ``--help`` / ``-h`` (and ``--helpshort``, ``-?``): the module docstring (usage and
  examples) and the command's own flags with their defaults, on stdout, exit 0.
  ``--helpfull`` adds every absl flag.
- One error line per problem, ``NAME: error: ...``, and these exit codes:

  ====  ==================================================================
  0     done (also: nothing left to do)
  1     the work ran and part or all of it failed: some inputs could not be
        used (the others were), training stopped on a NaN loss or a
        TensorFlow error, an export failed while writing
  2     nothing was done: a usage error (unknown flag, bad value, missing or
        extra argument) or a set-up error found before the work (weights,
        data or output folder missing or unusable, results that exist
        without ``--overwrite``)
  130   interrupted by Ctrl-C (SIGINT); kpac-train saves a checkpoint first
  143   stopped by SIGTERM; kpac-train saves a checkpoint first
  ====  ==================================================================

- Quiet logs: by default a command prints its own progress and results only.
  TensorFlow's C++ log lines (also those printed while it loads) and Python warnings
  are hidden, and absl logging shows warnings and errors of this package only,
  as ``NAME: warning: ...``. ``-v`` (``--verbosity=0``) brings every log line back
  (``--verbosity=1``: debug); TF_CPP_MIN_LOG_LEVEL then applies as usual.
"""
from __future__ import annotations

import contextlib
import logging as std_logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

from absl import app, flags
from absl import logging

FLAGS = flags.FLAGS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

_HELP = ("-h", "--help", "-help", "--helpshort", "-helpshort", "-?")
_HELPFULL = ("--helpfull", "-helpfull")
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])
_state = {"name": "kpac", "verbose": True}

_GENERAL_HELP = """\
general:
  -h, --help: show this help and exit.
  -v: show every log line (library, TensorFlow); same as --verbosity=0
    (--verbosity=1: debug).
  --flagfile: read flags from a file, one per line.
  --helpfull: every flag, including absl's.
"""


class CommandError(Exception):
    """Stops the command with one ``NAME: error: ...`` line and an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE, hint: bool = False):
        super().__init__(message)
        self.code = code
        self.hint = hint


def usage_error(message: str) -> CommandError:
    """A wrong command line (exit 2), printed with a pointer to --help."""
    return CommandError(message, EXIT_USAGE, hint=True)


def no_arguments(argv: list[str]) -> None:
    """Refuse positional arguments: a command whose every option is a --flag."""
    if len(argv) > 1:
        raise usage_error(f"unexpected arguments {' '.join(argv[1:])}; every option is a --flag.")


def parsed_flag(flag: str, text: str, parse: Callable[[str], Any]) -> Any:
    """``parse(text)``, the value of ``--flag``; a ValueError becomes a usage error
    ``--flag: <its message>``."""
    try:
        return parse(text)
    except ValueError as error:
        raise usage_error(f"--{flag}: {error}") from None


def setup_error(message: str) -> CommandError:
    """A problem found before the work starts (exit 2): weights, data, output folder."""
    return CommandError(message, EXIT_USAGE)


def name() -> str:
    """The running command's name, e.g. "kpac-deblur"."""
    return _state["name"]


def verbose() -> bool:
    """True when -v / --verbosity asked for log lines."""
    return _state["verbose"]


def line(kind: str, message: str) -> str:
    """``NAME: kind: message`` on one line (``kind``: error, warning, note)."""
    text = " ".join(str(message).split())
    return f"{name()}: {kind}: {text}"


def error(message: str) -> None:
    """Print one ``NAME: error: message`` line to stderr."""
    _print_line("error", message)


def warning(message: str) -> None:
    """Print one ``NAME: warning: message`` line to stderr."""
    _print_line("warning", message)


def _print_line(kind: str, message: str) -> None:
    sys.stderr.write(line(kind, message) + "\n")
    sys.stderr.flush()


def progress_bar_wanted() -> bool:
    """Progress bars only on a terminal and when no log lines are asked for."""
    return not verbose() and sys.stderr.isatty()


# ---------------------------------------------------------------------------------------
# Help.


def help_text(module: ModuleType, full: bool = False) -> str:
    """The module docstring, then the command's flags (key flags of ``module``)."""
    doc = (module.__doc__ or f"{name()} [flags]").rstrip() + "\n"
    lines = FLAGS.module_help(module).splitlines()
    flag_lines = "\n".join(lines[2:] if len(lines) > 1 and lines[1].endswith(":") else lines)
    text = f"{doc}\nflags:\n{flag_lines}\n\n{_GENERAL_HELP}"
    if full:
        text += "\nall flags:\n" + FLAGS.get_help() + "\n"
    return text


# ---------------------------------------------------------------------------------------
# Parsing.


def _before_double_dash(argv: Sequence[str]) -> list[str]:
    args = list(argv[1:])
    return args[: args.index("--")] if "--" in args else args


def _bare_v_to_verbosity(argv: Sequence[str]) -> list[str]:
    """``-v`` alone means --verbosity=0 (absl's -v otherwise wants a value)."""
    stop = len(argv) if "--" not in argv else list(argv).index("--")
    return [("--verbosity=0" if arg == "-v" and index < stop else arg)
            for index, arg in enumerate(argv)]


def _parse(module: ModuleType, argv: Sequence[str]) -> list[str]:
    """absl's flags_parser: help, one-line flag errors (exit 2), logging set-up."""
    options = _before_double_dash(argv)
    if any(arg in _HELP or arg in _HELPFULL for arg in options):
        sys.stdout.write(help_text(module, full=any(arg in _HELPFULL for arg in options)))
        sys.exit(EXIT_OK)
    try:
        remaining = FLAGS(_bare_v_to_verbosity(argv))
    except flags.Error as problem:
        _print_line("error", str(problem))
        sys.stderr.write(f"Run '{name()} --help' for its flags.\n")
        sys.exit(EXIT_USAGE)
    _state["verbose"] = bool(FLAGS["verbosity"].present)
    if not _state["verbose"]:
        FLAGS.verbosity = logging.converter.ABSL_WARNING  # absl would raise it to INFO
    configure_logging(_state["verbose"])
    return remaining


class _CommandFormatter(std_logging.Formatter):
    def format(self, record: std_logging.LogRecord) -> str:
        return f"{name()}: {record.levelname.lower()}: {record.getMessage()}"


def _from_this_package_or_severe(record: std_logging.LogRecord) -> bool:
    return record.levelno >= std_logging.ERROR or str(record.pathname).startswith(_PACKAGE_DIR)


def configure_logging(verbose_logs: bool) -> None:
    """Quiet defaults (see the module docstring); call before TensorFlow is imported."""
    if verbose_logs:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    warnings.simplefilter("ignore")
    std_logging.getLogger("tensorflow").setLevel(std_logging.ERROR)
    handler = logging.get_absl_handler()
    handler.setFormatter(_CommandFormatter())
    if _from_this_package_or_severe not in handler.filters:
        handler.addFilter(_from_this_package_or_severe)


@contextlib.contextmanager
def _stderr_to_file() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; replay it if the block fails
    (not when it is interrupted)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except Exception:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow() -> None:
    """Import TensorFlow; unless verbose, hide the C++ lines it prints while loading."""
    if "tensorflow" in sys.modules or verbose():
        import tensorflow  # noqa: F401
        return
    with _stderr_to_file():
        import tensorflow  # noqa: F401,F811


# ---------------------------------------------------------------------------------------
# Output folders.


def check_output_dir(path: str | os.PathLike, flag: str = "--output_dir") -> None:
    """Raise a set-up error unless ``path`` is a folder this process can write into, or
    one it can create. Nothing is created (a probe file is written and removed)."""
    folder = Path(path)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = ("is a file, not a folder" if existing == folder
                   else f"cannot be created: {existing} is not a folder")
        raise setup_error(f"{flag}={folder} {problem}.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as failure:
        problem = "cannot be written into" if existing == folder else f"cannot be created in {existing}"
        raise setup_error(f"{flag}={folder} {problem} ({failure.strerror or failure}).") from None


# ---------------------------------------------------------------------------------------
# Running.


def run_command(command_name: str, main: Callable[[list[str]], int | None]) -> None:
    """Run ``main`` as the console command ``command_name`` (see the module docstring)."""
    _state["name"] = command_name
    module = sys.modules[main.__module__]
    try:
        app.run(lambda argv: call_main(command_name, main, argv),
                flags_parser=lambda argv: _parse(module, argv))
    except KeyboardInterrupt:
        sys.stderr.write(f"\n{command_name}: interrupted.\n")
        sys.exit(EXIT_SIGINT)


def call_main(command_name: str, main: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """``main(argv)``'s exit status; a CommandError becomes its error line and code."""
    _state["name"] = command_name
    try:
        return main(argv) or EXIT_OK
    except CommandError as problem:
        _print_line("error", str(problem))
        if problem.hint:
            sys.stderr.write(f"Run '{name()} --help' for its usage and flags.\n")
        return problem.code
