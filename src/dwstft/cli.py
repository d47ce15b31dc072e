"""The ``dwstft`` command. Each subcommand's options are declared here; the work lives in
the modules it calls (imported lazily, so ``dwstft --help`` stays fast)."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from dwstft._allocator import configure_allocator
from dwstft._atomic import atomic_write_text, prepare_output_file
from dwstft.errors import DeviceUnavailableError, DwstftError

if TYPE_CHECKING:
    from dwstft.deploy.export import ExportReport
    from dwstft.deploy.quantize import DatasetArrays

#: Exit status of every expected, user-caused failure (argparse's own convention).
EXIT_USAGE = 2
#: Exit status after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130
#: Exit status after SIGTERM (128 + SIGTERM): a scheduler, ``docker stop`` or ``kill``.
EXIT_TERMINATED = 143
#: Setting this environment variable to 1 shows tracebacks for expected failures too.
DEBUG_ENV = "DWSTFT_DEBUG"
#: Failures the user can cause and fix: rendered on one line, exit status 2. Anything else
#: is a bug and keeps its traceback.
EXPECTED_ERRORS = (DwstftError, ValueError, OSError)


def _shown_default(default: object) -> str | None:
    """An option's default as a user would type it (list items joined by spaces), or None
    when there is none worth showing (None, False, an empty string or list)."""
    if default is None or default is False or default is argparse.SUPPRESS:
        return None
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default)) or None
    return str(default) or None


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, ending an option's help with ``[default: ...]`` whenever it has
    a default worth showing and its help does not already give one in that form."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        shown = _shown_default(action.default)
        if action.help and shown is not None and "[default:" not in action.help:
            return f"{action.help} [default: {shown.replace('%', '%%')}]"
        return action.help


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dwstft train: error: ... (see dwstft train --help)``
    and exit status 2, instead of the usage block followed by the error; every option's
    help shows its default (:class:`_HelpFormatter`)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _debug_option() -> argparse.ArgumentParser:
    """The ``--debug`` flag every subcommand takes (a parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        help=f"show the Python traceback of an expected error too (or set {DEBUG_ENV}=1)",
    )
    return parent


