"""Hidden tests of the course's nbgrader assignments, one module per assignment.

Each module registers its parts with :func:`flowlab_course.trusted.parts.part`; a test cell's
hidden region names one (``# flowlab-grade: assignment2.affine_forward``) and the trusted runner
calls it with a bridge to the student's kernel.  A grader builds the student's layer in the kernel
with weights it chose, receives plain tensors, compares them in its own process with flowlab's
reference, the formula and the brute-force Jacobian, and raises :class:`GradingFailure` with a
message in the lecture's terms.  Modules are imported on demand by the composition above both packages
(:func:`flowlab_course.registry.lookup`); ``trusted/`` never imports them.
"""

from .errors import DelegationError, GradingFailure, fail
from .numerics import brute_force_logabsdet, expect_close, is_close, max_error

__all__ = ["GradingFailure", "DelegationError", "fail", "expect_close", "is_close", "max_error",
           "brute_force_logabsdet"]
