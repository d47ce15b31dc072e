"""CIFAR-10 and CIFAR-100 in their canonical python format (Krizhevsky, 2009).

Lookup order in ``data_dir``:

1. the extracted folder (``cifar-10-batches-py/`` or ``cifar-100-python/``), read as is;
2. the archive (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``): its MD5 is
   checked, then it is extracted safely into a temporary folder that is renamed into place
   only once complete;
3. with ``download=True``, the archive is downloaded from the official URL to a temporary
   file, checked and renamed, then extracted as in 2.

Batch files are pickles; they are read by :class:`RestrictedUnpickler`, which resolves only
the handful of globals a numpy array needs, so nothing in the file can run code.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from dwstft.errors import DwstftError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

IMAGE_SHAPE = (3, 32, 32)
_PIXELS = 3 * 32 * 32
_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60.0

Split = tuple[torch.Tensor, torch.Tensor]
# What unpickling a damaged (but allow-listed) stream can raise besides UnpicklingError.
_GARBLED_PICKLE_ERRORS = (
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
)


class DatasetNotFoundError(DwstftError, FileNotFoundError):
    """The dataset is neither extracted nor archived in ``data_dir`` and cannot be downloaded."""


class CorruptArchiveError(DwstftError, RuntimeError):
    """An archive fails its MD5 check, cannot be read, or holds unsafe or unexpected members."""


class UnsafePickleError(DwstftError, pickle.UnpicklingError):
    """A pickle asks for a global (a callable or class) outside :data:`ALLOWED_GLOBALS`."""


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant lives and how its batch files are laid out."""

    name: str
    url: str
    md5: str
    archive: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int

    @property
    def batch_files(self) -> tuple[str, ...]:
        """All batch files the extracted folder must hold."""
        return self.train_files + self.test_files


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10",
        url=CIFAR10_URL,
        md5=CIFAR10_MD5,
        archive="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        num_classes=10,
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        url=CIFAR100_URL,
        md5=CIFAR100_MD5,
        archive="cifar-100-python.tar.gz",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        num_classes=100,
    ),
}


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` limited to latin-1: how Python 3 writes ``bytes`` at protocol 2."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(
            f"refusing _codecs.encode with encoding {encoding!r}; only 'latin1' is expected"
        )
    return codecs.encode(text, encoding)


ALLOWED_GLOBALS: Mapping[tuple[str, str], Any] = MappingProxyType(
    {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a CIFAR batch (a dict of numpy arrays) needs.

    Allowed (:data:`ALLOWED_GLOBALS`): ``numpy.core.multiarray._reconstruct`` and
    ``numpy._core.multiarray._reconstruct`` (both resolve to the installed numpy's function),
    ``numpy.ndarray``, ``numpy.dtype`` and ``_codecs.encode`` (restricted to latin-1). Any
    other global raises :class:`UnsafePickleError` (a :class:`pickle.UnpicklingError`) naming
    it, before anything from the file is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: a CIFAR batch needs only numpy "
                "array reconstruction"
            ) from None


def restricted_load(file: BinaryIO) -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler`; Python 2 strings become ``bytes``."""
    return RestrictedUnpickler(file, encoding="bytes").load()


def md5sum(path: Path) -> str:
    """Hex MD5 digest of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _missing_batches(folder: Path, spec: CifarSpec) -> list[str]:
    return [name for name in spec.batch_files if not (folder / name).is_file()]


def _not_found_message(spec: CifarSpec, data_dir: Path, reason: str) -> str:
    return (
        f"{spec.name} not found: {reason}. Put {spec.archive} (from {spec.url}) into "
        f"{data_dir} (full path: {data_dir / spec.archive}), or its extracted folder "
        f"{spec.folder}/ into {data_dir}."
    )


def _check_md5(path: Path, expected: str) -> None:
    actual = md5sum(path)
    if actual != expected:
        raise CorruptArchiveError(
            f"{path} has MD5 {actual}, expected {expected}: the file is corrupted or "
            "truncated; delete it and download it again"
        )


def _checked_members(tar: tarfile.TarFile, archive: Path, folder: str) -> list[tarfile.TarInfo]:
    """The archive's members, refusing any that could write outside ``folder``."""
    members = tar.getmembers()
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts or "\\" in member.name:
            raise CorruptArchiveError(f"{archive}: refusing unsafe member path {member.name!r}")
        if not parts or parts[0] != folder:
            raise CorruptArchiveError(
                f"{archive}: member {member.name!r} lies outside the expected folder {folder}/"
            )
        if not (member.isfile() or member.isdir()):
            raise CorruptArchiveError(
                f"{archive}: refusing member {member.name!r}: only regular files and "
                "folders are expected (no links or devices)"
            )
    return members


def _check_gzip(archive: Path) -> None:
    """Decompress ``archive`` to its end so gzip verifies its CRC and length.

    tarfile stops reading at the end-of-archive marker, before the gzip trailer, so damage
    that still decompresses would otherwise go unnoticed.
    """
    with gzip.open(archive, "rb") as f:
        while f.read(_CHUNK):
            pass


