r"""A class report after autograding: how each part went, and which checks failed most often.

:func:`class_report` reads the gradebook and the autograded notebooks of one assignment and
writes into ``out_dir``:

* ``scores.csv`` — one row per student and graded part (``student, part, score, max``);
* ``failures.csv`` — the failing checks, most frequent first (``part, message, students``),
  where the message is the error a test cell raised (``GradingFailure: log|det| has the wrong
  sign ...``): the class's typical mistakes;
* ``scores.png`` — one histogram per part of the fraction of points obtained;
* ``report.html`` — the figure and both tables on one page.
"""

from __future__ import annotations

import base64
import csv
import html
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import nbformat

__all__ = ["ClassReport", "class_report"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class ClassReport:
    """What :func:`class_report` found and where it wrote it."""

    scores: dict[str, dict[str, tuple[float, float]]]   # part -> student -> (score, max)
    failures: list[tuple[str, str, int]]                  # (part, message, students)
    html_path: str


def _failure_messages(root: str, assignment: str, student: str) -> dict[str, str]:
    """``{grade_id: first line of the error}`` for the failing cells of one student."""
    folder = os.path.join(root, "autograded", student, assignment)
    found: dict[str, str] = {}
    if not os.path.isdir(folder):
        return found
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ipynb"):
            continue
        for cell in nbformat.read(os.path.join(folder, name), as_version=4).cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if grade_id and errors:
                err = errors[-1]
                text = f"{err.get('ename', 'Error')}: {err.get('evalue', '')}"
                found[grade_id] = _ANSI.sub("", text).strip().splitlines()[0][:200]
    return found


def class_report(course_root: str, assignment: str, out_dir: str | None = None) -> ClassReport:
    """Write the class report of ``assignment`` (see the module docstring); return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from nbgrader.api import Gradebook

    course_root = os.path.abspath(course_root)
    out_dir = out_dir or os.path.join(course_root, "reports", assignment)
    os.makedirs(out_dir, exist_ok=True)
    scores: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    failures: Counter = Counter()
    with Gradebook("sqlite:///" + os.path.join(course_root, "gradebook.db")) as gb:
        the_assignment = gb.find_assignment(assignment)
        for submission in the_assignment.submissions:
            student = submission.student.id
            messages = _failure_messages(course_root, assignment, student)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if grade.max_score <= 0:
                        continue
                    scores[grade.name][student] = (grade.score, grade.max_score)
                    if grade.score < grade.max_score and grade.name in messages:
                        failures[(grade.name, messages[grade.name])] += 1
    if not scores:
        raise ValueError(f"no graded submissions of {assignment!r}: run the autograder first")
    parts = sorted(scores)
    with open(os.path.join(out_dir, "scores.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "part", "score", "max"])
        for part in parts:
            for student, (got, top) in sorted(scores[part].items()):
                writer.writerow([student, part, got, top])
    ranked = [(part, msg, n) for (part, msg), n in failures.most_common()]
    with open(os.path.join(out_dir, "failures.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["part", "message", "students"])
        writer.writerows(ranked)

    cols = min(4, len(parts))
    rows = -(-len(parts) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, part in zip(axes.flat, parts):
        fractions = [got / top for got, top in scores[part].values()]
        ax.hist(fractions, bins=[i / 10 for i in range(11)], color="tab:blue", edgecolor="white")
        ax.set_title(f"{part} (n={len(fractions)})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of points")
    for ax in list(axes.flat)[len(parts):]:
        ax.axis("off")
    fig.suptitle(f"{assignment}: score distribution per part")
    fig.tight_layout()
    png = os.path.join(out_dir, "scores.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)

    with open(png, "rb") as handle:
        image = base64.b64encode(handle.read()).decode()
    mean = {p: sum(g for g, _ in scores[p].values()) / len(scores[p]) for p in parts}
    top = {p: next(iter(scores[p].values()))[1] for p in parts}
    part_rows = "".join(
        f"<tr><td>{html.escape(p)}</td><td>{len(scores[p])}</td><td>{mean[p]:.2f} / {top[p]:g}"
        f"</td></tr>" for p in parts)
    fail_rows = "".join(
        f"<tr><td>{html.escape(p)}</td><td><code>{html.escape(m)}</code></td><td>{n}</td></tr>"
        for p, m, n in ranked) or "<tr><td colspan=3>no failed checks</td></tr>"
    html_path = os.path.join(out_dir, "report.html")
    with open(html_path, "w") as handle:
        handle.write(
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(assignment)} report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
            "td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left}</style>"
            f"<h1>Class report: {html.escape(assignment)}</h1>"
            f"<img alt='score distributions' src='data:image/png;base64,{image}'>"
            "<h2>Parts</h2><table><tr><th>part</th><th>students</th><th>mean</th></tr>"
            f"{part_rows}</table>"
            "<h2>Most frequently failed checks</h2>"
            "<table><tr><th>part</th><th>message</th><th>students</th></tr>"
            f"{fail_rows}</table>")
    return ClassReport(dict(scores), ranked, html_path)
