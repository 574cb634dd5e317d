"""Unit tests of the trust boundary's pieces: the wire format, the static reader (notes only),
message hygiene (an error reaches feedback as its type and the student's own line), the order
in which parts run (grader pieces after the parts they implement)."""

from __future__ import annotations

import base64
import json

import pytest
import torch

from flowlab_course.trusted import static, wire
from flowlab_course.trusted.bridge import KernelBridge, LocalBridge, NoAnswer, StudentError
from flowlab_course.trusted.parts import Part


# ---------------------------------------------------------------------------------- the wire
def test_round_trip_of_plain_values() -> None:
    value = {"a": (torch.arange(6, dtype=torch.float64).reshape(2, 3), 1, 2.5, "s", None),
             "b": [torch.tensor([True, False]), torch.zeros(0, 4)]}
    back = wire.decode(json.loads(json.dumps(wire.encode(value))))
    assert torch.equal(back["a"][0], value["a"][0]) and back["a"][1:] == (1, 2.5, "s", None)
    assert back["b"][0].dtype == torch.bool and back["b"][1].shape == (0, 4)


@pytest.mark.parametrize("bad", [
    {"$tensor": ["object", [1], "AA==", "T"]},                 # not a whitelisted dtype
    {"$tensor": ["float64", [2], base64.b64encode(b"\0" * 8).decode(), "T"]},  # bytes != shape
    {"$tensor": ["float64", [-1], "", "T"]},                   # negative size
    {"$tuple": "x"}, {"$dict": [[1]]}, {"$unknown": 1},
])
def test_malformed_answers_are_refused(bad) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(bad)


def test_a_tensor_subclass_arrives_as_a_plain_tensor() -> None:
    class Sneaky(torch.Tensor):
        pass

    ns = {"make": lambda: torch.ones(3).as_subclass(Sneaky)}
    [[got, _]] = LocalBridge(ns).call("calls", fn="make", cases=[[]])
    assert type(got) is torch.Tensor and torch.equal(got, torch.ones(3))


def test_objects_that_are_not_plain_values_arrive_as_opaque() -> None:
    ns = {"make": lambda: (torch.nn.Linear(2, 2), lambda: 1)}
    [[got, _]] = LocalBridge(ns).call("calls", fn="make", cases=[[]])
    assert all(isinstance(v, wire.Opaque) for v in got)


# ---------------------------------------------------------------------------------- the bridge
def test_student_errors_come_back_as_type_and_own_line_only() -> None:
    ns = {}
    exec("def f(x):\n    raise ValueError('bad input ' + repr(x.tolist()))", ns)
    bridge = LocalBridge(ns)
    with pytest.raises(StudentError) as info:
        bridge.call("calls", fn="f", cases=[[torch.tensor([0.123456789, 2.5])]])
    assert info.value.message == "" and info.value.error == "ValueError"
    # integers, encodings, anything: no free text ever comes back
    exec("def g(x):\n    raise ValueError(' '.join(str(int(v * 1e6)) for v in x.tolist()))", ns)
    with pytest.raises(StudentError) as info:
        bridge.call("calls", fn="g", cases=[[torch.tensor([0.123456789, 2.5])]])
    assert info.value.describe("g") == "g raised ValueError"


def _answer(**reply):
    return {"ok": False, **reply}


def test_a_forged_error_type_or_line_is_not_passed_on() -> None:
    bridge = KernelBridge(client=None, student_source=["def f(x):\n    return x.sum()  # mine"],
                          stub_messages=["In assignment 2 you write it yourself"])
    error, message, where = bridge._student_error(_answer(
        error="X19mbG93bGFiX3Byb2Jl", message="leak", where=[3, "_flowlab_probe('...')"]))
    assert (error, message, where) == ("an exception", "", None)
    error, message, where = bridge._student_error(_answer(
        error="ReferenceUnavailable", message="In assignment 2 you write it yourself",
        where=[2, "return x.sum()  # mine"]))
    assert (error, message, where) == ("ReferenceUnavailable", "In assignment 2 you write it "
                                       "yourself", [2, "return x.sum()  # mine"])
    error, message, _ = bridge._student_error(_answer(error="NameError",
                                                      message="name 'f' is not defined"))
    assert message == "name 'f' is not defined"
    _, message, _ = bridge._student_error(_answer(error="NameError",
                                                  message="name 'c2VjcmV0' is not defined"))
    assert message == ""


