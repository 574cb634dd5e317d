r"""The instructor's class report: how each part went, what failed most, what to review.

:func:`class_report` reads the gradebook, the autograded notebooks and the grader's flags of one
assignment and writes into ``out_dir``:

* ``report.html`` — one self-contained page (figures embedded as PNG, with alt text; no
  external file, script or style): the class's totals, per-part score distributions and a
  table per part (mean, median, full marks, zero), the most frequent failure messages, and the
  submissions flagged for review;
* ``scores.csv`` — one row per student and graded part (``student, part, score, max``);
* ``failures.csv`` — the failing checks, most frequent first (``part, message, students``): the
  message is what the test cell raised (``GradingFailure: log|det| has the wrong sign ...``) or
  the partial-credit line it printed, i.e. the class's typical mistakes;
* ``flags.csv`` — the submissions flagged for review (``student, part, kind, message``);
* ``similarity.csv`` — per solution cell and student, how similar the code they wrote is to
  flowlab's reference source and to the closest other student's
  (:mod:`flowlab_course.similarity`: normalised tokens; no effect on grades);
* ``scores.png``, ``totals.png`` — the figures of the page.

Flags come from the grader (``autograded/<student>/<assignment>/flowlab-flags.json``: a list of
``{"part", "kind", "message"}`` with kind ``timeout``, ``kernel_died``, ``separation_off``
(graded without the sandbox, so without the redacted flowlab: no guarantee that the reference
was out of reach) or ``note`` (the static reader's remarks; no points depend on them); or the
same list in the executed notebook's
``metadata.flowlab.flags``), from the autograded notebooks themselves (a cell that timed out or
whose kernel died), from the preflight (:mod:`flowlab_course.repair`: a notebook nbgrader could
not grade as submitted, kind ``repaired``, or could not read at all, kind ``unreadable``, graded
zero), and from the parallel grader (a submission that was submitted but could not be graded:
kind ``not_graded``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from .parallel import FLAGS_FILE, submissions

__all__ = ["ClassReport", "class_report", "read_flags"]

#: error names in an autograded notebook that flag a submission without the grader's help
_ERROR_KINDS = {"CellTimeoutError": "timeout", "TimeoutError": "timeout",
                "DeadKernelError": "kernel_died", "KernelError": "kernel_died",
                "GradingWorkerDied": "kernel_died", "DelegationError": "delegation",
                "HeldForReview": "undecidable"}
_KIND_ORDER = ["unreadable", "kernel_died", "timeout", "not_graded", "separation_off",
               "delegation", "undecidable", "repaired", "note"]  # the last two of old gradings


@dataclass
class ClassReport:
    """What :func:`class_report` found and where it wrote it."""

    scores: dict[str, dict[str, tuple[float, float]]]   # part -> student -> (score, max)
    failures: list[tuple[str, str, int]]                  # (part, message, students)
    flags: list[dict]                                     # student, part, kind, message
    html_path: str
    similarity: list = field(default_factory=list)       # similarity.CellSimilarity


def read_flags(course_root: str, assignment: str, student: str) -> list[dict]:
    """The review flags of one student's autograded submission (see the module docstring)."""
    import nbformat

    from .repair import read_preflight

    folder = os.path.join(course_root, "autograded", student, assignment)
    flags: list[dict] = list(read_preflight(course_root, assignment).get(student, []))
    if not os.path.isdir(folder):
        return _unique(flags)
    path = os.path.join(folder, FLAGS_FILE)
    if os.path.exists(path):
        with open(path) as handle:
            flags += [f for f in json.load(handle) if isinstance(f, dict)]
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ipynb") or os.path.exists(path):
            continue
        nb = nbformat.read(os.path.join(folder, name), as_version=4)
        graders = list(nb.metadata.get("flowlab", {}).get("flags", []) or [])
        flags += graders
        if graders:
            continue
        # no grader's flags: the errors of the cells say which timed out or lost the kernel
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                kind = _ERROR_KINDS.get(out.get("ename", "")) if out.get(
                    "output_type") == "error" else None
                if kind in ("timeout", "kernel_died"):
                    part = cell.metadata.get("nbgrader", {}).get("grade_id")
                    flags.append({"part": part, "kind": kind,
                                  "message": f"{out['ename']}: {out.get('evalue', '')}"[:300]})
    return _unique(flags)


