r"""Read the submitted source in the trusted process: notes for the instructor, never a verdict.

Grades depend only on the values a student's code computes: the reference implementations are
not in the grading kernel at all (:mod:`.redaction`), so nothing needs to be detected to keep
them out.  What this reader finds goes to the instructor's report as *notes* (kind ``note`` in
the flags), costs no point and holds nothing for review.  Before the notebook runs, every code
cell a student could have written (everything but the instructor's locked and test cells) is
parsed — after IPython's own translation of magics — and walked once.  Three kinds of findings:

* **delegation** — the code names flowlab's reference implementation of a part (an import, an
  attribute such as ``fl.AffineCoupling``, a literal ``getattr``), or calls a method the part
  asks the student not to use inside the graded function (``flow.sample`` in
  ``sample_with_temperature``).  In the grading kernel that name is a stub that raises, so such
  code earns nothing by itself; the note tells the instructor where to look.
* **undecidable** — constructs whose meaning depends on strings built at run time or on the
  interpreter's internals (``exec``/``eval``, ``importlib``, ``gc``, ``ctypes``, interpreter hooks,
  dunder attributes that reach other code's internals, shell escapes).
* **note** — rebinding torch or flowlab attributes.

Honest styles (IPython extensions such as ``%load_ext autoreload``, ``%pip``, ``pathlib``,
``operator``, ``getattr(torch, name)``, ``vars(cls)``) produce no finding at all.
"""

from __future__ import annotations

import ast
import functools
import importlib
from dataclasses import dataclass
from typing import Iterable, Sequence

from .parts import Part

__all__ = ["Finding", "analyse", "is_reference", "SAFE_MODULES"]

#: Top-level modules whose import is not worth a note.
SAFE_MODULES = frozenset({
    "__future__", "torch", "numpy", "math", "cmath", "matplotlib", "tqdm", "itertools",
    "functools", "collections", "typing", "dataclasses", "random", "time", "warnings", "logging",
    "sys", "os", "abc", "enum", "copy", "string", "re", "statistics", "numbers", "contextlib",
    "textwrap", "pprint", "json", "scipy", "sklearn", "flowlab", "IPython.display", "datetime",
    "pathlib", "operator", "heapq", "bisect", "fractions", "decimal", "types",
})
#: Calls that run code built from strings.
_DYNAMIC_CALLS = frozenset({"exec", "eval", "compile", "__import__"})
#: Attributes that reach the internals of other code.
_INTERNAL_ATTRS = frozenset({
    "__subclasses__", "__globals__", "__dict__", "__code__", "__closure__", "__builtins__",
    "__mro__", "__bases__", "__base__", "__file__", "__loader__", "__spec__", "__import__",
    "__getattribute__", "__reduce__", "__reduce_ex__", "__func__", "__wrapped__", "__defaults__",
    "__kwdefaults__", "f_globals", "f_locals", "f_back", "gi_frame", "tb_frame", "co_code",
})
#: Attributes of safe modules that are interpreter hooks, shell escapes or pickle loaders.
_HOOKS = frozenset({
    "sys.modules", "sys._getframe", "sys.setprofile", "sys.settrace", "sys.meta_path",
    "sys.path_hooks", "sys.path", "sys.addaudithook", "sys.excepthook",
    "os.system", "os.popen", "os.execv", "os.execve", "os.execvp", "os.execl", "os.execlp",
    "os.spawnv", "os.spawnl", "os.fork", "os.forkpty", "os.posix_spawn",
    "torch.load", "torch.jit.load", "torch.hub", "torch.ops.load_library",
    "torch.utils.cpp_extension", "torch.package", "numpy.load", "torch._C", "torch.overrides",
    "torch.compiler", "torch._dynamo", "torch.fx",
})
#: IPython magics a student may use (translated to ``get_ipython().run_line_magic(...)``).
_SAFE_MAGICS = frozenset({"matplotlib", "time", "timeit", "precision", "pprint", "whos", "who",
                          "load_ext", "reload_ext", "autoreload", "aimport", "pip", "conda",
                          "config", "env"})
_SAFE_IPYTHON = frozenset({"run_line_magic", "run_cell_magic"})


@dataclass(frozen=True)
class Finding:
    """One thing the static reader found.

    Args:
        kind: ``"delegation"``, ``"undecidable"`` or ``"note"``.
        parts: keys of the parts it affects.
        message: for the student and the instructor, in plain words.
        cell: index of the notebook cell; ``line``: line in that cell.
    """

    kind: str
    parts: tuple[str, ...]
    message: str
    cell: int
    line: int


