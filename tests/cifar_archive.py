"""Tiny CIFAR batch files and archives in the exact canonical python format (protocol-2
pickles of dicts with byte-string keys, as Python 2 + numpy 1 wrote them), for tests."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from dwstft.data import CIFAR_SPECS

PER_FILE = 4  # images per batch file


class Py2Pickler(pickle._Pickler):
    """Writes str and bytes as Python 2 byte strings, as the original CIFAR files are."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + len(data).to_bytes(4, "little") + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_string
    dispatch[str] = save_py2_string


def py2_dumps(obj: object) -> bytes:
    """A protocol-2 pickle as Python 2 + numpy 1 wrote it (numpy.core names, byte strings)."""
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_batch(seed: int, label_key: str, num_classes: int, str_keys: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    batch = {
        b"batch_label": f"batch {seed}".encode(),
        label_key.encode(): rng.integers(0, num_classes, PER_FILE).tolist(),
        b"data": rng.integers(0, 256, (PER_FILE, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(PER_FILE)],
    }
    if label_key == "fine_labels":
        batch[b"coarse_labels"] = [label // 5 for label in batch[b"fine_labels"]]
    return {k.decode(): v for k, v in batch.items()} if str_keys else batch


def dump(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_folder(root: Path, name: str, str_keys: bool = False) -> dict[str, dict]:
    """Write ``name``'s extracted folder under ``root``; return the batches by file name."""
    spec = CIFAR_SPECS[name]
    folder = root / spec.folder
    folder.mkdir(parents=True)
    batches = {}
    for i, file in enumerate(spec.batch_files):
        batches[file] = make_batch(i, spec.label_key, spec.num_classes, str_keys)
        dump(folder / file, batches[file])
    if name == "cifar10":
        meta = {b"label_names": [f"class{i}".encode() for i in range(10)], b"num_vis": 3072}
        dump(folder / "batches.meta", meta)
    else:
        meta = {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        }
        dump(folder / "meta", meta)
    return batches


def pack(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive
