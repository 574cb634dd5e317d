"""Checks common to every assignment's hidden tests (no nbgrader, no kernel).

For every assignment, in process on a LocalBridge (the same kernel-side code and wire format as
a real kernel): the solution passes every part, the untouched release fails every part, and
every mistake of the catalogue fails its OWN part at each of ``FLOWLAB_REPEATS`` (default 20)
gradings with fresh random inputs, with a message, and passes every other part; and, with the fresh
random cases switched off (``FLOWLAB_GRADER_FIXED_ONLY=1``, issue 27), the FIXED cases alone catch
every mistake on its own part and no other, and the solution passes them.  Each test cell
names its hidden test with a ``# flowlab-grade:`` directive: every one must be a registered
part, every part's delegation references must exist in flowlab (a renamed class would otherwise
silently never match), and the committed source notebooks must be up to date.  Alternative
correct styles and targeted cases are in ``test_graders_aN.py``; the nbgrader round trips in
``test_round_trips.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pytest

from catalogue import CATALOGUE
from local_grading import grade, namespace, source
from nbgrader_course import ASSIGNMENTS, patch

ASSIGNMENT_IDS = sorted(CATALOGUE)
_DIRECTIVE = re.compile(r"#\s*flowlab-grade:\s*(\w+\.\w+)")


def _source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ASSIGNMENTS / "source" / assignment / f"{assignment}.ipynb", as_version=4)


def _parts(assignment: str) -> dict[str, str]:
    """``grade_id -> part key`` from the test cells' directives."""
    out = {}
    for c in _source(assignment).cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("grade") and c.cell_type == "code":
            match = _DIRECTIVE.search(c.source)
            assert match, f"{assignment}: test cell {meta['grade_id']} has no flowlab-grade directive"
            out[meta["grade_id"]] = match.group(1)
    return out


REPEATS = int(os.environ.get("FLOWLAB_REPEATS", "20"))
SLOW_PARTS = {"training"}  # trains a RealNVP on two moons: seconds per grading


def _module(assignment: str) -> str:
    return f"assignment{int(assignment[:2])}"


def _param(part: str, *values, id: str):
    return pytest.param(*values, marks=[pytest.mark.slow] if part in SLOW_PARTS else [], id=id)


@pytest.mark.parametrize("assignment, part", [_param(p, a, p, id=f"{a}-{p}") for a in ASSIGNMENT_IDS
                                              for p in _parts(a)])
def test_solution_passes_every_part(assignment: str, part: str) -> None:
    err = grade(_module(assignment), namespace(source(assignment)), part)
    assert err is None, str(err)


@pytest.mark.parametrize("assignment", ASSIGNMENT_IDS)
def test_release_fails_every_part_with_not_implemented(assignment: str) -> None:
    ns = namespace(source(assignment), release=True)
    for part in _parts(assignment):
        err = grade(_module(assignment), ns, part)
        assert err is not None and err.part == part, part
        assert "not implemented yet" in err.message, err.message


@pytest.mark.parametrize("assignment, mistake", [_param(m.part, a, m, id=f"{a}-{m.name}")
                                                 for a in ASSIGNMENT_IDS for m in CATALOGUE[a]])
def test_mistake_fails_its_own_part_at_every_grading_and_no_other(assignment: str, mistake) -> None:
    module, parts = _module(assignment), list(_parts(assignment))
    ns = namespace(patch(source(assignment), mistake.old, mistake.new))
    repeats = 3 if mistake.part in SLOW_PARTS else REPEATS
    for attempt in range(repeats):  # fresh random inputs each time: caught in every grading
        err = grade(module, ns, mistake.part)
        assert err is not None, f"{mistake.name} passed grading {attempt + 1} of {repeats}"
        assert err.part == mistake.part and 30 < len(err.message) < 800, err.message
        assert "Traceback" not in err.message
    others = {p: str(e) for p in parts if p != mistake.part and p not in SLOW_PARTS
              and (e := grade(module, ns, p)) is not None}
    assert others == {}, f"{mistake.name} also cost points on {sorted(others)}"


