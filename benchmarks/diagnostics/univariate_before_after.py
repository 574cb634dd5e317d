"""One transformer protocol (decisions/0009): the shipped checkpoints unchanged, the step time
unchanged, against a flowlab checkout from before the change.

    python benchmarks/diagnostics/univariate_before_after.py --old /path/to/old/checkout \\
        --out benchmarks/results/univariate_before_after.md

``--old`` is a checkout (or worktree) of flowlab before the protocol; its ``flowlab`` package is
copied to a temporary folder as ``flowlab_old`` (the library imports itself relatively only), so
both versions run in this one process:

* **checkpoints**: each shipped checkpoint (``flowlab.pretrained``) is loaded by both versions,
  and the log-density of the first 64 test images and 16 samples at T = 1 (seeded) are compared
  for bitwise equality;
* **step time**: a RealNVP step (64-d, 8 affine couplings, 2x256 MLPs, batch 256, Adam, one
  thread) of each version, in interleaved rounds of 10 steps (the order alternating), with the
  per-round ratio new / old.  Both use ``scale_bound=3.0`` (the bound costs nothing; the old
  default was 2).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from provenance import Provenance


def _old_flowlab(checkout: Path, into: Path):
    source = checkout / "flowlab"
    if not (source / "transforms").is_dir():
        raise SystemExit(f"--old {checkout}: no flowlab package there (expected {source}/)")
    shutil.copytree(source, into / "flowlab_old", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(into))
    import flowlab_old

    return flowlab_old


def _same(a: torch.Tensor, b: torch.Tensor) -> str:
    return "bitwise equal" if torch.equal(a, b) else f"differ, max {(a - b).abs().max():.3g}"


def _checkpoints(old) -> list[str]:
    import importlib

    from flowlab import pretrained
    from flowlab.data.images import load_digits, load_mnist5k

    old_pretrained = importlib.import_module("flowlab_old.pretrained")
    rows = ["| checkpoint | log p of 64 test images | 16 samples at T = 1 |", "|---|---|---|"]
    for name in pretrained.available():
        rec = pretrained.record(name)
        test = (load_digits if rec["data"] == "digits" else load_mnist5k)("test").float()[:64]
        out = []
        for module in (old_pretrained, pretrained):
            model = module.load(name)
            with torch.no_grad():
                torch.manual_seed(0)
                lp = model.log_prob(test)
                torch.manual_seed(1)
                out.append((lp, model.sample(16, temperature=1.0)))
        (lp0, s0), (lp1, s1) = out
        rows.append(f"| `{name}` | {_same(lp0, lp1)} | {_same(s0, s1)} |")
    return rows


def _timing(old, rounds: int) -> list[str]:
    import importlib

    from flowlab.models import realnvp as new_realnvp

    old_realnvp = importlib.import_module("flowlab_old.models").realnvp
    x = torch.randn(256, 64)
    runs = {}
    for key, build in (("old", old_realnvp), ("new", new_realnvp)):
        torch.manual_seed(0)
        flow = build(64, kind="affine", couplings=8, hidden=(256, 256), scale_bound=3.0)
        runs[key] = (flow, torch.optim.Adam(flow.parameters(), 1e-3))

    def step(flow, opt):
        opt.zero_grad(set_to_none=True)
        (-flow.log_prob(x).mean()).backward()
        opt.step()

    for flow, opt in runs.values():
        for _ in range(10):
            step(flow, opt)
    times: dict[str, list[float]] = {"old": [], "new": []}
    ratios = []
    for r in range(rounds):
        now = {}
        for key in (("old", "new") if r % 2 == 0 else ("new", "old")):
            t = time.perf_counter()
            for _ in range(10):
                step(*runs[key])
            now[key] = (time.perf_counter() - t) / 10
            times[key].append(now[key])
        ratios.append(now["new"] / now["old"])
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return [
        "| version | fastest round, ms/step | median round, ms/step |",
        "|---|---|---|",
        *(f"| {k} | {min(v) * 1e3:.2f} | {statistics.median(v) * 1e3:.2f} |"
          for k, v in times.items()),
        "",
        (f"Paired ratio new / old over {rounds} rounds: median {statistics.median(ratios):.3f} "
         f"(quartiles {q1:.3f}, {q3:.3f}); ratio of the fastest rounds "
         f"{min(times['new']) / min(times['old']):.3f}."),
    ]


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, type=Path, help="a flowlab checkout from before")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--out", type=Path, help="write the Markdown here too")
    args = p.parse_args(argv)
    run = Provenance.for_script(__file__, argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old = _old_flowlab(args.old.resolve(), Path(tmp))
        body = ["## Shipped checkpoints, old and new code", "", *_checkpoints(old), "",
                "## RealNVP step (64-d, 8 couplings, 2x256, batch 256, 1 thread)", "",
                *_timing(old, args.rounds)]
    text = "\n".join([run.line(), "", "# One transformer protocol: before and after", "", *body,
                      ""])
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    main()
