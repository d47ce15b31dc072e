"""The training loop behind ``dwstft train``.

One call, :func:`train`, runs a whole :class:`~dwstft.train.config.TrainConfig`: data from
:func:`dwstft.data.load_dataset` kept on the training device, batches from
:class:`~dwstft.data.DeviceLoader` (augmented there as ``config.augment`` says),
the model from the registry, then per epoch: train, evaluate on the test split, log, write
the run folder.

Run folder (``config.output``), every file replaced atomically: ``config.json`` at the
start; after each epoch ``metrics.jsonl`` + ``summary.csv`` (see
:mod:`dwstft.train.metrics`), ``best.safetensors`` (weights of the best test accuracy so
far) and ``last.pt`` (everything needed to resume; also written before the first epoch);
``curves.png`` at most every :data:`CURVES_EVERY_S` seconds and at the end.

Reproducibility: the data order and augmentation derive from (seed, epoch, rank) inside the
loader, and the global torch RNG (dropout, if a model has any) is reseeded from (seed,
epoch, rank) at the start of every epoch, so the RNG state at an epoch boundary is a
function of the config alone and ``last.pt`` needs no generator states. Resuming from
``last.pt`` after epoch k therefore replays epochs k+1.. exactly as the uninterrupted run
(bit for bit on CPU).

Ctrl-C: the state at the last completed epoch is what survives. ``last.pt`` is rewritten at
the end of every epoch, so an interrupt mid-epoch loses only that epoch's partial work; an
interrupt that lands after an epoch finished but before its files were written writes them
first. Either way :class:`TrainingInterrupted` names the checkpoint to resume from. The
``dwstft`` command turns SIGTERM into such an interrupt too (exit status 143). Under
torchrun, a SIGTERM to torchrun reaches every rank (torchrun passes it on): rank 0, the only
writer, saves as above and every rank exits. A rank signalled alone exits, and torchrun
stops the others as after any failed rank.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from dwstft.data import BatchAugment, DatasetSplits, DeviceLoader, load_dataset
from dwstft.data.augment import CropFlipRotate
from dwstft.data.loader import derive_seed
from dwstft.errors import CheckpointError, DwstftError
from dwstft.models import create_model
from dwstft.train.checkpoint import (
    atomic_write_text,
    key_mismatch,
    load_checkpoint,
    save_checkpoint,
    save_weights,
)
from dwstft.train.config import TrainConfig, merge_resumed, saved_config
from dwstft.train.distributed import DistContext, any_rank, barrier, setup, teardown
from dwstft.train.evaluate import amp_dtype_for, autocast, evaluate
from dwstft.train.metrics import Meter, Record, TensorBoardLogger, write_history
from dwstft.train.optim import build_optimizer, lr_at, set_lr
from dwstft.train.run_folder import claim_run_folder

#: torch.compile modes that capture CUDA graphs.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
#: Steps between host synchronisations (progress bar refresh, non-finite loss check).
SYNC_EVERY = 10
#: Minimum seconds between two renderings of curves.png during a run (one takes ~0.2 s
#: on a CPU core); the final epoch is always drawn.
CURVES_EVERY_S = 30.0
_DROPOUT_STREAM = 2


class RunSetupError(DwstftError, ValueError):
    """The run cannot start as configured: the batch sizes do not fit the data or the
    number of processes. (A run folder that cannot be used raises
    :class:`~dwstft.errors.RunFolderError`.)"""


class NonFiniteLossError(DwstftError, RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving that state (the CLI
    exits with status 1: the input was valid, the training diverged).

    Attributes: ``epoch`` (1-based) and ``step`` (1-based training step, or None when the
    training loss stayed finite and the test loss after the epoch did not), the ``loss``
    value, and ``checkpoint``: the last good ``last.pt`` (or None if none was written).
    """

    exit_status = 1

    def __init__(self, epoch: int, step: int | None, loss: float, checkpoint: Path | None) -> None:
        self.epoch, self.step, self.loss, self.checkpoint = epoch, step, loss, checkpoint
        where = f"last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint written"
        what = (
            f"training loss ({loss}) at epoch {epoch}, step {step}"
            if step is not None
            else f"test loss ({loss}) after epoch {epoch}"
        )
        super().__init__(
            f"non-finite {what}; stopped without saving this state ({where}). "
            "Lower --lr, enable --clip-grad, or check the data."
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another interrupt, ``cause``) stopped the run; ``checkpoint``
    (``last.pt``) holds the state after ``epoch`` completed epochs and resumes exactly.

    The message starts with ``cause``'s (default "interrupted"); ``exit_status`` is
    ``cause``'s, default 130 (128 + SIGINT).
    """

    def __init__(
        self, epoch: int, checkpoint: Path, cause: KeyboardInterrupt | None = None
    ) -> None:
        self.epoch, self.checkpoint = epoch, checkpoint
        self.exit_status: int = getattr(cause, "exit_status", 130)
        reason = (str(cause) if cause is not None else "") or "interrupted"
        super().__init__(
            f"{reason}; {checkpoint} holds the state after epoch {epoch}. Resume with: "
            f"dwstft train --resume {checkpoint}"
        )


@dataclass
class TrainResult:
    """What a finished run produced: its folder, per-epoch records and the accuracies."""

    run_dir: Path
    history: list[Record]
    best_acc: float
    best_epoch: int

    @property
    def final_acc(self) -> float:
        """Test accuracy (0..1) after the last epoch."""
        return self.history[-1]["test_acc"]


@dataclass
class _Run:
    """Mutable state of a run in progress (what ``last.pt`` stores, plus live objects)."""

    config: TrainConfig
    ctx: DistContext
    run_dir: Path
    model: nn.Module
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    criterion: nn.Module
    train_loader: DeviceLoader
    test_loader: DeviceLoader
    epoch: int = 0
    saved_epoch: int = -1
    best: dict[str, Any] = field(default_factory=lambda: {"test_acc": -1.0, "epoch": 0})
    history: list[Record] = field(default_factory=list)
    curves_drawn_at: float | None = -math.inf  # None: matplotlib is missing

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "last.pt"


def train(config: TrainConfig) -> TrainResult:
    """Run (or, with ``config.resume``, continue) training; returns the finished run.

    Under torchrun the process joins the DDP group first (see :mod:`.distributed`).

    Raises:
        ValueError: invalid config.
        RunFolderError: ``config.output`` cannot be used: not a writable folder, in use by
            another process, or holding another run (see :mod:`.run_folder`).
        CheckpointError: ``config.resume`` cannot be read or does not fit the run.
        RunSetupError: a batch size does not fit the data or the number of processes.
        NonFiniteLossError: the loss became NaN/inf (``last.pt`` keeps the last good epoch).
        TrainingInterrupted: Ctrl-C; ``last.pt`` holds the last completed epoch.
    """
    config.validate()
    ctx = setup(config.device)
    run = None
    try:
        if config.compile_mode in CUDA_GRAPH_MODES and ctx.device.type != "cuda":
            raise RunSetupError(
                f"--compile-mode {config.compile_mode} (--cuda-graphs) replays CUDA graphs and "
                f"needs a CUDA device, but the run is on {ctx.device}; drop it on the CPU"
            )
        saved = load_checkpoint(config.resume) if config.resume else None
        recorded = saved_config(config.resume, saved["config"]) if saved is not None else None
        config = _identified(config, recorded)
        owner = (
            claim_run_folder(config.output, config.resume, recorded)
            if ctx.is_main
            else nullcontext()
        )
        with owner:
            run = _build_run(config, ctx, saved)
            result = _fit(run)
        # Every rank is done communicating before any rank leaves the group: gloo's worker
        # threads abort the process (SIGABRT at exit) when the group is destroyed under them.
        barrier(ctx)
        return result
    finally:
        if ctx.distributed:
            # Free the DDP wrapper (and its reducer) while the process group and the
            # interpreter are alive: left to interpreter exit, gloo's threads abort it.
            run = None
            gc.collect()
        teardown(ctx)


def _identified(config: TrainConfig, recorded: TrainConfig | None) -> TrainConfig:
    """``config`` with its run's identity: a resumed run (``recorded``: the config its
    ``last.pt`` holds) keeps the checkpoint's ``run_id`` (None for a checkpoint written
    before run ids), a new run without one gets a random ``uuid4().hex``. Only rank 0
    writes it anywhere.

    Raises:
        ValueError: ``config`` sets a training setting differently from the checkpoint.
    """
    if recorded is not None:
        merge_resumed(recorded, {**config.to_dict(), "run_id": None})
        return dataclasses.replace(config, run_id=recorded.run_id)
    if config.run_id is None:
        return dataclasses.replace(config, run_id=uuid.uuid4().hex)
    return config


def _build_run(config: TrainConfig, ctx: DistContext, saved: dict[str, Any] | None) -> _Run:
    for name in ("batch_size", "final_batch_size"):
        if getattr(config, name) % ctx.world_size:
            raise RunSetupError(
                f"{name} must be divisible by the number of processes ({ctx.world_size}), "
                f"got {getattr(config, name)}"
            )
    run_dir = Path(config.output)
    splits = load_dataset(config.dataset, config.data_dir)
    if config.channels_last and splits.train_images.ndim != 4:
        raise RunSetupError(
            f"--channels-last needs images (N, C, H, W), but {config.dataset} holds clips "
            f"(N, C, T, H, W); drop --channels-last"
        )
    torch.manual_seed(config.seed)
    model = create_model(
        config.model, num_classes=splits.num_classes, in_chans=splits.train_images.shape[1]
    ).to(ctx.device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    fp16 = config.amp and amp_dtype_for(ctx.device, config.amp_dtype) == torch.float16
    scaler = torch.amp.GradScaler(ctx.device.type) if fp16 else None
    net = _wrap(model, config, ctx)
    train_loader, test_loader = _loaders(splits, config, ctx)
    largest = max(config.batch_size, config.final_batch_size)
    if config.drop_last and largest > train_loader.num_samples * ctx.world_size:
        raise RunSetupError(
            f"batch size {largest} exceeds the {len(splits.train_labels)} training samples, "
            "so drop_last leaves no batch; lower --batch-size/--final-batch-size"
        )
    run = _Run(
        config=config,
        ctx=ctx,
        run_dir=run_dir,
        model=model,
        net=net,
        optimizer=optimizer,
        scaler=scaler,
        criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
        train_loader=train_loader,
        test_loader=test_loader,
    )
    if saved is not None:
        _restore(run, saved, config.resume)
    return run


def _wrap(model: nn.Module, config: TrainConfig, ctx: DistContext) -> nn.Module:
    """DDP (under torchrun) and then torch.compile (with ``config.compile``)."""
    net: nn.Module = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if config.compile:
        net = torch.compile(net, mode=config.compile_mode)
    return net


def _loaders(
    splits: DatasetSplits, config: TrainConfig, ctx: DistContext
) -> tuple[DeviceLoader, DeviceLoader]:
    """(training loader: shuffled, augmented; test loader: sequential), sharded by rank; both
    normalised with ``config.norm_mean``/``norm_std``, or the training split's statistics."""
    common = {"rank": ctx.rank, "world_size": ctx.world_size, "device": ctx.device}
    mean = splits.mean if config.norm_mean is None else config.norm_mean
    std = splits.std if config.norm_std is None else config.norm_std
    train_loader = DeviceLoader(
        splits.train_images,
        splits.train_labels,
        config.batch_size // ctx.world_size,
        mean,
        std,
        augment=_augmentation(config, splits.hflip),
        drop_last=config.drop_last,
        seed=config.seed,
        **common,
    )
    test_loader = DeviceLoader(
        splits.test_images,
        splits.test_labels,
        config.validation_batch_size,
        mean,
        std,
        shuffle=False,
        **common,
    )
    return train_loader, test_loader


