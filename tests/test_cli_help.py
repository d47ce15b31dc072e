"""``dwstft ... --help``: every option of every command and subcommand says what it does
and shows its default, and the texts the issue found unclear say what they mean."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from dwstft.cli import build_parser
from dwstft.train.config import RECIPES


def parsers(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ("dwstft",)
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(command words, parser) of the whole tree, sub-subcommands included."""
    yield " ".join(words), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, (*words, name))


def options() -> list[tuple[str, str, argparse.ArgumentParser, argparse.Action]]:
    found = []
    for command, parser in parsers(build_parser()):
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                name = "/".join(action.option_strings) or action.dest
                found.append((command, name, parser, action))
    return found


OPTIONS = options()


def expected_default(default: object) -> str | None:
    """How a default reads on the command line; None when there is nothing to show."""
    if default is None or default is False or default is argparse.SUPPRESS:
        return None
    if isinstance(default, (list, tuple)):
        return " ".join(str(d) for d in default) or None
    return str(default) or None


def test_the_walk_reaches_the_sub_subcommands():
    commands = {command for command, *_ in OPTIONS}
    assert {"dwstft train", "dwstft bench layer", "dwstft viz pareto"} <= commands
    assert {"dwstft reproduce table2", "dwstft export", "dwstft eval"} <= commands
    assert len(OPTIONS) > 100


@pytest.mark.parametrize(
    ("command", "option", "parser", "action"), OPTIONS, ids=[f"{c} {o}" for c, o, *_ in OPTIONS]
)
def test_every_option_has_help_that_shows_its_default(command, option, parser, action):
    assert action.help and action.help.strip(), f"{command} {option}: no help text"
    shown = expected_default(action.default)
    if shown is not None:
        text = parser._get_formatter()._expand_help(action)
        assert f"[default: {shown}]" in text, f"{command} {option}: {text!r}"


def test_every_subcommand_has_a_one_line_summary():
    for command, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help, f"{command} {choice.dest}"


def rendered(*words: str) -> str:
    tree = dict(parsers(build_parser()))
    return " ".join(tree[" ".join(("dwstft", *words))].format_help().split())


def test_bench_layer_help_says_what_r0_r1_r2_are():
    text = rendered("bench", "layer")
    assert "R0: a 1x1 conv 8C -> F on precomputed STFT maps" in text
    assert "R1: nn.Conv2d depthwise n x n + 1x1 C -> F" in text
    assert "R2: the dense nn.Conv2d(C, F, n)" in text


def test_train_help_names_each_recipe_and_no_phantom_ones():
    text = rendered("train")
    assert len(RECIPES) == 3 and "one of three recipes (--recipe)" in text
    assert "any other listed" not in text
    for name in RECIPES:
        assert f"{name} (" in text
