"""Seconds per submission of a sequential ``nbgrader autograde`` (sandbox on), every assignment.

For each assignment a throw-away course grades the solution, the untouched release and the
first two mistakes of the catalogue in one ``nbgrader autograde`` call; the wall time divided
by the number of submissions is the cost of one submission, hidden tests (trusted process)
included, and so are the CPU seconds of the command and every process it waited for (nbgrader,
the sandboxed kernels; ``getrusage(RUSAGE_CHILDREN)``), which do not depend on the machine's
load as the wall time does.  Issue 12's target: at most 20 s per submission on 2 cores.

    python benchmarks/grading_time.py      # writes benchmarks/results/grading_time.md
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "assignments"))

from catalogue import CATALOGUE  # noqa: E402
from nbgrader_course import make_course, patch  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    rows = []
    load_start = os.getloadavg()[0]
    for assignment in sorted(CATALOGUE):
        with tempfile.TemporaryDirectory() as tmp:
            course = make_course(Path(tmp), [assignment])
            solution = course.source_notebook(assignment)
            course.submit("solution", assignment, solution)
            course.submit("release", assignment, course.release_notebook(assignment))
            for m in CATALOGUE[assignment][:2]:
                course.submit(m.name, assignment, patch(solution, m.old, m.new))
            start, cpu = time.perf_counter(), _children_cpu()
            course.nbgrader("autograde", assignment, timeout=3600)
            seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
            scores = course.scores(assignment)
            full = sum(scores["solution"].values())
            rows.append((assignment, len(scores), seconds / len(scores), cpu / len(scores), full,
                         sum(scores["release"].values())))
            print(rows[-1], flush=True)
    load = os.getloadavg()[0]
    lines = ["# Seconds per submission, sequential nbgrader autograde, sandbox on", "",
             f"Command: `python benchmarks/grading_time.py` ({time.strftime('%Y-%m-%d %H:%M')}, "
             f"{platform.machine()}, {os.cpu_count()} cores, load average {load_start:.1f} at the "
             f"start and {load:.1f} at the end)", "",
             "| assignment | submissions | wall s per submission | CPU s per submission "
             "| solution points | release points |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {a} | {n} | {s:.1f} | {c:.1f} | {f:g} | {r:g} |" for a, n, s, c, f, r in rows]
    out = ROOT / "benchmarks" / "results" / "grading_time.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