_COMMON = [_debug_option()]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(
        prog="dwstft",
        description="Depthwise-STFT separable CNNs: train, evaluate, benchmark, export.",
        epilog=(
            "Expected failures (bad input, damaged files, a busy run folder, a missing "
            "device) print one line 'dwstft <command>: error: ...' and exit with status 2; "
            "a non-finite loss exits 1, Ctrl-C 130, SIGTERM 143."
        ),
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    for add in (
        _add_train,
        _add_eval,
        _add_models,
        _add_bench,
        _add_reproduce,
        _add_viz,
        _add_export,
    ):
        add(sub)
    return parser


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", parents=_COMMON, help="Markdown table of every registered model")
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'stftnet_*'")
    p.add_argument(
        "--num-classes",
        type=_positive_int,
        default=100,
        help="classes of the head the parameters count",
    )
    p.set_defaults(handler=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from dwstft.models import list_models
    from dwstft.models.complexity import models_table

    names = list_models(args.pattern)
    if not names:
        raise ValueError(
            f"no registered model matches {args.pattern!r}; run `dwstft models` for the list"
        )
    print(models_table(names, args.num_classes))
    return 0


#: Help of every benchmark's --device and --rounds.
_DEVICE_HELP = "where to run: cpu, cuda, cuda:1, ..."
_ROUNDS_HELP = "interleaved rounds: each times every candidate once; the table gives medians"


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks measured side by side (ratios)")
    what = p.add_subparsers(dest="bench_target", required=True, metavar="TARGET")
    layer = what.add_parser(
        "layer",
        parents=_COMMON,
        help="the layer's execution paths vs 1x1 (R0), depthwise-separable (R1) and dense (R2)",
        description=(
            "Time forward + backward of the Depthwise-STFT separable layer (C -> F, n x n), "
            "each execution path and auto, against three references on the same input, "
            "interleaved, as ratios to R0. R0: a 1x1 conv 8C -> F on precomputed STFT maps, "
            "the lower bound (the layer's own pointwise product and nothing else). R1: "
            "nn.Conv2d depthwise n x n + 1x1 C -> F, the standard depthwise-separable layer. "
            "R2: the dense nn.Conv2d(C, F, n). With --dims 1 or 3 the same for the 1-D or "
            "3-D layer (2 or 26 maps per channel instead of 8) against nn.Conv1d/nn.Conv3d."
        ),
    )
    layer.add_argument(
        "--dims",
        type=int,
        choices=(1, 2, 3),
        default=2,
        help="spatial dimensions: 1 (audio-like), 2 (the paper's layer), 3 (video)",
    )
    layer.add_argument("-b", "--batch-size", type=int, help="default: 32 (1-D), 64 (2-D), 8 (3-D)")
    layer.add_argument("--rounds", type=int, default=7, help=_ROUNDS_HELP)
    layer.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    layer.add_argument(
        "--channels-last", action="store_true", help="inputs in channels_last (2-D only)"
    )
    layer.add_argument("--compile", action="store_true", help="add torch.compile(auto layer)")
    layer.add_argument(
        "--kernel-sizes",
        type=_kernel_size,
        nargs="+",
        metavar="N",
        help="n values; in 3-D also TxHxW (e.g. 1x3x3); default: 3 5 (2-D), "
        "3 5 9 15 21 (1-D), 3 1x3x3 3x1x1 5 (3-D)",
    )
    layer.add_argument("--output", help="also write the Markdown table to this file")
    layer.set_defaults(handler=_run_bench_layer)
    pipeline = what.add_parser(
        "pipeline",
        parents=_COMMON,
        help="training images/s: on-device pipeline vs per-image DataLoader",
    )
    pipeline.add_argument(
        "--model", default="stftnet_b8_f128", help="registered model the timed steps train"
    )
    pipeline.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    pipeline.add_argument(
        "-b", "--batch-size", type=_positive_int, default=64, help="images per training step"
    )
    pipeline.add_argument(
        "--batches",
        type=_positive_int,
        default=30,
        help="training steps timed per pipeline, split evenly over the rounds",
    )
    pipeline.add_argument(
        "--rounds",
        type=_positive_int,
        default=3,
        help="interleaved rounds: each times its share of --batches of every pipeline in turn",
    )
    pipeline.add_argument(
        "--images",
        type=_positive_int,
        default=5000,
        help="random CIFAR-shaped images the pipelines draw batches from",
    )
    pipeline.add_argument(
        "--workers",
        type=_nonneg_int,
        nargs="+",
        default=[0, 2],
        help="DataLoader num_workers, one row each",
    )
    pipeline.add_argument("--output", help="also write the Markdown table to this file")
    pipeline.set_defaults(handler=_run_bench_pipeline)
    budget = what.add_parser(
        "budget",
        parents=_COMMON,
        help="hours `reproduce table2` takes here: each row's throughput at its recipe's batches",
    )
    budget.add_argument("--models", nargs="+", help="rows (default: every Table 2 row)")
    budget.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    budget.add_argument("--rounds", type=_positive_int, default=5, help=_ROUNDS_HELP)
    budget.add_argument(
        "--compile-mode",
        help="also measure under torch.compile with this mode (default, reduce-overhead, ...)",
    )
    budget.add_argument(
        "--capture",
        action="store_true",
        help="also measure the eager step captured as one CUDA graph (CUDA only)",
    )
    budget.add_argument(
        "--extra-batches",
        type=_positive_int,
        nargs="+",
        default=[],
        help="also measure every row at these batch sizes (the hours use the recipe's)",
    )
    budget.add_argument(
        "--amp", action="store_true", help="forward and loss under bfloat16 autocast"
    )
    budget.add_argument("--output", help="also write the Markdown table to this file")
    budget.set_defaults(handler=_run_bench_budget)
    compiled = what.add_parser(
        "compile",
        parents=_COMMON,
        help="torch.compile of a training step: cold/warm compile seconds and speed-up",
    )
    compiled.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        default=["stftnet_b8_f128", "mobilenetv2"],
        help="model names, or layer:C,F,n,impl for one layer",
    )
    compiled.add_argument(
        "--steps",
        type=_positive_int,
        default=10,
        help="training steps timed eager and compiled (the table gives the median)",
    )
    compiled.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    compiled.add_argument("--mode", help="torch.compile mode, e.g. reduce-overhead (CUDA)")
    compiled.add_argument("--output", help="also write the Markdown table to this file")
    compiled.set_defaults(handler=_run_bench_compile)
    models = what.add_parser(
        "models", parents=_COMMON, help="every model: params, MACs, speed, memory"
    )
    models.add_argument("--models", nargs="+", help="names (default: every registered model)")
    models.add_argument("--rounds", type=_positive_int, default=5, help=_ROUNDS_HELP)
    models.add_argument(
        "--runtime",
        choices=("pytorch", "onnxruntime"),
        default="pytorch",
        help=(
            "pytorch: every model in PyTorch; onnxruntime: each model's ONNX export "
            "(written to a temporary folder) in onnxruntime on the CPU, batch-1 latency and "
            "batch-64 throughput, beside the unmodified model in PyTorch eager"
        ),
    )
    models.add_argument(
        "--optimize",
        nargs="+",
        choices=("onnxruntime", "portable", "fold", "none", "int8"),
        help=(
            "with --runtime onnxruntime: one row per export kind (default: onnxruntime; "
            "int8: the portable graph quantized, calibrated on random images, for speed)"
        ),
    )
    models.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    models.add_argument(
        "--channels-last", action="store_true", help="models and inputs in channels_last"
    )
    models.add_argument(
        "--compile-mode",
        help="run every model under torch.compile with this mode (default, reduce-overhead "
        "for CUDA graphs, ...); compiles before timing",
    )
    models.add_argument("--json", help="write the results here (input of `dwstft viz pareto`)")
    models.add_argument("--output", help="also write the Markdown table to this file")
    models.add_argument(
        "--profile", metavar="MODEL", help="instead: profile one training step of MODEL"
    )
    models.set_defaults(handler=_run_bench_models)
    lpq = what.add_parser(
        "lpq",
        parents=_COMMON,
        help="dwstft.lpq images/s against a straightforward NumPy/SciPy LPQ",
    )
    lpq.add_argument(
        "--images", type=_positive_int, default=256, help="random crops each timed call takes"
    )
    lpq.add_argument("--size", type=_positive_int, default=128, help="crop side in pixels")
    lpq.add_argument(
        "--window-size", type=_positive_int, default=7, help="LPQ window side, odd, >= 3"
    )
    lpq.add_argument("--rounds", type=_positive_int, default=5, help=_ROUNDS_HELP)
    lpq.add_argument("--device", default="cpu", help=_DEVICE_HELP)
    lpq.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time lpq(compile=True), after its first call",
    )
    lpq.add_argument("--output", help="also write the Markdown table to this file")
    lpq.set_defaults(handler=_run_bench_lpq)


