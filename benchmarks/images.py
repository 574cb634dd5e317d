#!/usr/bin/env python
r"""Image-flow benchmarks: bits/dim under a fixed CPU budget, and training-step speed.

    python benchmarks/images.py                  # full run (5 CPU-minutes per model; ~25 min)
    python benchmarks/images.py --quick          # smoke run, under a minute
    python benchmarks/images.py --budget 120 --parts a,c

Parts:

``a``  8x8 digits (17 levels, 1,438 train / 359 test): flowlab's multi-scale RealNVP
       (convolutional) against flowlab's flat 64-d RealNVP (MLP couplings), both with the same
       preprocessing inside the flow (uniform dequantization, logit with alpha = 0.05) and the
       same **CPU-time** budget; test bits/dim and sample grids.  (The flat model is
       skipped if ``flowlab.models.realnvp`` is missing.)
``b``  MNIST-5k (28x28, 256 levels, 4,000 train / 1,000 test): the multi-scale model after a
       fixed CPU budget; test bits/dim and a sample grid.
``c``  time of one forward + backward pass (the NLL and its gradient) of Glow and of the
       multi-scale model on a batch of 64 images of 1x28x28 and of 3x32x32 (random levels:
       speed does not depend on the data).

Bits/dim is :math:`-\log p(x)/(D\log 2)` with ``log_prob`` of the whole flow, which includes
the dequantizer's :math:`-D\log K` (:func:`flowlab.metrics.bits_per_dim` with
``num_levels=None``); the test value averages 4 dequantization draws per image (1 with
``--quick``).  The CPU budget is measured with ``time.process_time()`` (CPU seconds of all
threads of this process), so that a loaded machine slows training down without shortening it.
``log2 K`` (4.09 for the digits, 8 for MNIST) is what a model that learnt nothing would score.

Results: ``<out>/images.md`` (tables) and ``<out>/images_*.png`` (sample grids); ``--out``
defaults to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flowlab.data.images import ImageData, load_digits, load_mnist5k  # noqa: E402
from flowlab.distributions import StandardNormal  # noqa: E402
from flowlab.flow import Flow  # noqa: E402
from flowlab.metrics import dataset_bits_per_dim  # noqa: E402
from flowlab.models.glow import glow  # noqa: E402
from flowlab.models.multiscale import multiscale_realnvp  # noqa: E402
from flowlab.plots.images import real_vs_generated  # noqa: E402
from flowlab.transforms.dequantize import LogitTransform, UniformDequantization  # noqa: E402


@dataclass
class Run:
    """The outcome of one time-budgeted training run."""

    model: str
    params: int
    steps: int
    cpu_s: float
    wall_s: float
    train_bpd: float
    test_bpd: float
    figure: str


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flat_realnvp(num_levels: int, dims: int) -> Flow | None:
    """flowlab's 64-d RealNVP behind the same dequantization + logit as the image models."""
    try:
        from flowlab.models.realnvp import realnvp
    except ImportError:
        return None
    inner = realnvp(dims, couplings=8, hidden=(256, 256), validate=False)
    layers = [
        UniformDequantization(num_levels, validate=False),
        LogitTransform(0.05),
        inner.transform,
    ]
    return Flow(StandardNormal(dims), layers, validate=False)