def test_a_message_quoting_the_grader_is_withheld() -> None:
    bridge = KernelBridge(client=None)
    bridge._secret = "layer = build(ctx.student(cls), *args, **dict(kwargs or {}))"
    assert "withheld" in bridge.clean("I saw: layer = build(ctx.student(cls), *args")


def test_no_answer_when_the_channel_is_swallowed() -> None:
    ns = {}
    bridge = LocalBridge(ns)
    bridge.start()
    ns["_flowlab_probe"] = lambda *a, **k: None  # a student's rebinding of the channel
    with pytest.raises(NoAnswer):
        bridge.call("calls", fn="len", cases=[])


# ---------------------------------------------------------------------------------- static reader
PART = Part("assignment2.affine_forward", lambda k: None, defines=("AffineCoupling",),
            reference=("flowlab.transforms.coupling",),
            reference_functions=("flowlab.flow.Flow.sample",),
            body_forbids={"sample_with_temperature": ("sample",)})
OTHER = Part("assignment2.training", lambda k: None, defines=("train",), reference=())


def _kinds(source: str, setup: str = "import torch\nfrom flowlab.transforms.base import Transform"):
    found = static.analyse([(1, source)], [PART, OTHER], [setup])
    return {(f.kind, p) for f in found for p in f.parts}


@pytest.mark.parametrize("source", [
    "from flowlab.transforms.coupling import AffineCoupling as R",
    "import flowlab as fl\nclass AffineCoupling(fl.AffineCoupling):\n    pass",
    "import flowlab\nx = flowlab.transforms.coupling.AffineCoupling",
    "import flowlab.transforms.coupling as c",
    "import flowlab\nR = getattr(flowlab, 'AffineCoupling')",
    "from flowlab import AffineCoupling",
])
def test_delegation_is_found_through_aliases_and_reexports(source: str) -> None:
    assert ("delegation", PART.key) in _kinds(source)
    assert ("delegation", OTHER.key) not in _kinds(source)


def test_a_forbidden_call_inside_the_graded_function_is_delegation() -> None:
    part = Part("assignment4.temperature", lambda k: None, defines=("sample_with_temperature",),
                body_forbids={"sample_with_temperature": ("sample",)})
    src = "def sample_with_temperature(flow, n, T):\n    return flow.sample(n, temperature=T)"
    found = static.analyse([(1, src)], [part])
    assert [f.kind for f in found] == ["delegation"]
    ok = "def sample_with_temperature(flow, n, T):\n    z = torch.randn(n, 2) * T\n    return flow.inverse(z)[0]\n\nflow.sample(10)"
    assert static.analyse([(1, ok)], [part]) == []


@pytest.mark.parametrize("source", [
    "exec('import flowlab')", "eval('1')", "__import__('flowlab')", "import importlib",
    "import inspect", "import gc", "import ctypes", "import pickle", "import builtins",
    "import sys\nsys.modules['x'] = 1", "import sys\nf = sys._getframe(1)",
    "get_ipython().ast_transformers.append(1)", "get_ipython().events.register('x', print)",
    "x = (1).__class__.__subclasses__()", "f = g.__globals__", "import os\nos.system('ls')",
    "import flowlab\nR = getattr(flowlab, 'Affine' + 'Coupling')", "%run other.py",
    "import torch\nt = torch.load('x.pt')",
])
def test_undecidable_constructs_are_noted_for_the_instructor(source: str) -> None:
    assert ("undecidable", PART.key) in _kinds(source)


