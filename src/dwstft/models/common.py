"""Initialisation and argument checks shared by the baseline networks."""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convs (fan_out), BN weight 1 / bias 0, linear N(0, 0.01) / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def check_classifier_args(num_classes: object, in_chans: object) -> None:
    """Raise ValueError unless ``num_classes`` is an int >= 0 and ``in_chans`` an int >= 1."""
    for arg, value, low in (("num_classes", num_classes, 0), ("in_chans", in_chans, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{arg} must be an int >= {low}, got {value!r}")


def check_width_mult(width_mult: object) -> None:
    """Raise ValueError unless ``width_mult`` is a real number > 0."""
    if not isinstance(width_mult, (int, float)) or isinstance(width_mult, bool) or width_mult <= 0:
        raise ValueError(f"width_mult must be a number > 0 (default 1.0), got {width_mult!r}")


def conv_bn(
    in_chans: int,
    out_chans: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = None,
    bias: bool = False,
) -> list[nn.Module]:
    """Conv (padding ``kernel_size // 2``; a bias only with ``bias``, which the BN cancels) +
    BN [+ ``act(inplace=True)``] layers: (N, in_chans, H, W) → (N, out_chans, H/s, W/s)."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_chans,
            out_chans,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=bias,
        ),
        nn.BatchNorm2d(out_chans),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return layers
