"""The grading client's seconds per submission, and 300 students projected on 2 and 160 cores.

Since the worker runs nbgrader's whole per-submission pipeline and returns the gradebook rows
(:mod:`flowlab_course.parallel`), the client only prepares each job (fingerprint, zip) and
writes the rows, a batch per transaction.  Measured here, on a real assignment:

1. a synthetic class of ``--sample`` students (:mod:`flowlab_course.synthetic`: correct,
   mistaken, partial, hostile, empty) graded by ``python -m flowlab_course autograde -j W``
   (the real CLI; sandbox as the course configures it), and by sequential ``nbgrader
   autograde`` on a copy: ``scores_identical``;
2. from the run's journal: each submission's **wall and CPU seconds on the worker** (CPU of the
   worker process and of its kernels, ``getrusage``), and the client's seconds writing it;
3. the client **at class size**: ``--students`` (300) results, made from the sample's rows
   (new student names, new row ids) and autograded files, prepared and written by the client's
   own code (:class:`flowlab_course.parallel._Writer`, batches of 32) into a fresh gradebook:
   wall and CPU seconds per submission (target <= 0.05 s);
4. the **projection** of the 300-student class, from the measured per-submission CPU:

   * 2 cores: the workers and the client share them:
     ``startup + n * (cpu + client_cpu) / 2``;
   * 160 cores (160 one-thread workers, e.g. ten 16-core nodes):
     ``startup + max(ceil(n / 160) * worker_wall_max, n * client_wall)``: waves of one
     submission per worker (the slowest of the sample per wave) against the client's serial
     floor; ``client_busy`` is the share of that time the client is working.

    python benchmarks/grading_client.py                       # 01, sample of 8, 300 students
    python benchmarks/grading_client.py --sample 4 --quick    # CI: 4 graded, 60 written
Results: benchmarks/results/grading_client[-quick].md, headed by the command, the machine
(``lscpu``), the date and the load (``uptime``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from grading_class import _course, _run, _scores


def _machine() -> tuple[str, str]:
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
        if line.startswith("Model name")), "unknown")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    return model, uptime


def _renamed(rows: dict, student: str) -> dict:
    """The rows of one submission for another student, with fresh ids."""
    rows = json.loads(json.dumps(rows))
    ids = {}
    for table in ("submitted_assignment", "submitted_notebook", "grade", "comment"):
        for row in rows[table]:
            ids[row["id"]] = row["id"] = uuid.uuid4().hex
    for row in rows["student"]:
        row["id"] = student
    for row in rows["submitted_assignment"]:
        row["student_id"] = student
    for table in ("submitted_notebook",):
        for row in rows[table]:
            row["assignment_id"] = ids[row["assignment_id"]]
    for table in ("grade", "comment"):
        for row in rows[table]:
            row["notebook_id"] = ids[row["notebook_id"]]
    return rows


def _client_at_scale(base: str, graded: str, assignment: str, sample: list[str], n: int,
                     batch: int) -> dict:
    """Prepare and write ``n`` results into a fresh copy of the course, as the client does."""
    from flowlab_course.parallel import (
        GradingJob,
        _digest,
        _gradebook_path,
        _pack,
        _read_rows,
        _skeleton_gradebook,
        _Writer,
        load_config,
    )

    course = shutil.copytree(base, base + "-client")
    db_path = _gradebook_path(course, load_config(course))
    outcomes = []
    for student in sample:
        outcomes.append({
            "rows": _read_rows(os.path.join(graded, "gradebook.db"), assignment, student),
            "files": _pack(os.path.join(graded, "autograded", student, assignment)),
            "folder": os.path.join(graded, "submitted", student, assignment)})
    names = [f"student{i:04d}" for i in range(n)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    # preparing the jobs: the fingerprint and the zip of each submission, one skeleton
    source_digest = _digest(os.path.join(course, "source", assignment))
    skeleton = _skeleton_gradebook(db_path)
    jobs = {}
    for i, name in enumerate(names):
        folder = outcomes[i % len(outcomes)]["folder"]
        _digest(folder)
        jobs[name] = GradingJob(assignment, name, "", b"", _pack(folder), skeleton, course)
    prepare_cpu, prepare_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    results = [{"student": name, "rows": _renamed(outcomes[i % len(outcomes)]["rows"], name),
                "files": outcomes[i % len(outcomes)]["files"], "status": "graded",
                "flags": [], "seconds": 0.0, "cpu_seconds": 0.0, "worker": "bench"}
               for i, name in enumerate(names)]
    writer = _Writer(course, assignment, db_path, "bench", {}, {s: source_digest for s in names})
    cpu0, wall0 = time.process_time(), time.perf_counter()
    written = []
    for outcome in results:
        writer.add(outcome)
        if len(writer.pending) >= batch:
            written += writer.flush()
    written += writer.flush()
    writer.close()
    write_cpu, write_wall = time.process_time() - cpu0, time.perf_counter() - wall0
    assert len(written) == n and all(r.ok for r in written), written[:3]
    graded = _scores(course, assignment)
    assert len(graded) == n, len(graded)
    shutil.rmtree(course)
    return {"prepare_s": prepare_wall / n, "prepare_cpu_s": prepare_cpu / n,
            "write_s": write_wall / n, "write_cpu_s": write_cpu / n,
            "client_s": (prepare_wall + write_wall) / n,
            "client_cpu_s": (prepare_cpu + write_cpu) / n}


def _render(data: dict) -> str:
    """The result file's text from the measured ``data`` (see :func:`main`)."""
    journal, client, n = data["journal"], data["client"], data["students"]
    worker_wall = [e["seconds"] for e in journal]
    worker_cpu = [e["cpu_seconds"] for e in journal]
    record = [e["record_seconds"] for e in journal]
    startup = 5.0   # a LocalCluster's start and close here (grading_class.json: 4.6 s)
    cpu = statistics.fmean(worker_cpu)
    two = startup + n * (cpu + client["client_cpu_s"]) / 2
    waves = math.ceil(n / 160)
    many = startup + max(waves * max(worker_cpu), n * client["client_s"])
    many_wall = startup + max(waves * max(worker_wall), n * client["client_s"])
    data["projected_wall_s"] = {"2": round(two, 1), "160": round(many, 1),
                                "160_from_loaded_wall": round(many_wall, 1)}
    rows = [
        ("students graded for real (sample)", f"{len(journal)} of {data['assignment']}"),
        ("scores identical to sequential `nbgrader autograde`", str(data["identical"])),
        ("sample: distributed wall (s)", f"{data['sample_wall_s']:.1f} on "
         f"{data['workers']} workers"),
        ("sample: sequential nbgrader wall (s)", f"{data['sequential_wall_s']:.1f}"),
        ("worker wall s / submission (mean, max)",
         f"{statistics.fmean(worker_wall):.2f}, {max(worker_wall):.2f}"),
        ("worker CPU s / submission (mean, max)", f"{cpu:.2f}, {max(worker_cpu):.2f}"),
        ("client s / submission in the sample run (journal; results one or two at a time)",
         f"{statistics.fmean(record):.4f}"),
        (f"client s / submission at {n} students: prepare",
         f"{client['prepare_s']:.4f} (CPU {client['prepare_cpu_s']:.4f})"),
        (f"client s / submission at {n} students: write",
         f"{client['write_s']:.4f} (CPU {client['write_cpu_s']:.4f})"),
        (f"**client s / submission at {n} students (target <= 0.05)**",
         f"**{client['client_s']:.4f}** (CPU {client['client_cpu_s']:.4f})"),
        (f"projected wall, {n} students, 2 cores",
         f"{two:.0f} s = {two / 60:.1f} min (CPU-bound: {n} x ({cpu:.2f} + "
         f"{client['client_cpu_s']:.3f}) / 2 + {startup:.0f})"),
        (f"projected wall, {n} students, 160 cores",
         f"{many:.0f} s = {many / 60:.1f} min ({waves} waves x {max(worker_cpu):.1f} CPU s, "
         f"the slowest submission; client floor {n * client['client_s']:.1f} s, client busy "
         f"{100 * n * client['client_s'] / many:.0f} %)"),
        ("same, 160 cores, with this machine's loaded wall seconds (pessimistic)",
         f"{many_wall:.0f} s = {many_wall / 60:.1f} min ({waves} waves x "
         f"{max(worker_wall):.1f} s)"),
    ]
    load_before, load_after = data["load"]
    return "\n".join([
        "# Grading client: seconds per submission and a 300-student projection", "",
        f"- command: `{data['command'].strip()}`",
        f"- machine: {data['machine']} ({data['cores']} cores)",
        f"- date: {data['date']}",
        f"- load (uptime) before: `{load_before}`",
        f"- load (uptime) after: `{load_after}`", "",
        "| measure | value |", "| --- | --- |",
        *[f"| {a} | {b} |" for a, b in rows], "",
        "Before this change the client replayed each submission through nbgrader's pipeline: "
        + data.get("before", "see grading_class.json (record_s_per_submission)"), "",
        "Wall seconds are on a shared machine (load above); CPU seconds are what the "
        "projection uses: the worker process and every process it starts (kernel, sandbox), "
        "sampled every 0.1 s, and the client's process time.  The 160-core projection "
        "assumes one-thread workers on idle cores, where a submission's wall time is close "
        "to its CPU time; the pessimistic line uses the wall time measured here at a load "
        "of about 12 on 2 cores.", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="01_change_of_variables")
    parser.add_argument("--sample", type=int, default=8, help="students graded for real")
    parser.add_argument("--students", type=int, default=300, help="class size written")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="60 students written")
    parser.add_argument("--before", default=None,
                        help="a grading_class.py result of the replaying client, to quote")
    parser.add_argument("--render", default=None, metavar="JSON",
                        help="only write the text of an earlier result (its .json)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    n = 60 if args.quick else args.students
    out = args.out or os.path.join(HERE, "results", "grading_client" + (
        "-quick" if args.quick else "") + ".md")
    if args.render:
        with open(args.render) as handle:
            data = json.load(handle)
    else:
        data = _measure(args, n)
    if args.before:
        with open(args.before) as handle:
            before = json.load(handle)
        data["before"] = (
            f"{before['record_s_per_submission']:.3f} s per submission "
            f"(`{before['command']}` at commit ca6f58d, {before['students']} students of "
            f"{before['assignment']}, the same machine, load 1 min "
            f"{before.get('load_average_1min')}; its workers: "
            f"{before['worker_s_per_submission']:.1f} s wall per submission).")
    text = _render(data)
    print(text)
    with open(out, "w") as handle:
        handle.write(text)
    with open(out[:-3] + ".json", "w") as handle:
        json.dump(data, handle, indent=1)


def _measure(args, n: int) -> dict:
    model, load_before = _machine()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    from flowlab_course.parallel import read_journal
    from flowlab_course.synthetic import synthetic_class, write_class

    with tempfile.TemporaryDirectory(prefix="flowlab-client-") as tmp:
        base, assignment, source, release, mistakes = _course(tmp, "assignments",
                                                              args.assignment)
        empty = shutil.copytree(base, os.path.join(tmp, "empty"))
        klass = synthetic_class(source, release, mistakes, args.sample, seed=args.seed)
        write_class(base, assignment, klass)
        seq_root = shutil.copytree(base, os.path.join(tmp, "sequential"))
        dist_root = shutil.copytree(base, os.path.join(tmp, "distributed"))
        print(f"{args.sample} students of {assignment} on {args.workers} workers ...", flush=True)
        wall = _run([sys.executable, "-m", "flowlab_course", "autograde", assignment,
                     "--workers", str(args.workers), "--no-progress"], dist_root)
        print(f"distributed: {wall:.1f} s; sequential nbgrader autograde ...", flush=True)
        sequential = _run([os.path.join(os.path.dirname(sys.executable), "nbgrader"),
                           "autograde", assignment], seq_root)
        journal = read_journal(dist_root, assignment)
        identical = _scores(seq_root, assignment) == _scores(dist_root, assignment)
        print(f"sequential: {sequential:.1f} s; the client at {n} students ...", flush=True)
        client = _client_at_scale(empty, dist_root, assignment, sorted(klass), n, args.batch)
    _, load_after = _machine()
    return {"command": "python benchmarks/grading_client.py " + " ".join(sys.argv[1:]),
            "machine": model, "cores": os.cpu_count(), "date": date,
            "load": [load_before, load_after], "assignment": assignment, "students": n,
            "workers": args.workers, "journal": journal, "client": client,
            "identical": identical, "sample_wall_s": wall, "sequential_wall_s": sequential}


if __name__ == "__main__":
    main()
