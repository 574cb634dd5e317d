"""Which grader grades which part: the composition above ``trusted/`` and ``graders/``.

``trusted/`` owns the mechanism and imports no grader: a part registers itself with
:func:`flowlab_course.trusted.parts.part` when its grader module is imported, and the runner finds
it in :data:`~flowlab_course.trusted.parts.REGISTRY` through the ``lookup`` it is given.
``graders/`` imports ``trusted/`` to register.  This module, used by the entry points (the
nbgrader plug-in, the tests, the benchmarks), knows where the graders are: the part
``assignment2.affine_forward`` is in :mod:`flowlab_course.graders.assignment2`, imported on
demand, and that module's ``GRADED`` is assignment 2's declaration of what is graded.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from .trusted.parts import REGISTRY, Part

__all__ = ["GRADERS", "declaration", "grader", "lookup"]

#: The package of the grader modules, one per assignment (``assignment1`` ... ``assignment5``).
GRADERS = "flowlab_course.graders"
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def grader(module: str) -> ModuleType:
    """The grader module ``module`` (``"assignment2"``), imported (its parts then registered)."""
    if not _MODULE.fullmatch(module):
        raise KeyError(f"{module!r} is not the name of a grader module")
    try:
        return importlib.import_module(f"{GRADERS}.{module}")
    except ModuleNotFoundError as err:
        if err.name != f"{GRADERS}.{module}":
            raise
        raise KeyError(f"no grader module {module!r} in {GRADERS}") from None


def lookup(key: str) -> Part:
    """The part registered under ``key`` (``"assignment2.affine_forward"``), its grader imported."""
    if key not in REGISTRY:
        try:
            grader(key.split(".", 1)[0])
        except KeyError as err:
            raise KeyError(f"no grader module for {key!r}: {err.args[0]}") from None
    try:
        return REGISTRY[key]
    except KeyError:
        raise KeyError(f"no hidden test registered as {key!r}") from None


def declaration(parts) -> list:
    """The assignment-level ``GRADED`` declarations of the grader modules of ``parts``.

    A grader module without one gets a declaration derived from its parts' references.
    """
    from .trusted.redaction import Graded

    out, seen = [], set()
    for p in parts:
        module = p.key.split(".", 1)[0]
        if module in seen:
            continue
        seen.add(module)
        try:
            graded = getattr(grader(module), "GRADED", None)
        except KeyError:
            graded = None
        if graded is None:
            objects = {}
            for q in parts:
                if q.key.split(".", 1)[0] == module:
                    for ref in (*q.reference, *q.reference_functions):
                        objects.setdefault(ref, f"the {q.key.split('.', 1)[1].replace('_', ' ')} part")
            graded = Graded(module.replace("assignment", "assignment "), objects)
        out.append(graded)
    return out
