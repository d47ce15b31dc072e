"""CIFAR loading from tiny archives fabricated in the exact canonical python format."""

from __future__ import annotations

import builtins
import codecs
import dataclasses
import hashlib
import http.client
import io
import os
import pickle
import re
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from cifar_archive import PER_FILE, dump, make_batch, pack, py2_dumps, write_folder
from dwstft.data import (
    CIFAR_SPECS,
    CorruptArchiveError,
    DatasetNotFoundError,
    UnsafePickleError,
    channel_stats,
    cifar,
    load_cifar,
    load_dataset,
)
from dwstft.data.cifar import ALLOWED_GLOBALS, md5sum, restricted_load


@pytest.fixture
def set_md5(monkeypatch):
    """``set_md5(name, archive)`` makes ``archive``'s MD5 the one expected for ``name``."""

    def apply(name: str, archive: Path) -> None:
        spec = dataclasses.replace(CIFAR_SPECS[name], md5=md5sum(archive))
        monkeypatch.setitem(CIFAR_SPECS, name, spec)

    return apply


@pytest.fixture
def archived(tmp_path, set_md5):
    """A cifar10 archive in ``tmp_path / "data"`` (MD5 patched); (data_dir, batches)."""
    batches = write_folder(tmp_path / "src", "cifar10")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = pack(tmp_path / "src" / "cifar-10-batches-py", data_dir / "cifar-10-python.tar.gz")
    set_md5("cifar10", archive)
    return data_dir, batches


def assert_split(images, labels, batches, files, label_key: bytes | str) -> None:
    data_key = b"data" if isinstance(label_key, bytes) else "data"
    data = np.concatenate([batches[f][data_key] for f in files])
    want = np.concatenate([batches[f][label_key] for f in files])
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert images.shape == (len(data), 3, 32, 32)
    np.testing.assert_array_equal(images.reshape(len(data), -1).numpy(), data)
    np.testing.assert_array_equal(labels.numpy(), want)
    # Row-major 3×32×32: channel c, row r, column col is at c * 1024 + r * 32 + col.
    for i, c, r, col in [(0, 0, 0, 0), (1, 0, 5, 7), (2, 1, 31, 0), (3, 2, 17, 31)]:
        assert images[i, c, r, col] == data[i, c * 1024 + r * 32 + col]


def leftovers(data_dir: Path) -> list[str]:
    """Hidden staging folders or partial downloads left behind."""
    return [p.name for p in data_dir.iterdir() if p.name.startswith(".")]


