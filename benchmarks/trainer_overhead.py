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

    OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py            # full: 10 x 300 steps
    OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py --quick    # < 1 min: 5 x 40 steps

Writes benchmarks/results/trainer_overhead.md (``--out FILE`` writes elsewhere, e.g. to
measure another checkout: ``PYTHONPATH=benchmarks /other/.venv/bin/python
benchmarks/trainer_overhead.py --out /tmp/before.md`` imports that checkout's flowlab).  Each
loop reports its steps per wall second and its CPU milliseconds per step
(:func:`time.process_time`, all threads of this process): on a shared machine the CPU time
is the steadier figure, the wall time the one a user waits for.
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


class Timer:
    """Wall and CPU seconds of a block (``with Timer() as t: ...``; ``t.wall``, ``t.cpu``)."""

    def __enter__(self) -> "Timer":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def bare_loop(data: torch.Tensor, steps: int, seed: int,
              fused: bool | None = True) -> tuple[float, float]:
    """Steps per wall second and CPU milliseconds per step of a hand-written loop."""
    torch.manual_seed(seed)
    model = realnvp(2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused)
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(data), generator=gen)
    per_epoch = len(data) // BATCH
    with Timer() as t:
        for step in range(steps):
            k = step % per_epoch
            if k == 0 and step:
                order = torch.randperm(len(data), generator=gen)
            x = data[order[k * BATCH : (k + 1) * BATCH]]
            loss = -model.log_prob(x).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return steps / t.wall, 1e3 * t.cpu / steps


def trainer_loop(data: torch.Tensor, steps: int, seed: int, run_dir: str | None,
                 **kw) -> tuple[float, float]:
    """The same as :func:`bare_loop` through ``Trainer.fit`` (public API only)."""
    torch.manual_seed(seed)
    model = realnvp(2)
    cfg = TrainConfig(steps=steps, batch_size=BATCH, lr=1e-3, warmup_steps=0, grad_clip=0.0,
                      run_dir=run_dir, progress=False, sample_every=0, log_every=50, seed=seed,
                      checkpoint_every=10**9, device="cpu", **kw)
    trainer = Trainer(model, data, None, cfg)
    trainer.prepare()  # run folder, initialisation pass: not part of the step rate
    with Timer() as t:
        trainer.fit()
    return steps / t.wall, 1e3 * t.cpu / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 x 40 steps (< 1 min on an idle machine)")
    parser.add_argument("--reps", type=int, help="interleaved repetitions")
    parser.add_argument("--steps", type=int, help="steps per repetition")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"result file (default: {RESULTS.relative_to(RESULTS.parents[2])})")
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
    med = statistics.median
    b, t, d = (med(r[0] for r in runs) for runs in (bare, trainer, default))
    bc, tc, dc = (med(r[1] for r in runs) for runs in (bare, trainer, default))
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
        "| loop | median steps/s (wall) | median CPU ms/step | steps/s of each repetition |",
        "| --- | ---: | ---: | --- |",
        f"| bare PyTorch, fused AdamW | {b:.1f} | {bc:.3f} | {_each(bare)} |",
        f"| flowlab Trainer (fused AdamW) | {t:.1f} | {tc:.3f} | {_each(trainer)} |",
        f"| bare PyTorch, default AdamW | {d:.1f} | {dc:.3f} | {_each(default)} |",
        "",
        f"Trainer / bare (same optimiser) = **{ratio:.3f}** in wall steps/s (target >= 0.95): "
        f"{'met' if ok else 'NOT met'}; in CPU time per step, bare / Trainer = {bc / tc:.3f}.",
        f"Trainer / bare with PyTorch's default AdamW = {t / d:.3f} (what the fused optimiser "
        "gains; not the overhead measure).",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def _each(runs: list[tuple[float, float]]) -> str:
    return ", ".join(f"{steps_per_s:.0f}" for steps_per_s, _ in runs)


if __name__ == "__main__":
    sys.exit(main())
