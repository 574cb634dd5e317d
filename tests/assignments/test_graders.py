"""Checks common to every assignment's hidden tests (no nbgrader, no kernel).

Each test cell names its hidden test with a ``# flowlab-grade:`` directive: every one must be a
registered part, every part's delegation references must exist in flowlab (a renamed class
would otherwise silently never match), and the committed source notebooks must be up to date.
The graders of each assignment are tested in ``test_graders_aN.py`` (solution, release, every
mistake of the catalogue 20 times, alternative styles); the nbgrader round trips in
``test_round_trips.py``.
"""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat

from catalogue import CATALOGUE
from nbgrader_course import ASSIGNMENTS

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


def test_every_assignment_has_a_catalogue_of_mistakes() -> None:
    names = sorted(p.name for p in (ASSIGNMENTS / "source").iterdir() if p.is_dir())
    assert names == ASSIGNMENT_IDS
    for a in names:
        assert len(CATALOGUE[a]) >= 8 and {m.part for m in CATALOGUE[a]} <= set(_parts(a))


def test_every_test_cell_names_a_registered_part() -> None:
    from flowlab_course.trusted.parts import lookup

    for a in ASSIGNMENT_IDS:
        for grade_id, key in _parts(a).items():
            assert lookup(key).key == key


def test_every_reference_of_every_part_exists_in_flowlab() -> None:
    """A reference that does not resolve (a renamed class) would silently never match."""
    import importlib

    from flowlab_course.trusted.parts import lookup

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
