"""A synthetic class of one assignment graded on a Dask cluster, against sequential nbgrader.

The class comes from :mod:`flowlab_course.synthetic` (correct, mistaken — the catalogue of
``tests/assignments/catalogue.py`` —, partial, hostile and empty submissions in realistic
proportions).  Two copies of the course are graded:

* ``nbgrader autograde ASSIGNMENT`` — sequential, the reference scores;
* ``python -m flowlab_course autograde ASSIGNMENT --workers W`` — a LocalCluster of W worker
  processes (one thread each), the gradebook written by the client only.

Measured:

* ``wall_s`` — the distributed command, start (cluster start-up included) to end;
* ``worker_s_per_submission`` — mean seconds a worker spends on one submission (scratch course,
  nbgrader's sanitize + execute in the sandbox, packing the result), from the run's journal;
* ``record_s_per_submission`` — mean seconds the client spends writing one into the gradebook
  (since the workers run the whole pipeline: the rows a worker returned, a batch per
  transaction; before, nbgrader's autograde with the execute step replayed); serial,
  overlapped with the workers (``grading_client.py`` measures it at class size);
* ``scheduler_overhead_s_per_submission`` — wall time per task of the same number of no-op
  tasks carrying the same payloads through a fresh scheduler and W workers: what Dask adds to
  each submission (target <= 0.2 s);
* ``cluster_startup_s`` — starting and closing the LocalCluster;
* ``projected_wall_s`` — for N workers: ``startup + max(n * (worker + overhead) / N,
  n * record)`` (the client's gradebook writes are the serial floor);
* ``scores_identical`` — every student's score of every part equal in both gradebooks.

    python benchmarks/grading_class.py                          # 300 students of 01 (real)
    python benchmarks/grading_class.py --students 40            # fewer, same measurements
    python benchmarks/grading_class.py --course synthetic       # the one-cell course
    python benchmarks/grading_class.py --quick                  # 12 students (CI)
Results go to benchmarks/results/grading_class[-synthetic][-quick].json (or --out).
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "course"))
sys.path.insert(0, os.path.join(ROOT, "tests", "assignments"))


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("NBGRADER_EXECUTION", None)
    return env


def _run(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1: some submission failed, reported below
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def _course(tmp: str, kind: str, assignment: str):
    """(course root, source notebook, release notebook, mistakes, notebook name)."""
    import nbformat

    from flowlab_course.synthetic import Mistake, load_catalogue

    if kind == "synthetic":
        import course as synthetic

        root = synthetic.make_course(os.path.join(tmp, "base"), timeout=30)
        assignment = synthetic.ASSIGNMENT
        mistakes = [Mistake("abs_times_x", "test_hidden", "return x * x", "return abs(x) * x"),
                    Mistake("x_plus_x", "test_visible", "return x * x", "return x + x")]
    else:
        from pathlib import Path

        from nbgrader_course import make_course

        root = str(make_course(Path(tmp) / "base", [assignment]).root)
        mistakes = load_catalogue(os.path.join(ROOT, "tests", "assignments", "catalogue.py"),
                                  assignment)
    source = nbformat.read(os.path.join(root, "source", assignment, assignment + ".ipynb"), 4)
    release = nbformat.read(os.path.join(root, "release", assignment, assignment + ".ipynb"), 4)
    return root, assignment, source, release, mistakes


def _scores(root: str, assignment: str) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook, MissingEntry

    out: dict[str, dict[str, float]] = {}
    with Gradebook("sqlite:///" + os.path.join(root, "gradebook.db")) as gb:
        for student in gb.students:
            try:
                sub = gb.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            out[student.id] = {f"{nb.name}/{g.name}": float(g.score or 0.0)
                               for nb in sub.notebooks for g in nb.grades}
    return out


def _job_bytes(root: str, assignment: str, student: str) -> int:
    """Size of one pickled grading job (what the client sends per submission)."""
    import pickle

    from flowlab_course.parallel import GradingJob, _pack, _skeleton_gradebook

    with open(os.path.join(root, "nbgrader_config.py")) as handle:
        config = handle.read()
    job = GradingJob(assignment, student, config, _pack(os.path.join(root, "source", assignment)),
                     _pack(os.path.join(root, "submitted", student, assignment)),
                     _skeleton_gradebook(os.path.join(root, "gradebook.db")), root)
    return len(pickle.dumps(job))


def _noop(payload: bytes) -> int:
    return len(payload)


def _overhead(n: int, workers: int, payload_bytes: int) -> tuple[float, float]:
    """(cluster start+close seconds, wall seconds per no-op task with a payload of that size)."""
    from distributed import as_completed

    from flowlab_course.distributed import dask_client

    payload = os.urandom(payload_bytes)
    start = time.perf_counter()
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
    startup = time.perf_counter() - start
    with dask_client(workers=workers) as client:
        client.wait_for_workers(workers)
        begin = time.perf_counter()
        futures = [client.submit(_noop, payload + i.to_bytes(4, "big"), key=f"noop-{i}",
                                 pure=False) for i in range(n)]
        for future in as_completed(futures):
            future.result()
            future.release()
        per_task = (time.perf_counter() - begin) / n
    return startup, per_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="01_change_of_variables")
    parser.add_argument("--course", choices=["assignments", "synthetic"], default="assignments")
    parser.add_argument("--students", type=int, default=None, help="class size (default 300)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="12 students")
    parser.add_argument("--out", default=None, help="result file (default benchmarks/results/)")
    args = parser.parse_args()
    n = args.students or (12 if args.quick else 300)
    load_before = os.getloadavg()[0]

    from flowlab_course.parallel import read_journal
    from flowlab_course.synthetic import synthetic_class, write_class

    with tempfile.TemporaryDirectory(prefix="flowlab-class-") as tmp:
        base, assignment, source, release, mistakes = _course(tmp, args.course, args.assignment)
        klass = synthetic_class(source, release, mistakes, n, seed=args.seed)
        write_class(base, assignment, klass)
        seq_root = shutil.copytree(base, os.path.join(tmp, "sequential"))
        dist_root = shutil.copytree(base, os.path.join(tmp, "distributed"))
        print(f"{n} students of {assignment}: grading on {args.workers} workers ...", flush=True)
        wall = _run([sys.executable, "-m", "flowlab_course", "autograde", assignment,
                     "--workers", str(args.workers), "--no-progress"], dist_root)
        print(f"distributed: {wall:.1f} s; sequential nbgrader autograde ...", flush=True)
        sequential = _run([os.path.join(os.path.dirname(sys.executable), "nbgrader"),
                           "autograde", assignment], seq_root)
        print(f"sequential: {sequential:.1f} s", flush=True)
        journal = read_journal(dist_root, assignment)
        seq_scores, dist_scores = _scores(seq_root, assignment), _scores(dist_root, assignment)
        job_bytes = _job_bytes(base, assignment, next(iter(klass)))
    startup, overhead = _overhead(n, args.workers, job_bytes)
    worker = statistics.fmean(e["seconds"] for e in journal)
    record = statistics.fmean(e["record_seconds"] for e in journal)
    mismatches = sorted(s for s in set(seq_scores) | set(dist_scores)
                        if seq_scores.get(s) != dist_scores.get(s))
    counts: dict[str, int] = {}
    for label, _ in klass.values():
        counts[label.split(":")[0]] = counts.get(label.split(":")[0], 0) + 1

    def project(workers: int) -> float:
        return round(startup + max(n * (worker + overhead) / workers, n * record), 1)

    result = {
        "course": args.course,
        "assignment": assignment,
        "students": n,
        "kinds": counts,
        "workers": args.workers,
        "cores": os.cpu_count(),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "wall_s": round(wall, 1),
        "sequential_wall_s": round(sequential, 1),
        "speedup_vs_sequential": round(sequential / wall, 2),
        "worker_s_per_submission": round(worker, 3),
        "worker_s_per_submission_median": round(statistics.median(
            e["seconds"] for e in journal), 3),
        "record_s_per_submission": round(record, 3),
        "scheduler_overhead_s_per_submission": round(overhead, 4),
        "job_bytes": job_bytes,
        "cluster_startup_s": round(startup, 1),
        "projected_wall_s": {str(w): project(w) for w in (2, 8, 32, 64, 128)},
        "projected_vs_measured_at_workers": [project(args.workers), round(wall, 1)],
        "graded_once": sorted(e["student"] for e in journal) == sorted(klass),
        "statuses": sorted({e["status"] for e in journal}),
        "scores_identical": not mismatches and len(seq_scores) == n,
        "mismatches": mismatches,
        "command": "python benchmarks/grading_class.py " + " ".join(sys.argv[1:]),
        "note": "wall-clock seconds on a shared machine; sandbox as configured by the course; "
                "projection = startup + max(n*(worker+overhead)/N, n*record): the client's "
                "gradebook writes are serial",
    }
    print(json.dumps(result, indent=1))
    name = "grading_class" + ("-synthetic" if args.course == "synthetic" else "") + (
        "-quick" if args.quick else "") + ".json"
    out = args.out or os.path.join(HERE, "results", name)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as handle:
        json.dump(result, handle, indent=1)


if __name__ == "__main__":
    main()