@pytest.mark.parametrize("source", [
    "%matplotlib inline\nimport matplotlib.pyplot as plt",
    "import sys\nprint('debug', file=sys.stderr)",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass",
    "import logging, warnings, math\nlogging.warning('x'); warnings.warn('y')",
    "class AffineCoupling(Transform):\n    def __init__(self, mask, c):\n        super().__init__()\n"
    "        self.register_buffer('mask', torch.as_tensor(mask))",
    "import numpy as np\nz = torch.where(x > 0, x, 0.5 * x)\ny = torch.linalg.solve_triangular(a, b, upper=False)",
    "from flowlab.flow import Flow\nfrom flowlab.distributions import StandardNormal",
    "from IPython.display import display\ndisplay('x')",
    # honest styles of issue 27: never a note, let alone a zero
    "%load_ext autoreload\n%autoreload 2", "%pip install tqdm", "from pathlib import Path",
    "import operator\nf = operator.mul", "act = getattr(torch, name)\ny = act(x)",
    "b = vars(AffineCoupling)['scale']", "import torch.nn.functional as F\nF.relu(x)",
])
def test_honest_code_is_not_flagged(source: str) -> None:
    assert _kinds(source) == set()


def test_monkeypatching_torch_is_reported_but_costs_nothing() -> None:
    found = _kinds("torch.allclose = lambda *a, **k: True")
    assert {k for k, _ in found} == {"note"}


def test_an_undecidable_construct_in_a_graded_cell_notes_only_that_cells_parts() -> None:
    src = "class AffineCoupling(Transform):\n    def forward(self, x):\n        return eval('x'), 0"
    kinds = _kinds(src)
    assert ("undecidable", PART.key) in kinds and ("undecidable", OTHER.key) not in kinds


# ---------------------------------------------------------------------------------- the runner
def test_findings_are_notes_and_never_decide_a_verdict() -> None:
    import nbformat

    from flowlab_course.trusted import runner

    ok = Part("assignmentX.ok", lambda k: None, defines=("AffineCoupling",),
              reference=("flowlab.transforms.coupling",))
    the_plan = runner.Plan(parts={0: ok})
    findings = static.analyse([(1, "import flowlab\nR = flowlab.AffineCoupling\nexec('1')")],
                              [ok])
    assert {f.kind for f in findings} == {"delegation", "undecidable"}
    done = {}
    runner.grade(LocalBridge({}), the_plan, findings, done)
    assert done[0].fraction == 1.0 and done[0].kind == "ok"
    flags = runner.flags(the_plan, done, findings)
    assert flags and {f["kind"] for f in flags} == {"note"}
    del nbformat


def test_a_part_that_reveals_another_runs_after_it() -> None:
    from flowlab_course.trusted.parts import order

    def mk(name, reveals=()):
        return Part(f"assignmentX.{name}", lambda k: None, defines=(), reveals=reveals)

    parts = {3: mk("stack", ("coupling",)), 5: mk("coupling"), 1: mk("first"),
             7: mk("train", ("stack", "coupling"))}
    got = order(parts)
    assert sorted(got) == [1, 3, 5, 7]
    assert got.index(5) < got.index(3) < got.index(7)
    assert order({1: mk("a"), 2: mk("b")}) == [1, 2]


def test_every_part_reference_is_declared_at_the_assignment_level() -> None:
    import importlib

    from flowlab_course.registry import declaration
    from flowlab_course.trusted.parts import REGISTRY

    for i in range(1, 6):
        module = importlib.import_module(f"flowlab_course.graders.assignment{i}")
        keys = set(module.GRADED.objects)
        parts = [p for k, p in REGISTRY.items() if k.startswith(f"assignment{i}.")]
        assert declaration(parts) == [module.GRADED]
        for p in parts:
            for ref in (*p.reference, *p.reference_functions):
                assert any(ref == k or ref.startswith(k + ".") for k in keys), (p.key, ref)
            for other in p.reveals:
                assert f"assignment{i}.{other}" in REGISTRY, (p.key, other)


