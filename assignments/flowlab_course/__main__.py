"""``python -m flowlab_course``: distributed sandboxed autograding, grade exports, class reports.

Run from the course directory (the one with ``nbgrader_config.py``) or pass ``--course``::

    python -m flowlab_course autograde 01_change_of_variables --workers 8      # this machine
    python -m flowlab_course autograde 01_change_of_variables \\
        --scheduler tcp://login-node:8786                                      # a Dask cluster
    python -m flowlab_course export --to grades/ [--roster roster.csv]         # Canvas, Moodle
    python -m flowlab_course report 01_change_of_variables                     # HTML report
    python -m flowlab_course preflight 01_change_of_variables                  # make autograde
    python -m flowlab_course cluster-recipes                                   # Slurm, Kubernetes
    python -m flowlab_course sandbox-check
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowlab_course", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("autograde", help="autograde submissions on a local or remote Dask "
                                             "cluster; one process writes the gradebook")
    grade.add_argument("assignments", nargs="+", help="assignment names (folders of source/)")
    grade.add_argument("--course", default=".", help="course directory (default: here)")
    grade.add_argument("--workers", "-j", type=int, default=None,
                       help="worker processes of the local cluster (default: number of cores)")
    grade.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="grade on the Dask cluster of this scheduler (tcp://host:8786) "
                            "instead of a local one; see `cluster-recipes`")
    grade.add_argument("--allowed-failures", type=int, default=3,
                       help="workers one submission may kill before it is graded zero "
                            "(local cluster; default 3)")
    grade.add_argument("--dashboard", default=None, metavar="[HOST]:PORT",
                       help="serve the local cluster's Dask dashboard (on 127.0.0.1 unless a "
                            "host is named, e.g. :8787); default: none")
    grade.add_argument("--student", action="append", help="only these students (repeatable)")
    grade.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    export = sub.add_parser("export", help="grades as CSV for Canvas, Moodle and nbgrader")
    export.add_argument("--course", default=".")
    export.add_argument("--to", default="grades", help="output folder (default: grades/)")
    export.add_argument("--roster", default=None,
                        help="CSV with student_id and LMS identities (canvas_id, sis_user_id, "
                             "sis_login_id, section, username, email, idnumber)")
    export.add_argument("--canvas-column", action="append", default=[], metavar="A=TITLE",
                        help="Canvas column title of assignment A, e.g. "
                             "'01_change_of_variables=Assignment 1 (12345)' (repeatable)")
    export.add_argument("--lms", action="append", choices=["canvas", "moodle"], default=None,
                        help="which LMS files to write (repeatable; default: those whose keys "
                             "the roster has)")
    export.add_argument("--moodle-identity", default="username",
                        choices=["username", "email", "idnumber"],
                        help="the roster column Moodle identifies users by (default username)")
    export.add_argument("--canvas-new-assignments", action="store_true",
                        help="allow Canvas columns without '(id)': Canvas creates new "
                             "assignments for them")
    report = sub.add_parser("report", help="class report: distributions, failures, flags (HTML)")
    report.add_argument("assignments", nargs="+")
    report.add_argument("--course", default=".")
    report.add_argument("--out", default=None, help="output folder (default: reports/NAME)")
    check = sub.add_parser("preflight", help="stage submissions for `nbgrader autograde`: "
                                             "repair what nbgrader cannot read, zero and flag "
                                             "what cannot be repaired (make autograde)")
    check.add_argument("assignments", nargs="+")
    check.add_argument("--course", default=".")
    sub.add_parser("cluster-recipes", help="how to grade on Slurm/PBS or Kubernetes")
    sub.add_parser("sandbox-check", help="say whether the grading sandbox works here")
    args = parser.parse_args(argv)

    if args.command == "sandbox-check":
        from .sandbox import bwrap_available

        ok, why = bwrap_available()
        print("sandbox: available" if ok else f"sandbox: NOT available: {why}")
        return 0 if ok else 1
    if args.command == "preflight":
        from .repair import STAGED_DIR, preflight

        for name in args.assignments:
            checks = preflight(args.course, name)
            found = [(s, c) for s, cs in checks.items() for c in cs if c.status != "ok"]
            print(f"{name}: {len(checks)} submissions staged in {STAGED_DIR}/, "
                  f"{sum(c.status == 'repaired' for _, c in found)} notebooks repaired, "
                  f"{sum(c.status == 'unreadable' for _, c in found)} unreadable (graded zero)")
            for student, c in found:
                print(f"  {c.status.upper()} {student}/{c.name}: {'; '.join(c.defects)}",
                      file=sys.stderr)
        return 0
    if args.command == "cluster-recipes":
        from .distributed import RECIPES

        print(RECIPES)
        return 0
    if args.command == "report":
        from .report import class_report

        for name in args.assignments:
            out = None if args.out is None else os.path.join(args.out, name)
            result = class_report(args.course, name, out)
            print(f"{name}: {result.html_path}")
        return 0
    if args.command == "export":
        from .export import export_all

        columns = {}
        for item in args.canvas_column:
            name, sep, title = item.partition("=")
            if not sep:
                parser.error(f"--canvas-column wants ASSIGNMENT=TITLE, got {item!r}")
            columns[name] = title
        from .export import RosterMismatch

        try:
            written = export_all(args.course, args.to, roster=args.roster, columns=columns,
                                 lms=args.lms, moodle_identity=args.moodle_identity,
                                 canvas_new_assignments=args.canvas_new_assignments)
        except RosterMismatch as err:
            print(f"export stopped: {err}", file=sys.stderr)
            return 2
        for name, path in written.items():
            print(f"{name}: {path}")
        return 0
    from .parallel import autograde_parallel

    failed = 0
    for name in args.assignments:
        results = autograde_parallel(args.course, name, students=args.student,
                                     workers=args.workers, scheduler=args.scheduler,
                                     force=args.force, progress=not args.no_progress,
                                     allowed_failures=args.allowed_failures,
                                     dashboard=args.dashboard)
        done = [r for r in results if r.status == "graded"]
        skipped = [r for r in results if r.skipped]
        zeroed = [r for r in results if r.status == "zeroed"]
        bad = [r for r in results if r.status == "failed"]
        repaired = [r for r in done if r.flags]
        print(f"{name}: {len(done)} graded ({len(repaired)} repaired), {len(skipped)} "
              f"unchanged, {len(zeroed)} zeroed and flagged, {len(bad)} failed")
        for r in repaired + zeroed + bad:
            label = {"graded": "REPAIRED", "zeroed": "ZEROED"}.get(r.status, "FAILED")
            text = r.error or "; ".join(f["message"] for f in r.flags)
            print(f"  {label} {r.student}: {text.strip().splitlines()[0] if text else ''}",
                  file=sys.stderr)
        failed += len(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
