"""A hostile class by categories for assignments 1, 3, 4 and 5 (issue 27; assignment 2's is in
``test_trust.py``), graded through the real nbgrader CLI with the sandbox on.

The categories (:mod:`hostile_cells`): computed and indirect attribute access to flowlab,
runtime evidence switched off or rewritten, IPython hooks reached indirectly, reply and request
tampering, grader detection.  Per assignment one class of five notebooks — ``h_indirect``,
``h_detect`` (the release with every graded name delegated to flowlab's reference), ``h_tamper``
(the solution with some names delegated, and every tampering category), the empty release and
the solution — is graded once with ``nbgrader autograde`` (sequential, the ``make autograde``
path) and once through :func:`flowlab_course.parallel.autograde_parallel` (two workers).

"Fair" is the points of the parts a notebook solves by its own computation: 0 for the
delegating release notebooks, the solution's points less the delegated parts for
``h_tamper``.  Every notebook must score at most fair on every part; the empty release 0, the
solution full marks (so the redacted flowlab still serves what the notebooks use).

The attacks are real: with flowlab's reference present (graded in process, no separation),
each wrapper earns the parts it claims (:func:`test_the_wrappers_are_real_delegation`).
"""

from __future__ import annotations

import json
import os

import hostile_cells as H
import pytest
from local_grading import namespace, source
from nbgrader_course import Course, grade_cells, make_course, shared_run

ASSIGNMENTS = sorted(H.SPECS)


# --------------------------------------------------------------- the attacks are real (fast)
def _namespace(assignment: str, *cells: str) -> dict:
    """The release's setup and cells, then ``cells`` (run in process, as a kernel would)."""
    ns = namespace(source(assignment), release=True)
    for text in cells:
        exec(compile(text, "<appended>", "exec"), ns)
    return ns


def _grade_all(spec, ns, bridge=None) -> dict:
    from flowlab_course.graders.errors import GradingFailure
    from flowlab_course.trusted.bridge import LocalBridge
    from flowlab_course.registry import lookup

    out = {}
    for p in sorted(H.earned(spec)):
        try:
            lookup(f"{spec.module}.{p}").grade(bridge or LocalBridge(ns))
            out[p] = None
        except GradingFailure as err:
            out[p] = str(err)[:300]
    return out


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_wrappers_are_real_delegation(assignment):
    """Without separation (the real flowlab in process), every wrapper earns its parts: what the
    sandbox run then shows is separation at work, not a broken attack."""
    spec = H.SPECS[assignment]
    ns = _namespace(assignment, H.where_cell(spec) + H.ROUTES + "\n_ROUTES = [_r_getattr]\n",
                    H.wrappers(spec))
    failed = {p: e for p, e in _grade_all(spec, ns).items() if e is not None}
    assert failed == {}, failed


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_wrappers_earn_nothing_against_the_redacted_flowlab(assignment):
    """In process, with the redacted flowlab in ``sys.modules`` (the plain routes only: gc and
    the disk would find this process's own real flowlab, which a sandboxed kernel has not)."""
    import importlib

    from flowlab_course.trusted import redaction
    from flowlab_course.trusted.bridge import LocalBridge

    spec = H.SPECS[assignment]
    copy = redaction.build(importlib.import_module(f"flowlab_course.graders.{spec.module}").GRADED)
    modules = redaction.load(copy)
    routes = ("\n_ROUTES = [_r_getattr, _r_importlib, _r_dunder_import, _r_sys_modules, "
              "_r_inspect_exec, _r_subclass, _r_pickle_copy]\n")
    with redaction.swapped(modules):
        ns = _namespace(assignment, H.where_cell(spec) + H.ROUTES + routes, H.wrappers(spec))
    bridge = LocalBridge(ns, stub_messages=redaction.manifest(copy)["stubs"].values(),
                         modules=modules)
    passed = {p for p, e in _grade_all(spec, ns, bridge).items() if e is None}
    assert passed == set()


# --------------------------------------------------------------- the class, through the CLI
def _grade_class(tmp_path_factory, assignment: str, mode: str):
    with shared_run(tmp_path_factory, f"trust-class-{assignment}-{mode}") as (folder, first):
        course = make_course(folder, [assignment]) if first else Course(folder / "course")
        solution, release = course.source_notebook(assignment), course.release_notebook(assignment)
        points = grade_cells(solution)
        subs = H.hostile_class(H.SPECS[assignment], solution, release, points)
        if first:
            for student, (nb, _) in subs.items():
                course.submit(student, assignment, nb)
            if mode == "sequential":
                course.nbgrader("autograde", assignment, timeout=2400)
            else:
                from flowlab_course.parallel import autograde_parallel

                cwd = os.getcwd()
                try:
                    os.chdir(course.root)   # nbgrader_config.py is read from the course folder
                    results = autograde_parallel(str(course.root), assignment, workers=2,
                                                 progress=False)
                finally:
                    os.chdir(cwd)
                assert all(r.ok for r in results), [r for r in results if not r.ok]
        return course, subs, points


def _check_at_most_fair(course, assignment, subs, points):
    scores = course.scores(assignment)
    assert set(scores) >= set(subs), sorted(set(subs) - set(scores))   # every student graded
    above = {}
    for student, (_, solved) in subs.items():
        for p, full in points.items():
            fair = full if p in solved else 0.0
            if scores[student][p] > fair:
                above.setdefault(student, {})[p] = (scores[student][p], fair)
    assert above == {}, json.dumps(above)
    assert sum(scores["t_release"].values()) == 0
    assert scores["t_solution"] == points, scores["t_solution"]   # the redacted flowlab serves
    return scores


_MARKS = [pytest.mark.slow, pytest.mark.sandbox]


@pytest.mark.parametrize("assignment", [pytest.param(a, marks=[*_MARKS, pytest.mark.xdist_group(
    f"trust-class-{a}")]) for a in ASSIGNMENTS])
@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_hostile_class_scores_at_most_fair(tmp_path_factory, bwrap, assignment, mode):
    course, subs, points = _grade_class(tmp_path_factory, assignment, mode)
    scores = _check_at_most_fair(course, assignment, subs, points)
    # h_tamper: the delegated parts are lost, and the tampering neither forges them nor costs
    # the parts its own code solves (the verdict depends on values only)
    spec = H.SPECS[assignment]
    _, solved = subs["h_tamper"]
    assert scores["h_tamper"] == {p: full if p in solved else 0.0 for p, full in points.items()}
    # every route, tried in the grading kernel, found a stub or nothing: never flowlab's code
    nb = course.autograded("h_indirect", assignment)
    survey = [line.split()[1:] for c in nb.cells for o in c.get("outputs", [])
              if o.get("name") == "stdout" for line in o.get("text", "").splitlines()
              if line.startswith("SURVEY ")]
    assert len(survey) == len(spec.where) * 9, survey   # nine routes per name: the survey ran
    real = [s for s in survey if s[2] == "REAL" and s[0] not in spec.open_names]
    assert real == [], real
    assert {s[2] for s in survey if s[1] == "_r_disk"} == {"LookupError"}   # no source on disk
