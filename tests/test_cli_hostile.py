"""The hostile user, end to end through the real console script.

Every case runs ``dwstft`` in a subprocess, as a user would, and asserts: exit status 2, a
message on one line that names the problem (``dwstft <command>: error: ...``), no
traceback, nothing executed, nothing written outside the output the user named, and no
half-written output left behind. Signals are the exception: Ctrl-C exits 130 and SIGTERM
143, each with one message and no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cifar_archive import dump, make_batch, write_folder
from dwstft.data import CIFAR_SPECS
from dwstft.models import create_model
from dwstft.train import make_config, train

pytestmark = pytest.mark.slow

DWSTFT = shutil.which("dwstft", path=str(Path(sys.executable).parent)) or "dwstft"
#: urllib honours these; a closed local port makes every download fail at once.
OFFLINE = {"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
TRAIN_DIGITS = ["train", "--model", "stftnet_b8_f128", "--dataset", "digits"]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``dwstft ARGS`` in ``cwd`` with a clean debug setting."""
    environment = {k: v for k, v in os.environ.items() if k != "DWSTFT_DEBUG"}
    environment.update(env or {})
    return subprocess.run(
        [DWSTFT, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300
    )


def assert_clean_error(proc: subprocess.CompletedProcess, command: str, *phrases: str) -> str:
    """Exit 2, one stderr line ``dwstft <command>: error: ...`` holding every phrase."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"dwstft {command}: error: "), lines[0]
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


def tree(root: Path) -> set[str]:
    """Every path below ``root``, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A real one-epoch digits run folder (last.pt, best.safetensors, metrics...)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(make_config("fast", model="stftnet_b8_f128", dataset="digits", epochs=1, output=str(out)))
    return out


# --- data -----------------------------------------------------------------------------


class WritesMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_a_forbidden_global_is_refused_and_never_runs(tmp_path):
    write_folder(tmp_path / "data", "cifar10")
    marker = tmp_path / "MARKER"
    batch = make_batch(0, "labels", 10)
    batch[b"labels"] = WritesMarker(marker)
    dump(tmp_path / "data" / "cifar-10-batches-py" / "data_batch_1", batch)
    before = tree(tmp_path)
    proc = run(*TRAIN_DIGITS[:3], "--dataset", "cifar10", "--data-dir", "data", "--output", "o",
               cwd=tmp_path)  # fmt: skip
    assert_clean_error(proc, "train", "data_batch_1", "refusing", "system")
    assert not marker.exists()
    assert tree(tmp_path) == before


def test_a_garbled_pickle_names_the_file(tmp_path):
    write_folder(tmp_path / "data", "cifar10")
    (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02}q\x00(")
    proc = run(*TRAIN_DIGITS[:3], "--dataset", "cifar10", "--data-dir", "data", "--output", "o",
               cwd=tmp_path)  # fmt: skip
    assert_clean_error(proc, "train", "test_batch")
    assert not (tmp_path / "o").exists()


def test_a_tampered_archive_fails_its_checksum(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / CIFAR_SPECS["cifar100"].archive).write_bytes(b"\x1f\x8b not cifar")
    proc = run(*TRAIN_DIGITS[:3], "--dataset", "cifar100", "--data-dir", "data", "--output", "o",
               cwd=tmp_path, env=OFFLINE)  # fmt: skip
    assert_clean_error(proc, "train", "cifar-100-python.tar.gz", "MD5")


def test_missing_data_while_offline_says_where_to_put_it(tmp_path):
    proc = run(*TRAIN_DIGITS[:3], "--dataset", "cifar10", "--data-dir", "empty", "--output", "o",
               cwd=tmp_path, env=OFFLINE)  # fmt: skip
    assert_clean_error(proc, "train", "cifar-10-python.tar.gz", "empty")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("data_dir", ["new", "new/deeper"])
def test_a_failed_download_removes_the_folders_it_created(tmp_path, data_dir):
    proc = run(*TRAIN_DIGITS[:3], "--dataset", "cifar10", "--data-dir", data_dir,
               "--output", "o", cwd=tmp_path, env=OFFLINE)  # fmt: skip
    assert_clean_error(proc, "train", "cifar-10-python.tar.gz", data_dir)
    assert tree(tmp_path) == set()


def test_a_failed_download_keeps_a_folder_that_was_there(tmp_path):
    (tmp_path / "mine" / "empty").mkdir(parents=True)
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    before = tree(tmp_path)
    for data_dir in ("mine", "mine/empty", "mine/empty/new"):
        proc = run(*TRAIN_DIGITS[:3], "--dataset", "cifar100", "--data-dir", data_dir,
                   "--output", "o", cwd=tmp_path, env=OFFLINE)  # fmt: skip
        assert_clean_error(proc, "train", "cifar-100-python.tar.gz", data_dir)
        assert tree(tmp_path) == before
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


# --- damaged checkpoints ----------------------------------------------------------------


def _zip_without_data(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/version", "3\n")


def _damaged_checkpoints(good: Path) -> dict[str, callable]:
    data = good.read_bytes()
    saved = torch.load(good, weights_only=True)
    no_optimizer = {k: v for k, v in saved.items() if k != "optimizer"}
    other_model = {**saved, "config": {**saved["config"], "model": "stftnet_b16_f128"}}
    return {
        "truncated": lambda p: p.write_bytes(data[: len(data) // 2]),
        "random": lambda p: p.write_bytes(os.urandom(4096)),
        "json": lambda p: p.write_text(json.dumps({"epoch": 3})),
        "empty": lambda p: p.write_bytes(b""),
        "zip_without_data": _zip_without_data,
        "no_optimizer": lambda p: torch.save(no_optimizer, p),
        "config_names_another_model": lambda p: torch.save(other_model, p),
    }


CHECKPOINT_CASES = [
    "truncated",
    "random",
    "json",
    "empty",
    "zip_without_data",
    "no_optimizer",
    "config_names_another_model",
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_resume_from_a_damaged_checkpoint(tmp_path, finished_run, case):
    bad = tmp_path / "run" / "last.pt"
    bad.parent.mkdir()
    _damaged_checkpoints(finished_run / "last.pt")[case](bad)
    before = tree(tmp_path)
    proc = run("train", "--resume", str(bad), cwd=tmp_path)
    assert_clean_error(proc, "train", str(bad))
    assert tree(tmp_path) == before


def test_resume_from_a_folder_says_it_is_a_folder(tmp_path, finished_run):
    proc = run("train", "--resume", str(finished_run), cwd=tmp_path)
    assert_clean_error(proc, "train", "is a folder", "last.pt")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
@pytest.mark.parametrize("damage", ["truncated", "random", "empty"])
def test_eval_of_a_damaged_checkpoint(tmp_path, finished_run, suffix, damage):
    source = finished_run / ("best.safetensors" if suffix == ".safetensors" else "last.pt")
    data = source.read_bytes()
    bad = tmp_path / f"weights{suffix}"
    bad.write_bytes(
        {"truncated": data[: len(data) // 2], "random": os.urandom(4096), "empty": b""}[damage]
    )
    proc = run("eval", "--checkpoint", str(bad), "--model", "stftnet_b8_f128",
               "--dataset", "digits", cwd=tmp_path)  # fmt: skip
    assert_clean_error(proc, "eval", str(bad))


def key_counts(saved: dict, model: str) -> tuple[int, int]:
    """(missing, unexpected): keys of ``model`` (10 classes, 1 channel) not in ``saved``,
    and keys of ``saved`` not in the model."""
    expected = set(create_model(model, num_classes=10, in_chans=1).state_dict())
    return len(expected - set(saved)), len(set(saved) - expected)


@pytest.mark.parametrize("command", ["eval", "export"])
def test_weights_of_another_model_are_counted_not_listed(tmp_path, command):
    # A safetensors file without metadata: nothing records which model it holds.
    state = create_model("stftnet_b8_f128", num_classes=10, in_chans=1).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    args = {"eval": ["--dataset", "digits"], "export": ["--format", "onnx"]}[command]
    proc = run(command, "--checkpoint", "w.safetensors", "--model", "shufflenetv2", *args,
               cwd=tmp_path)  # fmt: skip
    missing, unexpected = key_counts(state, "shufflenetv2")
    line = assert_clean_error(
        proc, command, "'shufflenetv2'", f"{missing} missing keys (first: ",
        f"{unexpected} unexpected keys (first: ",
    )  # fmt: skip
    assert len(line) < 500, line


def test_resume_of_another_models_weights_counts_the_keys(tmp_path, finished_run):
    saved = torch.load(finished_run / "last.pt", weights_only=True)
    other = create_model("shufflenetv2", num_classes=10, in_chans=1).state_dict()
    bad = tmp_path / "run" / "last.pt"
    bad.parent.mkdir()
    torch.save({**saved, "model": other}, bad)
    proc = run("train", "--resume", str(bad), cwd=tmp_path)
    missing, unexpected = key_counts(other, "stftnet_b8_f128")
    line = assert_clean_error(
        proc, "train", str(bad), f"{missing} missing keys (first: ",
        f"{unexpected} unexpected keys (first: ",
    )  # fmt: skip
    assert len(line) < 500, line


# --- outputs ----------------------------------------------------------------------------


def test_train_output_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("mine")
    proc = run(*TRAIN_DIGITS, "--output", "taken", cwd=tmp_path)
    assert_clean_error(proc, "train", "taken", "not a folder")
    assert (tmp_path / "taken").read_text() == "mine"


def test_train_output_below_a_file(tmp_path):
    (tmp_path / "file").write_text("mine")
    proc = run(*TRAIN_DIGITS, "--output", "file/run", cwd=tmp_path)
    assert_clean_error(proc, "train", "file/run")


def test_train_output_that_cannot_be_written(tmp_path):
    proc = run(*TRAIN_DIGITS, "--output", "/proc/dwstft-run", cwd=tmp_path)
    assert_clean_error(proc, "train", "/proc/dwstft-run")


@pytest.mark.parametrize(
    ("output", "phrase"),
    [("folder.png", "is a folder"), ("file/x.png", "is a file"), ("/proc/x.png", "/proc")],
)
def test_viz_output_that_cannot_be_written(tmp_path, output, phrase):
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file").write_text("mine")
    before = tree(tmp_path)
    proc = run("viz", "basis", "--output", output, cwd=tmp_path)
    assert_clean_error(proc, "viz basis", phrase)
    assert tree(tmp_path) == before


def test_bench_output_is_checked_before_the_benchmark_runs(tmp_path):
    (tmp_path / "folder").mkdir()
    proc = run("bench", "models", "--models", "mobilenetv2", "--output", "folder", cwd=tmp_path)
    assert_clean_error(proc, "bench models", "is a folder")


# --- devices ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "phrase"), [("bogus", "not a device name"), ("cuda", "not available")]
)
def test_train_on_a_device_this_machine_lacks(tmp_path, device, phrase):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run(*TRAIN_DIGITS, "--output", "o", "--device", device, cwd=tmp_path)
    assert_clean_error(proc, "train", f"--device {device!r}", phrase)
    assert not (tmp_path / "o").exists()


def test_eval_on_a_bogus_device(tmp_path, finished_run):
    proc = run("eval", "--checkpoint", str(finished_run / "best.safetensors"),
               "--device", "bogus", cwd=tmp_path)  # fmt: skip
    assert_clean_error(proc, "eval", "'bogus'")


@pytest.mark.parametrize(
    "bench",
    [
        ["layer", "--rounds", "1"],
        ["pipeline", "--rounds", "1"],
        ["models", "--models", "mobilenetv2", "--rounds", "1"],
        ["lpq", "--images", "1", "--no-compile"],
        ["budget", "--models", "stftnet_b8_f128"],
        ["compile", "stftnet_b8_f128"],
    ],
)
def test_every_bench_refuses_a_bogus_device_before_running(tmp_path, bench):
    proc = run("bench", *bench, "--device", "bogus", cwd=tmp_path)
    assert_clean_error(proc, f"bench {bench[0]}", "--device 'bogus' is not a device name")
    assert proc.stdout == ""


# --- run folders: no silent data loss ---------------------------------------------------


def test_simultaneous_starts_on_one_folder_run_exactly_one(tmp_path):
    n = 4
    environment = {k: v for k, v in os.environ.items() if k != "DWSTFT_DEBUG"}
    procs = [
        subprocess.Popen(
            [DWSTFT, *TRAIN_DIGITS, "--epochs", "1", "--recipe", "fast", "--output", "shared"],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    winners = [r for r in results if r[0].returncode == 0]
    losers = [r for r in results if r[0].returncode != 0]
    assert len(winners) == 1 and len(losers) == n - 1
    for proc, _, stderr in losers:
        line = assert_clean_error(
            subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr), "train"
        )
        assert "in use by process" in line or "already holds a run" in line
    shared = tmp_path / "shared"
    assert [r["epoch"] for r in map(json.loads, (shared / "metrics.jsonl").open())] == [1]
    assert torch.load(shared / "last.pt", weights_only=True)["epoch"] == 1
    assert not list(shared.glob(".*.tmp"))


def test_resume_into_a_folder_holding_another_run_is_refused(tmp_path, finished_run):
    other = tmp_path / "other"
    shutil.copytree(finished_run, other)
    (other / "config.json").write_text('{"mine": true}')
    before = {p: p.read_bytes() for p in other.iterdir() if p.is_file()}
    proc = run("train", "--resume", str(finished_run / "last.pt"), "--output", str(other),
               cwd=tmp_path)  # fmt: skip
    assert_clean_error(proc, "train", "already holds a run")
    assert {p: p.read_bytes() for p in other.iterdir() if p.is_file()} == before


def started_run(folder: Path, model: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real run of ``model`` on digits stopped (Ctrl-C) before its first epoch: the folder
    holds its config.json and a resumable last.pt (epoch 0)."""
    from dwstft.train import TrainingInterrupted, loop

    def ctrl_c(run):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_run_epoch", ctrl_c)
    with pytest.raises(TrainingInterrupted):
        train(make_config("fast", model=model, dataset="digits", epochs=1, output=str(folder)))
    return folder


def test_resuming_a_checkpoint_copied_into_another_runs_folder_is_refused(
    tmp_path, finished_run, monkeypatch
):
    # issue 23.2: run M's last.pt (mobilenetv2) copied into a copy of run R (stftnet)
    other = started_run(tmp_path / "M", "mobilenetv2", monkeypatch)
    copy = tmp_path / "R"
    shutil.copytree(finished_run, copy)
    shutil.copy(other / "last.pt", copy / "last.pt")
    before = {p: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    proc = run("train", "--resume", str(copy / "last.pt"), cwd=tmp_path)
    ids = [json.loads((f / "config.json").read_text()).get("run_id") for f in (other, copy)]
    assert_clean_error(proc, "train", f"run {ids[0]} (mobilenetv2 on digits)", str(other),
                       f"run {ids[1]} (stftnet_b8_f128 on digits)", str(copy / "config.json"),
                       "empty --output")  # fmt: skip
    assert {p: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


def test_a_new_run_over_a_finished_one_is_refused(tmp_path, finished_run):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    proc = run(*TRAIN_DIGITS, "--output", str(copy), cwd=tmp_path)
    assert_clean_error(proc, "train", "already holds a run", "--resume")


def test_resume_removes_the_litter_of_a_hard_kill(tmp_path, finished_run):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    litter = [copy / ".last.pt.k1ll3d.tmp", copy / ".best.safetensors.x9.tmp"]
    litter += [copy / ".metrics.jsonl.q.tmp"]
    for path in litter:
        path.write_bytes(b"\0" * 1024)
    keep = copy / ".notes.tmp"
    keep.write_text("not ours")
    proc = run("train", "--resume", str(copy / "last.pt"), "--epochs", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not any(p.exists() for p in litter) and keep.exists()


# --- signals: Ctrl-C exits 130, SIGTERM 143, each with one message and no traceback ------


def start(*args: str, cwd: Path) -> tuple[subprocess.Popen, Path]:
    """``dwstft ARGS`` started in ``cwd``; returns the process and the file its stderr
    goes to."""
    environment = {k: v for k, v in os.environ.items() if k != "DWSTFT_DEBUG"}
    fd, name = tempfile.mkstemp(prefix="stderr-", suffix=".txt", dir=cwd)
    with os.fdopen(fd, "w") as err:
        proc = subprocess.Popen(
            [DWSTFT, *args], cwd=cwd, env=environment, stdout=subprocess.DEVNULL, stderr=err
        )
    return proc, Path(name)


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll ``condition`` every 5 ms while ``proc`` runs (at most 300 s)."""
    deadline = time.monotonic() + 300
    while True:
        with contextlib.suppress(OSError):
            if condition():
                return
        assert proc.poll() is None, f"dwstft ended (status {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.005)


def nonblank_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/PID/maps")
def test_ctrl_c_while_torch_is_imported_is_one_line(tmp_path):
    proc, err = start(*TRAIN_DIGITS, "--output", "run", cwd=tmp_path)
    maps = Path(f"/proc/{proc.pid}/maps")
    # torch's shared libraries are mapped: its import (a second or more) has begun
    wait_until(lambda: "/torch/lib/" in maps.read_text(), proc, "torch's import")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130, err.read_text()
    assert nonblank_lines(err) == ["interrupted"], err.read_text()


def test_a_killed_runs_lock_file_is_reused_and_sigterm_saves_last_pt(tmp_path):
    new_run = [*TRAIN_DIGITS, "--recipe", "fast", "--epochs", "1", "--output", "run"]
    folder = tmp_path / "run"
    last, lock = folder / "last.pt", folder / ".dwstft.lock"
    resume = ["train", "--resume", str(last)]
    # kill -9 once last.pt (before epoch 1) exists: the kernel drops the lock, its file stays
    proc, _ = start(*new_run, cwd=tmp_path)
    wait_until(last.exists, proc, "last.pt")
    proc.kill()
    proc.wait(timeout=60)
    assert lock.read_text() == f"process {proc.pid}"
    # SIGTERM in epoch 1 of the resumed run: last.pt is named, exit 143, no lock file left
    proc, err = start(*resume, cwd=tmp_path)
    wait_until(lambda: "epoch 1/1" in err.read_text(), proc, "epoch 1")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143, err.read_text()
    assert "Traceback" not in err.read_text()
    assert [line for line in nonblank_lines(err) if "last.pt" in line] == [
        f"terminated by SIGTERM; {last} holds the state after epoch 0. Resume with: "
        f"dwstft train --resume {last}"
    ]
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert not lock.exists() and not list(folder.glob(".*.tmp"))
    # and the run resumes to its end
    done = run(*resume, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").open()] == [1]
    assert not lock.exists()


# --- small things -----------------------------------------------------------------------


def test_binary_metrics_name_the_file(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_bytes(b"\xff\xfe\x00binary")
    proc = run("viz", "curves", "run", "--output", "c.png", cwd=tmp_path)
    assert_clean_error(proc, "viz curves", "metrics.jsonl", "not UTF-8")
    assert not (tmp_path / "c.png").exists()


def test_an_image_that_is_a_folder(tmp_path):
    (tmp_path / "pics").mkdir()
    proc = run("viz", "features", "--image", "pics", "--output", "f.png", cwd=tmp_path)
    assert_clean_error(proc, "viz features", "is a folder")


def test_a_bad_option_value_is_one_line_too(tmp_path):
    proc = run(*TRAIN_DIGITS, "--epochs", "0", "--output", "o", cwd=tmp_path)
    assert_clean_error(proc, "train", "--epochs", "must be an int >= 1", "--help")


def test_a_model_table_for_no_classes_is_refused(tmp_path):
    proc = run("models", "--num-classes", "0", cwd=tmp_path)
    assert_clean_error(proc, "models", "--num-classes", "must be an int >= 1")


def test_debug_shows_the_traceback(tmp_path):
    proc = run(*TRAIN_DIGITS, "--output", "o", "--device", "bogus", "--debug", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" in proc.stderr
    assert "DeviceUnavailableError" in proc.stderr


# --- export -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "phrase"),
    [("folder", "is a folder"), ("file/x.onnx", "is a file"), ("/proc/x.onnx", "/proc")],
)
def test_export_output_that_cannot_be_written(tmp_path, finished_run, output, phrase):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("mine")
    before = tree(tmp_path)
    proc = run("export", "--checkpoint", str(finished_run / "best.safetensors"),
               "--format", "onnx", "--output", output, cwd=tmp_path)  # fmt: skip
    assert_clean_error(proc, "export", phrase)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_at_an_input_size_the_model_cannot_take_writes_nothing(tmp_path, finished_run, fmt):
    proc = run("export", "--checkpoint", str(finished_run / "best.safetensors"),
               "--format", fmt, "--input-size", "1", "1", "1", "--output", "m.out",
               cwd=tmp_path)  # fmt: skip
    assert_clean_error(proc, "export", "--input-size 1 1 1")
    assert tree(tmp_path) == set()


def export_args(checkpoint: Path, output: str, *extra: str) -> tuple[str, ...]:
    return ("export", "--checkpoint", str(checkpoint), "--format", "onnx", "--optimize",
            "portable", "--output", output, *extra)  # fmt: skip


def test_export_never_replaces_an_existing_file_unless_forced(tmp_path, finished_run):
    mine = tmp_path / "m.onnx"
    mine.write_text("mine")
    proc = run(*export_args(finished_run / "best.safetensors", "m.onnx"), cwd=tmp_path)
    assert_clean_error(proc, "export", "'m.onnx' already exists", "--force", "another --output")
    assert proc.stdout == "" and mine.read_text() == "mine" and tree(tmp_path) == {"m.onnx"}
    proc = run(*export_args(finished_run / "best.safetensors", "m.onnx", "--force"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert mine.read_bytes()[:2] != b"mi" and tree(tmp_path) == {"m.onnx"}


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_export_never_writes_over_a_run_folders_own_files(tmp_path, finished_run, force):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    before = {p: p.read_bytes() for p in copy.iterdir()}
    names = ["last.pt", "best.safetensors", "config.json", "metrics.jsonl", "summary.csv"]
    for name in names:
        proc = run(*export_args(copy / "best.safetensors", f"run/{name}", *force), cwd=tmp_path)
        phrase = "would overwrite the checkpoint" if name == "best.safetensors" else "run folder"
        assert_clean_error(proc, "export", f"'run/{name}'", phrase, "another --output")
    assert {p: p.read_bytes() for p in copy.iterdir()} == before


def test_export_by_default_writes_beside_the_checkpoint_once(tmp_path, finished_run):
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    args = ("export", "--checkpoint", "run/best.safetensors", "--format", "torchscript")
    assert run(*args, cwd=tmp_path).returncode == 0
    written = copy / "best.torchscript.pt"
    assert written.is_file()
    assert_clean_error(run(*args, cwd=tmp_path), "export", "already exists", "--force")
    assert run(*args, "--force", cwd=tmp_path).returncode == 0


def test_an_exported_digits_checkpoint_runs_on_real_digits(tmp_path, finished_run):
    # issue 23.4: the ONNX graph was built for 32x32 and refused the 8x8 digits
    import onnxruntime

    from dwstft.data import load_dataset, normalize
    from dwstft.train.checkpoint import model_from_checkpoint

    checkpoint = finished_run / "best.safetensors"
    proc = run("export", "--checkpoint", str(checkpoint), "--format", "onnx", "--output",
               "m.onnx", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "input (1, 8, 8)" in proc.stdout
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    assert session.get_inputs()[0].shape[1:] == [1, 8, 8]
    digits = load_dataset("digits")
    images = normalize(digits.test_images, digits.mean, digits.std)
    got = torch.as_tensor(session.run(None, {session.get_inputs()[0].name: images.numpy()})[0])
    with torch.no_grad():
        expected = model_from_checkpoint(checkpoint).model(images)
    assert got.shape == (360, 10)
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max().item())
