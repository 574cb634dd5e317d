"""CPU cost of the book's live trainings: seconds per step on one thread, times the full steps.

Every training the book runs while it builds is rebuilt here with the chapter's configuration
(model, batch size, optimiser) and timed for a few steps on one thread (``time.process_time``,
after one warm-up step), so that a chapter's full-mode cost can be estimated without building
the full book::

    OMP_NUM_THREADS=1 python benchmarks/book_budget.py [--steps 8] [--out benchmarks/results]

The estimate is ``steps x CPU-s/step``: it leaves out the validations, the importance-weighted
evaluations and the figures, which the table's last column lists per cell.  A *cell* of the book
must stay within a few CPU-minutes (issue 30: a busy 2-core machine ran one 30-minute cell past
the build's per-cell limit); the table says which cell each training lives in.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _step_cost(model: torch.nn.Module, batch, loss_fn, steps: int, lr: float = 1e-3) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn(model, batch()).backward()          # warm-up; ActNorm's data-dependent init
    opt.zero_grad()
    t0 = time.process_time()
    for _ in range(steps):
        loss = loss_fn(model, batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.process_time() - t0) / steps


def runs():
    """(chapter, cell, what, full steps, model builder, batch maker, loss)."""
    from flowlab.data.images import load_digits, load_mnist5k
    from flowlab.data.toy2d import toy_dataset, two_moons
    from flowlab.models.conditional import ClassConditionalFlow
    from flowlab.models.glow import Glow
    from flowlab.models.maf import maf
    from flowlab.models.multiscale import MultiScaleFlow
    from flowlab.models.realnvp import realnvp
    from flowlab.models.tarflow import TarFlow
    from flowlab.models.vae import VAE

    moons = two_moons(8000, seed=0)
    toy = toy_dataset("checkerboard", 20_000, seed=0)
    digits = load_digits("train")
    xd, yd = digits.images.float(), digits.labels
    mnist = load_mnist5k("train").images.float()
    K = digits.num_levels

    def pick(x, n):
        return lambda: x[torch.randint(0, len(x), (n,))]

    nll = lambda m, b: m.nll(b) if hasattr(m, "nll") else -m.log_prob(b).mean()
    vae_loss = lambda m, b: m.loss(b)
    deq = lambda: ((pick(xd, 64)() + torch.rand(64, 1, 8, 8)) / K).flatten(1)
    return [
        ("01", "VAE on two moons", 4000, lambda: VAE(features=2, latent=1, hidden=(64, 64)),
         pick(moons, 256), vae_loss),
        ("03", "8 affine couplings, two moons", 3000,
         lambda: realnvp(2, kind="affine", couplings=8, hidden=(64, 64)), pick(moons, 256), nll),
        ("05", "one of 6 toy RealNVPs (spline, the dearest)", 1200,
         lambda: realnvp(2, kind="spline"), pick(toy, 256), nll),
        ("06", "multi-scale RealNVP, digits", 1500,
         lambda: MultiScaleFlow((1, 8, 8), num_levels=K, scales=2, hidden_channels=32, blocks=1,
                                dequantization="variational", logit_alpha=0.05),
         pick(xd, 64), nll),
        ("07", "multi-scale RealNVP, digits", 1500,
         lambda: MultiScaleFlow((1, 8, 8), num_levels=K, scales=2, hidden_channels=32, blocks=1,
                                dequantization="variational", logit_alpha=0.05),
         pick(xd, 64), nll),
        ("07", "Glow 2x8, 128 ch, digits", 1200,
         lambda: Glow((1, 8, 8), num_levels=K, levels=2, steps=8, hidden_channels=128,
                      logit_alpha=0.05, dequantization="variational"), pick(xd, 64), nll),
        ("07", "Glow 2x8, 128 ch, MNIST-5k (one margin)", 450,
         lambda: Glow((1, 28, 28), num_levels=256, levels=2, steps=8, hidden_channels=128,
                      logit_alpha=1e-6), pick(mnist, 64), nll),
        ("08", "VAE 64-8, digits", 3000,
         lambda: VAE(features=64, latent=8, hidden=(256, 256), init_log_std=-2.0), deq, vae_loss),
        ("09", "one of 4 toy flows (MAF)", 1500, lambda: maf(2, transforms=8, hidden=(64, 64)),
         pick(toy, 256), nll),
        ("09", "class-conditional MAF", 1000,
         lambda: ClassConditionalFlow(transforms=5, hidden=(256, 256)),
         lambda: (lambda i: (xd[i], yd[i]))(torch.randint(0, len(xd), (128,))),
         lambda m, b: -m.log_prob(b[0], labels=b[1]).mean()),
        ("09", "TarFlow 4x2, width 64, digits", 2500,
         lambda: TarFlow((1, 8, 8), K, patch_size=2, blocks=4, width=64, depth=2, heads=4,
                         noise_std=0.05), pick(xd, 64), nll),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per model")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for chapter, what, full, build, batch, loss in runs():
        torch.manual_seed(0)
        per = _step_cost(build(), batch, loss, args.steps)
        rows.append((chapter, what, full, per, full * per / 60))
        print(f"ch {chapter} {what:45s} {per:.4f} CPU-s/step x {full} = {full * per / 60:.1f} CPU-min",
              flush=True)
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = [
        "# The book's live trainings: CPU cost per step (one thread)",
        "",
        f"Produced by `OMP_NUM_THREADS=1 python benchmarks/book_budget.py --steps {args.steps}`; "
        f"{stamp}, torch {torch.__version__}, {platform.machine()}, 1 thread, load average "
        f"{' '.join(load)} (a shared 2-core machine).  CPU time (`process_time`), so a busy "
        "machine stretches the wall time, not these numbers.  The estimate leaves out "
        "validation, importance-weighted evaluation and figures.",
        "",
        "| chapter | training | full steps | CPU s/step | est. CPU min (full) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    text += [f"| {c} | {w} | {s} | {p:.4f} | {m:.1f} |" for c, w, s, p, m in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "book_budget.md").write_text("\n".join(text) + "\n")
    print(f"wrote {args.out / 'book_budget.md'}")


if __name__ == "__main__":
    main()
