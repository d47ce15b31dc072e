"""A whole training step captured as one CUDA graph (``torch.cuda.graph``), for benchmarks.

The second way issue 10 asks to measure beside ``torch.compile(mode="reduce-overhead")``:
the eager model's own kernels (forward, loss, backward and the optimiser update) recorded
once and replayed with one launch, with no compilation at all. The step reads its batch
from two static buffers; the caller copies each batch into them before a replay.

Limits (why training keeps ``--cuda-graphs`` = compile + reduce-overhead): the learning
rate is the one the optimiser holds at capture time (a schedule would need tensor learning
rates), and every batch size needs its own graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dwstft.train.evaluate import autocast

#: Eager steps run on a side stream before capture, so that lazily created state (cuDNN
#: plans, optimiser buffers, autograd's accumulators) exists when the graph is recorded.
WARMUP_STEPS = 3


def capture_training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    amp: bool = False,
    amp_dtype: str | None = None,
) -> CapturedStep:
    """Record ``zero_grad; cross_entropy(model(inputs), targets).backward(); step`` as one
    CUDA graph and return its replay, which returns the (static) loss tensor.

    ``inputs`` (N, C, H, W) and ``targets`` (N,) are the static buffers on the model's CUDA
    device; they must hold a valid batch already (the warm-up steps run on it). The warm-up
    steps are undone before returning: parameters and buffers are put back and the
    optimiser's state is zeroed in place (a fresh state for SGD, Adam and AdamW, whose first
    update from zero state equals their first update from none), so the first replay is the
    first training step. ``capturable`` is switched on for optimisers that have it. With
    ``amp`` the forward and the loss run under autocast (``amp_dtype``, as in training).
    """
    if not inputs.is_cuda:
        raise ValueError(f"CUDA graph capture needs CUDA tensors; inputs are on {inputs.device}")
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    snapshot = [t.detach().clone() for t in (*model.parameters(), *model.buffers())]

    def step() -> torch.Tensor:
        with autocast(inputs.device, amp, amp_dtype):
            loss = F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP_STEPS):
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)  # backward then allocates grads in the graph's pool
    with torch.cuda.graph(graph):
        loss = step()

    with torch.no_grad():
        for tensor, saved in zip((*model.parameters(), *model.buffers()), snapshot, strict=True):
            tensor.copy_(saved)
        for state in optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    value.zero_()
    return CapturedStep(graph, loss, (model, optimizer, inputs, targets))


class CapturedStep:
    """The replay of a captured step. It holds every tensor owner the graph reads or writes
    (model, optimiser, static buffers): the graph addresses their memory directly, so
    letting one be freed while the graph lives would make a replay write into memory that
    belongs to someone else."""

    def __init__(self, graph: torch.cuda.CUDAGraph, loss: torch.Tensor, owners: tuple) -> None:
        self.graph, self.loss, self._owners = graph, loss, owners

    def __call__(self) -> torch.Tensor:
        """One training step on the static buffers' current contents; the loss tensor."""
        self.graph.replay()
        return self.loss
