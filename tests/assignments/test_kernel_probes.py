"""The code that runs in the student's kernel (flowlab_course/kernel/), tested in this process.

* each probe is a real function: run here directly on a fake namespace (a dict), it builds the
  "student's" objects from plain data, calls them and returns plain values; a copy of the
  namespace is used, a missing name is Python's ``NameError``, an in-place write shows;
* the grader's pieces are separate modules, used only when a request names them;
* through the channel (a LocalBridge), a request is one line that *names* a probe and carries
  JSON: no code string, no templating; a name that is not a probe is refused on both sides;
* the kernel-side modules import the standard library, torch and (pieces only) flowlab, never
  ``flowlab_course``.
"""

from __future__ import annotations

import ast
import base64
import inspect
import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch
from flowlab_course import kernel
from flowlab_course.kernel import probes
from flowlab_course.kernel.pieces import NAMES as PIECES
from flowlab_course.trusted import wire
from flowlab_course.trusted.bridge import LocalBridge, StudentError

KERNEL = Path(kernel.__file__).resolve().parent


def _piece(name: str) -> types.ModuleType:
    """A piece module defined from its text, as the channel defines it in a kernel."""
    module = types.ModuleType(f"_flowlab_pieces_{name}")
    exec(compile(kernel.source(f"pieces/{name}"), f"<piece {name}>", "exec"), module.__dict__)
    return module


AFFINE = '''
import torch

class Scale(torch.nn.Module):
    """z = x * exp(a) + conditioner(x) (a toy layer); log|det| = D a."""

    def __init__(self, a, conditioner=None):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(float(a)))
        self.conditioner = conditioner

    def forward(self, x):
        shift = self.conditioner(x) if self.conditioner is not None else 0.0
        return x * torch.exp(self.a) + shift, (self.a * x.shape[1]).expand(x.shape[0])

    def inverse(self, z):
        return z * torch.exp(-self.a), (-self.a * z.shape[1]).expand(z.shape[0])

def doubled(x):
    return 2 * x

def doubled_in_place(x):
    x.mul_(2)
    return x
'''


@pytest.fixture
def student() -> dict:
    ns: dict = {"__name__": "__main__"}
    exec(AFFINE, ns)
    return ns


# ---------------------------------------------------------------------------- the functions
def test_every_probe_is_a_documented_function_of_a_context_first() -> None:
    assert set(probes.PROBES) >= {"calls", "layer_call", "set_layer_call", "realnvp",
                                  "record_training", "train_realnvp", "dequantize", "multiscale",
                                  "actnorm_init", "lu_weight", "temperature", "maf", "attention"}
    for name, fn in probes.PROBES.items():
        assert fn.__name__ == name and inspect.getdoc(fn), name
        assert next(iter(inspect.signature(fn).parameters)) == "ctx", name


def test_calls_returns_values_and_sees_an_in_place_write(student) -> None:
    ctx = probes.Context(student)
    x = torch.tensor([1.0, -2.0])
    [[value, unchanged]] = probes.calls(ctx, "doubled", [[x]])
    assert torch.equal(value, torch.tensor([2.0, -4.0])) and unchanged is True
    [[_, unchanged]] = probes.calls(ctx, "doubled_in_place", [[x.clone()]])
    assert unchanged is False


def test_a_probe_works_on_a_copy_and_a_missing_name_is_pythons_name_error(student) -> None:
    ctx = probes.Context(student)
    ctx.ns["scratch"] = 1
    assert "scratch" not in student
    with pytest.raises(NameError, match=r"^name 'AffineCoupling' is not defined$"):
        probes.layer_call(ctx, "AffineCoupling", "forward", torch.zeros(2, 2),
                          torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2))


