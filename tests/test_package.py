"""``import dwstft`` is lazy (PEP 562): the public names are imported on first use, so the
``dwstft`` command starts without torch and can handle Ctrl-C from its first moments.
Each case runs a fresh interpreter, where nothing has been imported yet."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow


def run_fresh(body: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_command_module_imports_without_torch():
    out = run_fresh(
        """
        import sys
        import dwstft.cli
        print("torch" in sys.modules, "numpy" in sys.modules)
        """
    )
    assert out.split() == ["False", "False"]


def test_every_public_name_is_the_object_its_module_defines():
    out = run_fresh(
        """
        import importlib
        import dwstft
        for name in dwstft.__all__:
            source = dwstft._SOURCES[name]
            assert getattr(dwstft, name) is getattr(importlib.import_module(source), name), name
        namespace = {}
        exec("from dwstft import *", namespace)
        assert set(dwstft.__all__) <= set(namespace) and set(dwstft.__all__) <= set(dir(dwstft))
        print(sorted(dwstft.__all__) == sorted(dwstft._SOURCES))
        """
    )
    assert out.split() == ["True"]


def test_lpq_stays_the_function_when_its_module_is_imported_first():
    out = run_fresh(
        """
        import dwstft
        import dwstft.lpq as first          # binds through the package: the function
        import dwstft.bench.lpq             # imports the submodule dwstft.lpq
        from dwstft.lpq import lpq
        print(dwstft.lpq is lpq, first is lpq, callable(dwstft.lpq))
        """
    )
    assert out.split() == ["True", "True", "True"]


def test_an_unknown_name_is_an_attribute_error():
    out = run_fresh(
        """
        import dwstft
        try:
            dwstft.no_such_name
        except AttributeError as error:
            print(error)
        """
    )
    assert out.strip() == "module 'dwstft' has no attribute 'no_such_name'"