def test_a_decorated_graded_function_is_probed_with_the_graders_pieces() -> None:
    """``@torch.no_grad()`` around causal_attention: a wrong causal_mask costs causal_mask only."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "assignments"))
    from local_grading import grade, namespace, source
    from nbgrader_course import patch

    nb = patch(source("05_autoregressive"),
               "def causal_attention(", "@torch.no_grad()\ndef causal_attention(")
    nb = patch(nb, "return j < i if strict else j <= i", "return i < j if strict else i <= j")
    ns = namespace(nb)
    assert grade("assignment5", ns, "causal_mask") is not None
    assert grade("assignment5", ns, "causal_attention") is None
    assert ns["causal_mask"](2).tolist() == [[True, True], [False, True]]  # their own, put back


def test_strings_and_type_names_of_an_answer_carry_no_data() -> None:
    """A type name or string the kernel chose reaches a grader's message only if made of names."""
    import base64 as b64

    secret = b64.b64encode(b"_flowlab_probe('...')").decode()
    ns = {"secret": secret}
    exec("class Odd:\n    pass\nOdd.__name__ = secret\n", ns)
    exec("def answer():\n    return [Odd(), secret, 'StandardNormal', type([]).__name__, "
         "Odd.__name__ + '1']", ns)
    [[got, _]] = LocalBridge(ns, student_source=["class Odd:\n    pass"]).call(
        "calls", fn="answer", cases=[[]])
    assert got[0] == wire.Opaque("an object") and got[1] == "?" and got[4] == "?"
    assert got[2:4] == ["StandardNormal", "list"]


# ---------------------------------------------------------------------------------- the layout
def _trusted_files():
    from pathlib import Path

    import flowlab_course

    return sorted((Path(flowlab_course.__file__).resolve().parent / "trusted").rglob("*.py"))


def _graders_references(path) -> list[str]:
    """Every import of the graders package, and every non-docstring string naming it."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)
                  and isinstance(node.value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("flowlab_course.graders")]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if (node.level == 0 and module.startswith("flowlab_course.graders")) or (
                    node.level >= 2 and module.split(".")[0] == "graders") or (
                    node.level == 2 and not module and any(a.name == "graders"
                                                           for a in node.names)):
                found.append(f"{'.' * node.level}{module} import "
                             f"{', '.join(a.name for a in node.names)}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and "flowlab_course.graders" in node.value):
            found.append(repr(node.value))   # importlib by name
    return found


def test_trusted_imports_nothing_from_the_graders() -> None:
    """The trust boundary's code depends on no grader (the composition is flowlab_course.registry)."""
    files = _trusted_files()
    assert {p.name for p in files} >= {"bridge.py", "runner.py", "parts.py", "errors.py"}
    for path in files:
        assert _graders_references(path) == [], path.name


@pytest.mark.parametrize("source", [
    "from ..graders.errors import GradingFailure", "from .. import graders",
    "import flowlab_course.graders.assignment2", "from flowlab_course.graders import probes",
    "import importlib\nimportlib.import_module(f'flowlab_course.graders.{m}')",
])
def test_the_layout_check_sees_every_form_of_import(tmp_path, source: str) -> None:
    path = tmp_path / "module.py"
    path.write_text(f'"""Mentions flowlab_course.graders in its docstring only."""\n{source}\n')
    assert _graders_references(path)
    path.write_text('"""Mentions flowlab_course.graders in its docstring only."""\nimport json\n')
    assert _graders_references(path) == []


def test_the_runner_finds_parts_through_the_lookup_it_is_given() -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from flowlab_course import registry
    from flowlab_course.trusted import runner

    cell = new_code_cell("### BEGIN HIDDEN TESTS\n# flowlab-grade: assignment5.causal_mask\n"
                         "### END HIDDEN TESTS", metadata={"nbgrader": {"grade": True}})
    nb = new_notebook(cells=[cell])
    the_plan = runner.plan(nbformat.from_dict(nb), lambda key: PART)
    assert the_plan.parts == {0: PART} and not the_plan.unknown
    cell.source = "### BEGIN HIDDEN TESTS\n# flowlab-grade: assignment5.causal_mask\n### END HIDDEN TESTS"
    the_plan = runner.plan(nbformat.from_dict(new_notebook(cells=[cell])), registry.lookup)
    assert the_plan.parts[0].key == "assignment5.causal_mask"
    with pytest.raises(KeyError, match="no grader module"):
        registry.lookup("assignment9.x")