def _unique(flags: list[dict]) -> list[dict]:
    seen, unique = set(), []
    for flag in flags:
        # the grader's flag and the cell's error say the same thing about a part; notes without
        # a part are told apart by their message
        key = (flag.get("part"), flag.get("kind"),
               flag.get("message") if flag.get("part") is None else None)
        if key not in seen:
            seen.add(key)
            unique.append({"part": flag.get("part"), "kind": str(flag.get("kind", "note")),
                           "message": str(flag.get("message", ""))})
    return unique


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def class_report(course_root: str, assignment: str, out_dir: str | None = None, *,
                 top: int = 15, similar: float = 0.8, min_tokens: int = 15) -> ClassReport:
    """Write the class report of ``assignment`` (see the module docstring); return it.

    Args:
        course_root: the course folder (``gradebook.db``, ``submitted/``, ``autograded/``).
        assignment: the assignment's name.
        out_dir: where to write (default ``<course>/reports/<assignment>``).
        top: how many failure messages the page lists (the CSV has all).
        similar: similarity from which the page highlights a submission's code (0 to 1).
        min_tokens: code shorter than this many written tokens is never highlighted.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .export import read_grades

    course_root = os.path.abspath(course_root)
    out_dir = out_dir or os.path.join(course_root, "reports", assignment)
    os.makedirs(out_dir, exist_ok=True)
    grades = read_grades(course_root, only=[assignment])
    if assignment not in grades.max_score:
        raise ValueError(f"no assignment {assignment!r} in the gradebook: generate and "
                         "autograde it first")
    scores: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)
    failures: Counter = Counter()
    examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    totals: dict[str, float] = {}
    graded = sorted(s for (s, a) in grades.parts if a == assignment)
    for student in graded:
        parts = grades.parts[(student, assignment)]
        totals[student] = grades.score[(student, assignment)]
        for p in parts:
            scores[p.name][student] = (p.score, p.max_score)
            if p.score < p.max_score and p.message:
                failures[(p.name, p.message)] += 1
                examples[(p.name, p.message)].append(student)
    if not scores:
        raise ValueError(f"no graded submissions of {assignment!r}: run the autograder first")
    flags = [dict(student=s, **f) for s in graded for f in read_flags(course_root, assignment, s)]
    for student in submissions(course_root, assignment):
        if student not in totals or not os.path.isdir(
                os.path.join(course_root, "autograded", student, assignment)):
            flags.append({"student": student, "part": None, "kind": "not_graded",
                          "message": "submitted but not graded (see the autograder's output)"})
    flags.sort(key=lambda f: (_KIND_ORDER.index(f["kind"]) if f["kind"] in _KIND_ORDER
                              else len(_KIND_ORDER), f["student"], str(f["part"])))
    parts = list(scores)  # notebook order (read_grades keeps it)
    ranked = [(part, msg, n) for (part, msg), n in failures.most_common()]
    _write_csvs(out_dir, parts, scores, ranked, flags)
    from .similarity import assignment_similarity, parts_of_cells

    similar_rows = assignment_similarity(course_root, assignment)
    with open(os.path.join(out_dir, "similarity.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cell", "student", "tokens", "reference", "reference_source", "peer",
                         "peer_student"])
        for r in similar_rows:
            writer.writerow([r.cell, r.student, r.tokens, f"{r.reference:.3f}",
                             r.reference_name, f"{r.peer:.3f}", r.peer_name])
    similarity_html = _similarity_html(similar_rows, parts_of_cells(course_root, assignment),
                                       similar, min_tokens, top)

    # ---- figures
    cols = min(4, len(parts))
    rows = -(-len(parts) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, part in zip(axes.flat, parts):
        fractions = [got / top_ for got, top_ in scores[part].values()]
        ax.hist(fractions, bins=[i / 10 for i in range(11)], color="tab:blue", edgecolor="white")
        ax.set_title(f"{part} (n={len(fractions)})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of points")
    for ax in list(axes.flat)[len(parts):]:
        ax.axis("off")
    fig.suptitle(f"{assignment}: score distribution per part")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "scores.png"), dpi=100)
    parts_png = _png(fig)
    plt.close(fig)
    possible = grades.max_score[assignment]
    fig, ax = plt.subplots(figsize=(6, 2.6))
    counts = Counter(round(v, 2) for v in totals.values())
    if len(counts) <= 25:   # few distinct totals: one bar each, at its value
        ax.bar(list(counts), list(counts.values()), width=max(possible, 1) / 40,
               color="tab:green")
    else:
        ax.hist(list(totals.values()), bins=20, range=(0, possible or 1), color="tab:green",
                edgecolor="white")
    ax.set_xlim(-possible / 40, possible * 41 / 40 if possible else 1)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(f"total score (of {possible:g})")
    ax.set_ylabel("students")
    ax.set_title(f"{assignment}: totals (n={len(totals)})")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "totals.png"), dpi=100)
    totals_png = _png(fig)
    plt.close(fig)

    # ---- the page
    values = sorted(totals.values())
    mean = statistics.fmean(values)
    median = statistics.median(values)
    full = sum(v >= possible for v in values)
    zero = sum(v <= 0 for v in values)
    part_rows = []
    part_alt = []
    for p in parts:
        got = [g for g, _ in scores[p].values()]
        top_ = next(iter(scores[p].values()))[1]
        n_full = sum(g >= top_ for g, _ in scores[p].values())
        n_zero = sum(g <= 0 for g in got)
        part_rows.append(
            f"<tr><td>{html.escape(p)}</td><td>{len(got)}</td>"
            f"<td>{statistics.fmean(got):.2f} / {top_:g}</td>"
            f"<td>{statistics.median(got):g}</td><td>{n_full}</td><td>{n_zero}</td></tr>")
        part_alt.append(f"{p}: {n_full} of {len(got)} full marks, {n_zero} zero")
    fail_rows = "".join(
        f"<tr><td>{html.escape(p)}</td><td><code>{html.escape(m)}</code></td><td>{n}</td>"
        f"<td>{html.escape(', '.join(examples[(p, m)][:5]))}"
        f"{' …' if len(examples[(p, m)]) > 5 else ''}</td></tr>"
        for p, m, n in ranked[:top]) or "<tr><td colspan=4>no failed checks</td></tr>"
    kinds = Counter(f["kind"] for f in flags)
    flag_rows = "".join(
        f"<tr><td>{html.escape(f['student'])}</td><td>{html.escape(str(f['part'] or '—'))}</td>"
        f"<td>{html.escape(f['kind'])}</td><td>{html.escape(f['message'])}</td></tr>"
        for f in flags) or "<tr><td colspan=4>nothing flagged</td></tr>"
    totals_alt = (f"Histogram of the total scores of {len(values)} students out of "
                  f"{possible:g} points: mean {mean:.2f}, median {median:g}, {full} with full "
                  f"marks, {zero} with zero.")
    parts_alt = ("Histograms of the fraction of points per part. " + "; ".join(part_alt) + ".")
    html_path = os.path.join(out_dir, "report.html")
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(
            "<!doctype html><html lang='en'><meta charset='utf-8'>"
            f"<title>{html.escape(assignment)}: class report</title>"
            "<style>body{font-family:sans-serif;max-width:64em;margin:2em auto;padding:0 1em}"
            "td,th{padding:.2em .8em;border-bottom:1px solid #ddd;text-align:left;"
            "vertical-align:top}img{max-width:100%}code{white-space:pre-wrap}</style>"
            f"<h1>Class report: {html.escape(assignment)}</h1>"
            f"<p>{len(values)} graded submissions; mean {mean:.2f} / {possible:g}, median "
            f"{median:g}; {full} with full marks, {zero} with zero; "
            f"{len({f['student'] for f in flags})} flagged for review"
            + (" (" + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())) + ")"
               if kinds else "") + ".</p>"
            f"<img alt='{html.escape(totals_alt, quote=True)}' "
            f"src='data:image/png;base64,{totals_png}'>"
            "<h2>Parts</h2>"
            f"<img alt='{html.escape(parts_alt, quote=True)}' "
            f"src='data:image/png;base64,{parts_png}'>"
            "<table><tr><th>part</th><th>students</th><th>mean</th><th>median</th>"
            "<th>full marks</th><th>zero</th></tr>" + "".join(part_rows) + "</table>"
            "<h2>Most frequently failed checks</h2>"
            "<table><tr><th>part</th><th>message</th><th>students</th><th>for example</th></tr>"
            f"{fail_rows}</table>"
            f"<p>All {len(ranked)} messages: <code>failures.csv</code>.</p>"
            "<h2>Flagged for review</h2>"
            "<p>Unreadable notebooks (graded zero), timeouts, kernel deaths, suspected "
            "delegation to flowlab, constructs the grader cannot decide (<code>exec</code> of "
            "a built string ...), submissions that could not be graded, and notebooks whose "
            "structure was repaired from the release before grading.</p>"
            "<table><tr><th>student</th><th>part</th><th>kind</th><th>message</th></tr>"
            f"{flag_rows}</table>" + similarity_html + "</html>")
    return ClassReport(dict(scores), ranked, flags, html_path, similar_rows)


def _similarity_html(rows: list, parts: dict[str, list[str]], similar: float, min_tokens: int,
                     top: int) -> str:
    """The page's section on copied code: per solution cell, the most similar submissions."""
    out = ["<h2>Similarity of the code</h2>",
           "<p>For each solution cell: how similar the code a student wrote (what the release "
           "gave removed; names, numbers, strings, comments and layout ignored) is to the "
           "reference source (the assignment's solution and flowlab's definition of the same "
           "name) and to the closest other student's; 100 % is the same code up to names. "
           f"Marked <strong>bold</strong>: {similar:.0%} or more with at least {min_tokens} "
           "tokens written. Nothing here changes a grade: read the code before deciding. All "
           "rows: <code>similarity.csv</code>.</p>"]
    cells = list(dict.fromkeys(r.cell for r in rows))
    if not cells:
        return "".join(out) + "<p>No solution code to compare.</p>"
    for cell in cells:
        mine = [r for r in rows if r.cell == cell]
        marked = [r for r in mine if max(r.reference, r.peer) >= similar
                  and r.tokens >= min_tokens]
        label = f"{cell} (parts: {', '.join(parts.get(cell, [])) or '—'})"
        out.append(f"<h3>{html.escape(label)}</h3><p>{len(mine)} submissions with code of "
                   f"their own; {len(marked)} at {similar:.0%} or more.</p>")
        out.append("<table><tr><th>student</th><th>tokens written</th><th>to the reference"
                   "</th><th>to the closest student</th></tr>")
        for r in mine[:top]:
            long = r.tokens >= min_tokens
            out.append(f"<tr><td>{html.escape(r.student)}</td><td>{r.tokens}</td>"
                       f"<td>{_percent(r.reference, r.reference_name, long, similar)}</td>"
                       f"<td>{_percent(r.peer, r.peer_name, long, similar)}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _write_csvs(out_dir: str, parts: list[str], scores: dict, ranked: list,
                flags: list[dict]) -> None:
    with open(os.path.join(out_dir, "scores.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "part", "score", "max"])
        for part in parts:
            for student, (got, top) in sorted(scores[part].items()):
                writer.writerow([student, part, got, top])
    with open(os.path.join(out_dir, "failures.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["part", "message", "students"])
        writer.writerows(ranked)
    with open(os.path.join(out_dir, "flags.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "part", "kind", "message"])
        for f in flags:
            writer.writerow([f["student"], f["part"] or "", f["kind"], f["message"]])


def _percent(value: float, name: str, long: bool, similar: float) -> str:
    text = html.escape(f"{value:.0%} ({name})" if name else f"{value:.0%}")
    return f"<strong>{text}</strong>" if long and value >= similar else text
