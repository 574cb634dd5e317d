"""Hidden-test helpers for the course's nbgrader assignments (``assignments/``).

Each assignment has a module of graders, one function per graded part
(``assignment2.grade_affine_forward(AffineCoupling)`` ...).  A grader builds the student's layer,
feeds it fresh random inputs, compares it with flowlab's reference layer, the formula and the
brute-force Jacobian, and raises :class:`GradingFailure` with a message in the lecture's terms.

Hidden-test cells load a pristine copy with :func:`flowlab.grading.fresh.load` so that a
notebook that patches ``torch.allclose`` or these helpers does not change the grade.  The
nbgrader plug-ins (output limits, kernel restarts, feedback without hidden tests) are in
:mod:`flowlab.grading.nbgrader`.
"""

from . import assignment1, assignment2, assignment3, assignment4  # noqa: F401
from .errors import DelegationError, GradingFailure, fail
from .numerics import brute_force_logabsdet, expect_close, is_close, max_error, restore_torch

__all__ = [
    "GradingFailure",
    "DelegationError",
    "fail",
    "expect_close",
    "is_close",
    "max_error",
    "brute_force_logabsdet",
    "restore_torch",
    "assignment1",
    "assignment2",
    "assignment3",
    "assignment4",
]
