"""The project's own exception types: expected failures a user can cause.

Every module raises these (or a plain ``ValueError`` naming the bad argument) low down;
``dwstft.cli`` renders them once, at the top, as ``dwstft <command>: error: <message>`` and
exit status 2. Each type also derives from the built-in exception a caller would catch
without knowing dwstft (``ValueError``, ``FileNotFoundError``, ...), so library users can
stay generic.

The message of each error says what went wrong, which file or option, and what to do.
"""

from __future__ import annotations


class DwstftError(Exception):
    """Base of every expected failure (rendered on one line by the CLI, which exits with
    ``exit_status``: 2 for what the user caused and can fix)."""

    exit_status = 2


class CheckpointError(DwstftError, ValueError):
    """A checkpoint or weights file cannot be read, is damaged, or does not fit the model."""


class RunFolderError(DwstftError, ValueError):
    """A run folder cannot be used: it holds another run, another process is writing it,
    or the output path is not a folder that can be written."""


class OutputPathError(DwstftError, ValueError):
    """An output file cannot be written where the user asked (a folder, below a file,
    an unwritable place)."""


class DeviceUnavailableError(DwstftError, ValueError):
    """The requested device does not exist or is not usable on this machine."""


class MissingDependencyError(DwstftError, ImportError):
    """An optional dependency (an extra such as ``dwstft[data]``) is not installed."""


def require(module: str, extra: str, purpose: str) -> None:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that
    installs it (``pip install 'dwstft[extra]'``) and what needs it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs {module}, which is not installed; install it with: "
            f"pip install 'dwstft[{extra}]'"
        ) from None
