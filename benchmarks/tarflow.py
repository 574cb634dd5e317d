#!/usr/bin/env python
r"""TarFlow against Glow and the multi-scale RealNVP at equal CPU time, on the digits (or MNIST-5k).

    nice -n 10 python benchmarks/tarflow.py --data digits --budget 180
    python benchmarks/tarflow.py --quick                 # smoke run, about a minute

Every model is trained with :class:`flowlab.train.Trainer` (AdamW, warm-up + cosine, gradient
clipping, batch 64, lr 1e-3, one torch thread) for the number of steps that its *measured*
CPU time per step fits in the budget: 10 steps of a throw-away copy are timed first with
``time.process_time()``, then ``steps = budget / (CPU s per step)``.  The CPU seconds actually
spent are reported.  10 % of the training images (stratified by label) are held out by the
Trainer (``val_fraction=0.1``); the weights with the best validation bits/dim (evaluated 10
times per run) are the ones scored on the test set, once.  Bits/dim are
:math:`-\log p(x)/(D \log 2)` of the whole flow, whose uniform dequantization already holds the
:math:`-D\log K`; they sit next to the uniform and per-pixel-histogram baselines.

Results: ``benchmarks/results/tarflow-<data>.md`` and ``tarflow-<data>.png`` (samples).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flowlab.data.images import load_digits, load_mnist5k  # noqa: E402
from flowlab.metrics import histogram_bits_per_dim, uniform_bits_per_dim  # noqa: E402
from flowlab.models.glow import Glow  # noqa: E402
from flowlab.models.multiscale import MultiScaleFlow  # noqa: E402
from flowlab.models.tarflow import TarFlow  # noqa: E402
from flowlab.train import Trainer  # noqa: E402
from provenance import Provenance  # noqa: E402


def models(data: str, quick: bool) -> dict[str, torch.nn.Module]:
    # The margins of the committed results (Glow none, the multi-scale RealNVP 0.05); both
    # models now default to 1e-6 (benchmarks/NOTES.md 8k).
    h = 16 if quick else 64
    if data == "digits":
        shape, k = (1, 8, 8), 17
        return {
            "TarFlow (4 blocks x 2 layers, width 64, 2x2 patches)": TarFlow(
                shape, k, patch_size=2, blocks=4, width=32 if quick else 64, depth=2, heads=4,
                noise_std=0.02, validate=False),
            "Glow (2 levels x 4 steps, 64 ch)": Glow(
                shape, k, levels=2, steps=4, hidden_channels=h, logit_alpha=None,
                validate=False),
            "multi-scale RealNVP (2 scales, 64 ch)": MultiScaleFlow(
                shape, k, scales=2, hidden_channels=h, blocks=2, logit_alpha=0.05,
                validate=False),
        }
    shape, k = (1, 28, 28), 256
    return {
        "TarFlow (4 blocks x 2 layers, width 128, 4x4 patches)": TarFlow(
            shape, k, patch_size=4, blocks=4, width=32 if quick else 128, depth=2, heads=4,
            noise_std=0.02, validate=False),
        "Glow (2 levels x 8 steps, 64 ch)": Glow(
            shape, k, levels=2, steps=8, hidden_channels=h, logit_alpha=None,
            validate=False),
        "multi-scale RealNVP (3 scales, 64 ch)": MultiScaleFlow(
            shape, k, scales=3, hidden_channels=h, blocks=2, logit_alpha=0.05,
            validate=False),
    }


def cpu_per_step(model: torch.nn.Module, x: torch.Tensor, steps: int = 10) -> float:
    m = copy.deepcopy(model)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    m.nll(x[torch.randint(0, len(x), (64,), generator=g)]).backward()  # warm-up (ActNorm init)
    t0 = time.process_time()
    for _ in range(steps):
        loss = m.nll(x[torch.randint(0, len(x), (64,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.process_time() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", choices=["digits", "mnist5k"], default="digits")
    ap.add_argument("--budget", type=float, default=180.0, help="CPU seconds per model")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    started = Provenance.for_script(__file__)
    torch.set_num_threads(1)
    budget = 10.0 if args.quick else args.budget
    load = load_digits if args.data == "digits" else load_mnist5k
    train_d, test_d = load("train"), load("test")
    train, test = train_d.float(), test_d.float()
    if args.quick:
        test = test[:200]
    k = train_d.num_levels
    base = {
        "uniform": uniform_bits_per_dim(k),
        "histogram": histogram_bits_per_dim(train_d.images, test_d.images[: len(test)], num_levels=k),
    }
    rows, samples = [], {}
    for name, model in models(args.data, args.quick).items():
        torch.manual_seed(0)
        per_step = cpu_per_step(model, train)
        steps = max(20, int(budget / per_step))
        params = sum(p.numel() for p in model.parameters())
        trainer = Trainer(
            model, torch.utils.data.TensorDataset(train, train_d.labels), test,
            steps=steps, batch_size=64, lr=1e-3, warmup_steps=min(100, steps // 10),
            val_fraction=0.1, eval_every=max(1, steps // 10), log_every=max(1, steps // 10),
            checkpoint_every=10**9, sample_every=0, run_dir=None, progress=False, seed=0,
            device="cpu",
        )
        cpu0, wall0 = time.process_time(), time.perf_counter()
        trainer.fit()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        result = trainer.test_result or {}
        test_bpd = result.get("bits_per_dim", float("nan"))
        torch.manual_seed(0)
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            samples[name] = model.sample(64)
        sample_s = time.perf_counter() - t0
        rows.append((name, params, steps, per_step, cpu, wall, result.get("selected_step"),
                     test_bpd, 64 / sample_s))
        print(f"{name}: {steps} steps, {cpu:.0f} CPU-s, test {test_bpd:.3f} bits/dim "
              f"(selected step {result.get('selected_step')})", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = args.data + ("-quick" if args.quick else "")
    figure = args.out / f"tarflow-{tag}.png"
    from matplotlib.figure import Figure

    from flowlab.plots.images import sample_grid

    fig = Figure(figsize=(7, 2.6))
    for ax, (name, imgs) in zip(fig.subplots(1, len(samples)), samples.items()):
        sample_grid(imgs, 8, num_levels=k, title=name.split(" (")[0], ax=ax)
    fig.savefig(figure, dpi=100, bbox_inches="tight")
    lines = [
        f"# TarFlow vs Glow vs multi-scale RealNVP, {args.data}, equal CPU time",
        "",
        started.line(),
        "",
        f"Budget {budget:g} CPU-s per model, 1 thread.  Method: the docstring of "
        "`benchmarks/tarflow.py` (Trainer, val_fraction 0.1, best-on-validation weights "
        "scored once on the test set).",
        "",
        f"Budget: {budget:g} CPU-s per model.  Baselines on the test set: uniform "
        f"{base['uniform']:.3f} bits/dim, independent per-pixel histogram "
        f"{base['histogram']:.3f} bits/dim.",
        "",
        "| model | params | steps | CPU s/step | CPU s | wall s | selected step | test bpd "
        "| samples/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, params, steps, per_step, cpu, wall, sel, bpd, sps in rows:
        lines.append(f"| {name} | {params:,} | {steps} | {per_step:.3f} | {cpu:.0f} | {wall:.0f} "
                     f"| {sel} | {bpd:.3f} | {sps:.1f} |")
    lines += ["", f"Samples (64 per model, TarFlow denoised): [{figure.name}]({figure.name})", ""]
    (args.out / f"tarflow-{tag}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