def test_loads_cifar10_from_archive(archived):
    data_dir, batches = archived
    splits = load_dataset("cifar10", data_dir, download=False)
    spec = CIFAR_SPECS["cifar10"]
    assert_split(splits.train_images, splits.train_labels, batches, spec.train_files, b"labels")
    assert_split(splits.test_images, splits.test_labels, batches, spec.test_files, b"labels")
    assert (splits.name, splits.num_classes, splits.hflip) == ("cifar10", 10, True)
    assert (splits.mean, splits.std) == channel_stats(splits.train_images)
    assert (data_dir / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert leftovers(data_dir) == []


def test_extracted_folder_is_read_as_is(archived):
    data_dir, _ = archived
    load_dataset("cifar10", data_dir, download=False)
    (data_dir / "cifar-10-python.tar.gz").unlink()
    splits = load_dataset("cifar10", data_dir, download=False)
    assert splits.train_images.shape == (5 * PER_FILE, 3, 32, 32)


def test_loads_cifar100_from_folder(tmp_path):
    batches = write_folder(tmp_path, "cifar100")
    splits = load_dataset("cifar100", tmp_path, download=False)
    assert_split(splits.train_images, splits.train_labels, batches, ("train",), b"fine_labels")
    assert_split(splits.test_images, splits.test_labels, batches, ("test",), b"fine_labels")
    assert (splits.num_classes, splits.hflip) == (100, True)


def test_accepts_str_keys(tmp_path):
    batches = write_folder(tmp_path, "cifar10", str_keys=True)
    splits = load_dataset("cifar10", str(tmp_path), download=False)
    assert_split(splits.test_images, splits.test_labels, batches, ("test_batch",), "labels")


def test_reads_python2_pickles(tmp_path):
    batches = write_folder(tmp_path, "cifar10")
    raw = py2_dumps({k.decode(): v for k, v in batches["test_batch"].items()})
    assert b"numpy.core.multiarray" in raw and b"_codecs" not in raw
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(raw)
    splits = load_dataset("cifar10", tmp_path, download=False)
    assert_split(splits.test_images, splits.test_labels, batches, ("test_batch",), b"labels")


def test_allowed_globals_are_exactly_what_numpy_needs():
    assert set(ALLOWED_GLOBALS) == {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }


class SystemCall:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class ExecCall(SystemCall):
    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


class Rot13(SystemCall):
    def __reduce__(self):
        return codecs.encode, (str(self.marker), "rot13")


@pytest.mark.parametrize(
    ("payload", "refused"),
    [(SystemCall, r"\.system"), (ExecCall, r"\.exec"), (Rot13, "rot13")],
)
def test_malicious_pickle_is_refused(tmp_path, payload, refused):
    write_folder(tmp_path, "cifar10")
    marker = tmp_path / "MARKER"
    batch = make_batch(0, "labels", 10)
    batch[b"labels"] = payload(marker)
    dump(tmp_path / "cifar-10-batches-py" / "data_batch_3", batch)
    with pytest.raises(pickle.UnpicklingError, match=refused) as info:
        load_dataset("cifar10", tmp_path, download=False)
    assert isinstance(info.value, UnsafePickleError) and "data_batch_3" in str(info.value)
    assert not marker.exists()


def test_restricted_load_round_trips_protocol2():
    batch = make_batch(7, "labels", 10)
    loaded = restricted_load(io.BytesIO(pickle.dumps(batch, protocol=2)))
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"filenames"] == batch[b"filenames"]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (b"labels", [0, 1, 2, 10], r"in \[0, 10\)"),
        (b"labels", [0, 1, 2], "must be 4 integers"),
        (b"labels", [0.0, 1.0, 2.0, 3.0], "must be 4 integers"),
        (b"data", np.zeros((4, 3072), np.float32), "uint8"),
        (b"data", np.zeros((4, 1024), np.uint8), r"expected \(N, 3072\)"),
        (b"batch_label", None, "no 'data' entry"),
    ],
)
def test_invalid_content_names_the_file(tmp_path, field, value, match):
    write_folder(tmp_path, "cifar10")
    batch = make_batch(0, "labels", 10)
    if value is None:
        del batch[b"data"]
    else:
        batch[field] = value
    dump(tmp_path / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(ValueError, match=match) as info:
        load_dataset("cifar10", tmp_path, download=False)
    assert "test_batch" in str(info.value)


def corrupt(archive: Path, how: str) -> None:
    raw = bytearray(archive.read_bytes())
    if how == "flipped":
        for i in range(len(raw) // 3, len(raw) // 3 + 16):
            raw[i] ^= 0xFF
    else:
        del raw[len(raw) // 2 :]
    archive.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_damaged_archive_fails_md5(archived, how):
    data_dir, _ = archived
    corrupt(data_dir / "cifar-10-python.tar.gz", how)
    with pytest.raises(CorruptArchiveError, match=r"cifar-10-python\.tar\.gz has MD5"):
        load_dataset("cifar10", data_dir, download=False)
    assert not (data_dir / "cifar-10-batches-py").exists()


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_damaged_archive_with_matching_md5_fails_extraction(archived, set_md5, how):
    data_dir, _ = archived
    archive = data_dir / "cifar-10-python.tar.gz"
    corrupt(archive, how)
    set_md5("cifar10", archive)
    with pytest.raises(CorruptArchiveError, match=r"cifar-10-python\.tar\.gz cannot be extracted"):
        load_dataset("cifar10", data_dir, download=False)
    assert not (data_dir / "cifar-10-batches-py").exists()
    assert leftovers(data_dir) == []


def add_member(tar: tarfile.TarFile, name: str, link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is None:
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    else:
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)


@pytest.mark.parametrize(
    ("name", "link"),
    [
        ("../evil", None),
        ("cifar-10-batches-py/../../evil", None),
        ("/tmp/dwstft-absolute-evil", None),
        ("cifar-10-batches-py/evil", "../../evil"),
        ("elsewhere/evil", None),
    ],
)
def test_unsafe_member_is_refused(tmp_path, set_md5, name, link):
    write_folder(tmp_path / "src", "cifar10")
    data_dir = tmp_path / "data" / "cifar"
    data_dir.mkdir(parents=True)
    archive = data_dir / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        add_member(tar, name, link)
    set_md5("cifar10", archive)
    with pytest.raises(CorruptArchiveError, match=r"refusing|outside the expected folder"):
        load_dataset("cifar10", data_dir, download=False)
    assert list(tmp_path.rglob("*evil*")) == []
    assert not Path("/tmp/dwstft-absolute-evil").exists()
    assert not (data_dir / "cifar-10-batches-py").exists()
    assert leftovers(data_dir) == []


def test_incomplete_folder_is_not_used(tmp_path):
    write_folder(tmp_path, "cifar10")
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"incomplete.*data_batch_2"):
        load_dataset("cifar10", tmp_path, download=False)


def assert_names_what_to_put_where(err: DatasetNotFoundError, data_dir: Path) -> None:
    message = str(err)
    assert isinstance(err, FileNotFoundError)
    assert "cifar-100-python.tar.gz" in message
    assert str(data_dir) in message
    assert CIFAR_SPECS["cifar100"].url in message


def test_missing_without_download(tmp_path):
    data_dir = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100", data_dir, download=False)
    assert_names_what_to_put_where(info.value, data_dir)
    assert "download=False" in str(info.value)


def test_missing_and_offline(tmp_path, monkeypatch):
    def unreachable(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar100", tmp_path, download=True)
    assert_names_what_to_put_where(info.value, tmp_path)
    assert "Name or service not known" in str(info.value)
    assert list(tmp_path.iterdir()) == []


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes) -> None:
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def serve(monkeypatch, payload: bytes) -> list[str]:
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        return FakeResponse(payload)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requested


def test_download_then_extract(archived, monkeypatch, tmp_path):
    source, batches = archived
    payload = (source / "cifar-10-python.tar.gz").read_bytes()
    requested = serve(monkeypatch, payload)
    data_dir = tmp_path / "fresh"
    splits = load_dataset("cifar10", data_dir, download=True)
    assert requested == [CIFAR_SPECS["cifar10"].url]
    assert (data_dir / "cifar-10-python.tar.gz").read_bytes() == payload
    assert_split(splits.test_images, splits.test_labels, batches, ("test_batch",), b"labels")
    assert leftovers(data_dir) == []


def test_download_with_wrong_md5_is_discarded(archived, monkeypatch, tmp_path):
    source, _ = archived
    serve(monkeypatch, (source / "cifar-10-python.tar.gz").read_bytes()[:-100])
    data_dir = tmp_path / "fresh"
    with pytest.raises(CorruptArchiveError, match="has MD5"):
        load_dataset("cifar10", data_dir, download=True)
    assert not data_dir.exists()  # the download created it: the failure removes it, empty


def test_specs_carry_the_published_urls_and_checksums():
    # The MD5 sums published on https://www.cs.toronto.edu/~kriz/cifar.html (and used by
    # torchvision's CIFAR10/CIFAR100 datasets), copied here as literal strings.
    published = {
        "cifar10": (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "c58f30108f718f92721af3b95e74349a",
        ),
        "cifar100": (
            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
            "eb9058c3a382ffc7106e4002c42a8d85",
        ),
    }
    assert {name: (s.url, s.md5) for name, s in CIFAR_SPECS.items()} == published
    for spec in CIFAR_SPECS.values():
        assert spec.url.endswith("/" + spec.archive)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="cifar10, cifar100, digits, moving-digits; got 'mnist'"):
        load_dataset("mnist")


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_garbled_batch_file_names_the_file(tmp_path, damage):
    write_folder(tmp_path, "cifar10")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else raw[:20] + b"\xc2" * 99)
    with pytest.raises(ValueError, match=r"data_batch_1 is not a valid CIFAR batch pickle"):
        load_dataset("cifar10", tmp_path, download=False)