def test_layer_call_builds_from_data_and_returns_values_and_gradients(student) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    x2 = x.clone()
    x2[0] += 1
    w, b = torch.randn(3, 3, generator=gen, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    w_out, w_ld = torch.ones(4, 3, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    raw = probes.layer_call(probes.Context(student), "Scale", "forward", x, x2, w_out, w_ld,
                            args=[0.5], cond=[["linear", w, b]], cond_at=1)
    y, ld = raw["out"]
    assert torch.allclose(y, x * torch.exp(torch.tensor(0.5)) + x @ w.T)
    assert torch.allclose(ld, torch.full((4,), 1.5, dtype=torch.float64))
    assert raw["unchanged"] is True and len(raw["grads"]) == 2
    assert torch.allclose(raw["grads"][0], w_out.T @ x)            # d sum(x W^T) / dW
    assert ["__main__", "__main__.Scale"] in raw["classes"]
    back = probes.layer_call(probes.Context(student), "Scale", "inverse", y.detach(), y.detach(),
                             w_out, w_ld, args=[0.5])
    assert back["grads"] is None and torch.allclose(back["out"][1], -ld)


def test_set_layer_call_reports_a_missing_or_misshapen_tensor(student) -> None:
    ctx, x = probes.Context(student), torch.zeros(2, 3, dtype=torch.float64)
    common = {"x": x, "x2": x, "w_out": x, "w_ld": x[:, 0], "args": [0.0]}
    assert probes.set_layer_call(ctx, "Scale", "forward", tensors={"loc": x}, **common) == {
        "missing": "loc", "got": "NoneType"}
    assert probes.set_layer_call(ctx, "Scale", "forward", tensors={"a": x}, **common) == {
        "bad_shape": "a", "shape": []}
    raw = probes.set_layer_call(ctx, "Scale", "forward", tensors={"a": torch.tensor(1.0)},
                                grads_of=["a"], **common)
    assert set(raw["grads"]) == {"input", "a"} and torch.allclose(
        raw["out"][1], torch.full((2,), 3.0, dtype=torch.float64))


def test_a_piece_is_used_only_when_defined_and_patches_the_layer() -> None:
    ns: dict = {}
    exec("import torch\nclass Conv(torch.nn.Module):\n"
         "    def __init__(self, c):\n        super().__init__()\n"
         "        self.register_buffer('permutation', torch.eye(c))\n"
         "        self.register_buffer('lower', torch.zeros(c, c))\n"
         "        self.register_buffer('upper', torch.zeros(c, c))\n"
         "        self.register_buffer('log_abs_diag', torch.zeros(c))\n"
         "        self.register_buffer('sign', torch.ones(c))\n"
         "    def weight(self):\n        raise NotImplementedError\n"
         "    def forward(self, x):\n        W = self.weight()\n"
         "        return x @ W.T, x.new_zeros(x.shape[0]) + self.log_abs_diag.sum()\n", ns)
    x = torch.randn(3, 2, dtype=torch.float64)
    tensors = {"log_abs_diag": torch.tensor([0.5, -1.0], dtype=torch.float64),
               "sign": torch.tensor([1.0, -1.0], dtype=torch.float64)}
    common = {"x": x, "x2": x, "w_out": x, "w_ld": x[:, 0], "args": [2], "tensors": tensors,
              "patch": "lu_weight"}
    with pytest.raises(LookupError, match="lu_weight"):
        probes.set_layer_call(probes.Context(ns), "Conv", "forward", **common)
    ctx = probes.Context(ns, {"lu_weight": _piece("lu_weight")})
    y, _ = probes.set_layer_call(ctx, "Conv", "forward", **common)["out"]
    diag = torch.tensor([torch.exp(torch.tensor(0.5)), -torch.exp(torch.tensor(-1.0))],
                        dtype=torch.float64)
    assert torch.allclose(y, x * diag)


def test_attention_puts_the_graders_causal_mask_in_place_for_the_call_only() -> None:
    ns: dict = {}
    exec("import torch\ndef causal_mask(T, strict=False):\n    return torch.ones(T, T).bool()\n"
         "def causal_attention(x, wq, wk, wv, shift):\n"
         "    return causal_mask(x.shape[1]).to(x.dtype).expand(x.shape[0], -1, -1)\n", ns)
    own = ns["causal_mask"]
    ctx = probes.Context(ns, {"causal_mask": _piece("causal_mask")})
    x = torch.zeros(1, 3, 2, dtype=torch.float64)
    out = probes.attention(ctx, x, None, None, None, False, [])
    assert torch.equal(out["out"][0], torch.tril(torch.ones(3, 3, dtype=torch.float64)))
    assert ns["causal_mask"] is own


def test_the_probes_compute_nothing_graded() -> None:
    """Drivers only: no layer, flow or mask of the grader's is defined in probes.py (those are
    pieces, sent only by the parts that reveal them)."""
    tree = ast.parse(kernel.source("probes"))
    classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    assert classes == ["Context"]
    for name in PIECES:   # each piece is a module of its own
        assert (KERNEL / "pieces" / f"{name}.py").is_file(), name


# ---------------------------------------------------------------------------- the channel
class _Recording(LocalBridge):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sources: list[str] = []

    def _execute(self, source: str) -> list:
        self.sources.append(source)
        return super()._execute(source)


def test_a_request_names_a_probe_and_carries_json_only(student) -> None:
    bridge = _Recording(student)
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    [[value, unchanged]] = bridge.call("calls", fn="doubled", cases=[[x]])
    assert torch.equal(value, 2 * x) and unchanged is True
    start, request = bridge.sources
    assert start.startswith(kernel.source("channel"))
    match = re.fullmatch(r"_flowlab_probe\('calls', '(.*)'\)", request, re.DOTALL)
    assert match, request
    assert wire.decode(json.loads(match.group(1)))["fn"] == "doubled"
    assert "_flowlab_probe" in student and "_flowlab_channel" not in student


def test_the_channel_gives_the_same_values_as_the_function_in_process(student) -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    args = {"cls": "Scale", "direction": "forward", "x": x, "x2": x + 1,
            "w_out": torch.ones(5, 3, dtype=torch.float64),
            "w_ld": torch.ones(5, dtype=torch.float64), "args": [0.3]}
    here = probes.layer_call(probes.Context(student), **args)
    there = LocalBridge(student).call("layer_call", **args)
    for a, b in zip((*here["out"], *here["out2"]), (*there["out"], *there["out2"])):
        assert torch.equal(a.detach(), b)


def test_a_piece_enters_the_kernel_once_and_only_when_a_request_needs_it() -> None:
    ns: dict = {}
    exec("import torch\ndef causal_attention(x, wq, wk, wv, shift):\n"
         "    return causal_mask(x.shape[1]).to(x.dtype)\n", ns)
    bridge = _Recording(ns)
    bridge.start()
    piece = kernel.source("pieces/causal_mask")
    assert len(bridge.sources) == 1 and piece not in bridge.sources[0]
    x = torch.zeros(1, 2, 2, dtype=torch.float64)
    for _ in range(2):
        bridge.call("attention", pieces=("causal_mask",), x=x, wq=None, wk=None, wv=None,
                    shift=False, perturbed=[])
    calls = [ast.parse(r, mode="eval").body for r in bridge.sources[1:]]
    assert [(c.func.id, c.args[0].value) for c in calls] == [("_flowlab_probe", "attention")] * 2
    payloads = [wire.decode(json.loads(c.args[1].value)) for c in calls]
    # the piece travels inside the first request that needs it (one entry point), and only there
    assert payloads[0]["$pieces"] == {"causal_mask": piece} and "$pieces" not in payloads[1]
    assert "causal_mask" not in ns   # put back: the student never had one


def test_an_unknown_probe_or_piece_or_argument_is_refused(student) -> None:
    bridge = LocalBridge(student)
    with pytest.raises(ValueError, match="no probe 'exec'"):
        bridge.call("exec", source="print(1)")
    with pytest.raises(ValueError, match="no grader piece 'flowlab'"):
        bridge.call("calls", pieces=("flowlab",), fn="doubled", cases=[])
    with pytest.raises(TypeError, match="probe 'calls'"):
        bridge.call("calls", fn="doubled", cases=[], code="1")
    # the kernel side refuses a name that is not a probe too (a tampered request)
    bridge.start()
    outputs = bridge._execute("_flowlab_probe('Context', '{}')")
    reply = outputs[0]["text"].split("FLOWLAB-GRADER-RESULT ")[1]
    assert json.loads(base64.b64decode(reply)) == {"ok": False, "error": "LookupError",
                                                   "message": "", "where": None}


def test_a_students_exception_comes_back_as_its_type_only(student) -> None:
    exec("def bad(x):\n    raise ValueError(f'secret {x.tolist()}')", student)
    with pytest.raises(StudentError) as info:
        LocalBridge(student).call("calls", fn="bad", cases=[[torch.tensor([0.123456])]])
    assert (info.value.error, info.value.message) == ("ValueError", "")


# ---------------------------------------------------------------------------- imports
_KERNEL_IMPORTS = set(sys.stdlib_module_names) | {"torch"}


@pytest.mark.parametrize("path", sorted(KERNEL.rglob("*.py")), ids=lambda p: str(p.relative_to(KERNEL)))
def test_kernel_modules_import_the_standard_library_and_torch_only(path: Path) -> None:
    """They run in the student's kernel, where there is no flowlab_course (a piece may use
    flowlab's ungraded modules)."""
    allowed = _KERNEL_IMPORTS | ({"flowlab"} if path.parent.name == "pieces" else set())
    if path.name == "__init__.py":   # the package itself runs in the trusted process only
        allowed |= {"__future__"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import (there is no package in a kernel)"
            roots = {node.module.split(".")[0]}
        else:
            continue
        assert roots <= allowed, f"{path.name} imports {roots - allowed}"


def test_the_graders_name_existing_probes_and_pieces_and_every_one_is_used() -> None:
    """Read from the graders' source: every ``run(k, "name", ...)``/``k.call("name", ...)`` names
    a probe, every ``pieces=(...)``/``patch=`` a piece; nothing in the kernel is dead code."""
    graders = Path(kernel.__file__).resolve().parents[1] / "graders"
    used_probes, used_pieces = set(), set()
    for path in sorted(graders.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
                node.func, "id", "")
            args = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name == "run" and len(node.args) > 1 and node.args[1] in args:
                used_probes.add(node.args[1].value)
            elif name == "call" and args and node.args[0] is args[0]:
                used_probes.add(args[0].value)
            for kw in node.keywords:
                if kw.arg == "pieces" and isinstance(kw.value, ast.Tuple):
                    used_pieces |= {e.value for e in kw.value.elts if isinstance(e, ast.Constant)}
                elif kw.arg == "patch" and isinstance(kw.value, ast.Constant) and kw.value.value:
                    used_pieces.add(kw.value.value)
    assert used_probes == set(probes.PROBES), used_probes ^ set(probes.PROBES)
    assert used_pieces == set(PIECES), used_pieces ^ set(PIECES)