def _run_bench_models(args: argparse.Namespace) -> int:
    _check_outputs(args)
    import torch

    from dwstft.bench.models import (
        format_models_table,
        profile_training_step,
        run_models_benchmark,
        write_json,
    )
    from dwstft.device import resolve_device

    resolve_device(args.device)  # a clear refusal of a bad --device, before any work
    if args.profile:
        print(profile_training_step(args.profile, args.device))
        return 0
    if args.runtime == "onnxruntime":
        return _run_bench_runtime(args)
    if args.optimize:
        raise ValueError("--optimize applies to --runtime onnxruntime only")
    results = run_models_benchmark(
        args.models,
        args.device,
        args.rounds,
        channels_last=args.channels_last,
        compile_mode=args.compile_mode,
    )
    device = torch.device(args.device)
    table = format_models_table(results, device, args.channels_last)
    if args.compile_mode:
        table = f"torch.compile(mode={args.compile_mode}) for every model; " + table
    _emit(table, args.output)
    if args.json:
        write_json(results, args.json, device, "dwstft " + " ".join(sys.argv[1:]))
    return 0


def _run_bench_runtime(args: argparse.Namespace) -> int:
    import torch

    from dwstft.bench.models import format_runtime_table, run_runtime_benchmark, write_json
    from dwstft.deploy.verify import require_onnx

    if args.device != "cpu" or args.channels_last:
        raise ValueError(
            "--runtime onnxruntime runs on the CPU in NCHW: drop --device/--channels-last"
        )
    require_onnx()
    optimizations = tuple(dict.fromkeys(args.optimize or ["onnxruntime"]))
    results = run_runtime_benchmark(args.models, optimizations, args.rounds)
    table = format_runtime_table(results)
    _emit(table, args.output)
    if args.json:
        write_json(results, args.json, torch.device("cpu"), "dwstft " + " ".join(sys.argv[1:]))
    return 0


def _run_bench_budget(args: argparse.Namespace) -> int:
    _check_outputs(args)
    from dwstft.bench.budget import format_budget_table, run_budget
    from dwstft.bench.measure import machine_description
    from dwstft.device import resolve_device
    from dwstft.train.table2 import TABLE2_MODELS

    device = resolve_device(args.device)
    if args.capture and device.type != "cuda":
        raise DeviceUnavailableError(
            f"--capture records CUDA graphs and needs --device cuda; got {device}"
        )
    models = tuple(args.models or TABLE2_MODELS)
    rows = run_budget(
        models,
        device,
        args.rounds,
        args.compile_mode,
        args.capture,
        tuple(args.extra_batches),
        args.amp,
    )
    header = (
        f"{machine_description(device)}; training images/s of one optimiser step at each "
        "batch size of the row's recipe (reproduce table2 --recipe auto), interleaved; hours "
        "= CIFAR-10 + CIFAR-100 training images over those rates (evaluation not counted)"
        + (f"; compiled: torch.compile(mode={args.compile_mode})" if args.compile_mode else "")
        + ("; captured: the eager step as one CUDA graph" if args.capture else "")
        + ("; bfloat16 autocast" if args.amp else "")
    )
    table = format_budget_table(rows, header)
    _emit(table, args.output)
    return 0


def _run_bench_compile(args: argparse.Namespace) -> int:
    _check_outputs(args)
    import torch

    from dwstft.bench.compile import format_compile_table, run_compile_benchmark
    from dwstft.bench.measure import machine_description
    from dwstft.device import resolve_device

    device = resolve_device(args.device)
    results = run_compile_benchmark(args.targets, args.steps, str(device), args.mode)
    header = (
        f"{machine_description(device)}; torch.compile(mode={args.mode or 'default'}); "
        "each target in fresh processes; cold = empty Inductor cache, warm = the cache the "
        f"cold run left; torch {torch.__version__}"
    )
    table = format_compile_table(results, header)
    _emit(table, args.output)
    return 0


def _kernel_size(text: str) -> tuple[int, ...]:
    """An argparse type: ``5`` or ``1x3x3`` → a tuple of positive ints."""
    try:
        sizes = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"must be N or TxHxW (positive ints), got {text!r}")
    return sizes


def _run_bench_layer(args: argparse.Namespace) -> int:
    _check_outputs(args)
    from dwstft.bench.layer import (
        BATCH_BY_DIMS,
        format_layer_table,
        layer_cases,
        run_layer_benchmark,
    )
    from dwstft.device import resolve_device

    device = resolve_device(args.device)
    batch = args.batch_size or BATCH_BY_DIMS[args.dims]
    shapes, kernel_sizes = layer_cases(args.dims, args.kernel_sizes)
    results = run_layer_benchmark(
        shapes,
        kernel_sizes,
        batch=batch,
        rounds=args.rounds,
        device=device,
        channels_last=args.channels_last,
        compile_auto=args.compile,
        dims=args.dims,
    )
    table = format_layer_table(results, batch, device, args.channels_last)
    _emit(table, args.output)
    return 0


def _run_bench_lpq(args: argparse.Namespace) -> int:
    _check_outputs(args)
    from dwstft.bench.lpq import format_lpq_table, run_lpq_benchmark
    from dwstft.device import resolve_device

    device = resolve_device(args.device)
    result = run_lpq_benchmark(
        args.images,
        args.size,
        args.window_size,
        rounds=args.rounds,
        device=device,
        compile=args.compile,
    )
    table = format_lpq_table(result, device)
    _emit(table, args.output)
    return 0


