#!/usr/bin/env python
"""Where does a training step (or sampling) of one contender spend its time?

    python benchmarks/profile_step.py flowlab spline            # op table of 5 training steps
    python benchmarks/profile_step.py flowlab spline --sample   # ... of 5 sampling calls
    python benchmarks/profile_step.py bare affine --python      # Python-level (cProfile) view

The op table (``torch.profiler``, sorted by self time) shows which kernels dominate; the
``--python`` view shows interpreter overhead (calls per step, time outside kernels).  Use one
thread (the default here) for stable proportions on a shared machine.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/

import torch  # noqa: E402

from contenders import build  # noqa: E402
from peers import ModelSpec  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("impl", help="flowlab, bare, zuko, nflows, normflows or FrEIA")
    p.add_argument("kind", choices=("affine", "spline"))
    p.add_argument("--sample", action="store_true", help="profile sampling, not training")
    p.add_argument("--python", action="store_true", help="cProfile instead of torch.profiler")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    c = build(args.impl, args.kind, ModelSpec())
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(c.module.parameters(), lr=1e-4)

    def call() -> None:
        if args.sample:
            with torch.no_grad():
                c.sample(256)
            return
        opt.zero_grad(set_to_none=True)
        (-c.log_prob(x).mean()).backward()
        opt.step()

    for _ in range(3):
        call()
    if args.python:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            call()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.rows)
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.calls):
            call()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows,
                                    max_name_column_width=48))


if __name__ == "__main__":
    main()
