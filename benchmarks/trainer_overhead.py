"""Trainer overhead: steps/s of flowlab's Trainer against a bare PyTorch loop.

Both train the same model (``realnvp(2)``) on the same data (two moons) with the same
optimiser (PyTorch's fused AdamW, the Trainer's choice on CPU and CUDA), the same batches
(indexing an in-memory tensor) and no gradient clipping; the Trainer keeps all its bookkeeping
on (finiteness guard on the loss and gradient norm with one synchronisation per step, LR
schedule, CSV logging every 50 steps, a final checkpoint).  A third loop, the bare loop with
PyTorch's default AdamW (what a hand-written loop usually uses), shows what the fused
optimiser gains; it is reported, not part of the overhead ratio.  Repetitions are interleaved (bare, trainer, bare, trainer, ...) so that a
change in machine load hits both, and the medians are compared.  Target: the Trainer within 5 %
of the bare loop.

    python benchmarks/trainer_overhead.py            # full: 10 x 300 steps
    python benchmarks/trainer_overhead.py --quick    # < 1 min: 5 x 40 steps

Writes benchmarks/results/trainer_overhead.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from flowlab.data.toy2d import toy_dataset
from provenance import Provenance  # noqa: E402
from flowlab.models.realnvp import realnvp
from flowlab.train import TrainConfig, Trainer

RESULTS = Path(__file__).parent / "results" / "trainer_overhead.md"
BATCH = 256


def bare_loop(data: torch.Tensor, steps: int, seed: int, fused: bool | None = True) -> float:
    torch.manual_seed(seed)
    model = realnvp(2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=gen)
    per_epoch = len(data) // BATCH
    start = time.perf_counter()
    for step in range(steps):
        k = step % per_epoch
        if k == 0 and step:
            order = torch.randperm(len(data), generator=gen)
        x = data[order[k * BATCH : (k + 1) * BATCH]]
        loss = -model.log_prob(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - start)


def trainer_loop(data: torch.Tensor, steps: int, seed: int, run_dir: str | None, **kw) -> float:
    torch.manual_seed(seed)
    model = realnvp(2)
    cfg = TrainConfig(steps=steps, batch_size=BATCH, lr=1e-3, warmup_steps=0, grad_clip=0.0,
                      run_dir=run_dir, progress=False, sample_every=0, log_every=50, seed=seed,
                      checkpoint_every=10**9, device="cpu", **kw)
    trainer = Trainer(model, data, None, cfg)
    trainer.prepare()  # run folder, initialisation pass: not part of the step rate
    start = time.perf_counter()
    trainer.fit()
    elapsed = time.perf_counter() - start
    return steps / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 x 40 steps (< 1 min on an idle machine)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions")
    parser.add_argument("--steps", type=int, help="steps per repetition")
    args = parser.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    reps = args.reps or (5 if args.quick else 10)
    steps = args.steps or (40 if args.quick else 300)
    data = toy_dataset("two_moons", 8192, seed=0)

    bare_loop(data, 10, 0)  # warm-up (allocator, kernels)
    bare, trainer, default = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            bare.append(bare_loop(data, steps, rep))
            trainer.append(trainer_loop(data, steps, rep, f"{tmp}/run{rep}"))
            default.append(bare_loop(data, steps, rep, fused=None))
    b, t, d = statistics.median(bare), statistics.median(trainer), statistics.median(default)
    ratio = t / b
    ok = ratio >= 0.95
    lines = [
        "# Trainer overhead",
        "",
        started.line(),
        "",
        f"Model `realnvp(2)` on two moons, batch {BATCH}, fused AdamW, {steps} steps per repetition, "
        f"{reps} interleaved repetitions; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"Python {sys.version.split()[0]}.",
        "",
        "| loop | median steps/s | all repetitions |",
        "| --- | ---: | --- |",
        f"| bare PyTorch, fused AdamW | {b:.1f} | {', '.join(f'{v:.0f}' for v in bare)} |",
        f"| flowlab Trainer (fused AdamW) | {t:.1f} | {', '.join(f'{v:.0f}' for v in trainer)} |",
        f"| bare PyTorch, default AdamW | {d:.1f} | {', '.join(f'{v:.0f}' for v in default)} |",
        "",
        f"Trainer / bare (same optimiser) = **{ratio:.3f}** (target >= 0.95): "
        f"{'met' if ok else 'NOT met'}.",
        f"Trainer / bare with PyTorch's default AdamW = {t / d:.3f} (what the fused optimiser "
        "gains; not the overhead measure).",
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
