"""How tight is the importance-weighted bits/dim?  The shipped checkpoints against S draws.

For a flow with uniform dequantization the model's discrete likelihood is
:math:`P(x) = \\int_{[0,1)^D} p(x + u)\\,du`.  The importance-weighted estimate with S draws,
:math:`-\\log_2 \\frac1S \\sum_s p(x + u_s)` per dimension, is an upper bound in expectation that
falls towards :math:`-\\log_2 P(x)/D` as S grows; S = 1 is the plain estimate.  This script
scores each checkpoint of :mod:`flowlab.pretrained` on its test split with
``pretrained.evaluate(model, x, importance_samples=S)`` (seeded, as the records are) for a
list of S, and writes the curve.  With variational dequantization (the ``-vardeq``
checkpoints) the draws come from the learned :math:`q(u \\mid x)` and the same estimate,
:math:`-\\log_2 \\frac1S \\sum_s p(x + u_s) / q(u_s \\mid x)`, is the importance-weighted
bound with :math:`q` as the proposal.  The last differences say how much any number of
further draws could still gain: what remains is the model.

    python benchmarks/iw_curve.py                                  # digits checkpoints, S = 1..256
    python benchmarks/iw_curve.py --names mnist5k-glow --draws 1,16,64
    python benchmarks/iw_curve.py --quick                          # digits-realnvp, S = 1, 4, 50 images

Writes ``benchmarks/results/iw_curve.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from flowlab import pretrained
from flowlab.data.images import load_digits, load_mnist5k
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from provenance import Provenance  # noqa: E402

LOADERS = {"digits": load_digits, "mnist5k": load_mnist5k}

RESULTS = Path(__file__).resolve().parents[1] / "results" / "iw_curve.md"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--names", default="digits-realnvp,digits-glow")
    p.add_argument("--draws", default="1,4,16,64,256")
    p.add_argument("--quick", action="store_true", help="one checkpoint, S = 1, 4, 50 images")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    run = Provenance.for_script(__file__, argv)
    names = ["digits-realnvp"] if args.quick else [n for n in args.names.split(",") if n]
    draws = [1, 4] if args.quick else [int(s) for s in args.draws.split(",")]
    torch.set_num_threads(1)
    lines = []
    for name in names:
        model, rec = pretrained.load(name), pretrained.record(name)
        data = LOADERS[rec["data"]]("test")
        x = data.images.float()[: 50 if args.quick else None]
        row = []
        for S in draws:
            t = time.process_time()
            bpd = pretrained.evaluate(model, x, importance_samples=S)
            row.append((S, bpd, time.process_time() - t))
            print(f"{name} S={S}: {bpd:.4f} ({row[-1][2]:.0f} CPU-s)", flush=True)
        lines.append(f"| {name} | {len(x)} | " + " | ".join(f"{b:.4f}" for _, b, _ in row)
                     + f" | {row[-2][1] - row[-1][1]:.4f} |")
    text = "\n".join([
        "# Importance-weighted test bits/dim against the number of dequantization draws S",
        "",
        run.line(),
        "",
        "`flowlab.pretrained.evaluate(model, x_test, importance_samples=S)`, seeded "
        "(`torch.manual_seed(0)`); S = 1 is the plain estimate (4 draws averaged).  The last "
        "column is the gain of the last step in S.",
        "",
        "| checkpoint | test images | " + " | ".join(f"S = {S}" for S in draws)
        + " | last gain |",
        "| --- | ---: | " + " | ".join("---:" for _ in draws) + " | ---: |",
        *lines,
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
