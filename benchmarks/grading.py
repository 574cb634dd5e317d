"""Grading speed: sequential nbgrader vs parallel autograde, and the sandbox's overhead.

Two courses:

* ``--course assignments`` (the default): the four real assignments of ``assignments/``, each
  with N submissions (solutions, the untouched release, mistakes from the catalogue of
  ``tests/assignments/catalogue.py`` and hostile ones: a memory hog, a socket, a search for
  other notebooks, a dump of the environment, each in an extra cell);
* ``--course synthetic``: the tiny one-cell course of ``tests/course/course.py`` (no torch in
  the kernel), where nbgrader's own bookkeeping is the largest share of the time.

For each assignment it times

* ``nbgrader autograde`` (sequential, sandboxed)          -> seconds per submission
* ``python -m flowlab_course autograde -j 2``              -> seconds per submission, speed-up
* ``nbgrader autograde`` with ``FLOWLAB_SANDBOX=0``        -> sandbox overhead per notebook
* one kernel started, run and shut down, plain vs sandboxed -> the same overhead, measured
  without nbgrader around it (median of repeated, alternating runs: steadier on a busy machine)

    python benchmarks/grading.py                        # 4 assignments x 20 submissions
    python benchmarks/grading.py --quick                # 1 assignment x 8 submissions
    python benchmarks/grading.py --course synthetic     # the synthetic course, 20 submissions
Results go to benchmarks/results/grading[-synthetic][-quick].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "course"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "assignments"))
import course as synthetic  # noqa: E402

from flowlab_course.synthetic import HOSTILE as _ATTACKS  # noqa: E402

# the four attacks of the committed results (the class generator has more)
HOSTILE = {name: _ATTACKS[name] for name in ("memory", "environ", "socket", "snoop")}


def _class(n: int) -> dict[str, str]:
    kinds = [synthetic.CORRECT, synthetic.MISTAKEN] + [synthetic.CORRECT + h for h in HOSTILE.values()]
    return {f"s{i:03d}": kinds[i % len(kinds)] for i in range(n)}


def _write(result: dict, name: str) -> None:
    """Print ``result`` and save it as ``benchmarks/results/<name>``."""
    print(json.dumps(result, indent=1))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", name), "w") as handle:
        json.dump(result, handle, indent=1)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _kernel_seconds(manager_class, workdir: str) -> float:
    """Start a kernel, run one cell, shut it down at once: what every notebook pays."""
    import asyncio

    async def once() -> float:
        start = time.perf_counter()
        manager = manager_class(kernel_name="python3")
        await manager.start_kernel(cwd=workdir)
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=60)
            await client.execute_interactive("x = 1", timeout=60)
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)
        return time.perf_counter() - start

    return asyncio.run(once())


def _kernel_overhead(repeats: int) -> dict[str, float]:
    """Median seconds per kernel, plain and sandboxed, from alternating runs."""
    from jupyter_client.manager import AsyncKernelManager

    from flowlab_course.sandbox import SandboxKernelManager

    times: dict[str, list[float]] = {"plain": [], "sandboxed": []}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(repeats):
            times["plain"].append(_kernel_seconds(AsyncKernelManager, workdir))
            times["sandboxed"].append(_kernel_seconds(SandboxKernelManager, workdir))
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def _real_class(course, assignment: str, n: int) -> dict[str, object]:
    """``n`` submissions of one real assignment: a fixed mix, cycled."""
    import copy

    import nbformat
    from catalogue import CATALOGUE
    from nbgrader_course import patch

    solution = course.source_notebook(assignment)
    kinds: list[tuple[str, object]] = [("solution", solution),
                                       ("untouched", course.release_notebook(assignment))]
    for name, code in HOSTILE.items():  # hostile code in an extra cell at the end
        nb = copy.deepcopy(solution)
        nb.cells.append(nbformat.v4.new_code_cell(code.rstrip()))
        kinds.append((f"hostile-{name}", nb))
    mistakes = CATALOGUE[assignment]
    out: dict[str, object] = {}
    for i in range(n):
        if i % 3 == 2 and mistakes:  # every third submission makes a typical mistake
            m = mistakes[(i // 3) % len(mistakes)]
            out[f"s{i:03d}-{m.name}"] = patch(solution, m.old, m.new)
        else:
            name, nb = kinds[(i - i // 3) % len(kinds)]
            out[f"s{i:03d}-{name}"] = nb
    return out


def _bench_assignment(tmp: str, assignment: str, n: int, workers: int) -> dict[str, object]:
    """Sequential ``nbgrader autograde`` vs parallel, on copies of one course."""
    from pathlib import Path

    from nbgrader_course import Course, make_course

    base = make_course(Path(tmp) / assignment, [assignment])
    for student, nb in _real_class(base, assignment, n).items():
        base.submit(student, assignment, nb)
    seq_root = Path(tmp) / f"{assignment}-seq"
    par_root = Path(tmp) / f"{assignment}-par"
    shutil.copytree(base.root, seq_root)
    shutil.copytree(base.root, par_root)
    seq_course, par_course = Course(seq_root), Course(par_root)
    seq = _timed(lambda: seq_course.nbgrader("autograde", assignment, timeout=3600))
    par = _timed(lambda: subprocess.run(
        [sys.executable, "-m", "flowlab_course", "autograde", assignment,
         "--workers", str(workers), "--no-progress"], cwd=par_root, check=True,
        capture_output=True, env=dict(os.environ, OMP_NUM_THREADS="1")))
    seq_scores, par_scores = seq_course.scores(assignment), par_course.scores(assignment)
    return {
        "submissions": n,
        "sequential_s_per_submission": round(seq / n, 3),
        "parallel_s_per_submission": round(par / n, 3),
        "speedup": round(seq / par, 2),
        "scores_identical": seq_scores == par_scores and len(seq_scores) == n,
    }


def main_assignments(args) -> None:
    from nbgrader_course import ASSIGNMENTS

    names = sorted(p.name for p in (ASSIGNMENTS / "source").iterdir() if p.is_dir())
    if args.quick:
        names = names[:1]
    n = args.submissions or (8 if args.quick else 20)
    per: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            per[name] = _bench_assignment(tmp, name, n, args.workers)
            print(name, json.dumps(per[name]), flush=True)
    seq = sum(r["sequential_s_per_submission"] for r in per.values())
    par = sum(r["parallel_s_per_submission"] for r in per.values())
    kernel = _kernel_overhead(repeats=5 if args.quick else 10)
    result = {
        "course": "assignments",
        "workers": args.workers,
        "cores": os.cpu_count(),
        "assignments": per,
        "overall_speedup": round(seq / par, 2),
        "kernel_start_run_shutdown_s": kernel,
        "sandbox_overhead_s_per_kernel": round(kernel["sandboxed"] - kernel["plain"], 3),
        "scores_identical": all(r["scores_identical"] for r in per.values()),
        "command": "python benchmarks/grading.py" + (" --quick" if args.quick else ""),
        "note": "wall-clock seconds, sandbox on in both (the course's configuration); "
                "sequential = one `nbgrader autograde` call for the whole class",
    }
    _write(result, "grading-quick.json" if args.quick else "grading.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 submissions instead of 20")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--course", choices=["assignments", "synthetic"], default="assignments")
    parser.add_argument("--submissions", type=int, help="per assignment (default 20, quick 8)")
    args = parser.parse_args()
    if args.course == "assignments":
        return main_assignments(args)
    n = args.submissions or (8 if args.quick else 20)
    with tempfile.TemporaryDirectory() as tmp:
        base = synthetic.make_course(os.path.join(tmp, "base"))
        for student, code in _class(n).items():
            synthetic.submit(base, student, code)
        copies = {k: shutil.copytree(base, os.path.join(tmp, k)) for k in ("seq", "par", "plain")}
        seq = _timed(lambda: synthetic.nbgrader(copies["seq"], "autograde", synthetic.ASSIGNMENT))
        par = _timed(lambda: subprocess.run(
            [sys.executable, "-m", "flowlab_course", "autograde", synthetic.ASSIGNMENT,
             "--workers", str(args.workers), "--no-progress"], cwd=copies["par"], check=True,
            capture_output=True))
        env = dict(os.environ, FLOWLAB_SANDBOX="0")
        plain = _timed(lambda: synthetic.nbgrader(copies["plain"], "autograde",
                                                  synthetic.ASSIGNMENT, env=env))
        same = synthetic.scores(copies["seq"]) == synthetic.scores(copies["par"])
    kernel = _kernel_overhead(repeats=5 if args.quick else 10)
    result = {
        "course": "synthetic",
        "submissions": n,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "sequential_s_per_submission": round(seq / n, 3),
        "parallel_s_per_submission": round(par / n, 3),
        "speedup": round(seq / par, 2),
        "sandbox_overhead_s_per_notebook": round((seq - plain) / n, 3),
        "unsandboxed_s_per_submission": round(plain / n, 3),
        "kernel_start_run_shutdown_s": kernel,
        "sandbox_overhead_s_per_kernel": round(kernel["sandboxed"] - kernel["plain"], 3),
        "scores_identical": same,
        "note": "wall-clock times include nbgrader's start-up; noisy on a shared machine. "
                "sandbox_overhead_s_per_notebook also contains the hostile submissions, which "
                "fail sooner in the sandbox (no network to wait for, little to search); "
                "sandbox_overhead_s_per_kernel is the kernel's own cost",
    }
    _write(result, "grading-synthetic-quick.json" if args.quick else "grading-synthetic.json")


if __name__ == "__main__":
    main()