def _augmentation(config: TrainConfig, hflip: bool) -> BatchAugment | CropFlipRotate:
    """``config.augment``'s augmentation; flips only where the dataset allows them."""
    if config.augment == "crop_flip_rotate":
        return CropFlipRotate(
            padding=config.crop_padding, hflip=hflip, max_rotation=config.max_rotation
        )
    return BatchAugment(hflip=hflip, max_shift=config.max_shift, max_rotation=config.max_rotation)


def _restore(run: _Run, saved: dict[str, Any], path: str) -> None:
    """Load ``last.pt``'s state (read from ``path``) into ``run``.

    Raises:
        CheckpointError: the saved weights or optimizer state do not fit the run's model.
    """
    load_errors = (RuntimeError, ValueError, KeyError, TypeError)
    try:
        run.model.load_state_dict(saved["model"])
    except load_errors as err:
        keys = key_mismatch(run.model.state_dict(), saved["model"])
        raise _misfit(run, path, keys or _first_two_lines(err)) from None
    try:
        run.optimizer.load_state_dict(saved["optimizer"])
        if run.scaler is not None and saved["scaler"]:
            run.scaler.load_state_dict(saved["scaler"])
    except load_errors as err:
        raise _misfit(run, path, _first_two_lines(err)) from None
    run.epoch = run.saved_epoch = int(saved["epoch"])
    run.best = dict(saved["best"])
    run.history = [dict(r) for r in saved["history"]]


