"""Every example in flowlab's docstrings runs and prints what it says (``doctest``).

The suite's ``testpaths`` is ``tests/``, so ``pytest --doctest-modules flowlab`` would need a
second command in CI; this file finds the examples of every flowlab module itself (one test
per module) and fails on the first example whose output differs, like ``--doctest-modules``.
A module that cannot be imported because an optional dependency is missing is skipped with
the reason; any other import error fails.
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
def test_docstring_examples_run(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and not err.name.startswith("flowlab"):
            pytest.skip(f"optional dependency {err.name} is not installed")
        raise
    tests = _examples(module)
    if not tests:
        pytest.skip("no examples in this module")
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    torch.manual_seed(0)
    failures = []
    for test in tests:
        result = runner.run(test, out=failures.append)
        assert result.failed == 0, f"{test.name}: a docstring example failed\n" + "".join(
            failures
        )
