"""In-process tests of assignment 2's trusted grader (coupling flows), on a LocalBridge.

(The solution, the release and the catalogue's mistakes are graded for every assignment by
``test_graders.py``.)

* the hint for Glow's shift-then-scale order explains the difference instead of calling it wrong.
"""

from __future__ import annotations

from local_grading import grade, namespace, source
from nbgrader_course import patch

ASSIGNMENT, MODULE = "02_coupling", "assignment2"
SOURCE = source(ASSIGNMENT)


def test_shift_then_scale_is_explained_not_just_called_wrong() -> None:
    ns = namespace(patch(SOURCE, "z[:, ~self.mask] = x_b * torch.exp(s) + t",
                         "z[:, ~self.mask] = (x_b + t) * torch.exp(s)"))
    err = grade(MODULE, ns, "affine_forward")
    assert err is not None and "Glow" in err.message and "invertible" in err.message
