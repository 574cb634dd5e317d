"""Density at equal steps over several seeds: is a difference between libraries real?

One seed's test bits/dim differ by about 0.01-0.02 between seeds, as much as the libraries
differ from each other, so the claim "flowlab's best flat model beats every peer" is checked on
three seeds.  For each seed this runs ``run.py --sections density`` on the digits (500 steps)
with every installed library's spline coupling and flowlab's spline-lu, then tabulates them.

    python benchmarks/seeds.py                      # seeds 0, 1, 2 (about 8 minutes on 2 cores)
    python benchmarks/seeds.py --seeds 0,1,2,3,4

A seed whose ``results/seeds/seed<N>/results.json`` exists is not run again (delete the folder
to redo it).  Writes ``benchmarks/results/density_seeds.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from contenders import available_impls  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    impls = [i for i in available_impls() if i not in ("bare", "FrEIA")]  # no spline there
    import run

    table: dict[str, dict[int, float]] = {}
    for seed in seeds:
        out = HERE / "results" / "seeds" / f"seed{seed}"
        if not (out / "results.json").exists():
            run.main(["--sections", "density", "--tasks", "digits", "--impls", ",".join(impls),
                      "--kinds", "spline,spline-lu", "--threads", str(args.threads),
                      "--seed", str(seed), "--out", str(out)])
        data = json.loads((out / "results.json").read_text())
        for row in data["density"]["tasks"][0]["rows"]:
            table.setdefault(f"{row['impl']} {row['kind']}", {})[seed] = row["test"]
    order = sorted(table, key=lambda k: statistics.mean(table[k].values()))
    lines = [
        "# Test bits/dim on the 8x8 digits over seeds (500 steps, spline couplings)",
        "",
        f"Command: `python benchmarks/seeds.py --seeds {args.seeds}`; each seed is one "
        "`run.py --sections density --tasks digits` run (same data split, batches and "
        "initialisation seed for every library within a seed).",
        "",
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | rank per seed |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: | --- |",
    ]
    ranks = {k: [] for k in table}
    for s in seeds:
        for rank, k in enumerate(sorted(table, key=lambda k: table[k].get(s, float("inf"))), 1):
            ranks[k].append(rank)
    for k in order:
        vals = [table[k].get(s) for s in seeds]
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" if v is not None else "-" for v in vals)
                     + f" | **{statistics.mean(v for v in vals if v is not None):.4f}** | "
                     + ", ".join(map(str, ranks[k])) + " |")
    lines.append("")
    (HERE / "results" / "density_seeds.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
