"""The logic behind the book's computed sentences, tested without executing the chapters.

Chapter 7's verdicts ("Glow is ahead of RealNVP by ...", "... are level") come from one small
function, ``compare``, defined in a code cell of the chapter.  The test takes that function's
source from the chapter itself (so it tests the code the book runs, not a copy) and checks
that it is symmetric: swapping the two models never changes the winner or the sentence, and a
gap larger than the tie never reads as "level" (the chapter once printed "within 0.05
bits/dim" when Glow won by more).
"""

from __future__ import annotations

import ast
import re

import pytest

from .conftest import BOOK


def _function_from_chapter(chapter: str, name: str):
    text = (BOOK / f"{chapter}.md").read_text(encoding="utf-8")
    for cell in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", text, flags=re.S | re.M):
        cell = re.sub(r"\A(?::[\w-]+:.*\n)+", "", cell)              # cell options
        cell = re.sub(r"\A---\n.*?\n---\n", "", cell, flags=re.S)
        tree = ast.parse(cell)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name == name:
                namespace: dict = {}
                exec(compile(ast.Module([node], type_ignores=[]), chapter, "exec"), namespace)
                return namespace[name]
    raise AssertionError(f"{chapter}.md defines no function {name!r} in a code cell")


compare = _function_from_chapter("07_glow", "compare")


@pytest.mark.parametrize("glow, nvp", [(1.90, 2.10), (2.10, 1.90), (2.00, 2.03), (2.03, 2.00),
                                       (2.0, 2.0), (1.2, 1.26), (1.26, 1.2)])
def test_compare_is_symmetric(glow: float, nvp: float) -> None:
    assert compare("Glow", glow, "RealNVP", nvp) == compare("RealNVP", nvp, "Glow", glow)


def test_compare_names_the_winner_and_the_gap_on_both_orderings() -> None:
    for a, b in [(("Glow", 1.90), ("RealNVP", 2.10)), (("RealNVP", 2.10), ("Glow", 1.90))]:
        winner, sentence = compare(*a, *b)
        assert winner == "Glow"
        assert sentence == "Glow is ahead of RealNVP by 0.200 bits/dim"
    for a, b in [(("Glow", 2.10), ("RealNVP", 1.90)), (("RealNVP", 1.90), ("Glow", 2.10))]:
        winner, sentence = compare(*a, *b)
        assert winner == "RealNVP"
        assert sentence == "RealNVP is ahead of Glow by 0.200 bits/dim"


def test_compare_calls_a_tie_only_within_the_tie() -> None:
    winner, sentence = compare("Glow", 2.00, "RealNVP", 2.03)
    assert winner is None and "level" in sentence and "0.030" in sentence
    winner, sentence = compare("Glow", 2.00, "RealNVP", 2.06)   # more than 0.05: not level
    assert winner == "Glow" and "level" not in sentence and "within" not in sentence
    winner, _ = compare("Glow", 2.00, "RealNVP", 2.03, tie=0.01)
    assert winner == "Glow"