@pytest.mark.parametrize("assignment, mistake", [_param(m.part, a, m, id=f"{a}-{m.name}")
                                                 for a in ASSIGNMENT_IDS for m in CATALOGUE[a]])
def test_mistake_is_caught_by_the_fixed_cases_alone(monkeypatch, assignment: str, mistake) -> None:
    """Deterministic by construction: with the fresh random cases switched off
    (``FLOWLAB_GRADER_FIXED_ONLY=1``), grading is one fixed computation, and it catches every
    catalogue mistake on its own part and on no other."""
    from flowlab_course.graders.probes import FIXED_ONLY_ENV, random_cases

    monkeypatch.setenv(FIXED_ONLY_ENV, "1")
    assert not random_cases()
    module, parts = _module(assignment), list(_parts(assignment))
    ns = namespace(patch(source(assignment), mistake.old, mistake.new))
    first = grade(module, ns, mistake.part)
    assert first is not None, f"{mistake.name} passed the fixed cases"
    assert first.part == mistake.part and 30 < len(first.message) < 800, first.message
    others = {p: str(e) for p in parts if p != mistake.part and p not in SLOW_PARTS
              and (e := grade(module, ns, p)) is not None}
    assert others == {}, f"{mistake.name} also cost points on {sorted(others)}"
    if mistake.part not in SLOW_PARTS:  # the same grader inputs: the same verdict again (the
        # words may differ only where the student's own code draws random numbers: sampling)
        again = grade(module, ns, mistake.part)
        assert again is not None and again.part == mistake.part


@pytest.mark.parametrize("assignment, part", [_param(p, a, p, id=f"{a}-{p}") for a in ASSIGNMENT_IDS
                                              for p in _parts(a)])
def test_solution_passes_the_fixed_cases_alone(monkeypatch, assignment: str, part: str) -> None:
    from flowlab_course.graders.probes import FIXED_ONLY_ENV

    monkeypatch.setenv(FIXED_ONLY_ENV, "1")
    err = grade(_module(assignment), namespace(source(assignment)), part)
    assert err is None, str(err)


def test_every_assignment_has_held_out_style_mistakes() -> None:
    """Issue 27: at least 3 mistakes per assignment that are wrong only beyond small sizes,
    depths, iteration counts, usual values, float64, or that write into their input; together
    they cover every kind."""
    from catalogue import HELD_OUT_KINDS

    kinds = set()
    for a in ASSIGNMENT_IDS:
        held_out = [m for m in CATALOGUE[a] if m.kind]
        assert len(held_out) >= 3, (a, [m.name for m in held_out])
        assert {m.kind for m in held_out} <= set(HELD_OUT_KINDS)
        kinds |= {m.kind for m in held_out}
    assert kinds == set(HELD_OUT_KINDS), sorted(set(HELD_OUT_KINDS) - kinds)


def test_every_assignment_has_a_catalogue_of_mistakes() -> None:
    names = sorted(p.name for p in (ASSIGNMENTS / "source").iterdir() if p.is_dir())
    assert names == ASSIGNMENT_IDS
    for a in names:
        assert len(CATALOGUE[a]) >= 8 and {m.part for m in CATALOGUE[a]} <= set(_parts(a))


def test_every_test_cell_names_a_registered_part() -> None:
    from flowlab_course.registry import lookup

    for a in ASSIGNMENT_IDS:
        for grade_id, key in _parts(a).items():
            assert lookup(key).key == key


def test_every_reference_of_every_part_exists_in_flowlab() -> None:
    """A reference that does not resolve (a renamed class) would silently never match."""
    import importlib

    from flowlab_course.registry import lookup

    for a in ASSIGNMENT_IDS:
        for key in _parts(a).values():
            part = lookup(key)
            for ref in (*part.reference, *part.reference_functions):
                pieces, obj = ref.split("."), None
                for cut in range(len(pieces), 0, -1):
                    try:
                        obj = importlib.import_module(".".join(pieces[:cut]))
                    except ImportError:
                        continue
                    for name in pieces[cut:]:
                        obj = getattr(obj, name)
                    break
                assert obj is not None, f"{key}: reference {ref} does not exist"


def test_source_notebooks_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(ASSIGNMENTS / "build_source.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
