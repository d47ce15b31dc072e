"""Ownership of a run folder: one process writes it, and a new run never mixes with another.

:func:`claim_run_folder` creates the folder if needed and takes an exclusive, non-blocking
``fcntl.flock`` on ``<folder>/.dwstft.lock`` that the process holds for the run's whole life.
The kernel drops the lock when the process ends in any way (a crash or ``kill -9``
included), so a lock never goes stale; a second process that tries while the first lives
is refused at once. The checks that follow (does the folder hold another run?) happen
under the lock, so two runs started at the same moment cannot both pass them.

A resumed run may write only into an empty folder or into its checkpoint's own folder, and
there only if the folder's ``config.json`` and ``best.safetensors`` belong to the same run
(:func:`check_same_run`: the ``run_id`` every file of a run records, or for files written
before run ids the settings they record), so a ``last.pt`` copied into another run's folder
never mixes the two runs.

The lock file is removed when the run ends (after SIGTERM too: the ``dwstft`` command turns
it into an interrupt), and the folder too if the run created it and wrote nothing into it
(it failed while setting up). Only a process killed outright (``kill -9``, a crash) leaves
the file behind; the next run in the folder locks that same file and removes it in turn.
Under the lock, leftovers of an interrupted atomic write (``.<file>.<random>.tmp``, see
:mod:`dwstft._atomic`) cannot belong to a live writer, so they are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import safe_open

from dwstft.errors import OutputPathError, RunFolderError
from dwstft.train.config import RUNTIME_FIELDS, TrainConfig

LOCK_NAME = ".dwstft.lock"
#: Files a run writes into its folder; any of them marks the folder as holding a run.
RUN_FILES = (
    "config.json",
    "last.pt",
    "best.safetensors",
    "metrics.jsonl",
    "summary.csv",
    "curves.png",
)


def holds_a_run(folder: Path) -> bool:
    """Whether ``folder`` holds any file a run writes."""
    return any((folder / name).exists() for name in RUN_FILES)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files interrupted atomic writes of :data:`RUN_FILES` left in
    ``folder``; returns what was removed. Only call it while holding the folder's lock."""
    removed = []
    for name in RUN_FILES:
        for tmp in folder.glob(f".{name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def check_same_run(folder: Path, checkpoint: Path, recorded: TrainConfig) -> None:
    """Raise RunFolderError unless the run files of ``folder`` that say which run they
    belong to (``config.json``; ``best.safetensors``'s metadata) belong to the run that
    ``checkpoint`` continues (``recorded``: the config the checkpoint holds).

    Two records are one run when their ``run_id``s are equal. Where either lacks one
    (written before dwstft recorded run ids) they are one run when the settings both record
    agree: every training setting in ``config.json`` (:data:`RUNTIME_FIELDS` aside), or the
    model and dataset of ``best.safetensors``. A file that cannot be read as its kind is
    refused too: it cannot show that it belongs to the run.
    """
    for name, found in _identity_records(folder):
        if not _same_run(found, recorded):
            raise RunFolderError(
                f"checkpoint {str(checkpoint)!r} is {_describe(recorded.to_dict())}, written "
                f"to folder {recorded.output!r}, but {str(folder / name)!r} is "
                f"{_describe(found)}; resuming there would mix the two runs. Resume into an "
                "empty --output, or put the checkpoint back in its own run's folder"
            )


def _identity_records(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, its run_id and recorded settings) for config.json and best.safetensors,
    where present."""
    config_path = folder / "config.json"
    if config_path.exists():
        try:
            config = TrainConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as err:
            raise _unreadable(config_path, err) from None
        yield config_path.name, {**_settings(config), "run_id": config.run_id}
    weights_path = folder / "best.safetensors"
    if weights_path.exists():
        try:
            with safe_open(str(weights_path), framework="pt") as f:
                metadata = f.metadata() or {}
        except Exception as err:  # safetensors raises its own and OS error types
            raise _unreadable(weights_path, err) from None
        found = {k: metadata[k] for k in ("model", "dataset") if k in metadata}
        yield weights_path.name, {**found, "run_id": metadata.get("run_id")}


def _unreadable(path: Path, err: Exception) -> RunFolderError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return RunFolderError(
        f"{str(path)!r} cannot be read ({reason}), so it cannot show that the folder holds "
        "the checkpoint's run; move it away if it does, or resume into an empty --output"
    )


def _settings(config: TrainConfig) -> dict[str, Any]:
    """The settings that make a run what it is (model, data, schedule, seed, ...)."""
    return {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS and k != "run_id"}


def _same_run(found: dict[str, Any], recorded: TrainConfig) -> bool:
    if found["run_id"] is not None and recorded.run_id is not None:
        return found["run_id"] == recorded.run_id
    settings = _settings(recorded)
    return all(settings.get(k) == v for k, v in found.items() if k != "run_id")


def _describe(record: dict[str, Any]) -> str:
    """``run <id> (<model> on <dataset>)``, or ``a run without an id (...)``."""
    who = f"run {record['run_id']}" if record.get("run_id") else "a run without an id"
    return f"{who} ({record.get('model', '?')} on {record.get('dataset', '?')})"


def _make_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(
            f"--output {str(folder)!r} exists and is not a folder; choose another --output"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunFolderError(
            f"--output {str(folder)!r} cannot be created: a part of its path is a file; "
            "choose another --output"
        ) from None
    except PermissionError:
        raise RunFolderError(
            f"--output {str(folder)!r} cannot be created: permission denied; choose a "
            "folder you may write"
        ) from None


def _lock(folder: Path) -> int:
    """Open and flock the folder's lock file; returns the descriptor.

    The lock file may be unlinked by a holder that wrote nothing (see
    :func:`claim_run_folder`); a lock taken on an unlinked file is worthless, so the path is
    checked to still name the locked file, and the attempt repeated if not."""
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise RunFolderError(
                f"--output {str(folder)!r} is not writable ({err.strerror}); choose a folder "
                "you may write"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(
                f"run folder {str(folder)!r} is in use by {holder}; wait for that run to end, "
                "or choose another --output"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()}".encode("ascii"))
    return fd


@contextlib.contextmanager
def claim_run_folder(
    folder: str | Path,
    resume_from: str | Path | None = None,
    recorded: TrainConfig | None = None,
) -> Iterator[Path]:
    """Hold ``folder`` for a run: create it, lock it, check it, clean it; yields its path.

    Args:
        folder: the run folder (``--output``).
        resume_from: the ``last.pt`` a resumed run continues, or None for a new run.
        recorded: the config ``resume_from`` records (its ``run_id`` included); required
            with ``resume_from``.

    Raises:
        RunFolderError: ``folder`` is not a folder or not writable; another process holds
            it; a new run was asked for in a folder that holds a run; a resumed run was
            pointed at another folder that holds a run (anything but the checkpoint's own
            folder must be empty); or the checkpoint's folder holds files of another run
            (see :func:`check_same_run`).
    """
    if resume_from is not None and recorded is None:
        raise ValueError("claim_run_folder needs the checkpoint's recorded config to resume")
    folder = Path(folder)
    created = not folder.exists()
    _make_folder(folder)
    fd = _lock(folder)
    try:
        own = resume_from is not None and Path(resume_from).resolve().parent == folder.resolve()
        if not own and holds_a_run(folder):
            if resume_from is None:
                hint = f"pass --resume {folder / 'last.pt'} to continue it"
            else:
                hint = f"resume from {folder / 'last.pt'} to continue that run"
            raise RunFolderError(
                f"--output {str(folder)!r} already holds a run; {hint}, or choose another --output"
            )
        if own:
            check_same_run(folder, Path(resume_from), recorded)
        remove_stale_temporaries(folder)
        yield folder
    finally:
        # Unlinked while still locked: a process waiting on this file sees it vanish and
        # retries (see _lock). A folder this call created and nothing was written to (the
        # run failed while setting up) goes too.
        with contextlib.suppress(OSError):
            (folder / LOCK_NAME).unlink()
            if created and not any(folder.iterdir()):
                folder.rmdir()
        os.close(fd)


def check_export_output(output: str | Path, checkpoint: str | Path, force: bool = False) -> Path:
    """Refuse, before any work, an ``output`` that would replace the checkpoint, a file of
    a run folder (a folder holding any of ``RUN_FILES``: ``config.json``, ``last.pt``,
    ``best.safetensors``, ...) that bears a run file's name, or, unless ``force``, any
    existing file. Returns ``output`` as a Path.

    Raises:
        OutputPathError: naming the file and what to do instead.
    """
    output = Path(output)
    if output.resolve() == Path(checkpoint).resolve():
        raise OutputPathError(
            f"--output {str(output)!r} would overwrite the checkpoint; choose another --output"
        )
    folder = output.resolve().parent
    if output.name in RUN_FILES and holds_a_run(folder):
        raise OutputPathError(
            f"--output {str(output)!r} is the {output.name} of the run folder {str(folder)!r}, "
            "which an export never replaces; choose another --output"
        )
    if (output.exists() or output.is_symlink()) and not output.is_dir() and not force:
        raise OutputPathError(
            f"--output {str(output)!r} already exists; pass --force to replace it, or choose "
            "another --output"
        )
    return output
