r"""A synthetic class: correct, mistaken, partial, hostile and empty submissions of one assignment.

For benchmarks and tests of the grading pipeline at class scale.  Every submission is built from
the assignment's own notebooks, the way a student's would be: the *release* notebook with its
solution cells filled in.

* ``correct`` — every solution cell holds the reference solution (``source/``, markers removed);
* ``mistaken`` — the solution with one typical mistake (or two, in different parts, for one in
  five of them where both patches apply) from a mistake catalogue: ``(name, part, old, new)`` patches of the solution,
  such as ``tests/assignments/catalogue.py``;
* ``partial`` — the solution with one solution cell left as released (``NotImplementedError``);
* ``hostile`` — the solution plus one extra cell, right after the first solution cell, that
  attacks the grader (:data:`HOSTILE`: a memory hog, reading the environment, a network
  connection, searching for other notebooks, an IPython hook that wraps later cells);
* ``empty`` — the untouched release.

:data:`PROPORTIONS` are those of a typical class (half fully correct, a third with a mistake,
a tenth handing in nothing); the draw is reproducible (``seed``).

    klass = synthetic_class(source_nb, release_nb, mistakes, n=300, seed=0)
    write_class(course_root, "01_change_of_variables", klass)
"""

from __future__ import annotations

import copy
import importlib.util
import os
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["HOSTILE", "PROPORTIONS", "Mistake", "load_catalogue", "patch", "solution_submission",
           "synthetic_class", "write_class"]

#: Share of each kind of submission in a class.
PROPORTIONS: dict[str, float] = {"correct": 0.50, "mistaken": 0.30, "partial": 0.05,
                                 "hostile": 0.05, "empty": 0.10}

#: Attacks a hostile student adds in a cell of their own (each fails fast: no long timeouts).
HOSTILE: dict[str, str] = {
    "memory": "blocks = [bytearray(2**28) for _ in range(10_000)]\n",
    "environ": "import os\nprint(dict(os.environ))\n",
    "socket": ("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
               "except OSError as err:\n    print(err)\n"),
    "snoop": "import glob\nprint(glob.glob('../../../**/*.ipynb', recursive=True))\n",
    "hook": (
        "import ast\nfrom IPython import get_ipython\n"
        "class _Forgive(ast.NodeTransformer):\n"
        "    def visit_Module(self, node):\n"
        "        handler = ast.ExceptHandler(type=ast.Name('BaseException', ast.Load()),\n"
        "                                    name=None, body=[ast.Pass()])\n"
        "        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler],\n"
        "                             orelse=[], finalbody=[])]\n"
        "        return ast.fix_missing_locations(node)\n"
        "get_ipython().ast_transformers.append(_Forgive())\n"),
}

_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


class Mistake(NamedTuple):
    """A typical mistake: replacing ``old`` by ``new`` in the solution breaks ``part``."""

    name: str
    part: str
    old: str
    new: str


