r"""The exceptions a hidden test raises: a message in the lecture's terms, no traceback.

They are part of the contract between the trusted runner and a part's ``grade(kernel)``
(:mod:`.parts`): the runner (:mod:`.runner`) turns them into verdicts, the graders
(:mod:`flowlab_course.graders`, which re-exports them) raise them.

nbgrader gives zero points to a test cell whose output contains an error.  What the student
then reads in the feedback is the error's message, so a failed check raises
:class:`GradingFailure` with a sentence that says *what* is wrong in the lecture's notation
(:math:`f`, :math:`g = f^{-1}`, :math:`\log|\det Df|`) and *what to try*.  IPython prints only that
sentence (:meth:`GradingFailure._render_traceback_`), never the hidden test's code or inputs.
"""

from __future__ import annotations

__all__ = ["GradingFailure", "DelegationError", "fail"]


class GradingFailure(AssertionError):
    """A failed hidden check; ``str(err)`` is the message shown to the student."""

    def __init__(self, message: str, part: str | None = None) -> None:
        self.part = part
        self.message = message
        prefix = f"[{part}] " if part else ""
        super().__init__(prefix + message)

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting the traceback: the feedback shows the
        # message only, not the lines of the hidden test that raised it.
        return [f"{type(self).__name__}: {self}"]


class DelegationError(GradingFailure):
    """The student's code calls flowlab's reference for a part they were asked to write."""


def fail(message: str, part: str | None = None) -> None:
    """Raise :class:`GradingFailure` with ``message``."""
    raise GradingFailure(message, part)
