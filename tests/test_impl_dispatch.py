"""``stft_separable`` runs the execution path it is asked for, and ``impl="auto"`` asks
``choose_impl`` (the one function that decides it) with what the call really needs (every
path computes the same function, so only a spy on the paths can tell them apart)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dwstft import (
    DepthwiseSTFTSeparable,
    DepthwiseSTFTSeparable1d,
    DepthwiseSTFTSeparable3d,
    MultiScaleSTFTSeparable,
)
from dwstft.nn import functional, paths
from dwstft.nn.basis import stft_basis
from dwstft.nn.functional import IMPLS, depthwise_stft, fold_weight, stft_separable


@pytest.fixture
def ran(monkeypatch) -> list[str]:
    """The names of the paths taken, in order, while the real paths still run."""
    calls: list[str] = []

    def spy(name, original):
        def wrapped(*args, **kwargs):
            calls.append(name)
            return original(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(functional, "fold_weight", spy("folded", functional.fold_weight))
    monkeypatch.setattr(paths, "bank_maps", spy("grouped", paths.bank_maps))
    monkeypatch.setattr(functional, "checkpoint", spy("shift", functional.checkpoint))
    recompute = paths.RecomputeSTFTSeparable
    monkeypatch.setattr(recompute, "apply", spy("recompute", recompute.apply))
    return calls


@pytest.fixture
def asked(monkeypatch) -> list[tuple]:
    """The arguments ``choose_impl`` was called with; it answers "grouped"."""
    calls: list[tuple] = []

    def choose(kernel_size, needs_grad, compiling, multiscale=False):
        calls.append((kernel_size, needs_grad, compiling))
        return "grouped"

    monkeypatch.setattr(functional, "choose_impl", choose)
    return calls


class Decisions(list):
    """The calls of ``choose_impl``, and what it answers them."""

    answer = "grouped"


@pytest.fixture
def decisions(monkeypatch) -> Decisions:
    """Every call of ``choose_impl`` with all its arguments; it answers ``.answer``."""
    calls = Decisions()

    def choose(kernel_size, needs_grad, compiling, multiscale=False):
        calls.append((kernel_size, needs_grad, compiling, multiscale))
        return calls.answer

    monkeypatch.setattr(functional, "choose_impl", choose)
    return calls


def operands(x_grad=False, w_grad=False, bias=None):
    x = torch.randn(1, 2, 6, 6, requires_grad=x_grad)
    w = torch.randn(3, 16, 1, 1, requires_grad=w_grad)
    return x, w, bias


@pytest.mark.parametrize("impl", [i for i in IMPLS if i != "auto"])
def test_each_named_path_is_the_one_that_runs(ran, impl):
    stft_separable(*operands(), kernel_size=3, impl=impl)
    # The recompute path's forward builds its maps with the grouped path's helper.
    assert ran == (["recompute", "grouped"] if impl == "recompute" else [impl])


@pytest.mark.parametrize(
    ("x_grad", "w_grad", "bias_grad", "grad_mode", "needs_grad"),
    [
        (False, False, None, True, False),
        (True, False, None, True, True),
        (False, True, None, True, True),
        (False, False, True, True, True),
        (False, False, False, True, False),
        (True, True, True, False, False),
    ],
)
def test_auto_asks_with_what_the_call_needs(
    ran, asked, x_grad, w_grad, bias_grad, grad_mode, needs_grad
):
    bias = None if bias_grad is None else torch.zeros(3, requires_grad=bias_grad)
    with torch.set_grad_enabled(grad_mode):
        stft_separable(*operands(x_grad, w_grad, bias), kernel_size=5, impl="auto")
    assert asked == [((5, 5), needs_grad, False)]
    assert asked[0][2] is False and ran == ["grouped"]


def test_auto_under_symbolic_trace_asks_for_plain_operators(asked):
    class Separable(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 16, 1, 1))

        def forward(self, x):
            return stft_separable(x, self.weight, kernel_size=3, impl="auto")

    torch.fx.symbolic_trace(Separable())
    assert asked == [((3, 3), False, False)]


def test_a_precomputed_basis_of_another_dtype_follows_the_input():
    x = torch.randn(1, 2, 7, 7)
    basis64 = stft_basis(3, dtype=torch.float64)
    maps = depthwise_stft(x, 3, basis=basis64)
    assert maps.dtype == torch.float32
    torch.testing.assert_close(maps, depthwise_stft(x, 3), rtol=0, atol=0)
    w = torch.randn(3, 16, 1, 1)
    assert fold_weight(w, basis64).dtype == torch.float32


LAYERS = {
    "2d": (lambda: DepthwiseSTFTSeparable(2, 3, 5), (1, 2, 6, 6), (5, 5)),
    "1d": (lambda: DepthwiseSTFTSeparable1d(2, 3, 5), (1, 2, 9), (5,)),
    "3d": (lambda: DepthwiseSTFTSeparable3d(2, 3, (1, 3, 3)), (1, 2, 3, 5, 5), (1, 3, 3)),
}


@pytest.mark.parametrize(("make", "shape", "size"), LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize("train", [True, False])
def test_every_layer_asks_the_one_choice_in_both_modes(ran, decisions, make, shape, size, train):
    # The weights require grad: training needs a backward, evaluation takes the
    # forward-only choice whatever autograd records.
    make().train(train)(torch.randn(shape))
    assert decisions == [(size, train, False, False)]
    assert ran == ["grouped"]


@pytest.mark.parametrize("train", [True, False])
def test_the_multiscale_layer_asks_the_one_choice(ran, decisions, train):
    MultiScaleSTFTSeparable(2, 3, (3, 5)).train(train)(torch.randn(1, 2, 7, 7))
    assert decisions == [((5, 5), train, False, True)]
    assert ran == ["grouped", "grouped"]  # the answer runs, one bank per size


@pytest.mark.parametrize(("make", "shape", "size"), LAYERS.values(), ids=LAYERS.keys())
def test_symbolic_trace_of_every_layer_asks_for_plain_operators(decisions, make, shape, size):
    decisions.answer = "folded"
    traced = torch.fx.symbolic_trace(make())
    assert decisions == [(size, False, False, False)]
    assert traced(torch.randn(shape)).shape[1] == 3


def test_choose_impl_sends_the_multiscale_layer_to_one_dense_convolution():
    for needs_grad in (True, False):
        for compiling in (True, False):
            assert functional.choose_impl((5, 5), needs_grad, compiling, multiscale=True) == (
                "folded"
            )