def _run_bench_pipeline(args: argparse.Namespace) -> int:
    _check_outputs(args)
    import torch

    from dwstft.bench.pipeline import (
        fabricate_images,
        format_pipeline_table,
        run_pipeline_benchmark,
    )
    from dwstft.device import resolve_device
    from dwstft.models import create_model

    resolve_device(args.device)  # a clear refusal of a bad --device, before any work
    model = create_model(args.model, num_classes=10, in_chans=3)
    images, labels = fabricate_images(args.images)
    torch.manual_seed(0)
    results = run_pipeline_benchmark(
        model,
        images,
        labels,
        batch=args.batch_size,
        batches=args.batches,
        rounds=args.rounds,
        workers=args.workers,
        device=args.device,
    )
    table = format_pipeline_table(results, args.model, args.batch_size, args.images, args.device)
    _emit(table, args.output)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before a long benchmark, not after it, when --output/--json cannot be written."""
    for option in ("output", "json"):
        path = getattr(args, option, None)
        if path:
            prepare_output_file(path, f"--{option}")


def _emit(table: str, output: str | None) -> None:
    """Print a Markdown table and, with ``output``, also write it there (atomically)."""
    print(table)
    if output:
        atomic_write_text(output, table + "\n")


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``low`` (errors name the option and the bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _nonneg_float(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


#: ``dwstft train`` options that map one-to-one onto TrainConfig fields (argparse dest names).
_TRAIN_FIELDS = (
    "model",
    "dataset",
    "data_dir",
    "output",
    "epochs",
    "batch_size",
    "final_batch_size",
    "final_epochs",
    "validation_batch_size",
    "drop_last",
    "opt",
    "lr",
    "momentum",
    "opt_eps",
    "opt_betas",
    "weight_decay",
    "decay_all_params",
    "sched",
    "min_lr",
    "lr_milestones",
    "lr_gamma",
    "warmup_epochs",
    "warmup_lr",
    "label_smoothing",
    "clip_grad",
    "augment",
    "max_shift",
    "max_rotation",
    "crop_padding",
    "norm_mean",
    "norm_std",
    "seed",
    "amp",
    "amp_dtype",
    "channels_last",
    "compile",
    "compile_mode",
    "device",
)


def _default_note(dest: str) -> str:
    """``[default: ...]`` for a ``dwstft train`` option: the recipes' values where they
    set it (one per recipe when they differ), else the TrainConfig default."""
    import dataclasses

    from dwstft.train.config import RECIPES, TrainConfig

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    if dest not in fields:
        return ""
    values = {name: recipe.defaults.get(dest, fields[dest]) for name, recipe in RECIPES.items()}
    if len(set(map(repr, values.values()))) > 1:
        return "[default: " + ", ".join(f"{n} {v}" for n, v in values.items()) + "]"
    value = next(iter(values.values()))
    return "" if value is None or value is dataclasses.MISSING else f"[default: {value}]"


def _add_train(sub: argparse._SubParsersAction) -> None:
    from dwstft.data import DATASET_NAMES
    from dwstft.train.config import COMPILE_MODES, RECIPES

    p = sub.add_parser(
        "train",
        parents=_COMMON,
        help="train a registered model on CIFAR-10/100, digits or moving-digits clips",
        description=(
            "Train with one of three recipes (--recipe): paper (Adam, lr 0.01, batch 64 then "
            "128 for the last quarter of the epochs), fast (AdamW, warm-up + cosine, label "
            "smoothing) or baseline (weiaicunzai/pytorch-cifar100's, which produced Table 2's "
            "CIFAR-100 baseline numbers: SGD momentum 0.9, lr 0.1 x0.2 at epochs 60/120/160 "
            "of 200, weight decay 5e-4, batch 128, crop + flip + rotation). Every option "
            "below overrides the recipe's value; "
            "defaults are shown per recipe. A new run needs --model, --dataset and --output; "
            "--resume needs only the checkpoint. Writes config.json, metrics.jsonl, "
            "summary.csv, curves.png, best.safetensors and last.pt to --output. Under "
            "torchrun the same command trains with DDP."
        ),
    )

    def option(group: argparse._ArgumentGroup, *flags: str, **kwargs: object) -> None:
        dest = next(f for f in flags if f.startswith("--"))[2:].replace("-", "_")
        text = str(kwargs.pop("help", ""))
        if "[default:" not in text:
            text = " ".join(t for t in (text, _default_note(dest)) if t)
        group.add_argument(*flags, help=text or None, **kwargs)

    run = p.add_argument_group("run")
    option(
        run, "--model", help="registered model name, see `dwstft models` (required for a new run)"
    )
    option(run, "--dataset", help=f"{', '.join(DATASET_NAMES)} (required for a new run)")
    option(
        run,
        "--data-dir",
        help="where CIFAR is found or downloaded to [default: ~/.cache/dwstft/data]",
    )
    option(
        run, "--output", help="run folder (required for a new run; with --resume: the checkpoint's)"
    )
    option(
        run,
        "--resume",
        metavar="LAST_PT",
        help=(
            "continue the run saved in last.pt, in its own folder (refused if that folder's "
            "config.json is another run's) or in an empty --output"
        ),
    )
    option(run, "--recipe", choices=tuple(RECIPES), help="[default: paper]")
    option(run, "--seed", type=_nonneg_int)
    option(run, "--device", help="cpu, cuda, cuda:1, ... [default: cuda if available, else cpu]")
    option(run, "--amp", action="store_true", default=None, help="autocast (bf16 on CPU)")
    option(
        run,
        "--amp-dtype",
        choices=("float16", "bfloat16"),
        help="[default: fp16 on CUDA, bf16 on CPU]",
    )
    option(run, "--channels-last", action="store_true", default=None)
    option(
        run,
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model (forward and backward); compiled graphs are cached "
        "on disk, so later runs compile faster",
    )
    option(
        run,
        "--compile-mode",
        choices=COMPILE_MODES,
        help="torch.compile mode (with --compile) [default: default]",
    )
    option(
        run,
        "--cuda-graphs",
        action="store_true",
        default=None,
        help="the same as --compile --compile-mode reduce-overhead: forward and backward "
        "replayed as CUDA graphs (CUDA only)",
    )
    sched = p.add_argument_group("schedule")
    option(sched, "--epochs", type=_positive_int)
    option(sched, "-b", "--batch-size", type=_positive_int, help="global batch size")
    option(
        sched,
        "--final-batch-size",
        type=_positive_int,
        help="batch size of the last --final-epochs [default: the recipe's growth, paper: 2x]",
    )
    option(
        sched,
        "--final-epochs",
        type=_nonneg_int,
        help="epochs at --final-batch-size [default: paper: a quarter of --epochs, others: 0]",
    )
    option(sched, "-vb", "--validation-batch-size", type=_positive_int)
    option(
        sched, "--drop-last", action=argparse.BooleanOptionalAction, help="drop incomplete batches"
    )
    option(sched, "--sched", help="constant, cosine, linear or multistep (after warm-up)")
    option(
        sched,
        "--lr-milestones",
        type=_nonneg_int,
        nargs="+",
        metavar="EPOCH",
        help="multistep: completed epochs after which the lr is multiplied by --lr-gamma "
        "[default: baseline: 59 119 159 at 200 epochs, scaled with --epochs]",
    )
    option(sched, "--lr-gamma", type=_nonneg_float, help="multistep: factor per milestone")
    option(
        sched,
        "--warmup-epochs",
        type=_nonneg_float,
        help="(capped at a quarter of --epochs unless given)",
    )
    option(sched, "--warmup-lr", type=_nonneg_float)
    option(sched, "--min-lr", type=_nonneg_float)
    opt = p.add_argument_group("optimiser")
    option(opt, "--opt", help="sgd (Nesterov), momentum, adam or adamw")
    option(opt, "--lr", type=_nonneg_float)
    option(opt, "--momentum", type=_nonneg_float)
    option(opt, "--opt-eps", type=_nonneg_float)
    option(opt, "--opt-betas", type=_nonneg_float, nargs=2, metavar=("BETA1", "BETA2"))
    option(opt, "--weight-decay", type=_nonneg_float)
    option(
        opt,
        "--decay-all-params",
        action=argparse.BooleanOptionalAction,
        help="weight decay on biases and norm parameters too, not only on weights",
    )
    option(opt, "--label-smoothing", "--smoothing", type=_nonneg_float)
    option(opt, "--clip-grad", type=_nonneg_float, help="max gradient norm")
    aug = p.add_argument_group("augmentation and normalisation")
    option(
        aug,
        "--augment",
        choices=("warp", "crop_flip_rotate"),
        help="warp: flip + shift + rotation as one bilinear warp; crop_flip_rotate: "
        "torchvision's padded crop + flip + nearest rotation on the uint8 image",
    )
    option(aug, "--max-shift", type=_nonneg_float, help="warp: fraction of the image size")
    option(aug, "--max-rotation", type=_nonneg_float, help="degrees")
    option(
        aug,
        "--crop-padding",
        type=_nonneg_int,
        help="crop_flip_rotate: pixels [default: 4; baseline on 8×8 digits: 1]",
    )
    option(
        aug,
        "--norm-mean",
        type=float,
        nargs="+",
        metavar="M",
        help="per-channel mean of [0, 1] pixels [default: the training split's; baseline "
        "on cifar100: weiaicunzai/pytorch-cifar100's constants]",
    )
    option(
        aug,
        "--norm-std",
        type=float,
        nargs="+",
        metavar="S",
        help="per-channel std, with --norm-mean [default: as --norm-mean]",
    )
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from dwstft.train import resolve_config, train

    given = {name: getattr(args, name) for name in _TRAIN_FIELDS}
    if args.cuda_graphs:
        given["compile"], given["compile_mode"] = True, "reduce-overhead"
    train(resolve_config(args.recipe, args.resume, **given))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        parents=_COMMON,
        help="test loss and accuracy of saved weights",
        description="Evaluate best.safetensors or last.pt on the dataset's test split.",
    )
    p.add_argument("--checkpoint", required=True, help="best.safetensors or last.pt")
    p.add_argument("--model", help="default: the model recorded in the checkpoint")
    p.add_argument("--dataset", help="default: the dataset recorded in the checkpoint")
    p.add_argument("--data-dir", help="where CIFAR is found or downloaded to")
    p.add_argument("--device", help="default: cuda if available, else cpu")
    p.add_argument(
        "-b", "--batch-size", type=_positive_int, default=500, help="images per forward pass"
    )
    p.add_argument("--amp", action="store_true", help="autocast (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--channels-last", action="store_true", help="model and inputs in channels_last")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    import json

    from dwstft.train import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.model,
        args.dataset,
        data_dir=args.data_dir,
        device=args.device,
        batch_size=args.batch_size,
        amp=args.amp,
        channels_last=args.channels_last,
    )
    if args.json:
        print(json.dumps(result))
    else:
        epoch = f", epoch {result['epoch']}" if result["epoch"] is not None else ""
        print(
            f"{result['checkpoint']} ({result['model']} on {result['dataset']}{epoch}): "
            f"test loss {result['test_loss']:.4f}, accuracy {100 * result['test_acc']:.2f}% "
            f"({result['correct']}/{result['count']})"
        )
    return 0


def _add_viz(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "viz",
        help="pictures (PNG): basis kernels, feature maps, training curves, benchmarks",
    )
    what = p.add_subparsers(dest="viz_target", required=True, metavar="PICTURE")
    basis = what.add_parser(
        "basis", parents=_COMMON, help="the 8 real/imaginary STFT kernels for each n"
    )
    basis.add_argument(
        "--kernel-size",
        type=int,
        nargs="+",
        default=[3, 5, 7],
        metavar="N",
        help="odd n >= 3, one row of kernels each",
    )
    features = what.add_parser(
        "features", parents=_COMMON, help="an image and its Depthwise-STFT maps"
    )
    features.add_argument(
        "--image", required=True, help="PNG/JPEG file, or digits:N (scikit-learn's N-th digit)"
    )
    features.add_argument(
        "--kernel-size", type=int, default=3, metavar="N", help="the bank's odd n >= 3"
    )
    features.add_argument(
        "--max-size",
        type=_nonneg_int,
        default=128,
        help="shrink larger images to this many pixels on the longer side (0: never)",
    )
    curves = what.add_parser(
        "curves", parents=_COMMON, help="loss and accuracy of one or several runs"
    )
    curves.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="holds metrics.jsonl")
    curves.add_argument("--labels", nargs="+", help="legend names, one per RUN_DIR")
    curves.add_argument("--title", default="", help="figure title (none by default)")
    pareto = what.add_parser(
        "pareto", parents=_COMMON, help="one point per model of `dwstft bench models`"
    )
    pareto.add_argument("bench", metavar="BENCH_JSON", help="written by `dwstft bench models`")
    pareto.add_argument("--x", default="params", help="numeric field of BENCH_JSON for x")
    pareto.add_argument("--y", default="train_ips_b64", help="numeric field of BENCH_JSON for y")
    pareto.add_argument("--logx", action="store_true", help="logarithmic x axis")
    for picture in (basis, features, curves, pareto):
        picture.add_argument(
            "--output", required=True, metavar="FILE.png", help="the PNG file to write"
        )
    p.set_defaults(handler=_run_viz)


def _run_viz(args: argparse.Namespace) -> int:
    from dwstft.errors import require

    require("matplotlib", "viz", "dwstft viz")
    from dwstft._figure import check_png_output, save_figure
    from dwstft.train.curves import plot_curves
    from dwstft.viz import basis, curves, features, pareto

    check_png_output(args.output)
    if args.viz_target == "basis":
        save_figure(basis.basis_figure(args.kernel_size), args.output)
    elif args.viz_target == "features":
        image, name = features.load_image(args.image, args.max_size)
        save_figure(features.features_figure(image, args.kernel_size, name), args.output)
    elif args.viz_target == "curves":
        labels = curves.run_labels(args.run_dirs, args.labels)
        runs = {label: curves.read_run(d) for label, d in zip(labels, args.run_dirs, strict=True)}
        plot_curves(runs, args.output, args.title)
    else:
        bench = pareto.load_bench(args.bench)
        skipped = pareto.plot_pareto(bench, args.output, args.x, args.y, args.logx)
        if skipped:
            print(
                f"warning: skipped {len(skipped)} model(s) without a numeric "
                f"{args.x!r} or {args.y!r}: {', '.join(skipped)}",
                file=sys.stderr,
            )
    print(f"wrote {args.output}")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        parents=_COMMON,
        help="export saved weights to ONNX or TorchScript and check the file",
        description=(
            "Rebuild the model, load the checkpoint strictly, turn it into an inference graph "
            "(--optimize), export, then run the exported file and the unmodified PyTorch "
            "model on the same random input; exits 1 if they differ by more than 1e-4 "
            "(relative to the logit scale when it exceeds 1). The default for ONNX is the "
            "deployment graph for onnxruntime: BatchNorm folded into the convolutions (Block "
            "2's sum-then-BN too), each Depthwise-STFT layer as its dense folded convolution "
            "or bank + 1x1, whichever onnxruntime runs faster at its shape, and "
            "conv + skip + activation as one onnxruntime FusedConv."
        ),
    )
    p.add_argument(
        "--checkpoint", required=True, help="best.safetensors, last.pt or a saved state dict"
    )
    p.add_argument("--model", help="registered name (default: recorded in the checkpoint)")
    p.add_argument(
        "--format",
        required=True,
        choices=("onnx", "torchscript"),
        help="onnx (needs dwstft[export]) or TorchScript",
    )
    p.add_argument(
        "--optimize",
        choices=("onnxruntime", "portable", "fold", "none"),
        help=(
            "onnxruntime (default for onnx): the deployment graph, tuned for and runnable "
            "by onnxruntime only; portable: the deployment graph in standard operators; "
            "fold: only fold the STFT layers into nn.Conv2d; none (default for torchscript): "
            "the model as it is"
        ),
    )
    p.add_argument("--fold", action="store_true", help="same as --optimize fold")
    p.add_argument(
        "--layer-form",
        choices=("auto", "dense", "bank"),
        default="auto",
        help=(
            "STFT layers as the dense folded conv or the bank + 1x1 (auto: timed in "
            "onnxruntime per layer under --optimize onnxruntime, dense under portable)"
        ),
    )
    p.add_argument(
        "--output",
        help=(
            "default: beside the checkpoint, <stem>[.ort|.deploy|.folded].onnx/.torchscript.pt. "
            "An existing file is replaced only with --force; the checkpoint and a run "
            "folder's own files (last.pt, best.safetensors, config.json, metrics.jsonl, "
            "summary.csv, curves.png) never are"
        ),
    )
    p.add_argument(
        "--force", action="store_true", help="replace --output if it exists (see --output)"
    )
    p.add_argument(
        "--input-size",
        type=_positive_int,
        nargs=3,
        metavar=("C", "H", "W"),
        help=(
            "one image's shape (default: a sample of the dataset the checkpoint records: "
            "digits 1 8 8, CIFAR 3 32 32, moving-digits clips 1 8 32 32 (C T H W); "
            "IN_CHANS 32 32 if it records none)"
        ),
    )
    p.add_argument("--opset", type=_positive_int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--num-classes", type=_positive_int, help="default: from head.weight")
    p.add_argument("--in-chans", type=_positive_int, help="default: from the first layer")
    quant = p.add_argument_group("int8 (onnxruntime static quantization, QDQ)")
    quant.add_argument(
        "--quantize",
        choices=("int8",),
        help="write the int8 model of the --optimize portable graph, calibrated on --calibration",
    )
    quant.add_argument(
        "--calibration",
        choices=("cifar10", "cifar100", "digits"),
        help="dataset whose training split calibrates and test split scores (default: the "
        "checkpoint's)",
    )
    quant.add_argument(
        "--calibration-images",
        type=_positive_int,
        default=1024,
        help="training images used for calibration (all if fewer)",
    )
    quant.add_argument("--data-dir", help="where CIFAR is found")
    p.set_defaults(handler=_run_export)


def _export_optimization(args: argparse.Namespace) -> str:
    """The --optimize value (--fold is its shorthand), checked against the other options."""
    from dwstft.deploy.export import check_export_options

    if args.fold and args.optimize not in (None, "fold"):
        raise ValueError(f"--fold contradicts --optimize {args.optimize}; give one of them")
    if args.calibration and not args.quantize:
        raise ValueError("--calibration applies to --quantize only")
    optimize = "fold" if args.fold else args.optimize
    return check_export_options(args.format, optimize, args.layer_form, args.quantize, args.opset)


def _calibration(args: argparse.Namespace, recorded: str | None) -> DatasetArrays | None:
    """The calibration/test images for --quantize (None without it); ``recorded``: the
    dataset the checkpoint records."""
    from dwstft.deploy.quantize import dataset_arrays

    if not args.quantize:
        return None
    dataset = args.calibration or recorded
    if dataset is None:
        raise ValueError(
            f"--quantize needs --calibration DATASET: {args.checkpoint!r} records no dataset"
        )
    return dataset_arrays(dataset, args.data_dir, args.calibration_images)


def _run_export(args: argparse.Namespace) -> int:
    from dwstft.deploy.export import default_output, export_model, onnx_opset
    from dwstft.train.checkpoint import model_from_checkpoint
    from dwstft.train.run_folder import check_export_output

    optimize = _export_optimization(args)
    output = check_export_output(
        args.output or default_output(args.checkpoint, args.format, optimize, args.quantize),
        args.checkpoint,
        args.force,
    )
    loaded = model_from_checkpoint(args.checkpoint, args.model, args.num_classes, args.in_chans)
    calibration = _calibration(args, loaded.dataset)
    image = calibration.train_images.shape[1:] if calibration is not None else None
    input_size = tuple(args.input_size or image or loaded.input_size())
    if input_size[0] != loaded.in_chans:
        raise ValueError(
            f"--input-size C must equal the model's in_chans={loaded.in_chans}, got {input_size[0]}"
        )
    report = export_model(
        loaded.model,
        output,
        args.format,
        optimize=optimize,
        layer_form=args.layer_form,
        input_size=input_size,
        opset=args.opset,
        quantize=args.quantize,
        calibration=calibration,
    )
    check = report.verification
    how = report.method
    if report.fmt == "onnx":
        how += f", opset {onnx_opset(report.path)}"
    batch = "dynamic batch" if report.dynamic_batch else "batch fixed at 2"
    runner = "onnxruntime" if report.fmt == "onnx" else "torch.jit.load"
    batches = ", ".join(str(b) for b in check.batches)
    print(f"{loaded.name}: wrote {report.path} ({how}; {batch})")
    print(f"  size: {report.size_bytes:,} bytes")
    print(
        f"  parameters: {report.params:,} trainable; exported graph: "
        f"{report.exported_params:,} (--optimize {report.optimize})"
    )
    for line in _deployment_lines(report):
        print(f"  {line}")
    checked = f"{runner}, float graph" if report.quantized is not None else runner
    print(
        f"  check ({checked} vs PyTorch, input {input_size}, batch {batches}): "
        f"max |difference| {check.max_abs_diff:.2e}, logit scale {check.scale:.3g}, "
        f"limit {check.limit:.1e}: OK"
    )
    if report.quantized is not None:
        q = report.quantized
        print(
            f"  {args.quantize} accuracy on the {q.dataset} test split ({q.count} images): "
            f"float {100 * q.float_acc:.2f}%, {args.quantize} {100 * q.int8_acc:.2f}% "
            f"(drop {q.drop_points:.2f} points; predictions agree on {100 * q.agreement:.2f}%)"
        )
    return 0


def _deployment_lines(report: ExportReport) -> list[str]:
    """What the deployment rewrites did: counts, and each layer form's timing."""
    lines = []
    if report.rewrites is not None:
        fused = f", {report.fused_convs} conv+add+activation -> FusedConv"
        lines.append(
            f"rewrites: {report.rewrites.describe()}"
            + (fused if report.optimize == "onnxruntime" else "")
        )
    groups: dict[tuple, list[str]] = {}
    for t in report.layer_forms:
        key = (t.input_size, t.chosen, tuple((f, tuple(v.items())) for f, v in t.seconds.items()))
        groups.setdefault(key, []).append(t.site)
    for (input_size, chosen, seconds), sites in groups.items():
        batches = "/".join(str(b) for b, _ in seconds[0][1])
        timed = ", ".join(
            f"{form} " + "/".join(f"{1e3 * s:.3g}" for _, s in per_batch)
            for form, per_batch in seconds
        )
        where = f"{len(sites)} layer(s) at {input_size} ({', '.join(sites)})"
        lines.append(f"{where}: {chosen}; onnxruntime ms at batch {batches}: {timed}")
    return lines


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="train every Table 2 row; ours beside the paper's")
    what = p.add_subparsers(dest="reproduce_target", required=True, metavar="TARGET")
    t2 = what.add_parser(
        "table2",
        parents=_COMMON,
        help="Table 2: STFTNet presets and baselines",
        description=(
            "Train every Table 2 row (one run folder each; an interrupted sweep resumes) and "
            "write OUTPUT/reproduction.md: per row the paper's accuracy beside ours, "
            "parameters, MACs, the recipe and epochs each run used, and whether the row is "
            "like for like. With --recipe auto each row trains with the recipe its paper "
            "number came from: baselines with `baseline` (weiaicunzai/pytorch-cifar100's), "
            "STFTNet and ReLPU rows with `paper`."
        ),
    )
    t2.add_argument("--data-dir", help="folder holding the CIFAR archives or extracted folders")
    t2.add_argument(
        "--dataset",
        nargs="+",
        default=["cifar10", "cifar100"],
        choices=["cifar10", "cifar100", "digits"],
        help="datasets every row trains on; digits: an offline smoke test of the harness",
    )
    t2.add_argument(
        "--models",
        nargs="+",
        metavar="NAME",
        help="names or shell patterns, in place of the default: every Table 2 row (e.g. "
        "'stftnet_paramfit_*' for the parameter-matched STFTNet reading)",
    )
    t2.add_argument(
        "--recipe",
        choices=["auto", "paper", "fast", "baseline"],
        default="auto",
        help="auto: each row's source recipe; paper, fast or baseline: that one for every row",
    )
    t2.add_argument("--epochs", type=_positive_int, help="default: each row's recipe's")
    t2.add_argument("--device", help="default: cuda if available, else cpu")
    t2.add_argument("--seed", type=int, default=0, help="training seed of every row")
    t2.add_argument(
        "--output",
        default="runs/table2",
        help="folder of reproduction.md and of one run folder per row",
    )
    t2.set_defaults(handler=_run_reproduce)


