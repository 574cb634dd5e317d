"""Grading speed: sequential nbgrader vs parallel autograde, and the sandbox's overhead.

Builds the synthetic course of ``tests/grading/course.py`` with N submissions (a mix of correct,
mistaken and hostile ones), then times

* ``nbgrader autograde`` (sequential, sandboxed)          -> seconds per submission
* ``python -m flowlab.grading autograde -j 2``             -> seconds per submission, speed-up
* ``nbgrader autograde`` with ``FLOWLAB_SANDBOX=0``        -> sandbox overhead per notebook
* one kernel started, run and shut down, plain vs sandboxed -> the same overhead, measured
  without nbgrader around it (median of repeated, alternating runs: steadier on a busy machine)

    python benchmarks/grading.py            # 20 submissions
    python benchmarks/grading.py --quick    # 8 submissions
Results go to benchmarks/results/grading.json.
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
sys.path.insert(0, os.path.join(HERE, "..", "tests", "grading"))
import course as synthetic

HOSTILE = {
    "memory": "blocks = [bytearray(2**28) for _ in range(10_000)]\n",
    "environ": "import os\nprint(dict(os.environ))\n",
    "socket": "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
              "except OSError as err:\n    print(err)\n",
    "snoop": "import glob\nprint(glob.glob('../../../**/*.ipynb', recursive=True))\n",
}


def _class(n: int) -> dict[str, str]:
    kinds = [synthetic.CORRECT, synthetic.MISTAKEN] + [synthetic.CORRECT + h for h in HOSTILE.values()]
    return {f"s{i:03d}": kinds[i % len(kinds)] for i in range(n)}


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

    from flowlab.grading.sandbox import SandboxKernelManager

    times: dict[str, list[float]] = {"plain": [], "sandboxed": []}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(repeats):
            times["plain"].append(_kernel_seconds(AsyncKernelManager, workdir))
            times["sandboxed"].append(_kernel_seconds(SandboxKernelManager, workdir))
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="8 submissions instead of 20")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n = 8 if args.quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        base = synthetic.make_course(os.path.join(tmp, "base"))
        for student, code in _class(n).items():
            synthetic.submit(base, student, code)
        copies = {k: shutil.copytree(base, os.path.join(tmp, k)) for k in ("seq", "par", "plain")}
        seq = _timed(lambda: synthetic.nbgrader(copies["seq"], "autograde", synthetic.ASSIGNMENT))
        par = _timed(lambda: subprocess.run(
            [sys.executable, "-m", "flowlab.grading", "autograde", synthetic.ASSIGNMENT,
             "--workers", str(args.workers), "--no-progress"], cwd=copies["par"], check=True,
            capture_output=True))
        env = dict(os.environ, FLOWLAB_SANDBOX="0")
        plain = _timed(lambda: synthetic.nbgrader(copies["plain"], "autograde",
                                                  synthetic.ASSIGNMENT, env=env))
        same = synthetic.scores(copies["seq"]) == synthetic.scores(copies["par"])
    kernel = _kernel_overhead(repeats=5 if args.quick else 10)
    result = {
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
    print(json.dumps(result, indent=1))
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    name = "grading-quick.json" if args.quick else "grading.json"
    with open(os.path.join(HERE, "results", name), "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
