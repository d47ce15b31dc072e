"""Crash-safe file replacement, shared by checkpoints, metrics, reports and pictures, and
the checks that go with it (can an output be written here; is an input readable text).

The new contents go to a temporary file in the destination's folder, which is flushed to
disk and then ``os.replace``d over the destination: a crash or Ctrl-C leaves either the old
file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from dwstft.errors import OutputPathError

_UMASK = os.umask(0)
os.umask(_UMASK)


def prepare_output_file(path: str | Path, option: str = "--output") -> Path:
    """Check, before any work, that a file can be written at ``path``: it is not a folder
    and no part of its folder's path is a file. Creates the missing parent folders.

    Raises:
        OutputPathError: naming ``option``, the path and what is in the way.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(
            f"{option} {str(path)!r} is a folder; name a file (e.g. {str(path / 'out')!r})"
        )
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputPathError(
                    f"{option} {str(path)!r} cannot be written: {str(ancestor)!r} is a file, "
                    "not a folder; choose another path"
                )
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(
            f"{option} {str(path)!r} cannot be written: cannot create {str(path.parent)!r} "
            f"({err.strerror}); choose another path"
        ) from None
    return path


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Create or replace ``path`` atomically: ``write`` fills a temporary binary file in the
    same folder, which is fsynced and renamed over ``path``. If ``write`` raises, ``path`` is
    untouched and the temporary file is removed.

    Raises:
        OutputPathError: the folder does not exist or cannot be written, or ``path`` is a
            folder (nothing is written then).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"cannot write {str(path)!r}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OutputPathError(
            f"cannot write {str(path)!r}: {err.strerror} in {str(path.parent)!r}; choose a "
            "folder that exists and that you may write"
        ) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Atomically replace ``path``'s contents with ``data``."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically replace ``path``'s contents with ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    """Persist a rename on POSIX file systems (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_text_file(path: str | Path) -> str:
    """The UTF-8 text of ``path``.

    Raises:
        ValueError: the file is not UTF-8 text (binary or damaged), naming it.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{str(path)!r} is not UTF-8 text (byte {err.start}: {err.reason}); it is damaged "
            "or not the file expected"
        ) from None
