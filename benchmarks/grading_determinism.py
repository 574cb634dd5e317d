"""How often each catalogued mistake is caught: 100 gradings with fresh random inputs each.

The hidden tests draw new random inputs at every grading, besides their fixed adversarial cases.
A mistake that random inputs catch only sometimes would let some students pass with it; this
benchmark grades every mistake of ``tests/assignments/catalogue.py`` ``--repeats`` times through
the trusted framework (in process, :class:`flowlab_course.trusted.bridge.LocalBridge`) and
records how often its own part failed.  Parts that train a model are graded ``--train-repeats``
times (seconds each).

    python benchmarks/grading_determinism.py              # 100 gradings per mistake
    python benchmarks/grading_determinism.py --repeats 5  # quick

Writes ``benchmarks/results/grading_determinism.md``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "assignments"))

from catalogue import CATALOGUE  # noqa: E402
from nbgrader_course import patch  # noqa: E402
from local_grading import grade, namespace, source  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--train-repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "grading_determinism.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows, start = [], time.time()
    for assignment in sorted(CATALOGUE):
        nb = source(assignment)
        module = "assignment" + str(int(assignment[:2]))
        for mistake in CATALOGUE[assignment]:
            ns = namespace(patch(nb, mistake.old, mistake.new))
            n = args.train_repeats if mistake.part == "training" else args.repeats
            caught, t0 = 0, time.perf_counter()
            for _ in range(n):
                caught += grade(module, ns, mistake.part) is not None
            rows.append((assignment, mistake.name, mistake.part, caught, n,
                         (time.perf_counter() - t0) / n))
            print(f"{assignment:24s} {mistake.name:40s} {caught}/{n}", flush=True)
    lines = [
        "# How often each catalogued mistake is caught",
        "",
        f"Command: `python benchmarks/grading_determinism.py --repeats {args.repeats} "
        f"--train-repeats {args.train_repeats}` ({time.strftime('%Y-%m-%d')}, "
        f"{platform.machine()}, torch {torch.__version__}, {time.time() - start:.0f} s)",
        "",
        "| assignment | mistake | part | caught | gradings | s per grading |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {a} | {m} | {p} | {c} | {n} | {t:.3f} |" for a, m, p, c, n, t in rows]
    missed = [r for r in rows if r[3] < r[4]]
    lines += ["", f"Mistakes caught at every grading: {len(rows) - len(missed)} of {len(rows)}."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}; {len(missed)} mistakes not caught every time")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
