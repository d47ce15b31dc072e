"""``evaluate_checkpoint`` in-process (the CLI tests run it in a subprocess): its report
against an independent pass over the test split, and its refusals."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

from cifar_archive import pack, write_folder
from dwstft.data import load_dataset
from dwstft.data.cifar import CIFAR_SPECS, md5sum
from dwstft.errors import CheckpointError
from dwstft.models import create_model
from dwstft.train.checkpoint import save_weights
from dwstft.train.evaluate import evaluate_checkpoint

MODEL = "stftnet_b8_f128"


def reference_report(model: torch.nn.Module, dataset: str, data_dir=None) -> tuple:
    """(mean cross-entropy, correct, count) of ``model`` over the test split, written out:
    normalise as the paper's pipeline does, one forward pass, argmax."""
    splits = load_dataset(dataset, data_dir, download=False)
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    x = (splits.test_images.float() / 255 - mean) / std
    with torch.no_grad():
        logits = model.eval()(x)
    loss = F.cross_entropy(logits, splits.test_labels).item()
    correct = int((logits.argmax(1) == splits.test_labels).sum())
    return loss, correct, len(splits.test_labels)


@pytest.fixture(scope="module")
def digits_weights(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=10, in_chans=1)
    path = tmp_path_factory.mktemp("weights") / "best.safetensors"
    save_weights(path, model.state_dict(), {"model": MODEL, "dataset": "digits", "epoch": "3"})
    return path, model


def test_report_matches_an_independent_pass_over_the_test_split(digits_weights):
    path, model = digits_weights
    loss, correct, count = reference_report(model, "digits")
    report = evaluate_checkpoint(path, device="cpu", batch_size=64)
    assert 0 < correct < count  # a random model: neither none nor all right
    assert report == {
        "checkpoint": str(path),
        "model": MODEL,
        "dataset": "digits",
        "epoch": 3,
        "test_loss": pytest.approx(loss, rel=1e-5),
        "test_acc": pytest.approx(correct / count),
        "correct": correct,
        "count": count,
    }


def test_channels_last_evaluation_gives_the_same_report(digits_weights):
    path, _ = digits_weights
    plain = evaluate_checkpoint(path, device="cpu")
    assert evaluate_checkpoint(path, device="cpu", channels_last=True) == {
        **plain,
        "test_loss": pytest.approx(plain["test_loss"], rel=1e-5),
    }


def test_amp_evaluates_in_bfloat16_on_the_cpu(digits_weights):
    path, _ = digits_weights
    exact = evaluate_checkpoint(path, device="cpu")["test_loss"]
    mixed = evaluate_checkpoint(path, device="cpu", amp=True)["test_loss"]
    assert mixed != exact and mixed == pytest.approx(exact, rel=2e-2)


def test_channels_last_is_refused_for_clips(tmp_path):
    model = create_model("video_stft_tiny", num_classes=40, in_chans=1)
    path = tmp_path / "best.safetensors"
    save_weights(path, model.state_dict(), {"model": "video_stft_tiny", "dataset": "moving-digits"})
    message = (
        "--channels-last needs images (N, C, H, W), but moving-digits holds clips "
        "(N, C, T, H, W); drop --channels-last"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        evaluate_checkpoint(path, device="cpu", channels_last=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_name": "mobilenetv2"}, "argument model is 'mobilenetv2' but the checkpoint was "),
        ({"dataset": "cifar10"}, "argument dataset is 'cifar10' but the checkpoint was trained "),
    ],
)
def test_arguments_that_contradict_the_checkpoint_are_refused(digits_weights, kwargs, message):
    path, _ = digits_weights
    with pytest.raises(ValueError, match=message):
        evaluate_checkpoint(path, device="cpu", **kwargs)


@pytest.mark.parametrize("missing", ["model", "dataset"])
def test_what_the_checkpoint_does_not_record_is_required(tmp_path, missing):
    model = create_model(MODEL, num_classes=10, in_chans=1)
    metadata = {k: v for k, v in {"model": MODEL, "dataset": "digits"}.items() if k != missing}
    path = tmp_path / "best.safetensors"
    save_weights(path, model.state_dict(), metadata)
    with pytest.raises(ValueError, match=f"argument {missing} is required: the checkpoint"):
        evaluate_checkpoint(path, device="cpu")
    given = {"model_name": MODEL} if missing == "model" else {"dataset": "digits"}
    assert evaluate_checkpoint(path, device="cpu", **given)["epoch"] is None