def _first_two_lines(error: BaseException) -> str:
    """The first two lines of ``error``'s message (torch's heading and first complaint),
    or its type's name when it has none."""
    first = str(error).strip().splitlines()
    if not first:
        return type(error).__name__
    return first[0] + ("; " + first[1].strip() if len(first) > 1 else "")


def _misfit(run: _Run, path: str, detail: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path!r} does not fit model {run.config.model!r} ({detail}); it was "
        "saved from another model or is damaged"
    )


def _fit(run: _Run) -> TrainResult:
    config, ctx = run.config, run.ctx
    tensorboard = TensorBoardLogger(run.run_dir) if ctx.is_main else None
    if ctx.is_main:
        atomic_write_text(run.run_dir / "config.json", json.dumps(config.to_dict(), indent=2))
        resumed = run.saved_epoch >= 0
        if not resumed or not run.checkpoint_path.exists():
            # A new run, or one resumed into another (empty) folder: that folder holds a
            # resumable last.pt before the first epoch, so an interrupt names a real file.
            _persist(run)
        elif run.history:
            write_history(run.run_dir, run.history)
        if resumed and run.history:
            _draw_curves(run)
        _announce(run)
    try:
        while run.epoch < config.epochs:
            record = _run_epoch(run)
            run.history.append(record)
            if record["test_acc"] > run.best["test_acc"]:
                run.best = {"test_acc": record["test_acc"], "epoch": record["epoch"]}
            run.epoch += 1
            if ctx.is_main:
                _persist(run, new_best=run.best["epoch"] == record["epoch"])
                tensorboard.log(record)
                tqdm.write(_epoch_line(record, config.epochs), file=sys.stdout)
    except KeyboardInterrupt as interrupt:
        if ctx.is_main and run.epoch > run.saved_epoch:
            _persist(run, new_best=run.best["epoch"] == run.epoch)
        if ctx.is_main and run.history:
            _draw_curves(run, run.history[: run.saved_epoch])
        raise TrainingInterrupted(run.saved_epoch, run.checkpoint_path, interrupt) from None
    finally:
        if tensorboard is not None:
            tensorboard.close()
    if ctx.is_main and run.history:
        _draw_curves(run)
        last = run.history[-1]
        print(
            f"final test accuracy {100 * last['test_acc']:.2f}% (epoch {last['epoch']}); "
            f"best {100 * run.best['test_acc']:.2f}% (epoch {run.best['epoch']}); "
            f"run folder {run.run_dir}"
        )
    return TrainResult(run.run_dir, run.history, run.best["test_acc"], run.best["epoch"])


