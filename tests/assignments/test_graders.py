"""Fast, in-process checks of the graders (flowlab.grading) — no nbgrader, no kernels.

The solution cells of each source notebook are executed in a fresh namespace; every grader
must accept them, and every mistake of the catalogue must make the grader of its part raise a
GradingFailure with a message.  (The slow round trips repeat this through the nbgrader CLI.)
"""

from __future__ import annotations

import copy
import subprocess
import sys

import matplotlib
import nbformat
import pytest
import torch

from catalogue import CATALOGUE
from nbgrader_course import ASSIGNMENTS, patch

matplotlib.use("Agg")

MODULE = {"01_change_of_variables": "assignment1", "02_coupling": "assignment2",
          "03_image_flows": "assignment3", "04_glow": "assignment4"}
# The arguments each part's grader takes, by name in the notebook.
ARGS = {
    "density_uniform": ["density_sqrt_uniform"], "density_lognormal": ["log_density_exp_normal"],
    "leaky_forward": ["LeakyReLU"], "leaky_inverse": ["LeakyReLU"],
    "triangular_forward": ["TriangularLinear"], "triangular_inverse": ["TriangularLinear"],
    "permutation": ["Permutation"],
    "additive_forward": ["AdditiveCoupling"], "additive_inverse": ["AdditiveCoupling"],
    "affine_forward": ["AffineCoupling"], "affine_inverse": ["AffineCoupling"],
    "realnvp": ["build_realnvp"], "training": ["train"],
    "squeeze": ["squeeze"], "unsqueeze": ["unsqueeze"], "masks": ["checkerboard_mask", "channel_mask"],
    "masked_forward": ["MaskedAffineCoupling"], "masked_inverse": ["MaskedAffineCoupling"],
    "dequantize": ["dequantize"], "bits_per_dim": ["bits_per_dim"], "multiscale": ["multiscale_forward"],
    "actnorm_init": ["ActNorm"], "actnorm_forward": ["ActNorm"], "actnorm_inverse": ["ActNorm"],
    "conv_weight": ["LUConv1x1"], "conv_forward": ["LUConv1x1"], "conv_inverse": ["LUConv1x1"],
    "temperature": ["sample_with_temperature"],
}


def _source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ASSIGNMENTS / "source" / assignment / f"{assignment}.ipynb", as_version=4)


def _namespace(nb: nbformat.NotebookNode) -> dict:
    """Run the setup and solution cells (not tests, not plots) in a fresh namespace."""
    ns: dict = {"__name__": "__student__"}
    for cell in nb.cells:
        kind = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (kind.get("solution") or (kind.get("locked") and not kind.get("grade"))):
            exec(compile(cell.source, f"<{kind.get('grade_id')}>", "exec"), ns)
    return ns


def _grade(assignment: str, part: str, ns: dict) -> None:
    from flowlab.grading.fresh import load

    grader = getattr(getattr(load(), MODULE[assignment]), f"grade_{part}")
    grader(*[ns[name] for name in ARGS[part]])


def _parts(assignment: str) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in _source(assignment).cells
            if c.metadata.get("nbgrader", {}).get("grade")]


@pytest.fixture(autouse=True)
def _restore_torch():
    state = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(state[0])
    torch.set_num_threads(state[1])


def _slow_if_training(part: str, *values, id=None):
    marks = [pytest.mark.slow] if part == "training" else []  # 400 optimisation steps
    return pytest.param(*values, marks=marks, id=id)


@pytest.mark.parametrize("assignment, part", [_slow_if_training(p, a, p, id=f"{a}-{p}")
                                              for a in MODULE for p in _parts(a)])
def test_solution_passes_every_grader(assignment: str, part: str) -> None:
    _grade(assignment, part, _namespace(_source(assignment)))


@pytest.mark.parametrize("assignment, mistake",
                         [_slow_if_training(m.part, a, m, id=f"{a}-{m.name}")
                          for a in MODULE for m in CATALOGUE[a]])
def test_grader_catches_mistake_with_a_message(assignment: str, mistake) -> None:
    ns = _namespace(patch(_source(assignment), mistake.old, mistake.new))
    # each grader is a fresh copy of flowlab.grading, with its own GradingFailure class
    with pytest.raises(AssertionError) as info:
        _grade(assignment, mistake.part, ns)
    assert type(info.value).__name__ in ("GradingFailure", "DelegationError")
    assert len(str(info.value)) > 30 and f"[{mistake.part}]" in str(info.value)


def test_fresh_copy_ignores_monkeypatching(monkeypatch) -> None:
    import flowlab.grading
    from flowlab.grading.fresh import load

    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(flowlab.grading.numerics, "is_close", lambda *a, **k: True)
    monkeypatch.setattr(flowlab.grading.assignment1, "grade_density_uniform", lambda *a, **k: None)
    grader = load()
    assert torch.allclose is torch._C._VariableFunctions.allclose, "load() restores torch.allclose"
    with pytest.raises(grader.GradingFailure, match="density_uniform"):
        grader.assignment1.grade_density_uniform(lambda x: 2 * x)


def test_delegation_is_detected_at_runtime() -> None:
    from flowlab.grading.delegation import no_delegation
    from flowlab.grading.errors import DelegationError
    from flowlab.transforms.linear import Permutation

    with pytest.raises(DelegationError, match="reference"):
        with no_delegation(["flowlab.transforms.linear"], "permutation"):
            Permutation([1, 0])(torch.zeros(3, 2))
    with no_delegation(["flowlab.transforms.coupling"], "permutation"):  # another part: allowed
        Permutation([1, 0])(torch.zeros(3, 2))


def test_subclassing_the_reference_is_delegation() -> None:
    from flowlab.grading.fresh import load
    from flowlab.transforms.linear import Permutation

    class MyPermutation(Permutation):
        pass

    grader = load()
    with pytest.raises(grader.DelegationError, match="subclasses flowlab"):
        grader.assignment1.grade_permutation(MyPermutation)


def test_feedback_sanitizer_and_output_limit() -> None:
    from flowlab.grading.nbgrader import LimitOutputSize, SanitizeFeedback

    cell = nbformat.v4.new_code_cell(
        "assert visible\n### BEGIN HIDDEN TESTS\nsecret_input = 42\n### END HIDDEN TESTS\n")
    cell.outputs = [nbformat.v4.new_output("error", ename="GradingFailure", evalue="wrong sign",
                                           traceback=["\x1b[31mline 3: secret_input = 42", "GradingFailure: wrong sign"])]
    cell, _ = SanitizeFeedback().preprocess_cell(cell, {}, 0)
    assert "secret_input" not in cell.source and "secret_input" not in str(cell.outputs)
    assert cell.outputs[0].traceback == ["GradingFailure: wrong sign"]
    big = nbformat.v4.new_code_cell("print")
    big.outputs = [nbformat.v4.new_output("stream", name="stdout", text="x" * 3_000_000)]
    big, _ = LimitOutputSize(max_chars=1000).preprocess_cell(big, {}, 0)
    assert len(big.outputs[0].text) < 1200 and "truncated" in big.outputs[0].text


def test_source_notebooks_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(ASSIGNMENTS / "build_source.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_release_folder_matches_source_cells() -> None:
    """The committed student release has the same graded cells and no solutions."""
    for a in MODULE:
        path = ASSIGNMENTS / "release" / a / f"{a}.ipynb"
        if not path.exists():
            pytest.skip("release not generated yet (make release)")
        text = path.read_text()
        assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