def _run_reproduce(args: argparse.Namespace) -> int:
    from dwstft.models import list_models
    from dwstft.reproduce import run_table2
    from dwstft.train.table2 import TABLE2_MODELS

    models: list[str] = []
    for entry in args.models or TABLE2_MODELS:
        matches = list_models(entry) if any(ch in entry for ch in "*?[") else [entry]
        if not matches:
            raise ValueError(
                f"--models {entry!r} matches no registered model; run `dwstft models` for the list"
            )
        models += [name for name in matches if name not in models]
    report = run_table2(
        args.output,
        datasets=tuple(args.dataset),
        models=tuple(models),
        recipe=args.recipe,
        epochs=args.epochs,
        data_dir=args.data_dir,
        device=args.device,
        seed=args.seed,
        command="dwstft " + " ".join(sys.argv[1:]),
    )
    print(report.read_text(encoding="utf-8"))
    print(f"written to {report}")
    return 0


def one_line(error: BaseException) -> str:
    """An exception's message on one line (torch and OS errors can span several)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return (
            f"{error.strerror}: {str(error.filename)!r}; check the path (does it exist, is it "
            "a folder or a file as expected, may you write there?) or choose another"
        )
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines) or type(error).__name__


def _command_name(args: argparse.Namespace) -> str:
    """``train``, ``bench layer``, ``viz curves``, ...: the words the user typed."""
    words = [args.command]
    for attr in ("bench_target", "reproduce_target", "viz_target"):
        if getattr(args, attr, None):
            words.append(getattr(args, attr))
    return " ".join(words)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the command stops as after Ctrl-C (training saves ``last.pt`` and
    names it) and exits with :data:`EXIT_TERMINATED`."""

    exit_status = EXIT_TERMINATED

    def __init__(self) -> None:
        super().__init__("terminated by SIGTERM")


