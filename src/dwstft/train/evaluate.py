"""Test-set evaluation: inside the training loop (sharded under DDP) and from a saved
checkpoint (``dwstft eval``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dwstft.data import DeviceLoader, load_dataset
from dwstft.device import resolve_device
from dwstft.train.checkpoint import build_model, load_weights
from dwstft.train.distributed import DistContext
from dwstft.train.metrics import Meter

SINGLE_PROCESS = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def amp_dtype_for(device: torch.device, amp_dtype: str | None) -> torch.dtype:
    """The autocast dtype: ``amp_dtype`` if given, else bfloat16 on CPU and float16 on CUDA."""
    if amp_dtype is not None:
        return getattr(torch, amp_dtype)
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(
    device: torch.device, amp: bool, amp_dtype: str | None = None
) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``device`` when ``amp`` is on, else a no-op context."""
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype_for(device, amp_dtype))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    ctx: DistContext = SINGLE_PROCESS,
    *,
    amp: bool = False,
    amp_dtype: str | None = None,
    channels_last: bool = False,
) -> tuple[float, float, int]:
    """(mean cross-entropy, accuracy 0..1, samples) of ``model`` over ``loader``'s split.

    ``loader`` must not shuffle or augment. Under DDP each rank evaluates its shard and the
    sums are all-reduced; the wrap-around padding that evens out the shards is excluded, so
    every test sample counts exactly once. The model is put in eval mode and returned to its
    previous mode afterwards.
    """
    if loader.shuffle or (loader.augment is not None and loader.augment.enabled):
        raise ValueError("loader must be sequential and unaugmented for evaluation")
    n = loader.images.shape[0]
    valid = len(range(loader.rank, n, loader.world_size))
    was_training = model.training
    model.eval()
    meter = Meter(loader.device)
    seen = 0
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(loader.device, amp, amp_dtype):
            logits = model(x)
        keep = min(len(y), valid - seen)
        seen += len(y)
        if keep <= 0:
            continue
        logits, y = logits[:keep].float(), y[:keep]
        meter.update(logits, y, F.cross_entropy(logits, y))
    model.train(was_training)
    return meter.compute(ctx)


def evaluate_checkpoint(
    checkpoint: str | Path,
    model_name: str | None = None,
    dataset: str | None = None,
    *,
    data_dir: str | None = None,
    device: str | None = None,
    batch_size: int = 500,
    amp: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Evaluate the weights in ``checkpoint`` (``best.safetensors``, ``last.pt`` or a
    ``torch.save``'d state dict; see :func:`dwstft.train.checkpoint.load_weights`) on the
    test split.

    ``model_name`` and ``dataset`` default to those recorded in the checkpoint; when given
    and the checkpoint records others, ValueError. Returns a dict with ``checkpoint``,
    ``model``, ``dataset``, ``epoch``, ``test_loss``, ``test_acc`` (0..1), ``correct`` and
    ``count``.
    """
    weights = load_weights(checkpoint)
    model_name = _pick("model", model_name, weights.recorded("model"))
    dataset = _pick("dataset", dataset, weights.recorded("dataset"))
    dev = resolve_device(device)
    splits = load_dataset(dataset, data_dir)
    if channels_last and splits.train_images.ndim != 4:
        raise ValueError(
            f"--channels-last needs images (N, C, H, W), but {dataset} holds clips "
            f"(N, C, T, H, W); drop --channels-last"
        )
    in_chans = splits.train_images.shape[1]
    advice = "pass the --model and --dataset it was trained with"
    model = build_model(weights, model_name, splits.num_classes, in_chans, advice).model
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    loader = DeviceLoader(
        splits.test_images,
        splits.test_labels,
        batch_size,
        splits.mean,
        splits.std,
        shuffle=False,
        device=dev,
    )
    loss, acc, count = evaluate(model, loader, amp=amp, channels_last=channels_last)
    return {
        "checkpoint": str(checkpoint),
        "model": model_name,
        "dataset": dataset,
        "epoch": int(weights.info["epoch"]) if "epoch" in weights.info else None,
        "test_loss": loss,
        "test_acc": acc,
        "correct": round(acc * count),
        "count": count,
    }


def _pick(name: str, given: str | None, recorded: str | None) -> str:
    if given is None and recorded is None:
        raise ValueError(f"argument {name} is required: the checkpoint does not record it")
    if given is not None and recorded is not None and given != recorded:
        raise ValueError(
            f"argument {name} is {given!r} but the checkpoint was trained with {recorded!r}"
        )
    return given if given is not None else recorded
