"""Graded parts: what a hidden test is, and the registry the trusted runner looks them up in.

A hidden-test cell of an assignment carries one directive in its hidden region::

    ### BEGIN HIDDEN TESTS
    # flowlab-grade: assignment2.affine_forward
    ### END HIDDEN TESTS

The region is never sent to the student's kernel.  The runner finds the :class:`Part` registered
under that key (``@part(...)`` in :mod:`flowlab_course.graders.assignment2`, which registers
itself here when it is imported: this package imports no grader, the composition is
:mod:`flowlab_course.registry`) and calls its ``grade(kernel)`` in the trusted process.  What
``grade`` may raise is :mod:`.errors`.  A part says which student names it grades
(``defines``) and which flowlab code would be *delegation* for it (``reference`` modules,
``reference_functions`` such as ``flowlab.flow.Flow.sample``, attribute calls forbidden inside a
graded function's body).  Those references are drawn from the grader module's assignment-level
``GRADED`` declaration (:class:`~.redaction.Graded`): the grading kernel imports a flowlab in
which they are stubs (:mod:`.redaction`), and the static reader only writes notes about them.

A part whose probe sends a grader-written piece into the kernel that implements *another* part
(RealNVP's stack built with the grader's coupling) names those parts in ``reveals``: the runner
grades it only after their verdicts are final (:func:`order`), so the piece can never serve as a
reference for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Part", "Partial", "part", "lookup", "order", "REGISTRY"]

#: ``"assignment2.affine_forward" -> Part``, filled when a grader module is imported.
REGISTRY: dict[str, "Part"] = {}


@dataclass(frozen=True)
class Partial:
    """A grade between 0 and 1 of the part's points, with the message that explains it."""

    fraction: float
    message: str


@dataclass(frozen=True)
class Part:
    """One graded question.

    Args:
        key: ``"<grader module>.<part>"``, the directive's text.
        grade: ``grade(kernel) -> None | Partial``; raises ``GradingFailure`` when it fails.
        defines: the student's names this part grades (classes, functions).
        reference: flowlab modules whose code the student must not use for this part.
        reference_functions: single flowlab functions that are delegation for this part
            (``"flowlab.flow.Flow.sample"``).
        body_forbids: ``{function name: attribute names}`` that must not be called inside the
            student's definition of that function (``{"sample_with_temperature": ("sample",)}``).
        reveals: names of parts of the same module whose computation a grader-written piece of
            this part's probes implements (graded before this part).
    """

    key: str
    grade: Callable
    defines: tuple[str, ...]
    reference: tuple[str, ...] = ()
    reference_functions: tuple[str, ...] = ()
    body_forbids: dict = field(default_factory=dict)
    reveals: tuple[str, ...] = ()


def part(name: str, *, defines: tuple[str, ...] | list[str], reference=(), reference_functions=(),
         body_forbids: dict | None = None, reveals=()) -> Callable:
    """Register the decorated ``grade(kernel)`` function as the hidden test ``<module>.<name>``."""

    def register(fn: Callable) -> Callable:
        module = fn.__module__.rsplit(".", 1)[-1]
        key = f"{module}.{name}"
        REGISTRY[key] = Part(key, fn, tuple(defines), tuple(reference), tuple(reference_functions),
                             dict(body_forbids or {}), tuple(reveals))
        fn.part = REGISTRY[key]
        return fn

    return register


def order(parts: dict[int, Part]) -> list[int]:
    """Cell indices in grading order: notebook order, except that a part runs after every part it
    ``reveals`` (so a grader-written piece that implements part X enters the kernel only after
    X's verdict is final)."""
    keys = {p.key: i for i, p in parts.items()}
    done: list[int] = []

    def visit(index: int, path: tuple) -> None:
        if index in done or index in path:
            return
        part_ = parts[index]
        module = part_.key.split(".", 1)[0]
        for name in part_.reveals:
            other = keys.get(f"{module}.{name}")
            if other is not None:
                visit(other, path + (index,))
        done.append(index)

    for index in sorted(parts):
        visit(index, ())
    return done


def lookup(key: str) -> Part:
    """The part registered under ``key`` (its grader module must have been imported).

    ``trusted/`` imports no grader: the entry points pass :func:`flowlab_course.registry.lookup`,
    which imports the grader module of ``key`` first, to :func:`.runner.plan`.
    """
    try:
        return REGISTRY[key]
    except KeyError:
        raise KeyError(f"no hidden test registered as {key!r} (is its grader module imported? "
                       "flowlab_course.registry.lookup imports it)") from None
