"""Turn a user's ``--device`` string into a usable ``torch.device``, or say why not."""

from __future__ import annotations

import torch

from dwstft.errors import DeviceUnavailableError

#: Device types dwstft runs on; each is checked with ``torch.<type>.is_available()``.
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def default_device() -> str:
    """``"cuda"`` if a GPU is available, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """The device ``spec`` names (default: :func:`default_device`), checked to exist here.

    Raises:
        DeviceUnavailableError: ``spec`` is not a device name, names a device type dwstft
            does not run on, or a device this machine does not have (the message says
            which devices it has).
    """
    if spec is None:
        return torch.device(default_device())
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise DeviceUnavailableError(
            f"--device {str(spec)!r} is not a device name; expected one of "
            f"{', '.join(DEVICE_TYPES)}, optionally with an index (cuda:1)"
        ) from None
    if device.type not in DEVICE_TYPES:
        raise DeviceUnavailableError(
            f"--device {str(spec)!r}: dwstft runs on {', '.join(DEVICE_TYPES)}, not {device.type!r}"
        )
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None) or getattr(torch.backends, device.type)
    if not backend.is_available():
        raise DeviceUnavailableError(
            f"--device {str(spec)!r}: {device.type} is not available on this machine "
            f"(torch {torch.__version__}); use --device cpu"
        )
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise DeviceUnavailableError(
            f"--device {str(spec)!r}: this machine has {count} {device.type} device(s), "
            f"indices 0..{count - 1}"
        )
    return device