@contextlib.contextmanager
def _sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` in the main thread;
    further SIGTERMs are ignored while it stops, so that a second one (a process group
    signalled twice, as under torchrun) cannot cut the final save short. The previous
    handler is put back afterwards. Nothing changes outside the main thread (where Python
    cannot set handlers) or where SIGTERM is ignored (as the launcher asked)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    ):
        yield
        return

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    The one error boundary of the command: an expected failure (:data:`EXPECTED_ERRORS`)
    prints ``dwstft <command>: error: <message>`` on one line and returns its
    ``exit_status`` (2, or 1 for a diverged training); with ``--debug`` or
    ``DWSTFT_DEBUG=1`` it is re-raised with its traceback. Ctrl-C, from the start (torch
    is imported in here, not before), prints what survives (the checkpoint to resume from,
    when training) and returns 130; SIGTERM does the same and returns 143.
    """
    with _sigterm_stops_like_ctrl_c():
        try:
            configure_allocator()
            args = build_parser().parse_args(argv)
            return _run(args)
        except KeyboardInterrupt as interrupt:
            status = getattr(interrupt, "exit_status", EXIT_INTERRUPTED)
            start = "\n" if status == EXIT_INTERRUPTED else ""  # after the terminal's ^C
            print(f"{start}{str(interrupt) or 'interrupted'}", file=sys.stderr)
            return status


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; an expected failure becomes one line and its exit status."""
    try:
        return int(args.handler(args) or 0)
    except EXPECTED_ERRORS as error:
        if args.debug or os.environ.get(DEBUG_ENV) == "1":
            raise
        print(f"dwstft {_command_name(args)}: error: {one_line(error)}", file=sys.stderr)
        return getattr(error, "exit_status", EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
