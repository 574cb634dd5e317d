"""Write the nbgrader source notebooks from the plain-text files in ``authoring/``.

Each ``authoring/NN_name.py`` is a notebook in "percent" format whose cell markers say what
nbgrader should do with the cell::

    # %% [markdown]                      instructions (locked: restored if a student edits them)
    # %% [setup]                         locked code cell (imports, helpers)
    # %% [solution] id=NAME              the student's cell: ### BEGIN/END SOLUTION regions
    # %% [tests] id=NAME points=N        autograded tests, visible + ### BEGIN HIDDEN TESTS
    # %% [code]                          an ordinary cell (plots, training runs)

Markdown lines are written as comments (``# text``).  The notebooks are written without
outputs to ``source/NN_name/NN_name.ipynb``.  Run::

    python assignments/build_source.py          # (re)write every source notebook
    python assignments/build_source.py --check  # exit 1 if a notebook is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
AUTHORING = HERE / "authoring"
SOURCE = HERE / "source"

_MARKER = re.compile(r"^# %% \[(markdown|setup|solution|tests|code)\](.*)$")


def _options(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split())


def _markdown(lines: list[str]) -> str:
    out = []
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    for line in lines:
        if line.startswith("# "):
            out.append(line[2:])
        elif line.rstrip() == "#":
            out.append("")
        else:
            raise ValueError(f"markdown lines must start with '# ': {line!r}")
    return "\n".join(out).strip("\n")


def _nbgrader(grade_id: str, *, grade=False, solution=False, locked=False, points=None) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def build_notebook(path: Path) -> nbformat.NotebookNode:
    """Parse one authoring file into a notebook with nbgrader metadata."""
    chunks: list[tuple[str, dict[str, str], list[str]]] = []
    for line in path.read_text().splitlines():
        m = _MARKER.match(line)
        if m:
            chunks.append((m.group(1), _options(m.group(2)), []))
        elif chunks:
            chunks[-1][2].append(line)
        elif line.strip():
            raise ValueError(f"{path.name}: text before the first cell marker: {line!r}")
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    counters: dict[str, int] = {}
    ids: set[str] = set()
    for kind, opts, lines in chunks:
        body = "\n".join(lines).strip("\n")
        counters[kind] = counters.get(kind, 0) + 1
        grade_id = opts.get("id", f"{kind}_{counters[kind]}")
        if grade_id in ids:
            raise ValueError(f"{path.name}: duplicate cell id {grade_id!r}")
        ids.add(grade_id)
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_markdown(lines))
            cell.metadata = _nbgrader(grade_id, locked=True)
        else:
            cell = nbformat.v4.new_code_cell(body)
            if kind == "setup":
                cell.metadata = _nbgrader(grade_id, locked=True)
            elif kind == "solution":
                if "### BEGIN SOLUTION" not in body:
                    raise ValueError(f"{path.name}: solution cell {grade_id} has no solution region")
                cell.metadata = _nbgrader(grade_id, solution=True)
            elif kind == "tests":
                cell.metadata = _nbgrader(
                    grade_id, grade=True, locked=True, points=int(opts["points"])
                )
        cell.id = grade_id.replace("_", "-")
        nb.cells.append(cell)
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that notebooks are current")
    args = parser.parse_args(argv)
    stale = []
    for path in sorted(AUTHORING.glob("[0-9][0-9]_*.py")):
        name = path.stem
        target = SOURCE / name / f"{name}.ipynb"
        text = nbformat.writes(build_notebook(path)) + "\n"
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(str(target.relative_to(HERE)))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        print(f"wrote {target.relative_to(HERE)}")
    if stale:
        print("out of date (run python assignments/build_source.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