def train_for(
    flow: Flow,
    train: torch.Tensor,
    test: torch.Tensor,
    cpu_budget: float,
    *,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    eval_repeats: int = 4,
) -> tuple[int, float, float, float, float]:
    """Adam on random batches until ``cpu_budget`` CPU seconds are spent.

    Returns (steps, cpu seconds, wall seconds, train bits/dim, test bits/dim).
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    flow.train()
    steps, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    while time.process_time() - cpu0 < cpu_budget:
        idx = torch.randint(0, train.shape[0], (batch_size,), generator=gen)
        loss = flow.nll(train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
        opt.step()
        steps += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    flow.eval()
    n_train = min(train.shape[0], test.shape[0])
    train_bpd = dataset_bits_per_dim(flow.log_prob, train[:n_train], repeats=eval_repeats)
    test_bpd = dataset_bits_per_dim(flow.log_prob, test, repeats=eval_repeats)
    return steps, cpu, wall, train_bpd, test_bpd


def save_samples(
    flow: Flow, real: torch.Tensor, shape: tuple[int, ...], data: ImageData, path: Path, title: str
) -> str:
    torch.manual_seed(0)
    with torch.no_grad():
        fake = flow.sample(64).reshape(64, *shape)
    fig = real_vs_generated(
        real[:64].reshape(-1, *shape),
        fake,
        nrow=8,
        num_levels=data.num_levels,
        titles=("test images", title),
    )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path.name


def part_a(budget: float, out: Path, quick: bool) -> list[Run]:
    train_d, test_d = load_digits("train"), load_digits("test")
    shape, k = train_d.shape, train_d.num_levels
    train, test = train_d.float(), test_d.float()
    runs = []
    torch.manual_seed(0)
    hidden = 16 if quick else 64
    models = {
        "multi-scale RealNVP (conv)": (
            multiscale_realnvp(
                shape, k, scales=2, hidden_channels=hidden, blocks=2, validate=False
            ),
            False,
        )
    }
    flat = flat_realnvp(k, train_d.dims)
    if flat is not None:
        models["flat RealNVP (64-d MLP)"] = (flat, True)
    for name, (flow, is_flat) in models.items():
        tr = train.reshape(len(train), -1) if is_flat else train
        te = test.reshape(len(test), -1) if is_flat else test
        steps, cpu, wall, tr_bpd, te_bpd = train_for(
            flow, tr, te, budget, eval_repeats=1 if quick else 4
        )
        tag = "flat" if is_flat else "multiscale"
        fig = save_samples(flow, test, shape, train_d, out / f"images_digits_{tag}.png", name)
        runs.append(Run(name, count_params(flow), steps, cpu, wall, tr_bpd, te_bpd, fig))
        print(f"[a] {name}: {steps} steps, test {te_bpd:.3f} bits/dim", flush=True)
    if flat is None:
        print("[a] flowlab.models.realnvp not available: flat model skipped", flush=True)
    return runs


def part_b(budget: float, out: Path, quick: bool) -> list[Run]:
    train_d, test_d = load_mnist5k("train"), load_mnist5k("test")
    torch.manual_seed(0)
    hidden = 16 if quick else 64
    flow = multiscale_realnvp(
        train_d.shape, 256, scales=3, hidden_channels=hidden, blocks=2, validate=False
    )
    test = test_d.float()[: 200 if quick else None]
    steps, cpu, wall, tr_bpd, te_bpd = train_for(
        flow, train_d.float(), test, budget, eval_repeats=1 if quick else 4
    )
    name = "multi-scale RealNVP (conv)"
    fig = save_samples(flow, test, train_d.shape, train_d, out / "images_mnist5k.png", name)
    print(f"[b] MNIST-5k: {steps} steps, test {te_bpd:.3f} bits/dim", flush=True)
    return [Run(name, count_params(flow), steps, cpu, wall, tr_bpd, te_bpd, fig)]


def part_c(reps: int, quick: bool) -> list[dict]:
    rows = []
    for shape in [(1, 28, 28), (3, 32, 32)]:
        models = {
            "Glow": glow(
                shape,
                256,
                levels=2,
                steps=4 if quick else 8,
                hidden_channels=32 if quick else 128,
                validate=False,
            ),
            "multi-scale RealNVP": multiscale_realnvp(
                shape, 256, scales=3, hidden_channels=16 if quick else 64, blocks=2, validate=False
            ),
        }
        x = torch.randint(0, 256, (64, *shape)).float()
        for name, flow in models.items():
            flow.nll(x)  # ActNorm initialisation and warm-up
            times = []
            for _ in range(reps):
                flow.zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                flow.nll(x).backward()
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "model": name,
                    "shape": "x".join(map(str, shape)),
                    "params": count_params(flow),
                    "median_ms": 1000 * statistics.median(times),
                    "min_ms": 1000 * min(times),
                    "reps": reps,
                }
            )
            print(f"[c] {name} {shape}: {rows[-1]['median_ms']:.0f} ms", flush=True)
    return rows


def write_report(path: Path, args, a, b, c, elapsed: float) -> None:
    mode = "quick (smoke test: tiny nets, seconds of training)" if args.quick else "full"
    lines = [
        "# Image flows: bits/dim and speed",
        "",
        f"Produced by `python benchmarks/images.py{' --quick' if args.quick else ''}` "
        f"(mode: {mode}); {time.strftime('%Y-%m-%d %H:%M')}, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"total {elapsed:.0f} s.  Method and definitions: the docstring of "
        "`benchmarks/images.py`.",
        "",
    ]
    for title, runs, ref in [
        (f"## (a) 8x8 digits, {args.budget_a:.0f} CPU-s per model", a, math.log2(17)),
        (f"## (b) MNIST-5k, {args.budget_b:.0f} CPU-s", b, 8.0),
    ]:
        if runs is None:
            continue
        lines += [
            title,
            "",
            f"Uniform model: {ref:.3f} bits/dim.",
            "",
            "| model | params | steps | CPU s | wall s | train bpd | test bpd | samples |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in runs:
            lines.append(
                f"| {r.model} | {r.params:,} | {r.steps} | {r.cpu_s:.0f} | {r.wall_s:.0f} "
                f"| {r.train_bpd:.3f} | {r.test_bpd:.3f} | [{r.figure}]({r.figure}) |"
            )
        lines.append("")
    if c is not None:
        lines += [
            "## (c) forward + backward, batch 64",
            "",
            "| model | image | params | median ms | min ms | reps |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in c:
            lines.append(
                f"| {r['model']} | {r['shape']} | {r['params']:,} | "
                f"{r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['reps']} |"
            )
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    p.add_argument(
        "--budget",
        type=float,
        default=300.0,
        help="CPU seconds of training per model in (a) and (b) (default 300)",
    )
    p.add_argument("--parts", default="a,b,c", help="comma-separated subset of a,b,c")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions in (c)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 with --quick, which is much "
        "faster than several threads on a machine that other jobs keep busy)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.budget, args.reps = min(args.budget, 3.0), min(args.reps, 2)
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    args.budget_a = args.budget_b = args.budget
    parts = set(args.parts.split(","))
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    a = part_a(args.budget, args.out, args.quick) if "a" in parts else None
    b = part_b(args.budget, args.out, args.quick) if "b" in parts else None
    c = part_c(args.reps, args.quick) if "c" in parts else None
    write_report(args.out / "images.md", args, a, b, c, time.perf_counter() - t0)
    print(f"wrote {args.out / 'images.md'}")


if __name__ == "__main__":
    main()
