"""The ``dwstft`` command. Each subcommand's options are declared here; the work lives in
the modules it calls (imported lazily, so ``dwstft --help`` stays fast)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dwstft._allocator import configure_allocator


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dwstft",
        description="Depthwise-STFT separable CNNs: train, evaluate, benchmark, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo,):
        add(sub)
    return parser


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run one Depthwise-STFT separable layer on random input")
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--out-channels", type=int, default=16)
    p.add_argument("--kernel-size", type=int, default=3)
    p.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import torch

    from dwstft import DepthwiseSTFTSeparable

    layer = DepthwiseSTFTSeparable(args.in_channels, args.out_channels, args.kernel_size)
    x = torch.randn(2, args.in_channels, 32, 32)
    y = layer(x)
    folded = layer.fold()
    err = (folded(x) - y).abs().max().item()
    params = sum(p.numel() for p in layer.parameters())
    expected = 8 * args.in_channels * args.out_channels + args.out_channels
    print(f"{layer}\ninput {tuple(x.shape)} -> output {tuple(y.shape)}")
    print(f"trainable parameters: {params} (8*c*f + f = {expected})")
    print(f"folded nn.Conv2d max |difference|: {err:.2e}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    configure_allocator()
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
