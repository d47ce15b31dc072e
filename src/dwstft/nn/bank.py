"""What every fixed Depthwise-STFT filter bank module (1-D, 2-D, 3-D) guarantees.

- The kernels live in a non-persistent buffer ``basis`` and are rebuilt from their
  definition after every ``Module._apply`` (``.to()``, ``.double()``, ``.to_empty()`` after
  construction on the meta device, ...), so they can never hold another tensor's bytes.
- The state dict records the kernel size (``_extra_state``, an int64 tensor): loading
  weights saved with another kernel size fails in ``load_state_dict`` (strict or not), with
  PyTorch's usual aggregated error; state dicts written before the record existed load.
"""

from __future__ import annotations

import torch
from torch import nn


class FixedBank(nn.Module):
    """Base class: subclasses set ``kernel_size`` and register the ``basis`` buffer, and
    define :meth:`exact_basis`."""

    def exact_basis(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The bank's kernels computed from their definition, in ``dtype`` on ``device``."""
        raise NotImplementedError

    def kernel_record(self) -> tuple[int, ...]:
        """The kernel size as the state dict records it (one int per dimension, or n)."""
        size = self.kernel_size
        return tuple(size) if isinstance(size, tuple) else (size,)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if not self.basis.is_meta:
            self.basis = self.exact_basis(self.basis.dtype, self.basis.device)
        return self

    @torch.jit.unused
    def get_extra_state(self) -> torch.Tensor:
        """The kernel size, int64 (checked when a state dict is loaded)."""
        return torch.tensor(self.kernel_record(), dtype=torch.int64, device="cpu")

    @torch.jit.unused
    def set_extra_state(self, state: torch.Tensor) -> None:
        """Checked in ``_load_from_state_dict``; nothing to restore (the kernels are fixed)."""

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
    ) -> None:
        key = prefix + "_extra_state"
        saved = state_dict.get(key)
        if saved is not None:
            record = tuple(int(n) for n in torch.as_tensor(saved).reshape(-1).tolist())
            if record != self.kernel_record():
                shown = record[0] if len(record) == 1 else record
                errors.append(
                    f"{prefix or 'the layer'} was saved with kernel_size={shown}, but this "
                    f"{type(self).__name__} has kernel_size={self.kernel_size}; build it with "
                    f"kernel_size={shown} to load these weights"
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errors
        )
        if saved is None and key in missing_keys:
            missing_keys.remove(key)  # state dicts from before the kernel size was recorded