def test_weights_of_another_model_name_the_file_and_the_mismatch(tmp_path):
    path = tmp_path / "best.safetensors"
    other = create_model("stftnet_b16_f128", num_classes=10, in_chans=1)
    save_weights(path, other.state_dict(), {"dataset": "digits"})
    expected = create_model(MODEL, num_classes=10, in_chans=1).state_dict()
    saved = other.state_dict()
    assert saved.keys() == expected.keys()  # the two presets differ in widths only
    wrong = [
        f"{k}: {tuple(saved[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if saved[k].shape != v.shape
    ]
    with pytest.raises(CheckpointError) as caught:
        evaluate_checkpoint(path, MODEL, device="cpu")
    assert str(caught.value) == (
        f"checkpoint {str(path)!r} does not fit --model {MODEL!r} (num_classes=10): "
        f"{len(wrong)} shape mismatches (first: {', '.join(wrong[:3])}). Expected weights "
        f"saved from {MODEL!r}; pass the --model and --dataset it was trained with"
    )


def test_a_bare_state_dict_and_a_training_checkpoint_evaluate_like_safetensors(
    tmp_path, digits_weights
):
    # eval and export read weights through one reader: a torch.save'd state dict (which
    # export took) and a training checkpoint without its optimizer state evaluate too
    path, model = digits_weights
    expected = evaluate_checkpoint(path, device="cpu")
    torch.save(model.state_dict(), tmp_path / "raw.pt")
    raw = evaluate_checkpoint(tmp_path / "raw.pt", MODEL, "digits", device="cpu")
    assert raw == {**expected, "checkpoint": str(tmp_path / "raw.pt"), "epoch": None}
    config = {"model": MODEL, "dataset": "digits"}
    torch.save({"epoch": 3, "model": model.state_dict(), "config": config}, tmp_path / "w.pt")
    assert evaluate_checkpoint(tmp_path / "w.pt", device="cpu") == {
        **expected,
        "checkpoint": str(tmp_path / "w.pt"),
    }


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("junk.safetensors", b"junk", "is not a valid safetensors file"),
        ("empty.safetensors", None, "holds no state dict"),
        ("junk.pt", b"junk", "cannot be read with torch.load(weights_only=True)"),
        ("list.pt", [1, 2], "holds no state dict"),
        ("untyped.pt", {"model": {"w": [1.0]}}, "holds no state dict"),
    ],
)
def test_every_unreadable_checkpoint_is_one_error_naming_the_file(tmp_path, name, content, phrase):
    path = tmp_path / name
    if content is None:
        save_weights(path, {}, {"model": MODEL})
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(CheckpointError) as caught:
        evaluate_checkpoint(path, MODEL, "digits", device="cpu")
    assert str(path) in str(caught.value) and phrase in str(caught.value)


def test_cifar_is_read_from_the_given_data_dir(tmp_path, monkeypatch):
    write_folder(tmp_path / "src", "cifar10")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = pack(tmp_path / "src" / "cifar-10-batches-py", data_dir / "cifar-10-python.tar.gz")
    spec = dataclasses.replace(CIFAR_SPECS["cifar10"], md5=md5sum(archive))
    monkeypatch.setitem(CIFAR_SPECS, "cifar10", spec)
    torch.manual_seed(0)
    model = create_model(MODEL, num_classes=10)
    path = tmp_path / "best.safetensors"
    save_weights(path, model.state_dict(), {"model": MODEL, "dataset": "cifar10"})
    loss, correct, count = reference_report(model, "cifar10", data_dir)
    report = evaluate_checkpoint(path, device="cpu", data_dir=str(data_dir))
    assert (report["correct"], report["count"]) == (correct, count)
    assert report["test_loss"] == pytest.approx(loss, rel=1e-5)
