"""The public API the README and docs show: every ``dwstft.<name>`` and ``from dwstft
import ...`` they write in code resolves, every layer the README calls by its bare name is
importable from ``dwstft``, and ``import dwstft`` stays free of the optional extras."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dwstft
from dwstft.nn.model_ops import FOLDABLE

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_of(path: Path) -> list[str]:
    """The fenced blocks and the inline code spans of a Markdown file."""
    text = path.read_text(encoding="utf-8")
    fenced = re.findall(r"```.*?```", text, flags=re.S)
    inline = re.findall(r"`[^`]+`", re.sub(r"```.*?```", "", text, flags=re.S))
    return fenced + inline


def mentions(pattern: str, paths: list[Path] = DOCS) -> list[tuple[str, str]]:
    """(file name, match) of ``pattern`` in the code of ``paths``, each once."""
    found = {
        (path.name, match) for path in paths for code in code_of(path)
        for match in re.findall(pattern, code)
    }  # fmt: skip
    return sorted(found)


def resolve(dotted: str) -> object:
    """``dwstft.a.b.c``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


DOTTED = mentions(r"(?<![\w./-])dwstft(?:\.\w+)+")
FROM_IMPORTS = mentions(r"from (dwstft(?:\.\w+)*) import ([\w, ]+)")
#: Classes the README calls by their bare name (``MultiScaleSTFTSeparable(c, f, (3, 5))``).
README_CALLS = mentions(r"(?<![\w.])([A-Z]\w*)\(", [ROOT / "README.md"])


def test_the_docs_mention_what_these_tests_check():
    assert ("architecture.md", "dwstft.fold_model") in DOTTED
    assert ("README.md", "MultiScaleSTFTSeparable") in README_CALLS
    assert any(names.startswith("create_model") for _, (_, names) in FROM_IMPORTS)


@pytest.mark.parametrize(("doc", "dotted"), DOTTED)
def test_every_dotted_name_in_the_docs_resolves(doc, dotted):
    assert resolve(dotted) is not None


@pytest.mark.parametrize(("doc", "statement"), FROM_IMPORTS)
def test_every_from_import_in_the_docs_works(doc, statement):
    module, names = statement
    for name in (n.strip() for n in names.split(",") if n.strip()):
        assert hasattr(importlib.import_module(module), name), f"{doc}: {module}.{name}"


@pytest.mark.parametrize(("doc", "name"), README_CALLS)
def test_every_class_the_readme_calls_is_importable_from_dwstft(doc, name):
    assert name in dwstft.__all__
    assert isinstance(getattr(dwstft, name), type)


def test_everything_in_all_resolves_and_star_import_gives_it():
    namespace: dict[str, object] = {}
    exec("from dwstft import *", namespace)
    assert sorted(set(namespace) - {"__builtins__"}) == sorted(dwstft.__all__)


def test_import_dwstft_loads_no_extra_and_no_export_machinery():
    heavy = ("onnx", "onnxruntime", "onnxscript", "matplotlib", "sklearn")
    heavy += ("dwstft.deploy", "dwstft.deploy.export", "dwstft.bench", "dwstft.cli")
    code = f"import sys, dwstft\nprint(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.strip() == "[]"


def test_fold_model_computes_what_the_model_computes_with_plain_convolutions():
    torch.manual_seed(0)
    model = dwstft.create_model("stftnet_b8_f128", stage_blocks=(1, 1)).eval()
    folded = dwstft.fold_model(model)
    assert not any(isinstance(m, FOLDABLE) for m in folded.modules())
    assert any(isinstance(m, FOLDABLE) for m in model.modules())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
