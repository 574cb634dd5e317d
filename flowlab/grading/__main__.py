"""``python -m flowlab.grading``: parallel sandboxed autograding and class reports.

Run from the course directory (the one with ``nbgrader_config.py``) or pass ``--course``::

    python -m flowlab.grading autograde 01_change_of_variables --workers 8
    python -m flowlab.grading report 01_change_of_variables
    python -m flowlab.grading sandbox-check
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowlab.grading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("autograde", help="autograde submissions on N worker processes")
    grade.add_argument("assignments", nargs="+", help="assignment names (folders of source/)")
    grade.add_argument("--course", default=".", help="course directory (default: here)")
    grade.add_argument("--workers", "-j", type=int, default=None,
                       help="worker processes (default: number of cores)")
    grade.add_argument("--student", action="append", help="only these students (repeatable)")
    grade.add_argument("--force", action="store_true", help="regrade unchanged submissions too")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    report = sub.add_parser("report", help="class report: score distributions, failed checks")
    report.add_argument("assignments", nargs="+")
    report.add_argument("--course", default=".")
    report.add_argument("--out", default=None, help="output folder (default: reports/NAME)")
    sub.add_parser("sandbox-check", help="say whether the grading sandbox works here")
    args = parser.parse_args(argv)

    if args.command == "sandbox-check":
        from .sandbox import bwrap_available

        ok, why = bwrap_available()
        print("sandbox: available" if ok else f"sandbox: NOT available: {why}")
        return 0 if ok else 1
    if args.command == "report":
        from .report import class_report

        for name in args.assignments:
            out = None if args.out is None else os.path.join(args.out, name)
            result = class_report(args.course, name, out)
            print(f"{name}: {result.html_path}")
        return 0
    from .parallel import autograde_parallel

    failed = 0
    for name in args.assignments:
        results = autograde_parallel(args.course, name, students=args.student,
                                     workers=args.workers, force=args.force,
                                     progress=not args.no_progress)
        done = [r for r in results if r.ok and not r.skipped]
        skipped = [r for r in results if r.skipped]
        bad = [r for r in results if not r.ok]
        print(f"{name}: {len(done)} graded, {len(skipped)} unchanged, {len(bad)} failed")
        for r in bad:
            print(f"  FAILED {r.student}: {r.error.strip().splitlines()[0] if r.error else ''}",
                  file=sys.stderr)
        failed += len(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
