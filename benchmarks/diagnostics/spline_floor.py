"""How far can a spline coupling step go below the bare affine step?  The floor, measured.

Issue 8 asks for a rational-quadratic spline coupling step <= 3x the bare affine step (same
8 couplings, 2x256 MLPs, 64-d, batch 256).  The spline's conditioner must output 3K - 1 = 23
numbers per transformed coordinate instead of 2, so its last layer and its Adam update are
several times larger whatever the spline code does.  This script times, alternating in the
same rounds (1 thread):

* ``bare affine``      the yardstick (benchmarks/bare.py);
* ``flowlab spline``   the real model;
* ``conditioner only`` the same spline model with the spline replaced by a shift by the mean of
  its 23 parameters (one reduction): the MLPs, the Adam update and the coupling bookkeeping
  of the spline model, without any spline arithmetic.  Its ratio is the floor that no spline
  implementation with this architecture can go below.

    python benchmarks/spline_floor.py              # 25 rounds
    python benchmarks/spline_floor.py --quick      # 5 rounds
    python benchmarks/spline_floor.py --compile    # the same, every loss under torch.compile
Writes benchmarks/results/spline_floor[-compile].md.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/: the shared modules and results/
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from contenders import build  # noqa: E402
from measure import interleaved_times, paired_ratio, summarize  # noqa: E402
from peers import ModelSpec  # noqa: E402
from provenance import Provenance  # noqa: E402
from run import make_step  # noqa: E402


def _shift_only(self, inputs, params, inverse):
    """The floor's stand-in for the spline: uses every parameter, does (almost) nothing."""
    shift = params.reshape(inputs.shape[0], 3 * self.bins - 1, inputs.shape[1]).mean(dim=1)
    out = inputs - shift if inverse else inputs + shift
    return out, inputs.new_zeros(inputs.shape[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true",
                   help="compile each model's loss with torch.compile (inductor)")
    args = p.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (5 if args.quick else 25)
    spec = ModelSpec(features=64, couplings=8, hidden=(256, 256), bins=8, bound=3.0)
    models = {
        "bare affine": build("bare", "affine", spec, seed=0),
        "flowlab spline": build("flowlab", "spline", spec, seed=0),
        "conditioner only": build("flowlab", "spline", spec, seed=0),
    }
    from flowlab.transforms.splines import RQSplineCoupling

    for layer in models["conditioner only"].module.modules():
        if isinstance(layer, RQSplineCoupling):
            layer._spline = types.MethodType(_shift_only, layer)
    x = torch.randn(256, spec.features, generator=torch.Generator().manual_seed(0))
    variant = "compile" if args.compile else "eager"
    steps = {k: make_step(c, x, variant) for k, c in models.items()}
    times = interleaved_times(steps, rounds=rounds, inner=4, warmup=3,
                              device=torch.device("cpu"), time_budget=600.0)
    base = times["bare affine"]
    lines = [
        "# Spline coupling step: the floor set by the conditioner"
        + (" (torch.compile)" if args.compile else ""),
        "",
        started.line(),
        "",
        f"{rounds} alternating rounds x 4 steps, {args.threads} thread(s).  64-d, 8 couplings, "
        "2x256 MLPs, batch 256, K = 8 bins, Adam.",
        "",
        "| model | parameters | median step (ms) | ratio to bare affine, median [IQR] |",
        "| --- | ---: | ---: | --- |",
    ]
    for label, c in models.items():
        r = paired_ratio(times[label], base)
        lines.append(f"| {label} | {c.n_params:,} | {1e3 * summarize(times[label])['median']:.2f} "
                     f"| **{r['median']:.3f}** [{r['q1']:.3f}-{r['q3']:.3f}] |")
    floor = paired_ratio(times["conditioner only"], base)["median"]
    spline = paired_ratio(times["flowlab spline"], base)["median"]
    lines += [
        "",
        f"The spline arithmetic itself costs {spline - floor:.2f} bare-affine steps on top of "
        f"the conditioner's floor of {floor:.2f}; the target 3x leaves it {3 - floor:.2f}.",
        "",
    ]
    out = HERE / "results" / ("spline_floor-compile.md" if args.compile else "spline_floor.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
