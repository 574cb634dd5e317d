"""In-process tests of assignment 2's trusted grader (coupling flows), on a LocalBridge.

* the solution passes every part, and the untouched release fails every part;
* every catalogue mistake of assignment 2 fails its OWN part at every one of ``FLOWLAB_REPEATS``
  (default 20) gradings with fresh random inputs, with a message, and passes every other part
  (the training part, which trains a model for seconds, is graded 3 times);
* the hint for Glow's shift-then-scale order explains the difference instead of calling it wrong.
"""

from __future__ import annotations

import os

import pytest

from catalogue import CATALOGUE
from local_grading import grade, namespace, parts, source
from nbgrader_course import patch

ASSIGNMENT, MODULE = "02_coupling", "assignment2"
REPEATS = int(os.environ.get("FLOWLAB_REPEATS", "20"))
SOURCE = source(ASSIGNMENT)
PARTS = parts(SOURCE)
SLOW = {"training"}  # trains a RealNVP on two moons: seconds per grading


def _param(part: str, *values, id=None):
    return pytest.param(*values, marks=[pytest.mark.slow] if part in SLOW else [], id=id)


@pytest.mark.parametrize("part", [_param(p, p, id=p) for p in PARTS])
def test_solution_passes_every_part(part: str) -> None:
    assert grade(MODULE, namespace(SOURCE), part) is None


def test_release_fails_every_part_with_not_implemented() -> None:
    ns = namespace(SOURCE, release=True)
    for part in PARTS:
        err = grade(MODULE, ns, part)
        assert err is not None and "not implemented yet" in err.message, (part, err)


@pytest.mark.parametrize("mistake", [_param(m.part, m, id=m.name) for m in CATALOGUE[ASSIGNMENT]])
def test_mistake_fails_its_own_part_at_every_grading_and_no_other(mistake) -> None:
    ns = namespace(patch(SOURCE, mistake.old, mistake.new))
    for _ in range(3 if mistake.part in SLOW else REPEATS):
        err = grade(MODULE, ns, mistake.part)
        assert err is not None and len(err.message) > 30, mistake.name
    for part in PARTS:
        if part != mistake.part and part not in SLOW:
            assert grade(MODULE, ns, part) is None, f"{mistake.name} also fails {part}"


def test_shift_then_scale_is_explained_not_just_called_wrong() -> None:
    ns = namespace(patch(SOURCE, "z[:, ~self.mask] = x_b * torch.exp(s) + t",
                         "z[:, ~self.mask] = (x_b + t) * torch.exp(s)"))
    err = grade(MODULE, ns, "affine_forward")
    assert err is not None and "Glow" in err.message and "invertible" in err.message