def _announce(run: _Run) -> None:
    config, ctx = run.config, run.ctx
    params = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    start = f"resuming after epoch {run.epoch}" if run.epoch else "starting"
    procs = f" x {ctx.world_size} processes" if ctx.distributed else ""
    print(
        f"{start}: {config.model} ({params:,} trainable parameters) on {config.dataset}, "
        f"recipe {config.recipe}, {config.epochs} epochs, {ctx.device}{procs} -> {run.run_dir}"
    )


def _run_epoch(run: _Run) -> Record:
    """Train one epoch, evaluate, and return the epoch's record (global numbers)."""
    config, ctx, epoch = run.config, run.ctx, run.epoch
    start = time.perf_counter()
    torch.manual_seed(derive_seed(config.seed, epoch, _DROPOUT_STREAM, ctx.rank))
    loader = run.train_loader
    loader.set_epoch(epoch)
    loader.batch_size = config.batch_size_at(epoch) // ctx.world_size
    train_loss, train_acc, count, lr = _train_epoch(run)
    train_seconds = time.perf_counter() - start
    test_loss, test_acc, _ = evaluate(
        run.net,
        run.test_loader,
        ctx,
        amp=config.amp,
        amp_dtype=config.amp_dtype,
        channels_last=config.channels_last,
    )
    if not math.isfinite(test_loss):
        raise NonFiniteLossError(epoch + 1, None, test_loss, _last_good(run))
    return {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "train_acc": train_acc,
        "test_loss": test_loss,
        "test_acc": test_acc,
        "lr": lr,
        "batch_size": config.batch_size_at(epoch),
        "seconds": time.perf_counter() - start,
        "images_per_s": count / train_seconds,
    }


