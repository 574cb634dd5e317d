"""Seconds per submission of a sequential ``nbgrader autograde`` (sandbox on), every assignment.

For each assignment a throw-away course grades the solution, the untouched release and the
first two mistakes of the catalogue in one ``nbgrader autograde`` call; the wall time divided
by the number of submissions is the cost of one submission, hidden tests (trusted process)
included, and the CPU seconds of nbgrader and every process below it (the sandboxed kernels
included: :class:`_TreeCPU`), which depend far less on the machine's load than the wall time.
Issue 12's target: at most 20 s per submission on 2 cores.

    python benchmarks/grading_time.py      # writes benchmarks/results/grading_time.md
"""

from __future__ import annotations

import os
import platform
import threading
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "assignments"))

from catalogue import CATALOGUE  # noqa: E402
from nbgrader_course import make_course, patch  # noqa: E402


class _TreeCPU(threading.Thread):
    """CPU seconds (user + system) of every process below this one, sampled every ``interval``.

    nbgrader kills each sandboxed kernel's launcher without waiting for it, so the kernels are
    reaped inside their PID namespace and never reach ``getrusage(RUSAGE_CHILDREN)`` (a kernel
    that spun for 4 s of CPU added nothing to it).  Sampling ``psutil``'s ``cpu_times`` of the
    whole process tree counts them; each process's last fraction of an ``interval`` is missed.
    """

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.seen, self.done = interval, {}, threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.done.is_set():
            for proc in me.children(recursive=True):
                try:
                    times = proc.cpu_times()
                    self.seen[(proc.pid, proc.create_time())] = times.user + times.system
                except psutil.Error:
                    continue
            time.sleep(self.interval)

    def stop(self) -> float:
        self.done.set()
        self.join()
        return sum(self.seen.values())


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
            sampler = _TreeCPU()
            sampler.start()
            start = time.perf_counter()
            course.nbgrader("autograde", assignment, timeout=3600)
            seconds = time.perf_counter() - start
            cpu = sampler.stop()
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