def _python(source: str) -> str:
    """The cell as Python (IPython's translation of ``%magics`` and ``!shell``)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        return source
    try:
        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - the kernel will report the syntax error itself
        return source


def _resolve(path: str) -> tuple[str, str]:
    """``(defining module, qualified name)`` of a dotted flowlab path, or ``("", "")``."""
    parts = path.split(".")
    obj, module = None, ""
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        module = ".".join(parts[:i])
        rest = parts[i:]
        qual = []
        for name in rest:
            if not hasattr(obj, name):
                return module, ".".join([module, *qual, name])
            obj = getattr(obj, name)
            qual.append(name)
            if isinstance(obj, type(importlib)):
                module, qual = obj.__name__, []
        break
    if obj is None:
        return "", ""
    if isinstance(obj, type(importlib)):
        return obj.__name__, obj.__name__
    home = getattr(obj, "__module__", None) or module
    qualname = getattr(obj, "__qualname__", None) or path.rsplit(".", 1)[-1]
    return home, f"{home}.{qualname}"


@functools.lru_cache(maxsize=None)
def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def is_reference(module: str, qualname: str, reference: Sequence[str],
                 functions: Sequence[str] = ()) -> bool:
    """Is the flowlab object ``qualname`` (defined in ``module``) one of ``reference``?

    A reference entry that names a module covers everything defined in it; one that names an
    object (``flowlab.transforms.coupling.AffineCoupling``) covers that object only, so that
    importing flowlab's affine coupling is not delegation for the additive part.
    """
    for ref in reference:
        if _is_module(ref):
            if module == ref or module.startswith(ref + "."):
                return True
        elif qualname == ref or qualname.startswith(ref + "."):
            return True
    return any(qualname == f or qualname.startswith(f + ".") for f in functions)


def _matches(module: str, qualname: str, part: Part) -> bool:
    return is_reference(module, qualname, part.reference, part.reference_functions)


class _Reader(ast.NodeVisitor):
    def __init__(self, cell: int, parts: Sequence[Part], cell_parts: tuple[str, ...]) -> None:
        self.cell, self.parts, self.cell_parts = cell, parts, cell_parts
        self.aliases: dict[str, str] = {}   # local name -> dotted module/object path
        self.findings: list[Finding] = []
        self.function_stack: list[str] = []

    # ---- bookkeeping
    def add(self, kind: str, node: ast.AST, message: str, parts: Iterable[str] | None = None) -> None:
        keys = tuple(parts) if parts is not None else self.cell_parts
        self.findings.append(Finding(kind, keys, message, self.cell, getattr(node, "lineno", 0)))

    def dotted(self, node: ast.AST) -> str | None:
        """``fl.transforms.coupling`` -> ``flowlab.transforms.coupling`` (through the aliases)."""
        names = []
        while isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(names)])
        return None

    def check_flowlab(self, path: str, node: ast.AST) -> None:
        if not (path == "flowlab" or path.startswith("flowlab.")):
            return
        module, qualname = _resolve(path)
        hits = [p.key for p in self.parts if _matches(module, qualname, p)]
        if hits:
            self.add("delegation", node, f"uses flowlab's reference implementation `{qualname}`",
                     hits)

    def check_hook(self, path: str, node: ast.AST) -> None:
        for hook in _HOOKS:
            if path == hook or path.startswith(hook + "."):
                self.add("undecidable", node, f"uses `{hook}`")
                return

    # ---- imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_module(alias.name, node)
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top
            self.check_flowlab(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            self.add("undecidable", node, "uses a relative import")
            return
        self.check_module(node.module, node)
        for alias in node.names:
            if alias.name == "*":
                if node.module.split(".")[0] == "flowlab":
                    self.add("undecidable", node, f"uses `from {node.module} import *`")
                continue
            full = f"{node.module}.{alias.name}"
            self.aliases[alias.asname or alias.name] = full
            self.check_flowlab(full, node)
            self.check_hook(full, node)

    def check_module(self, name: str, node: ast.AST) -> None:
        top = name.split(".")[0]
        if top == "IPython" and name.startswith("IPython.display"):
            return
        if top not in SAFE_MODULES or top == "IPython":
            self.add("undecidable", node, f"imports `{name}`, which the autograder cannot check")
        else:
            self.check_hook(name, node)

    # ---- uses
    def visit_Attribute(self, node: ast.Attribute) -> None:
        if _is_get_ipython(node.value) and not (
                node.attr in _SAFE_IPYTHON and _safe_magic(node)):
            self.add("undecidable", node, "changes or drives the notebook itself "
                     f"(`get_ipython().{node.attr}`)")
        if node.attr in _INTERNAL_ATTRS:
            self.add("undecidable", node, f"reaches into `{node.attr}`")
        path = self.dotted(node)
        if path is not None:
            self.check_flowlab(path, node)
            self.check_hook(path, node)
            if isinstance(node.ctx, (ast.Store, ast.Del)) and path.split(".")[0] in ("torch", "flowlab"):
                self.add("note", node, f"rebinds `{path}`")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in ("__builtins__", "__loader__", "__spec__"):
            self.add("undecidable", node, f"uses `{node.id}`")
        elif node.id in self.aliases and isinstance(node.ctx, ast.Load):
            self.check_flowlab(self.aliases[node.id], node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in _DYNAMIC_CALLS:
                self.add("undecidable", node, f"calls `{func.id}`, which runs code built at run time")
            elif func.id in ("getattr", "setattr", "delattr", "hasattr") and node.args:
                self.check_getattr(func.id, node)
            elif func.id == "get_ipython" and not isinstance(getattr(node, "_parent", None),
                                                             ast.Attribute):
                self.add("undecidable", node, "keeps a handle on the notebook (`get_ipython()`)")
        if isinstance(func, ast.Attribute):
            for function in self.function_stack:
                for p in self.parts:
                    if func.attr in p.body_forbids.get(function, ()):
                        self.add("delegation", node,
                                 f"calls `.{func.attr}(...)` inside `{function}`, the function "
                                 "this part asks you to write", [p.key])
        self.generic_visit(node)

    def check_getattr(self, name: str, node: ast.Call) -> None:
        target = self.dotted(node.args[0]) if isinstance(node.args[0], (ast.Name, ast.Attribute)) else None
        if len(node.args) < 2:
            return
        key = node.args[1]
        literal = isinstance(key, ast.Constant) and isinstance(key.value, str)
        if literal and key.value in _INTERNAL_ATTRS:
            self.add("undecidable", node, f"reaches into `{key.value}` through {name}")
        if target is None:
            return
        if literal:
            path = f"{target}.{key.value}"
            self.check_flowlab(path, node)
            self.check_hook(path, node)
        elif target.split(".")[0] in ("flowlab", "sys", "os", "builtins"):
            self.add("undecidable", node, f"calls `{name}` on `{target}` with a name built at run time")
        if name in ("setattr", "delattr") and target.split(".")[0] in ("torch", "flowlab"):
            self.add("note", node, f"rebinds an attribute of `{target}`")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.function_stack.append(node.name)
        self.generic_visit(node)
        self.function_stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.function_stack.append(node.name)
        self.generic_visit(node)
        self.function_stack.pop()


def _is_get_ipython(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "get_ipython")


def _safe_magic(attribute: ast.AST | None) -> bool:
    """``get_ipython().run_line_magic('matplotlib', ...)`` with a magic of the safe list."""
    call = getattr(attribute, "_parent", None)
    return (isinstance(call, ast.Call) and bool(call.args) and isinstance(call.args[0], ast.Constant)
            and call.args[0].value in _SAFE_MAGICS)


def _link_parents(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child._parent = node  # type: ignore[attr-defined]


def _defined_names(tree: ast.Module) -> set[str]:
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def analyse(cells: Sequence[tuple[int, str]], parts: Sequence[Part],
            instructor_imports: Sequence[str] = ()) -> list[Finding]:
    """Findings for the student's code ``cells`` (``(index, source)``), graded as ``parts``.

    ``instructor_imports`` are the locked cells' sources: their imports define names (``torch``,
    ``Transform``) that the student's cells may use, so they are read for aliases only.
    """
    aliases: dict[str, str] = {}
    for source in instructor_imports:
        try:
            tree = ast.parse(_python(source))
        except SyntaxError:
            continue
        reader = _Reader(-1, [], ())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                reader.visit(node)
        aliases.update(reader.aliases)
    findings: list[Finding] = []
    for index, source in cells:
        try:
            tree = ast.parse(_python(source))
        except SyntaxError:
            continue  # the kernel reports it; nothing runs from this cell
        _link_parents(tree)
        defined = _defined_names(tree)
        cell_parts = tuple(p.key for p in parts if defined & set(p.defines)) or tuple(
            p.key for p in parts)
        reader = _Reader(index, parts, cell_parts)
        reader.aliases = dict(aliases)
        reader.visit(tree)
        aliases.update(reader.aliases)
        findings.extend(reader.findings)
    return findings
