"""The redacted flowlab of a grading kernel: stubs that explain, transitively, nothing of the original.

Built from the real declarations of the graders (:data:`GRADED` of each assignment module) into a
temporary cache; imported in a fresh interpreter whose ``sys.path`` puts the copy first (as the
sandbox's mount does).
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from flowlab_course.trusted import redaction
from flowlab_course.trusted.redaction import Graded


def _graded(n: int) -> Graded:
    return importlib.import_module(f"flowlab_course.graders.assignment{n}").GRADED


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    cache = tmp_path_factory.mktemp("redacted")
    return {n: redaction.build(_graded(n), cache=str(cache)) for n in range(1, 6)}


def _run(copy: str, code: str) -> dict:
    """Run ``code`` with the redacted copy first on sys.path; it prints one JSON line."""
    prelude = (f"import sys, json\nsys.path.insert(0, {os.path.dirname(copy)!r})\n"
               "import flowlab\nassert flowlab.__file__.startswith(sys.path[0]), flowlab.__file__\n")
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"), check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_stub_raises_with_the_lecture_message(copies) -> None:
    got = _run(copies[2], """
        from flowlab.transforms.coupling import AffineCoupling
        from flowlab.transforms.masks import HalfMask
        out = {}
        for name, fn in [("init", lambda: AffineCoupling(HalfMask(2))),
                         ("new", lambda: AffineCoupling.__new__(AffineCoupling)),
                         ("subclass", lambda: type("Mine", (AffineCoupling,), {})),
                         ("realnvp", lambda: flowlab.realnvp(2))]:
            try:
                fn()
                out[name] = None
            except Exception as err:
                out[name] = [type(err).__name__, str(err)]
        out["attrs"] = sorted(a for a in vars(AffineCoupling) if not a.startswith("__"))
        print(json.dumps(out))
    """)
    for name in ("init", "new", "subclass"):
        assert got[name] == ["ReferenceUnavailable",
                             "In assignment 2 you write the affine coupling layer yourself: "
                             "flowlab's AffineCoupling, the reference implementation, is not "
                             "available while your notebook is graded. Write it with torch "
                             "operations."]
    assert got["realnvp"][0] == "ReferenceUnavailable" and "RealNVP stack" in got["realnvp"][1]
    assert got["attrs"] == []   # no forward, no inverse, nothing to call


@pytest.mark.slow
def test_ungraded_flowlab_still_works(copies) -> None:
    for n, copy in copies.items():
        got = _run(copy, """
            import importlib, pkgutil, torch
            failed = []
            for m in pkgutil.walk_packages(flowlab.__path__, "flowlab."):
                try:
                    importlib.import_module(m.name)
                except Exception as err:
                    failed.append([m.name, repr(err)[:200]])
            from flowlab.flow import Flow
            from flowlab.distributions import StandardNormal
            from flowlab.transforms.base import Transform
            from flowlab.data.toy2d import two_moons

            class Shift(Transform):
                def forward(self, x, context=None):
                    return x - 1, x.new_zeros(x.shape[0])
                def inverse(self, z, context=None):
                    return z + 1, z.new_zeros(z.shape[0])

            flow = Flow(StandardNormal(2), [Shift()])
            lp = flow.log_prob(two_moons(8, seed=1)).shape
            print(json.dumps({"failed": failed, "log_prob": list(lp)}))
        """)
        assert got == {"failed": [], "log_prob": [8]}, n


def test_methods_and_their_overrides_are_stubbed(copies) -> None:
    got = _run(copies[4], """
        from flowlab.flow import Flow
        from flowlab.distributions import StandardNormal
        flow = Flow(StandardNormal(2), [])
        out = {"log_prob": list(flow.log_prob(__import__("torch").zeros(3, 2)).shape)}
        for name in ("sample", "sample_with_log_prob"):
            try:
                getattr(flow, name)(3)
                out[name] = None
            except Exception as err:
                out[name] = type(err).__name__
        print(json.dumps(out))
    """)
    assert got == {"log_prob": [3], "sample": "ReferenceUnavailable",
                   "sample_with_log_prob": "ReferenceUnavailable"}


def test_subclasses_are_stubbed_transitively(tmp_path) -> None:
    """A class that builds on a stubbed class, through a re-export and an alias, is stubbed."""
    pkg = tmp_path / "src" / "toylib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .base import Layer\nfrom .graded import Secret\n")
    (pkg / "base.py").write_text("class Layer:\n    def run(self):\n        return 1\n")
    (pkg / "graded.py").write_text(
        "from .base import Layer\n\nclass Secret(Layer):\n    def run(self):\n"
        "        return 'the graded formula 42'\n\n    def helper(self):\n        return 2\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "more.py").write_text(
        "import toylib as tl\nfrom toylib import Secret as S\n\n"
        "class Child(tl.Secret):\n    pass\n\nclass Grandchild(Child):\n    pass\n\n"
        "class Sibling(S):\n    pass\n\nclass Free(tl.Layer):\n    def run(self):\n"
        "        return 3\n\nclass Override(tl.Layer):\n    def helper(self):\n        return 4\n")
    declared = Graded("assignment 9", {"toylib.Secret": "the secret layer",
                                       "toylib.base.Layer.helper": "the helper"})
    out = redaction.build(declared, source=str(pkg), cache=str(tmp_path / "cache"), name="toylib")
    stubs = redaction.manifest(out)["stubs"]
    assert {"toylib.graded.Secret", "toylib.sub.more.Child", "toylib.sub.more.Grandchild",
            "toylib.sub.more.Sibling"} <= set(stubs)
    assert "toylib.sub.more.Free" not in stubs and "toylib.base.Layer" not in stubs
    assert "toylib.sub.more.Override.helper" in stubs     # an override of a stubbed method
    assert "it builds on Secret" in stubs["toylib.sub.more.Child"]
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import toylib.sub.more as m\n"
            "print(m.Free().run())\n"
            "for c in (m.Child, m.Grandchild, m.Sibling):\n"
            "    try:\n        c()\n    except RuntimeError as e:\n        print(type(e).__name__)\n")
    result = subprocess.run([sys.executable, "-c", code, os.path.dirname(out)],
                            capture_output=True, text=True, check=False)
    assert result.stdout.split() == ["3"] + ["ReferenceUnavailable"] * 3, result.stderr
    text = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*.py"))
    assert "the graded formula 42" not in text
    # deterministic and cached: the same folder, built once
    assert redaction.build(declared, source=str(pkg), cache=str(tmp_path / "cache"),
                           name="toylib") == out


def _graded_spans(tree: ast.Module, stubs: set[str], module: str, whole: bool):
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        f"{module}.{node.name}.{item.name}" in stubs:
                    yield item
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and (
                whole or f"{module}.{node.name}" in stubs):
            yield node


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_no_source_text_of_a_graded_object_is_in_the_copy(copies, n) -> None:
    copy = copies[n]
    info = redaction.manifest(copy)
    stubs, modules = set(info["stubs"]), set(info["modules"])
    source = redaction.package_dir("flowlab")
    graded_lines, other_lines = set(), set()
    for top, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(top, f)
            rel = os.path.relpath(path, os.path.dirname(source))[:-3].replace(os.sep, ".")
            module = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
            text = open(path, encoding="utf-8").read()
            tree = ast.parse(text)
            inside = set()
            for node in _graded_spans(tree, stubs, module, module in modules):
                inside.update(range(node.lineno, node.end_lineno + 1))
            for i, line in enumerate(text.splitlines(), 1):
                (graded_lines if i in inside else other_lines).add(line.strip())
    # the graded objects' own text: lines that nothing ungraded in flowlab shares
    # (a stub keeps the name: `class Name:` is its header too)
    distinctive = {line for line in graded_lines - other_lines if len(line) >= 20
                   and not (line.startswith("class ") and "(" not in line)}
    assert distinctive, "the declaration stubs nothing?"
    seen = []
    for top, dirs, files in os.walk(os.path.dirname(copy)):
        assert "__pycache__" not in dirs
        for f in files:
            assert not f.endswith(".pyc")
            if f.endswith(".py"):
                lines = {ln.strip() for ln in open(os.path.join(top, f), encoding="utf-8")}
                seen += sorted(lines & distinctive)
    assert seen == []


def test_the_books_list_of_stubs_is_generated_from_the_declarations() -> None:
    from pathlib import Path

    book = (Path(__file__).resolve().parents[2] / "book" / "sandbox.md").read_text()
    start = book.index("<!-- graded-pieces")
    block = book[book.index("\n", start) + 1: book.index("<!-- /graded-pieces -->")].strip()
    assert block == redaction.markdown_table([_graded(n) for n in range(1, 6)]), (
        "book/sandbox.md is out of date: paste flowlab_course.trusted.redaction.markdown_table() "
        "of the five GRADED declarations between the graded-pieces markers")