def load_catalogue(path: str, assignment: str) -> list[Mistake]:
    """The mistakes of ``assignment`` in a catalogue module (``CATALOGUE[assignment]``)."""
    spec = importlib.util.spec_from_file_location("_flowlab_mistake_catalogue", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # (name, part, old, new): a catalogue entry may carry more fields (the tests' `kind`)
    return [Mistake(*tuple(m)[:4]) for m in module.CATALOGUE.get(assignment, [])]


def _grade_id(cell: Any) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _is_solution(cell: Any) -> bool:
    return cell.cell_type == "code" and bool(cell.metadata.get("nbgrader", {}).get("solution"))


def solution_submission(source: Any, release: Any) -> Any:
    """The release notebook with every solution cell filled in from the source (no markers)."""
    answers = {_grade_id(c): _MARKER.sub("", c.source) for c in source.cells if _is_solution(c)}
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if _is_solution(cell) and _grade_id(cell) in answers:
            cell.source = answers[_grade_id(cell)].rstrip("\n")
    return nb


def patch(nb: Any, old: str, new: str) -> Any:
    """A copy of ``nb`` with ``old`` replaced by ``new``; ``old`` must occur exactly once."""
    hits = [i for i, c in enumerate(nb.cells) if old in c.source]
    count = sum(nb.cells[i].source.count(old) for i in hits)
    if count != 1:
        raise ValueError(f"the patch must match exactly once, it matches {count} times: {old!r}")
    out = copy.deepcopy(nb)
    out.cells[hits[0]].source = out.cells[hits[0]].source.replace(old, new)
    return out


def synthetic_class(source: Any, release: Any, mistakes: Sequence[Mistake], n: int, *,
                    seed: int = 0, proportions: Mapping[str, float] = PROPORTIONS,
                    hostile: Mapping[str, str] = HOSTILE) -> dict[str, tuple[str, Any]]:
    """``n`` submissions in the given proportions: ``{student: (label, notebook)}``.

    Args:
        source: the assignment's source notebook (solutions and hidden tests).
        release: its release notebook (what students received).
        mistakes: the mistake catalogue of this assignment (may be empty: no ``mistaken``).
        n: class size.
        seed: the draw (kinds, mistakes, attacks) is a function of it.
        proportions: share of each kind (``correct, mistaken, partial, hostile, empty``).
        hostile: the attacks to draw from.

    Labels say what each submission is (``mistaken:leaky_logdet_sign``, ``hostile:memory``);
    student ids are ``s000-<kind>`` and so on.
    """
    import nbformat

    unknown = set(proportions) - set(PROPORTIONS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; known: {sorted(PROPORTIONS)}")
    rng = random.Random(seed)
    weights = {k: v for k, v in proportions.items() if v > 0 and (k != "mistaken" or mistakes)}
    scale = sum(weights.values())
    counts = {k: int(n * v / scale) for k, v in weights.items()}
    for k in sorted(weights, key=lambda k: -weights[k])[: n - sum(counts.values())]:
        counts[k] += 1  # the remainder to the most frequent kinds
    kinds = [k for k, c in counts.items() for _ in range(c)]
    rng.shuffle(kinds)
    solution = solution_submission(source, release)
    slots = [i for i, c in enumerate(release.cells) if _is_solution(c)]
    out: dict[str, tuple[str, Any]] = {}
    for i, kind in enumerate(kinds):
        if kind == "correct":
            label, nb = "correct", solution
        elif kind == "empty":
            label, nb = "empty", copy.deepcopy(release)
        elif kind == "partial":
            slot = rng.choice(slots)
            nb = copy.deepcopy(solution)
            nb.cells[slot].source = release.cells[slot].source
            label = f"partial:{_grade_id(release.cells[slot])}"
        elif kind == "hostile":
            name = rng.choice(sorted(hostile))
            nb = copy.deepcopy(solution)
            nb.cells.insert(slots[0] + 1, nbformat.v4.new_code_cell(hostile[name].rstrip()))
            label = f"hostile:{name}"
        else:  # mistaken: one mistake, or two in different parts
            first = rng.choice(list(mistakes))
            chosen = [first]
            nb = patch(solution, first.old, first.new)
            others = [m for m in mistakes if m.part != first.part]
            if others and rng.random() < 0.2:
                second = rng.choice(others)
                try:
                    nb = patch(nb, second.old, second.new)
                    chosen.append(second)
                except ValueError:  # the first mistake rewrote the second one's code
                    pass
            label = "mistaken:" + "+".join(m.name for m in chosen)
        out[f"s{i:03d}-{kind}"] = (label, nb)
    return out


def write_class(course_root: str, assignment: str, klass: Mapping[str, tuple[str, Any]], *,
                notebook: str | None = None,
                timestamp: str = "2030-01-01 12:00:00.000000 UTC") -> list[str]:
    """Write every submission of ``klass`` into ``submitted/``; return the students."""
    import nbformat

    name = notebook or assignment
    for student, (_, nb) in klass.items():
        folder = os.path.join(course_root, "submitted", student, assignment)
        os.makedirs(folder, exist_ok=True)
        nbformat.write(nb, os.path.join(folder, f"{name}.ipynb"))
        with open(os.path.join(folder, "timestamp.txt"), "w") as handle:
            handle.write(timestamp)
    return list(klass)