def extract_archive(archive: Path, spec: CifarSpec) -> Path:
    """Safely extract ``archive`` next to itself and return the extracted folder.

    The gzip stream is checked to its end (CRC and length), members are checked (relative
    paths under ``spec.folder``, regular files and folders only), then extracted with
    tarfile's ``"data"`` filter where available. Extraction goes to a temporary folder that
    is renamed into place only once every batch file is present (if another process, e.g.
    another distributed rank, put a complete folder there first, that one is kept).
    Raises :class:`CorruptArchiveError` if the archive is unreadable or unsafe.
    """
    data_dir = archive.parent
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}-", dir=data_dir))
    try:
        try:
            _check_gzip(archive)
            with tarfile.open(archive, "r:gz") as tar:
                members = _checked_members(tar, archive, spec.folder)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:
                    tar.extractall(staging, members=members)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            raise CorruptArchiveError(f"{archive} cannot be extracted: {err}") from err
        missing = _missing_batches(staging / spec.folder, spec)
        if missing:
            raise CorruptArchiveError(f"{archive} lacks the batch files {', '.join(missing)}")
        target = data_dir / spec.folder
        try:
            os.replace(staging / spec.folder, target)
        except OSError:
            if _missing_batches(target, spec):
                raise
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_archive(spec: CifarSpec, data_dir: Path) -> Path:
    """Download ``spec.url`` into ``data_dir / spec.archive``, checking its MD5.

    Writes to a temporary file in ``data_dir`` and renames it only after the MD5 matches.
    Raises :class:`DatasetNotFoundError` when the URL cannot be reached and
    :class:`CorruptArchiveError` when the download fails its MD5 check. A download that
    fails (or is interrupted) removes the folders it created for ``data_dir``, if they
    are still empty; folders that were there stay.
    """
    created = [folder for folder in (data_dir, *data_dir.parents) if not folder.exists()]
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        return _download(spec, data_dir)
    except BaseException:
        for folder in created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _download(spec: CifarSpec, data_dir: Path) -> Path:
    target = data_dir / spec.archive
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.archive}-", suffix=".part", dir=data_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(spec.url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=spec.archive) as bar:
                        for chunk in iter(lambda: response.read(_CHUNK), b""):
                            out.write(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, OSError) as err:
                raise DatasetNotFoundError(
                    _not_found_message(spec, data_dir, f"downloading {spec.url} failed ({err})")
                ) from err
        _check_md5(tmp, spec.md5)
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def prepare_cifar(spec: CifarSpec, data_dir: Path, download: bool) -> Path:
    """Return the extracted folder of ``spec`` in ``data_dir``, extracting or downloading it.

    Raises :class:`DatasetNotFoundError` when it is neither present nor downloadable (the
    message names the archive, the directory and the URL), and :class:`CorruptArchiveError`
    when the archive is damaged or unsafe.
    """
    folder = data_dir / spec.folder
    if folder.is_dir():
        missing = _missing_batches(folder, spec)
        if missing:
            raise DatasetNotFoundError(
                f"{folder} is incomplete (missing {', '.join(missing)}); delete it so that "
                f"{spec.archive} is extracted again, or restore the missing files"
            )
        return folder
    archive = data_dir / spec.archive
    if not archive.is_file():
        if not download:
            raise DatasetNotFoundError(
                _not_found_message(spec, data_dir, f"no {spec.archive} and download=False")
            )
        archive = download_archive(spec, data_dir)
    else:
        _check_md5(archive, spec.md5)
    return extract_archive(archive, spec)


def _entry(batch: dict[Any, Any], key: str, path: Path) -> Any:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise ValueError(f"{path}: batch has no {key!r} entry (keys: {sorted(map(str, batch))})")


def load_batch(path: Path, label_key: str, num_classes: int) -> Split:
    """Read one batch file into (images uint8 (N, 3, 32, 32), labels int64 (N,)).

    Raises :class:`UnsafePickleError` (a :class:`pickle.UnpicklingError`) naming ``path`` for
    any global outside the allow-list, and ``ValueError`` naming ``path`` when the file is
    garbled or not a valid batch.
    """
    with open(path, "rb") as f:
        try:
            batch = restricted_load(f)
        except UnsafePickleError as err:
            raise UnsafePickleError(f"{path}: {err}") from None
        except (pickle.UnpicklingError, *_GARBLED_PICKLE_ERRORS) as err:
            raise ValueError(f"{path} is not a valid CIFAR batch pickle: {err!r}") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict, got {type(batch).__name__}")
    data = _entry(batch, "data", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
        raise ValueError(f"{path}: 'data' must be a uint8 array (N, {_PIXELS}), got {data!r:.80}")
    if data.shape[1] != _PIXELS:
        raise ValueError(f"{path}: 'data' has shape {data.shape}, expected (N, {_PIXELS})")
    labels = np.asarray(_entry(batch, label_key, path))
    if labels.dtype.kind not in "iu" or labels.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: {label_key!r} must be {data.shape[0]} integers, got dtype {labels.dtype} "
            f"and shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{path}: {label_key!r} must lie in [0, {num_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    images = torch.from_numpy(data.reshape(-1, *IMAGE_SHAPE).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def _load_files(folder: Path, names: tuple[str, ...], spec: CifarSpec) -> Split:
    parts = [load_batch(folder / name, spec.label_key, spec.num_classes) for name in names]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def load_cifar(name: str, data_dir: Path, download: bool = True) -> tuple[Split, Split]:
    """Load CIFAR ``name`` ("cifar10" or "cifar100") as ((train_x, train_y), (test_x, test_y)).

    Images are uint8 tensors (N, 3, 32, 32) in RGB, labels int64 (N,) in [0, num_classes)
    (CIFAR-100: the 100 fine labels).
    """
    spec = CIFAR_SPECS[name]
    folder = prepare_cifar(spec, data_dir, download)
    return _load_files(folder, spec.train_files, spec), _load_files(folder, spec.test_files, spec)
