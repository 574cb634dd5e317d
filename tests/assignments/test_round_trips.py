"""Round trips through the real nbgrader CLI, and the catalogue of typical mistakes.

For each assignment, ONE ``nbgrader autograde`` call grades: the solution (full marks), the
untouched release (zero, without crashing) and mistaken submissions of the catalogue (each loses
the points of the part it breaks and of no other part): at most ``ROUND_TRIP_MISTAKES`` per
assignment, taken evenly across the catalogue and always including every part that has a
mistake.  Every mistake is graded 20 times through the same trusted code in process by
``test_graders.py``; this file checks the nbgrader pipeline around it end to end.  Around it: the release is
checked for leaked solutions/hidden tests, ``nbgrader validate`` must pass on the solution and
fail on the release, and the feedback HTML must not show hidden tests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from catalogue import CATALOGUE
from nbgrader_course import ASSIGNMENTS, Course, grade_cells, make_course, patch, shared_run

NAMES = sorted(p.name for p in (ASSIGNMENTS / "source").iterdir() if p.is_dir())
ROUND_TRIP_MISTAKES = 12


def round_trip_mistakes(assignment: str) -> list:
    """Up to ROUND_TRIP_MISTAKES of the catalogue: one per broken part first, then evenly spread."""
    mistakes = CATALOGUE.get(assignment, [])
    chosen, parts = [], set()
    for m in mistakes:
        if m.part not in parts:
            parts.add(m.part)
            chosen.append(m)
    rest = [m for m in mistakes if m not in chosen]
    room = max(ROUND_TRIP_MISTAKES - len(chosen), 0)
    if rest and room:
        step = max(len(rest) / room, 1.0)
        chosen += [rest[int(i * step)] for i in range(min(room, len(rest)))]
    return chosen

pytestmark = pytest.mark.slow


def _param(a: str, *rest, id: str | None = None):
    return pytest.param(a, *rest, marks=pytest.mark.xdist_group(a), id=id or a)


class Graded:
    """Everything one grouped run produced for one assignment (built once per session)."""

    def __init__(self, folder: Path, assignment: str, first: bool) -> None:
        self.assignment = assignment
        self.mistakes = round_trip_mistakes(assignment)
        if first:
            course = make_course(folder, [assignment])
            solution = course.source_notebook(assignment)
            course.submit("s00_solution", assignment, solution)
            course.submit("s01_untouched", assignment, course.release_notebook(assignment))
            for m in self.mistakes:
                course.submit(f"m_{m.name}", assignment, patch(solution, m.old, m.new))
            n = 2 + len(self.mistakes)
            start = time.perf_counter()
            proc = course.nbgrader("autograde", assignment, check=False)
            seconds = (time.perf_counter() - start) / n
            course.nbgrader("generate_feedback", assignment, check=False)
            record = {"returncode": proc.returncode, "stderr": proc.stderr[-6000:],
                      "seconds_per_submission": seconds, "scores": course.scores(assignment)}
            (folder / "record.json").write_text(json.dumps(record))
            print(f"\n{assignment}: {seconds:.1f} s per submission ({n} graded)")
        record = json.loads((folder / "record.json").read_text())
        self.course = Course(folder / "course")
        self.solution = self.course.source_notebook(assignment)
        self.release = self.course.release_notebook(assignment)
        self.points = grade_cells(self.solution)
        self.scores = record["scores"]
        self.returncode, self.stderr = record["returncode"], record["stderr"]
        self.seconds_per_submission = record["seconds_per_submission"]


@pytest.fixture(scope="module", params=[_param(a) for a in NAMES])
def graded(request, tmp_path_factory) -> Graded:
    with shared_run(tmp_path_factory, request.param) as (folder, first):
        return Graded(folder, request.param, first)


def test_release_strips_solutions_and_hidden_tests(graded: Graded) -> None:
    text = json.dumps(graded.release)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "_load_grader"):
        assert marker not in text, f"{marker} leaked into the release"
    assert "raise NotImplementedError()" in text
    # every autograded cell keeps its points and its visible tests
    assert grade_cells(graded.release) == graded.points
    assert all(c.get("outputs", []) == [] for c in graded.release.cells if c.cell_type == "code")


def test_source_notebooks_are_generated_and_clean(graded: Graded) -> None:
    assert all(not c.get("outputs") for c in graded.solution.cells if c.cell_type == "code"), \
        "source notebooks are committed without outputs"
    for cell in graded.solution.cells:
        meta = cell.metadata.get("nbgrader")
        if meta is None:  # a free cell (plots, training): only code cells may be free
            assert cell.cell_type == "code"
            continue
        assert meta["schema_version"] == 3
        if meta["grade"]:
            assert meta["locked"] and meta["points"] > 0 and "### BEGIN HIDDEN TESTS" in cell.source


def test_solution_gets_full_marks(graded: Graded) -> None:
    got = graded.scores["s00_solution"]
    assert got == graded.points, graded.stderr[-4000:]


def test_untouched_release_gets_zero(graded: Graded) -> None:
    got = graded.scores["s01_untouched"]
    assert set(got) == set(graded.points)
    assert all(v == 0 for v in got.values()), got


def test_every_submission_graded_without_crash(graded: Graded) -> None:
    assert graded.returncode == 0, graded.stderr[-4000:]
    assert set(graded.scores) == {"s00_solution", "s01_untouched"} | {
        f"m_{m.name}" for m in graded.mistakes
    }


def test_catalogue_is_big_enough(graded: Graded) -> None:
    assert len(CATALOGUE.get(graded.assignment, [])) >= 8
    broken = {m.part for m in graded.mistakes}
    assert broken <= set(graded.points), broken - set(graded.points)


@pytest.mark.parametrize(
    "graded, mistake",
    [_param(a, m, id=f"{a}-{m.name}") for a in NAMES for m in round_trip_mistakes(a)],
    indirect=["graded"],
)
def test_mistake_loses_points_on_its_part_only(graded: Graded, mistake) -> None:
    assignment = graded.assignment
    got = graded.scores[f"m_{mistake.name}"]
    assert got[mistake.part] < graded.points[mistake.part], (
        f"{mistake.name} was not caught by {mistake.part}"
    )
    others = {k: v for k, v in got.items() if k != mistake.part}
    assert others == {k: v for k, v in graded.points.items() if k != mistake.part}, (
        f"{mistake.name} also lost points elsewhere: {got}"
    )
    # the student learns why: the failing cell's message is a sentence, not a bare assert
    nb = graded.course.autograded(f"m_{mistake.name}", assignment)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == mistake.part)
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert errors and errors[0].evalue.strip(), "a failure must come with a message"


def test_feedback_never_shows_hidden_tests(graded: Graded) -> None:
    folder = graded.course.root / "feedback"
    pages = list(folder.rglob("*.html"))
    assert len(pages) == len(graded.scores), "one feedback page per graded submission"
    for page in pages:
        html = page.read_text()
        assert "BEGIN HIDDEN TESTS" not in html and "_load_grader" not in html, page
        assert "flowlab/grading" not in html and "fresh_generator" not in html, page


def test_validate_passes_on_solution_and_fails_on_release(graded: Graded) -> None:
    a = graded.assignment
    ok = graded.course.nbgrader("validate", f"source/{a}/{a}.ipynb", check=False)
    assert ok.returncode == 0 and "Success" in ok.stdout + ok.stderr, ok.stdout[-3000:]
    bad = graded.course.nbgrader("validate", f"release/{a}/{a}.ipynb", check=False)
    assert "Success" not in bad.stdout + bad.stderr
    assert "NotImplementedError" in bad.stdout + bad.stderr
