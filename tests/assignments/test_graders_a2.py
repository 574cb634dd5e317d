"""In-process tests of assignment 2's trusted grader (coupling flows), on a LocalBridge.

(The solution, the release and the catalogue's mistakes are graded for every assignment by
``test_graders.py``.)

* the hint for Glow's shift-then-scale order explains the difference instead of calling it wrong;
* correct solutions in other styles pass, the float32 and 24-feature cases included
  (``index_select``/``index_copy``, zeros-then-scatter, a float mask).
"""

from __future__ import annotations

import pytest

from local_grading import grade, namespace, source
from nbgrader_course import patch

ASSIGNMENT, MODULE = "02_coupling", "assignment2"
SOURCE = source(ASSIGNMENT)


def test_shift_then_scale_is_explained_not_just_called_wrong() -> None:
    ns = namespace(patch(SOURCE, "z[:, ~self.mask] = x_b * torch.exp(s) + t",
                         "z[:, ~self.mask] = (x_b + t) * torch.exp(s)"))
    err = grade(MODULE, ns, "affine_forward")
    assert err is not None and "Glow" in err.message and "invertible" in err.message


# issue 27: correct styles that must also pass the float32 and the 24-feature cases
_AFFINE_FORWARD = """        x_a, x_b = x[:, self.mask], x[:, ~self.mask]
        s, t = self.conditioner(x_a).chunk(2, dim=1)
        z = x.clone()
        z[:, ~self.mask] = x_b * torch.exp(s) + t
        return z, s.sum(dim=1)"""
_AFFINE_INVERSE = """        z_a, z_b = z[:, self.mask], z[:, ~self.mask]
        s_inv, t_inv = self.conditioner(z_a).chunk(2, dim=1)
        x = z.clone()
        x[:, ~self.mask] = (z_b - t_inv) * torch.exp(-s_inv)
        return x, -s_inv.sum(dim=1)"""
_ADDITIVE_FORWARD = """        x_a, x_b = x[:, self.mask], x[:, ~self.mask]
        z = x.clone()
        z[:, ~self.mask] = x_b + self.conditioner(x_a)
        return z, x.new_zeros(x.shape[0])"""
_ADDITIVE_INVERSE = """        z_a, z_b = z[:, self.mask], z[:, ~self.mask]
        x = z.clone()
        x[:, ~self.mask] = z_b - self.conditioner(z_a)
        return x, z.new_zeros(z.shape[0])"""

ALTERNATIVES = {
    "index_copy_and_index_select": [
        (_AFFINE_FORWARD, """        keep = self.mask.nonzero().flatten()
        change = (~self.mask).nonzero().flatten()
        s, t = self.conditioner(x.index_select(1, keep)).chunk(2, dim=1)
        z = x.index_copy(1, change, x.index_select(1, change) * s.exp() + t)
        return z, s.sum(1)"""),
        (_AFFINE_INVERSE, """        keep = self.mask.nonzero().flatten()
        change = (~self.mask).nonzero().flatten()
        s, t = torch.chunk(self.conditioner(z.index_select(1, keep)), 2, dim=1)
        x = z.index_copy(1, change, (z.index_select(1, change) - t) / torch.exp(s))
        return x, -torch.sum(s, dim=1)"""),
    ],
    "zeros_like_and_scatter_by_mask": [
        (_ADDITIVE_FORWARD, """        z = torch.zeros_like(x)
        z[:, self.mask] = x[:, self.mask]
        z[:, ~self.mask] = x[:, ~self.mask] + self.conditioner(x[:, self.mask])
        return z, torch.zeros(x.shape[0], dtype=x.dtype)"""),
        (_ADDITIVE_INVERSE, """        b = self.mask.to(z.dtype)
        shift = torch.zeros_like(z)
        shift[:, ~self.mask] = self.conditioner(z[:, self.mask])
        return z - (1 - b) * shift, torch.zeros_like(z[:, 0])"""),
    ],
}


@pytest.mark.parametrize("style", sorted(ALTERNATIVES))
def test_alternative_correct_style_passes(style) -> None:
    nb = SOURCE
    for old, new in ALTERNATIVES[style]:
        nb = patch(nb, old, new)
    ns = namespace(nb)
    parts = [p for p in ("additive_forward", "additive_inverse", "affine_forward",
                         "affine_inverse", "realnvp")]
    assert {p: str(e) for p in parts if (e := grade(MODULE, ns, p)) is not None} == {}
