"""Every chapter of the book runs top to bottom under nbval, in quick mode.

The chapters are stored as MyST Markdown (no outputs in git).  For each chapter the test

1. converts it with jupytext to an ``.ipynb`` in a temporary folder;
2. puts the *reference outputs* into the cells marked ``# NBVAL_CHECK_OUTPUT``;
3. runs ``pytest --nbval-lax`` on it with ``FLOWLAB_QUICK=1``: every cell must run without
   error, and the marked cells must print exactly their reference output.

How the reference outputs are kept honest.  Marked cells print only deterministic, meaningful
values: analytic checks (``2x`` at a point, an integral that must be 1), log-determinants in
float64, comparisons that must hold (``True``), numbers rounded so that a rerun on another
machine prints the same digits.  Their outputs live in ``expected_outputs.json`` next to this
file, keyed by chapter and by the cell's exact source.  They were produced by running the
chapters once::

    .venv/bin/python tests/book/test_notebooks.py --update [chapter ...]

and then *read*: each value is the one the chapter's text derives (the diff of the JSON file is
part of review).  A marked cell whose source changed has no reference any more and fails with
a message asking for ``--update``: a changed check must be looked at again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if __package__ in (None, ""):  # run as a script: python tests/book/test_notebooks.py --update
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.book.conftest import ROOT, chapter_notebooks
else:
    from .conftest import ROOT, chapter_notebooks

MARK = "# NBVAL_CHECK_OUTPUT"
EXPECTED = Path(__file__).with_name("expected_outputs.json")
CELL_TIMEOUT = 600


def _load_expected() -> dict[str, list[dict[str, str]]]:
    return json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}


def _marked_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and MARK in c.source]


def _quick_env() -> dict[str, str]:
    return dict(os.environ, FLOWLAB_QUICK="1", PYTHONHASHSEED="0", MPLBACKEND="Agg")


def _read(chapter: Path):
    import jupytext

    return jupytext.read(chapter, fmt="md:myst")


@pytest.mark.slow
@pytest.mark.parametrize("chapter", chapter_notebooks(), ids=lambda p: p.stem)
def test_chapter_runs_under_nbval(chapter: Path, tmp_path: Path) -> None:
    pytest.importorskip("nbval")
    import nbformat

    nb = _read(chapter)
    references = {r["source"]: r["output"] for r in _load_expected().get(chapter.stem, [])}
    for cell in _marked_cells(nb):
        if cell.source not in references:
            pytest.fail(
                f"{chapter.name}: a cell marked {MARK} has no reference output (new or changed "
                f"cell). Run `.venv/bin/python tests/book/test_notebooks.py --update "
                f"{chapter.stem}` and check the printed values:\n{cell.source}"
            )
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=references[cell.source])]
        cell.execution_count = 1  # nbval compares only cells that were "run" when stored
    target = tmp_path / f"{chapter.stem}.ipynb"
    nbformat.write(nb, target)

    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", str(target), "-q", "-p",
           "no:cacheprovider", f"--nbval-cell-timeout={CELL_TIMEOUT}", "--rootdir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_quick_env(), capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, (
        f"{chapter.name} failed under nbval (quick mode):\n{proc.stdout[-8000:]}\n{proc.stderr[-2000:]}"
    )


def test_every_marked_cell_has_a_reference() -> None:
    """Fast guard (no execution): the reference file covers every marked cell of every chapter."""
    expected = _load_expected()
    missing = [
        f"{ch.stem}: {cell.source.splitlines()[1] if len(cell.source.splitlines()) > 1 else ''}"
        for ch in chapter_notebooks()
        for cell in _marked_cells(_read(ch))
        if cell.source not in {r["source"] for r in expected.get(ch.stem, [])}
    ]
    assert not missing, "marked cells without reference output (run --update):\n" + "\n".join(missing)


# ----------------------------------------------------------------------------- regeneration
def update(stems: list[str]) -> None:
    """Execute chapters in quick mode and store the outputs of their marked cells."""
    import nbclient

    expected = _load_expected()
    os.environ.update(_quick_env())
    for chapter in chapter_notebooks():
        if stems and chapter.stem not in stems:
            continue
        nb = _read(chapter)
        nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                resources={"metadata": {"path": str(chapter.parent)}}).execute()
        refs = []
        for cell in _marked_cells(nb):
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            refs.append({"source": cell.source, "output": text})
            print(f"--- {chapter.stem}\n{text}")
        expected[chapter.stem] = refs
    EXPECTED.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {EXPECTED.relative_to(ROOT)}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--update", action="store_true", help="regenerate the reference outputs")
    parser.add_argument("chapters", nargs="*", help="chapter stems (default: all)")
    args = parser.parse_args()
    if not args.update:
        parser.error("nothing to do: pass --update")
    update(args.chapters)
