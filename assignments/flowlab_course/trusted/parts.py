"""Graded parts: what a hidden test is, and the registry the trusted runner looks them up in.

A hidden-test cell of an assignment carries one directive in its hidden region::

    ### BEGIN HIDDEN TESTS
    # flowlab-grade: assignment2.affine_forward
    ### END HIDDEN TESTS

The region is never sent to the student's kernel.  The runner finds the :class:`Part` registered
under that key (``@part(...)`` in :mod:`flowlab_course.graders.assignment2`) and calls its
``grade(kernel)`` in the trusted process.  A part says which student names it grades
(``defines``) and which flowlab code would be *delegation* for it (``reference`` modules,
``reference_functions`` such as ``flowlab.flow.Flow.sample``, attribute calls forbidden inside a
graded function's body), so that the static and runtime checks know what to look for.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Part", "Partial", "part", "lookup", "REGISTRY"]

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
    """

    key: str
    grade: Callable
    defines: tuple[str, ...]
    reference: tuple[str, ...] = ()
    reference_functions: tuple[str, ...] = ()
    body_forbids: dict = field(default_factory=dict)


def part(name: str, *, defines: tuple[str, ...] | list[str], reference=(), reference_functions=(),
         body_forbids: dict | None = None) -> Callable:
    """Register the decorated ``grade(kernel)`` function as the hidden test ``<module>.<name>``."""

    def register(fn: Callable) -> Callable:
        module = fn.__module__.rsplit(".", 1)[-1]
        key = f"{module}.{name}"
        REGISTRY[key] = Part(key, fn, tuple(defines), tuple(reference), tuple(reference_functions),
                             dict(body_forbids or {}))
        fn.part = REGISTRY[key]
        return fn

    return register


def lookup(key: str) -> Part:
    """The part registered under ``key``, importing ``flowlab_course.graders.<module>`` first."""
    if key not in REGISTRY:
        module = key.split(".", 1)[0]
        try:
            importlib.import_module(f"flowlab_course.graders.{module}")
        except ImportError as err:
            raise KeyError(f"no grader module for {key!r}: {err}") from None
    try:
        return REGISTRY[key]
    except KeyError:
        raise KeyError(f"no hidden test registered as {key!r}") from None
