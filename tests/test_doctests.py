"""Every example in flowlab's docstrings runs and prints what it says (``doctest``).

The suite's ``testpaths`` is ``tests/``, so ``pytest --doctest-modules flowlab`` would need a
second command in CI; this file finds the examples of every flowlab module itself (one test
per module) and fails on the first example whose output differs, like ``--doctest-modules``.
Every module must import (a missing dependency is a failure that names it, never a skip); the
examples are collected from the modules that have some.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import flowlab

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(flowlab.__path__, prefix="flowlab.")
    if name != "flowlab.__main__"  # running it would start the CLI
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(module) -> list[doctest.DocTest]:
    # Each docstring's examples run in a copy of the module's globals, as under
    # `pytest --doctest-modules`: an example needs every name it uses imported there.
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, module.__name__) if t.examples]


def test_every_public_module_is_found():
    assert "flowlab.transforms.coupling" in MODULES and "flowlab.transforms.splines" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)


def _with_examples() -> list[str]:
    out = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # reported by test_every_module_imports
            continue
        if _examples(module):
            out.append(name)
    return out


@pytest.mark.parametrize("name", _with_examples())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = _examples(module)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    torch.manual_seed(0)
    failures = []
    for test in tests:
        result = runner.run(test, out=failures.append)
        assert result.failed == 0, f"{test.name}: a docstring example failed\n" + "".join(
            failures
        )