def _train_epoch(run: _Run) -> tuple[float, float, int, float]:
    """One pass over the training loader: (mean loss, accuracy, samples, last lr)."""
    config, ctx, loader, epoch = run.config, run.ctx, run.train_loader, run.epoch
    steps = len(loader)
    run.net.train()
    meter = Meter(ctx.device)
    step_losses = torch.zeros(steps, device=ctx.device)
    images = steps * loader.batch_size if loader.drop_last else loader.num_samples
    bar = tqdm(
        total=images * ctx.world_size,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="img",
        unit_scale=True,
        leave=False,
        disable=not ctx.is_main,
        dynamic_ncols=True,
    )
    lr, shown = config.lr, 0
    with bar:
        for step, (x, y) in enumerate(loader):
            lr = lr_at(config, epoch + step / steps)
            set_lr(run.optimizer, lr)
            loss, logits = _step(run, x, y)
            meter.update(logits, y, loss)
            step_losses[step] = loss.detach()
            if (step + 1) % SYNC_EVERY == 0 or step + 1 == steps:
                _check_finite(run, step_losses[: step + 1])
                loss_sum, correct, seen = meter.sums.tolist()
                bar.update((seen - shown) * ctx.world_size)
                shown = seen
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.2%}")
    train_loss, train_acc, count = meter.compute(ctx)
    return train_loss, train_acc, count, lr


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward and optimiser step on one batch; returns (loss, logits)."""
    config = run.config
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(run.ctx.device, config.amp, config.amp_dtype):
        logits = run.net(x)
        loss = run.criterion(logits.float(), y)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is not None:
        run.scaler.scale(loss).backward()
        if config.clip_grad is not None:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), config.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    else:
        loss.backward()
        if config.clip_grad is not None:
            nn.utils.clip_grad_norm_(run.model.parameters(), config.clip_grad)
        run.optimizer.step()
    return loss, logits


def _check_finite(run: _Run, step_losses: torch.Tensor) -> None:
    """Raise :class:`NonFiniteLossError` (on every rank) if any rank saw a NaN/inf loss."""
    bad = (~torch.isfinite(step_losses)).nonzero()
    if not any_rank(bad.numel() > 0, run.ctx):
        return
    if bad.numel() > 0:
        step, value = int(bad[0]) + 1, float(step_losses[bad[0]])
    else:
        step, value = len(step_losses), math.nan
    raise NonFiniteLossError(run.epoch + 1, step, value, _last_good(run))


def _last_good(run: _Run) -> Path | None:
    """``last.pt`` if this run has written one, else None."""
    return run.checkpoint_path if run.saved_epoch >= 0 else None


def _persist(run: _Run, new_best: bool = False) -> None:
    """Write the run folder for the current state (rank 0 only): best weights if the last
    epoch set a new best, then ``last.pt``, then the metrics files, and the curves if the
    last rendering is older than :data:`CURVES_EVERY_S`."""
    if new_best:
        metadata = {
            "model": run.config.model,
            "dataset": run.config.dataset,
            "epoch": str(run.best["epoch"]),
            "test_acc": repr(run.best["test_acc"]),
        }
        if run.config.run_id is not None:
            metadata["run_id"] = run.config.run_id
        save_weights(run.run_dir / "best.safetensors", run.model.state_dict(), metadata)
    state = {
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else {},
        "best": dict(run.best),
        "history": [dict(r) for r in run.history],
        "config": run.config.to_dict(),
    }
    save_checkpoint(run.checkpoint_path, state)
    run.saved_epoch = run.epoch
    if run.history:
        write_history(run.run_dir, run.history)
        drawn = run.curves_drawn_at
        if drawn is not None and time.monotonic() - drawn >= CURVES_EVERY_S:
            _draw_curves(run)


def _draw_curves(run: _Run, history: list[Record] | None = None) -> None:
    """Render curves.png from ``history`` (default: the whole run so far); without
    matplotlib (the ``viz`` extra) say once that it is skipped."""
    history = run.history if history is None else history
    if not history or run.curves_drawn_at is None:
        return
    try:
        from dwstft.train.curves import plot_curves
    except ImportError:
        print(
            "note: curves.png is not drawn: matplotlib is not installed "
            "(pip install 'dwstft[viz]'); metrics.jsonl and summary.csv hold the numbers",
            file=sys.stderr,
        )
        run.curves_drawn_at = None
        return
    plot_curves({run.config.model: history}, run.run_dir / "curves.png", _title(run.config))
    run.curves_drawn_at = time.monotonic()


def _title(config: TrainConfig) -> str:
    return f"{config.model} on {config.dataset} ({config.recipe} recipe)"


def _epoch_line(record: Record, epochs: int) -> str:
    return (
        f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f} "
        f"acc {100 * record['train_acc']:6.2f}%  test loss {record['test_loss']:.4f} "
        f"acc {100 * record['test_acc']:6.2f}%  lr {record['lr']:.3g}  "
        f"batch {record['batch_size']}  {record['seconds']:.1f} s"
    )
