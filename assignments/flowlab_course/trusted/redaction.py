r"""A flowlab without the graded pieces: the copy a grading kernel imports (separation, not detection).

While a submission is graded, flowlab's reference implementation of what the assignment grades
must not exist in the student's kernel: whatever their code then does to its own interpreter
(``gc``, ``sys.modules``, ``importlib``, ``inspect``, ``getattr`` chains, ``exec``, reading files),
it cannot call, copy or inherit what is not there.  Each grader module declares what it grades
once (:class:`Graded`, its ``GRADED``); :func:`build` writes a copy of the :mod:`flowlab` package
in which, through the :mod:`ast` module,

* every declared **class** becomes a stub whose ``__new__``, ``__init__`` and ``__init_subclass__``
  raise :class:`ReferenceUnavailable` (no bases, no methods: nothing to call, nothing to inherit);
* every declared **function** or **method** becomes a function that raises;
* every def of a declared **module** (or package) is stubbed, and its docstrings are dropped;
* **transitively**, every flowlab class that inherits from a stubbed class is stubbed (its code
  could compute the graded thing), and every override of a stubbed method in a subclass;
* comments and the docstrings of stubbed objects are gone (the rewritten files are
  ``ast.unparse``\ d); no ``__pycache__`` of the original is copied.

The stub's error says, in the lecture's terms, that the student writes this part themself
("In assignment 2 you write the affine coupling layer yourself: flowlab's AffineCoupling, the
reference implementation, is not available while your notebook is graded. Write it with torch
operations.").

The copy is deterministic and cached under a content hash of flowlab's files, this builder and
the declaration (:func:`cache_dir`: outside any course directory).  The sandbox
(:mod:`flowlab_course.sandbox.command`) mounts it read-only where flowlab is found, so that
``import flowlab`` in the kernel sees only the stubs.  Standard library only.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

__all__ = ["Graded", "Redaction", "build", "plan", "cache_dir", "package_dir", "STUB_MODULE",
           "ERROR_NAME"]

#: The module of the redacted copy that defines the stubs' exception.
STUB_MODULE = "_redacted"
#: The stubs' exception (a ``RuntimeError``): its name is what the grader's feedback shows.
ERROR_NAME = "ReferenceUnavailable"
_VERSION = "1"  # bump when the rewrite changes (part of the cache key)


@dataclass(frozen=True)
class Graded:
    """What one assignment grades: flowlab paths and, for each, what the student writes.

    Args:
        assignment: how the lecture names it (``"assignment 2"``).
        objects: ``{dotted flowlab path: lecture words}``, e.g.
            ``{"flowlab.transforms.coupling.AffineCoupling": "the affine coupling layer"}``.
            A path names a module or package (every def in it), a class, a function or a
            method (``"flowlab.flow.Flow.sample"``).
    """

    assignment: str
    objects: Mapping[str, str] = field(default_factory=dict)

    def merged(self, other: "Graded") -> "Graded":
        names = self.assignment if other.assignment == self.assignment else \
            f"{self.assignment} and {other.assignment}"
        return Graded(names, {**dict(self.objects), **dict(other.objects)})


class _Package:
    """The flowlab source tree read statically: modules, their imports, classes and bases."""

    def __init__(self, root: str, name: str) -> None:
        self.root, self.name = root, name
        self.files: dict[str, str] = {}      # module -> file
        self.trees: dict[str, ast.Module] = {}
        self.packages: set[str] = set()
        for top, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(top, f), root)
                parts = rel[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                    self.packages.add(".".join([name, *parts]))
                module = ".".join([name, *parts])
                self.files[module] = os.path.join(top, f)
        for module, path in self.files.items():
            with open(path, encoding="utf-8") as handle:
                self.trees[module] = ast.parse(handle.read(), path)
        self.aliases = {m: self._aliases(m, t) for m, t in self.trees.items()}
        self.classes: dict[str, ast.ClassDef] = {}   # "module.Class" -> node (top level)
        for module, tree in self.trees.items():
            for node in tree.body:
                if isinstance(node, ast.ClassDef):
                    self.classes[f"{module}.{node.name}"] = node

    def _aliases(self, module: str, tree: ast.Module) -> dict[str, str]:
        base = module if module in self.packages else module.rpartition(".")[0]
        out: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    pieces = base.split(".")
                    pieces = pieces[: len(pieces) - (node.level - 1)]
                    origin = ".".join(pieces + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                for alias in node.names:
                    if alias.name != "*":
                        out[alias.asname or alias.name] = f"{origin}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        out[alias.asname] = alias.name
                    else:
                        out[alias.name.split(".")[0]] = alias.name.split(".")[0]
        return out

    def canonical(self, path: str, depth: int = 0) -> str:
        """``flowlab.AffineCoupling`` -> ``flowlab.transforms.coupling.AffineCoupling``."""
        if depth > 20 or not (path == self.name or path.startswith(self.name + ".")):
            return path
        if path in self.files:
            return path
        pieces = path.split(".")
        for cut in range(len(pieces) - 1, 0, -1):
            module = ".".join(pieces[:cut])
            if module not in self.files:
                continue
            head, rest = pieces[cut], pieces[cut + 1:]
            defined = {getattr(n, "name", None) for n in self.trees[module].body}
            if head in defined:
                return path
            target = self.aliases[module].get(head)
            if target is None and module in self.packages and f"{module}.{head}" in self.files:
                return ".".join([f"{module}.{head}", *rest])
            if target is None:
                target = self._star(module, head)
            if target is None:
                return path
            return self.canonical(".".join([target, *rest]), depth + 1)
        return path

    def _star(self, module: str, name: str) -> str | None:
        """``name`` bound by a ``from .x import *`` of ``module``."""
        base = module if module in self.packages else module.rpartition(".")[0]
        for node in self.trees[module].body:
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                pieces = base.split(".")[: len(base.split(".")) - (node.level - 1)] if node.level else []
                origin = ".".join(pieces + ([node.module] if node.module else []))
                if origin in self.files:
                    defined = {getattr(n, "name", None) for n in self.trees[origin].body}
                    if name in defined or name in self.aliases[origin]:
                        return f"{origin}.{name}"
        return None

    def bases(self, qualname: str) -> list[str]:
        module, _, _ = qualname.rpartition(".")
        node = self.classes[qualname]
        out = []
        for base in node.bases:
            dotted = _dotted(base)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            if head in self.aliases[module]:
                full = self.aliases[module][head] + ("." + rest if rest else "")
            elif any(getattr(n, "name", None) == head for n in self.trees[module].body):
                full = f"{module}.{dotted}"
            else:
                continue
            out.append(self.canonical(full))
        return out


def _dotted(node: ast.AST) -> str | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(names)])
    return None


@dataclass
class Redaction:
    """What :func:`plan` decided: stubbed modules, classes and functions, each with its message."""

    modules: dict[str, str] = field(default_factory=dict)    # module -> message template
    objects: dict[str, str] = field(default_factory=dict)    # "module.Qual[.method]" -> message
    unresolved: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        return sorted(set(self.objects.values()))


def _message(graded: Graded, words: str, name: str, via: str | None = None) -> str:
    short = name
    extra = f" (it builds on {via})" if via else ""
    return (f"In {graded.assignment} you write {words} yourself: flowlab's {short}{extra}, the "
            "reference implementation, is not available while your notebook is graded. Write it "
            "with torch operations.")


def plan(graded: Graded, package: _Package) -> Redaction:
    """Resolve the declaration against the source tree, transitively (see the module docstring)."""
    red = Redaction()
    for path, words in sorted(graded.objects.items()):
        canon = package.canonical(path)
        if canon in package.files:
            for module in package.files:
                if module == canon or module.startswith(canon + "."):
                    red.modules[module] = words
            continue
        module, _, rest = _split(canon, package)
        if not module:
            red.unresolved.append(path)
            continue
        red.objects[canon] = _message(graded, words, rest)
    # every top-level def of a stubbed module
    for module, words in red.modules.items():
        for node in package.trees[module].body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                red.objects.setdefault(f"{module}.{node.name}", _message(graded, words, node.name))
    # transitive: subclasses of stubbed classes, overrides of stubbed methods
    changed = True
    while changed:
        changed = False
        for qual in package.classes:
            bases = package.bases(qual)
            if qual not in red.objects:
                hit = next((b for b in bases if b in red.objects), None)
                if hit is not None:
                    words = _words(red.objects[hit])
                    red.objects[qual] = _message(graded, words, qual.rpartition(".")[2],
                                                 hit.rpartition(".")[2])
                    changed = True
                    continue
            for base in _ancestors(package, qual):
                for method in [o for o in red.objects if o.startswith(base + ".")]:
                    name = method[len(base) + 1:]
                    own = f"{qual}.{name}"
                    if "." in name or own in red.objects or qual in red.objects:
                        continue
                    defined = {getattr(n, "name", None) for n in package.classes[qual].body}
                    if name in defined:
                        red.objects[own] = _message(graded, _words(red.objects[method]),
                                                    f"{qual.rpartition('.')[2]}.{name}")
                        changed = True
    return red


def _words(message: str) -> str:
    return message.split(" you write ", 1)[1].split(" yourself:", 1)[0]


def _ancestors(package: _Package, qual: str, seen: set | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    out = []
    for base in package.bases(qual):
        if base in package.classes and base not in seen:
            seen.add(base)
            out += [base, *_ancestors(package, base, seen)]
    return out


def _split(canon: str, package: _Package) -> tuple[str, str, str]:
    """``(module, "", qualname within it)`` of a canonical object path, or ``("", "", "")``."""
    pieces = canon.split(".")
    for cut in range(len(pieces) - 1, 0, -1):
        module = ".".join(pieces[:cut])
        if module in package.files:
            rest = ".".join(pieces[cut:])
            head = pieces[cut]
            if any(getattr(n, "name", None) == head for n in package.trees[module].body):
                return module, "", rest
            return "", "", ""
    return "", "", ""


# ------------------------------------------------------------------------------ the rewrite
def _raise(message: str) -> ast.stmt:
    return ast.Raise(exc=ast.Call(func=ast.Name("_ReferenceUnavailable", ast.Load()),
                                  args=[ast.Constant(message)], keywords=[]), cause=None)


def _stub_function(node: ast.FunctionDef | ast.AsyncFunctionDef, message: str,
                   method: bool) -> ast.FunctionDef:
    keep = [d for d in node.decorator_list if method and isinstance(d, ast.Name)
            and d.id in ("staticmethod", "classmethod", "property")]
    args = ast.arguments(posonlyargs=[], args=[], vararg=ast.arg("args"), kwonlyargs=[],
                         kw_defaults=[], kwarg=ast.arg("kwargs"), defaults=[])
    return ast.FunctionDef(name=node.name, args=args, body=[_raise(message)],
                           decorator_list=keep, returns=None, type_params=[])


def _stub_class(node: ast.ClassDef, message: str) -> ast.ClassDef:
    doc = ast.Expr(ast.Constant(f"Not available while a notebook is graded. {message}"))
    body: list[ast.stmt] = [doc]
    for name, first in (("__new__", "cls"), ("__init__", "self"), ("__init_subclass__", "cls")):
        args = ast.arguments(posonlyargs=[], args=[ast.arg(first)], vararg=ast.arg("args"),
                             kwonlyargs=[], kw_defaults=[], kwarg=ast.arg("kwargs"), defaults=[])
        fn = ast.FunctionDef(name=name, args=args, body=[_raise(message)],
                             decorator_list=[ast.Name("classmethod", ast.Load())]
                             if name == "__init_subclass__" else [],
                             returns=None, type_params=[])
        body.append(fn)
    return ast.ClassDef(name=node.name, bases=[], keywords=[], body=body, decorator_list=[],
                        type_params=[])


def _strip_docstrings(node: ast.AST) -> None:
    for child in ast.walk(node):
        if isinstance(child, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = child.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body[0] = ast.Expr(ast.Constant("(redacted while a notebook is graded)"))


def _rewrite(module: str, tree: ast.Module, red: Redaction, whole: bool) -> ast.Module:
    def visit(body: list[ast.stmt], prefix: str, in_class: bool) -> list[ast.stmt]:
        out = []
        for node in body:
            name = getattr(node, "name", None)
            qual = f"{prefix}.{name}" if name else None
            if qual in red.objects and isinstance(node, ast.ClassDef):
                out.append(_stub_class(node, red.objects[qual]))
            elif qual in red.objects and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append(_stub_function(node, red.objects[qual], in_class))
            elif isinstance(node, ast.ClassDef):
                node.body = visit(node.body, qual, True) or [ast.Pass()]
                out.append(node)
            else:
                out.append(node)
        return out

    tree.body = visit(tree.body, module, False)
    if whole:
        _strip_docstrings(tree)
    # the stubs' exception, imported after the docstring and the __future__ imports
    at = 0
    while at < len(tree.body) and (
            (isinstance(tree.body[at], ast.Expr) and isinstance(tree.body[at].value, ast.Constant))
            or (isinstance(tree.body[at], ast.ImportFrom) and tree.body[at].module == "__future__")):
        at += 1
    tree.body.insert(at, ast.ImportFrom(module=f"{_root(module)}.{STUB_MODULE}",
                                        names=[ast.alias(ERROR_NAME, "_ReferenceUnavailable")],
                                        level=0))
    return ast.fix_missing_locations(tree)


def _root(module: str) -> str:
    return module.split(".")[0]


_STUB_SOURCE = '''"""The exception of the graded pieces that are not available while a notebook is graded."""


class {name}(RuntimeError):
    """This part of flowlab is what the assignment asks you to write: write it with torch."""
'''


# ------------------------------------------------------------------------------ build & cache
def package_dir(name: str = "flowlab") -> str:
    """The directory of the installed package ``name`` (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot find the package {name!r} to redact (pip install -e .)")
    return os.path.realpath(list(spec.submodule_search_locations)[0])


def cache_dir() -> str:
    """Where redacted copies are kept: ``$FLOWLAB_REDACTED_CACHE`` or ``~/.cache/flowlab_course``.

    It must lie outside every course directory (the sandbox never mounts those).
    """
    explicit = os.environ.get("FLOWLAB_REDACTED_CACHE")
    if explicit:
        return os.path.abspath(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "flowlab_course", "redacted")


def _digest(source: str, graded: Graded) -> str:
    h = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as handle:
        h.update(handle.read())
    h.update(_VERSION.encode())
    h.update(json.dumps([graded.assignment, sorted(graded.objects.items())]).encode())
    for top, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(top, f)
            h.update(os.path.relpath(path, source).encode() + b"\0")
            with open(path, "rb") as handle:
                h.update(hashlib.sha256(handle.read()).digest())
    return h.hexdigest()[:24]


def build(graded: Graded | Sequence[Graded], *, source: str | None = None,
          cache: str | None = None, name: str = "flowlab") -> str:
    """The redacted copy of ``source`` (flowlab's directory) for ``graded``; its directory.

    Built once per content hash into ``cache`` (:func:`cache_dir`); concurrent graders build
    into private temporary folders and the first rename wins.
    """
    if not isinstance(graded, Graded):
        items = list(graded)
        merged = items[0] if items else Graded("this assignment", {})
        for g in items[1:]:
            merged = merged.merged(g)
        graded = merged
    source = os.path.realpath(source or package_dir(name))
    cache = os.path.abspath(cache or cache_dir())
    key = _digest(source, graded)
    final = os.path.join(cache, key)
    target = os.path.join(final, name)
    if os.path.isfile(os.path.join(final, "DONE")):
        return target
    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:  # a read-only home (a cluster node): a private cache in the temp folder
        cache = os.path.join(tempfile.gettempdir(), f"flowlab_course-redacted-{os.getuid()}")
        os.makedirs(cache, mode=0o755, exist_ok=True)
        final, target = os.path.join(cache, key), os.path.join(cache, key, name)
        if os.path.isfile(os.path.join(final, "DONE")):
            return target
    work = tempfile.mkdtemp(prefix=f".{key}-", dir=cache)
    try:
        out = os.path.join(work, name)
        shutil.copytree(source, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"),
                        symlinks=False)
        package = _Package(source, name)
        red = plan(graded, package)
        whole = set(red.modules)
        touched = whole | {_split(o, package)[0] for o in red.objects}
        for module in sorted(touched):
            tree = _rewrite(module, package.trees[module], red, module in whole)
            rel = os.path.relpath(package.files[module], source)
            with open(os.path.join(out, rel), "w", encoding="utf-8") as handle:
                handle.write("# Redacted copy (flowlab_course.trusted.redaction): graded pieces "
                             "are stubs.\n" + ast.unparse(tree) + "\n")
        with open(os.path.join(out, f"{STUB_MODULE}.py"), "w", encoding="utf-8") as handle:
            handle.write(_STUB_SOURCE.format(name=ERROR_NAME))
        with open(os.path.join(work, "redaction.json"), "w", encoding="utf-8") as handle:
            json.dump({"assignment": graded.assignment, "stubs": red.objects,
                       "modules": sorted(red.modules), "unresolved": red.unresolved},
                      handle, indent=1, sort_keys=True)
        for top, dirs, files in os.walk(work):   # world-readable: the kernel may run as another uid
            os.chmod(top, 0o755)
            for f in files:
                os.chmod(os.path.join(top, f), 0o644)
        open(os.path.join(work, "DONE"), "w").close()
        try:
            os.rename(work, final)
        except OSError:  # another grader was first (or a stale folder without DONE)
            if not os.path.isfile(os.path.join(final, "DONE")):
                shutil.rmtree(final, ignore_errors=True)
                os.rename(work, final)
    finally:
        if os.path.isdir(work):
            shutil.rmtree(work, ignore_errors=True)
    return target


def manifest(redacted: str) -> dict:
    """The ``redaction.json`` written next to a redacted copy (stubs and their messages)."""
    with open(os.path.join(os.path.dirname(redacted), "redaction.json"), encoding="utf-8") as handle:
        return json.load(handle)


def describe(graded: Iterable[Graded]) -> list[tuple[str, list[str]]]:
    """``[(assignment, [flowlab paths a solution may not use])]`` for the book and the release."""
    return [(g.assignment, sorted(g.objects)) for g in graded]


def markdown_table(graded: Iterable[Graded]) -> str:
    """The book's table of what is a stub while each assignment is graded (``book/sandbox.md``)."""
    rows = ["| Assignment | Stubs while graded (the student writes these) |", "|---|---|"]
    for g in graded:
        by_words: dict[str, list[str]] = {}
        for path, words in sorted(g.objects.items()):
            by_words.setdefault(words, []).append(f"`{path.removeprefix('flowlab.')}`")
        cells = "; ".join(f"{words}: {', '.join(paths)}" for words, paths in by_words.items())
        rows.append(f"| {g.assignment} | {cells} |")
    return "\n".join(rows)


def load(redacted: str, name: str = "flowlab") -> dict:
    """The redacted package's modules, imported in *this* process under their real names.

    For tests that grade in process (:class:`~.bridge.LocalBridge`): :func:`swapped` puts them in
    ``sys.modules`` while the "student's" code runs, so it sees the stubs, while the trusted
    grader around it keeps the real flowlab.
    """
    import importlib
    import pkgutil
    import sys

    mine = {k: v for k, v in sys.modules.items() if k == name or k.startswith(name + ".")}
    for k in mine:
        del sys.modules[k]
    sys.path.insert(0, os.path.dirname(redacted))
    importlib.invalidate_caches()
    try:
        package = importlib.import_module(name)
        if os.path.dirname(package.__file__) != redacted:
            raise RuntimeError(f"{name} came from {package.__file__}, not from {redacted}")
        for info in pkgutil.walk_packages(package.__path__, name + "."):
            try:
                importlib.import_module(info.name)
            except Exception:  # noqa: BLE001 - a module that needs an optional dependency
                pass
        loaded = {k: v for k, v in sys.modules.items() if k == name or k.startswith(name + ".")}
    finally:
        for k in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            del sys.modules[k]
        sys.path.remove(os.path.dirname(redacted))
        sys.modules.update(mine)
        importlib.invalidate_caches()
    return loaded


class swapped:
    """``with swapped(modules):`` — ``sys.modules`` holds ``modules`` (from :func:`load`) inside."""

    def __init__(self, modules: dict) -> None:
        self.modules, self.saved = modules, {}

    def __enter__(self) -> "swapped":
        import sys

        names = {k.split(".")[0] for k in self.modules}
        self.saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in names}
        for k in self.saved:
            del sys.modules[k]
        sys.modules.update(self.modules)
        return self

    def __exit__(self, *exc) -> None:
        import sys

        for k in [k for k in sys.modules if k.split(".")[0] in {n.split(".")[0] for n in self.modules}]:
            del sys.modules[k]
        sys.modules.update(self.saved)


__all__ += ["manifest", "describe", "markdown_table", "load", "swapped"]
