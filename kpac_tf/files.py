"""Small file helpers: writes that leave a file complete or absent, JSON records, the
process umask, and one-line error messages.

:func:`atomic_write` writes local paths through a temporary file and ``os.replace``, and
paths with a scheme (``gs://...``) through ``tf.io.gfile`` (TensorFlow is imported only
then).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from typing import BinaryIO, Callable, Union

__all__ = ["atomic_write", "current_umask", "error_line", "write_json"]

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, data: Union[bytes, str, Callable[[BinaryIO], None]]) -> None:
    """Writes a file so that it is either complete or absent: the data goes to a
    temporary file in the destination folder (which must exist), is flushed to disk
    and moved over ``path`` with ``os.replace``; the temporary file is removed if
    anything fails. The file gets the mode of any new file (0o666 less the umask).

    Paths with a scheme (``gs://...``) go through ``tf.io.gfile``: written to
    ``path + ".tmp"``, then renamed over ``path``.

    Args:
      path: destination file.
      data: bytes, text (written as UTF-8), or a function that writes into the open
        binary stream (e.g. ``lambda f: np.savez(f, **arrays)``).

    Raises:
      OSError: the folder is missing or the file cannot be written.
    """
    path = os.fspath(path)
    if "://" in path:
        _atomic_write_gfile(path, data)
        return
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_data(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: PathLike, payload, *, indent: int = 1) -> None:
    """Writes ``payload`` as JSON (keys sorted) with :func:`atomic_write`."""
    atomic_write(path, json.dumps(payload, indent=indent, sort_keys=True))


def current_umask() -> int:
    """The process's file-mode creation mask (read without changing it where possible)."""
    try:
        with open("/proc/self/status", "r", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def error_line(error: BaseException) -> str:
    """The first line of an error's message, for one-sentence messages: TensorFlow's
    "{{function_node ...}}" prefix and " [Op:...]" suffix and a final period dropped."""
    text = getattr(error, "message", None) or str(error)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(text))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else type(error).__name__
    return line.split(" [Op:", 1)[0].rstrip(" .")


def _write_data(stream: BinaryIO, data) -> None:
    if callable(data):
        data(stream)
    else:
        stream.write(data.encode("utf-8") if isinstance(data, str) else data)


def _atomic_write_gfile(path: str, data) -> None:
    import tensorflow as tf

    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as stream:
        _write_data(stream, data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
