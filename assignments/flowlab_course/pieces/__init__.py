"""Grader-written pieces that a probe defines in the student's kernel (real modules, not strings).

A piece isolates a later part from an earlier one: RealNVP's stack is graded with the grader's
coupling, the training loop with the grader's flow, so that a mistake costs only its own part.
Each piece is self-contained (torch and the *ungraded* parts of flowlab only: it must work in the
grading kernel, whose flowlab has the graded pieces stubbed, see
:mod:`flowlab_course.trusted.redaction`).  A piece that implements a graded part X enters the
kernel only in parts that declare ``reveals=(X, ...)``, which the runner grades after X.

:func:`source` is the text a probe sends (the module's own source, linted and tested like any
other module).
"""

from __future__ import annotations

import functools
import os

__all__ = ["source"]

_HERE = os.path.dirname(os.path.abspath(__file__))


@functools.cache
def source(name: str) -> str:
    """The source text of the piece module ``name`` (``"coupling2d"``), to define it in a kernel."""
    path = os.path.join(_HERE, f"{name}.py")
    if not os.path.isfile(path):
        raise KeyError(f"no grader piece {name!r} in {_HERE}")
    with open(path, encoding="utf-8") as handle:
        return handle.read()