def test_archive_missing_batches_is_refused(tmp_path, set_md5):
    write_folder(tmp_path / "src", "cifar10")
    (tmp_path / "src" / "cifar-10-batches-py" / "test_batch").unlink()
    archive = pack(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    set_md5("cifar10", archive)
    with pytest.raises(CorruptArchiveError, match=r"lacks the batch files test_batch"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not (tmp_path / "cifar-10-batches-py").exists()
    assert leftovers(tmp_path) == []


def test_download_creates_missing_parent_folders(archived, monkeypatch, tmp_path):
    source, _ = archived
    serve(monkeypatch, (source / "cifar-10-python.tar.gz").read_bytes())
    data_dir = tmp_path / "not" / "yet" / "there"
    load_dataset("cifar10", data_dir, download=True)
    assert (data_dir / "cifar-10-python.tar.gz").is_file() and leftovers(data_dir) == []


class HTTPResponse(io.BytesIO):
    """A response with real (case-insensitive) HTTP headers; ``on_read`` runs before each
    read, so a test can look at the download folder while the download is in flight."""

    def __init__(self, payload: bytes, length: bool, on_read) -> None:
        super().__init__(payload)
        self.headers = http.client.HTTPMessage()
        if length:
            self.headers["Content-Length"] = str(len(payload))
        self.on_read = on_read

    def read(self, size=-1):
        self.on_read()
        return super().read(size)


class Bar:
    """Records what ``download_archive`` asks of its progress bar."""

    made: list[Bar] = []  # noqa: RUF012

    def __init__(self, **kwargs) -> None:
        self.kwargs, self.done = kwargs, 0
        Bar.made.append(self)

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int) -> None:
        self.done += n


@pytest.mark.parametrize("length", [True, False])
def test_download_stages_in_a_hidden_part_file_beside_the_target(
    archived, monkeypatch, tmp_path, length
):
    source, _ = archived
    payload = (source / "cifar-10-python.tar.gz").read_bytes()
    data_dir = tmp_path / "fresh"
    seen, timeouts = [], []

    def look():
        seen.append(sorted(p.name for p in data_dir.iterdir()))

    def urlopen(url, timeout=None):
        timeouts.append(timeout)
        return HTTPResponse(payload, length, look)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(cifar, "tqdm", Bar)
    Bar.made = []
    assert cifar.download_archive(CIFAR_SPECS["cifar10"], data_dir) == (
        data_dir / "cifar-10-python.tar.gz"
    )
    # while it downloads, the only file is a hidden .part named after the archive, in the
    # target's folder (so the final rename cannot cross file systems)
    assert seen and all(len(names) == 1 for names in seen)
    assert re.fullmatch(r"\.cifar-10-python\.tar\.gz-.+\.part", seen[0][0])
    assert sorted(p.name for p in data_dir.iterdir()) == ["cifar-10-python.tar.gz"]
    # a stalled server cannot hang the download forever
    assert len(timeouts) == 1 and timeouts[0] is not None and 0 < timeouts[0] <= 600
    # the bar counts bytes against Content-Length (unknown without the header)
    (bar,) = Bar.made
    assert bar.kwargs["total"] == (len(payload) if length else None)
    assert bar.done == len(payload)
    assert bar.kwargs["unit"] == "B" and bar.kwargs["unit_scale"] is True
    assert bar.kwargs["desc"] == "cifar-10-python.tar.gz"


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_load_cifar_downloads_by_default(archived, monkeypatch, tmp_path):
    source, _ = archived
    requested = serve(monkeypatch, (source / "cifar-10-python.tar.gz").read_bytes())
    (train_x, _), (test_x, _) = load_cifar("cifar10", tmp_path / "fresh")
    assert requested == [CIFAR_SPECS["cifar10"].url]
    assert train_x.shape == (5 * PER_FILE, 3, 32, 32) and test_x.shape == (PER_FILE, 3, 32, 32)


class Latin1Alias:
    def __reduce__(self):
        return codecs.encode, ("\xe9t\xe9", "latin-1")


def test_both_spellings_of_latin1_are_allowed():
    assert restricted_load(io.BytesIO(pickle.dumps(Latin1Alias(), protocol=2))) == b"\xe9t\xe9"


def test_a_refused_global_is_named_in_the_whole_message(tmp_path):
    message = (
        "refusing to load global __builtin__.exec: a CIFAR batch needs only numpy array "
        "reconstruction"
    )
    payload = pickle.dumps(ExecCall(tmp_path / "MARKER"), protocol=2)
    with pytest.raises(UnsafePickleError, match=exactly(message)):
        restricted_load(io.BytesIO(payload))


def test_an_md5_mismatch_is_the_whole_message(archived):
    data_dir, _ = archived
    archive = data_dir / "cifar-10-python.tar.gz"
    expected = CIFAR_SPECS["cifar10"].md5
    corrupt(archive, "truncated")
    actual = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    message = (
        f"{archive} has MD5 {actual}, expected {expected}: the file is corrupted or "
        "truncated; delete it and download it again"
    )
    with pytest.raises(CorruptArchiveError, match=exactly(message)):
        load_dataset("cifar10", data_dir, download=False)


@pytest.mark.parametrize(
    ("name", "link", "why"),
    [
        ("/tmp/dwstft-absolute-evil", None, "refusing unsafe member path {name!r}"),
        ("\\evil", None, "refusing unsafe member path {name!r}"),
        # a backslash is a separator on Windows: this one would land two folders up there
        ("cifar-10-batches-py/..\\..\\evil", None, "refusing unsafe member path {name!r}"),
        (
            "cifar-10-batches-py/evil",
            "../../evil",
            "refusing member {name!r}: only regular files and folders are expected (no "
            "links or devices)",
        ),
        (
            "elsewhere/evil",
            None,
            "member {name!r} lies outside the expected folder cifar-10-batches-py/",
        ),
    ],
)
def test_each_unsafe_member_is_refused_by_name(tmp_path, set_md5, name, link, why):
    write_folder(tmp_path / "src", "cifar10")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        add_member(tar, name, link)
    set_md5("cifar10", archive)
    with pytest.raises(CorruptArchiveError, match=exactly(f"{archive}: " + why.format(name=name))):
        load_dataset("cifar10", tmp_path, download=False)
    assert not (tmp_path / "cifar-10-batches-py").exists() and leftovers(tmp_path) == []


def test_extraction_stages_in_a_hidden_folder_beside_the_target(archived, monkeypatch):
    data_dir, _ = archived
    staged = []
    extractall = tarfile.TarFile.extractall

    def recording(self, path=".", *args, **kwargs):
        staged.append(Path(path))
        return extractall(self, path, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extractall", recording)
    load_dataset("cifar10", data_dir, download=False)
    (path,) = staged
    assert path.parent == data_dir and re.fullmatch(r"\.cifar-10-batches-py-.+", path.name)
    assert leftovers(data_dir) == []


def test_extraction_drops_setuid_and_group_or_other_write_bits(tmp_path, set_md5):
    write_folder(tmp_path / "src", "cifar10")
    archive = tmp_path / "cifar-10-python.tar.gz"

    def loose(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if info.isfile():
            info.mode = 0o4777
        return info

    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", "cifar-10-batches-py", filter=loose)
    set_md5("cifar10", archive)
    load_dataset("cifar10", tmp_path, download=False)
    for path in (tmp_path / "cifar-10-batches-py").iterdir():
        assert path.stat().st_mode & 0o7022 == 0, (path.name, oct(path.stat().st_mode))


def test_a_complete_folder_put_there_first_is_kept(archived):
    # another process (a DDP rank) finished first: its folder wins, ours is discarded
    data_dir, _ = archived
    write_folder(data_dir, "cifar10")
    (data_dir / "cifar-10-batches-py" / "theirs").write_text("kept")
    target = cifar.extract_archive(data_dir / "cifar-10-python.tar.gz", CIFAR_SPECS["cifar10"])
    assert target == data_dir / "cifar-10-batches-py"
    assert (target / "theirs").read_text() == "kept" and leftovers(data_dir) == []


def test_an_incomplete_folder_in_the_way_is_an_error(archived):
    data_dir, _ = archived
    (data_dir / "cifar-10-batches-py").mkdir()
    (data_dir / "cifar-10-batches-py" / "data_batch_1").write_text("partial")
    with pytest.raises(OSError):
        cifar.extract_archive(data_dir / "cifar-10-python.tar.gz", CIFAR_SPECS["cifar10"])
    assert leftovers(data_dir) == []


def test_missing_batch_files_are_listed(tmp_path, set_md5):
    write_folder(tmp_path / "src", "cifar10")
    for name in ("data_batch_2", "test_batch"):
        (tmp_path / "src" / "cifar-10-batches-py" / name).unlink()
    archive = pack(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    set_md5("cifar10", archive)
    message = f"{archive} lacks the batch files data_batch_2, test_batch"
    with pytest.raises(CorruptArchiveError, match=exactly(message)):
        load_dataset("cifar10", tmp_path, download=False)
    write_folder(tmp_path / "data", "cifar10")
    folder = tmp_path / "data" / "cifar-10-batches-py"
    for name in ("data_batch_2", "test_batch"):
        (folder / name).unlink()
    message = (
        f"{folder} is incomplete (missing data_batch_2, test_batch); delete it so that "
        "cifar-10-python.tar.gz is extracted again, or restore the missing files"
    )
    with pytest.raises(DatasetNotFoundError, match=exactly(message)):
        load_dataset("cifar10", tmp_path / "data", download=False)


def test_a_batch_that_is_not_a_dict_or_lacks_labels_is_named(tmp_path):
    write_folder(tmp_path, "cifar10")
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    dump(path, [1, 2])
    with pytest.raises(ValueError, match=exactly(f"{path}: expected a dict, got list")):
        load_dataset("cifar10", tmp_path, download=False)
    batch = make_batch(0, "labels", 10)
    del batch[b"labels"]
    dump(path, batch)
    prefix = re.escape(f"{path}: batch has no 'labels' entry (keys: ")
    with pytest.raises(ValueError, match="^" + prefix):
        load_dataset("cifar10", tmp_path, download=False)
