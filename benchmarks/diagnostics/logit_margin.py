r"""The logit's margin :math:`\alpha` at the book's live budget: validation bits/dim per margin.

``python benchmarks/logit_margin.py`` trains the book's live image models (chapter 7's MNIST-5k
Glow, 450 steps; chapter 7's digits Glow, 1,200 steps; chapter 6's digits RealNVP, 1,500
steps; all as in the chapters, seed 0, 1 thread) once per margin and prints each run's best
validation score (the trainer's stratified 10 % of the training images).  The test split is
never scored: this chooses a setting.

A black pixel's dequantization cell :math:`[0, 1/K)` is :math:`\log(1 + 1/(K\alpha))` wide
after the logit; with :math:`K = 256` and :math:`\alpha = 0.05` that is a sliver of 0.07 the
flow must stretch, with :math:`10^{-6}` it is 8.3 (``benchmarks/NOTES.md``, 8k).

Example (a smoke run, seconds)::

    python benchmarks/logit_margin.py --models digits-glow --alphas 0.05,1e-6 --steps 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from flowlab.data.images import load_digits, load_mnist5k
from flowlab.models.glow import Glow
from flowlab.models.multiscale import MultiScaleFlow
from flowlab.train import Trainer
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from provenance import Provenance  # noqa: E402

#: name -> (data loader, builder(alpha), live steps, validations per run, size of the batch
#: that initialises ActNorm), as in the chapters
MODELS = {
    "mnist-glow": (load_mnist5k, lambda a: Glow((1, 28, 28), 256, levels=2, steps=8,
                                                hidden_channels=128, logit_alpha=a), 450, 6, 256),
    "digits-glow": (load_digits, lambda a: Glow((1, 8, 8), 17, levels=2, steps=8,
                                                hidden_channels=128, logit_alpha=a,
                                                dequantization="variational"), 1200, 12, 512),
    "digits-realnvp": (load_digits, lambda a: MultiScaleFlow(
        (1, 8, 8), 17, scales=2, hidden_channels=32, blocks=1, dequantization="variational",
        logit_alpha=a), 1500, 12, 512),
}


def parse_alpha(text: str) -> float | None:
    return None if text.strip().lower() == "none" else float(text)


def run(name: str, alpha: float | None, steps: int | None = None) -> dict:
    """One live run of ``name`` with margin ``alpha``: best validation bits/dim, CPU seconds."""
    load, build, full_steps, evals, init = MODELS[name]
    steps = steps or full_steps
    x_train = load("train").images.float()
    torch.manual_seed(0)
    model = build(alpha)
    cpu0 = time.process_time()
    with torch.no_grad():   # ActNorm's data-dependent initialisation (Glow); same RNG for all
        model.log_prob(x_train[:init])
    trainer = Trainer(model, x_train, None, steps=steps, batch_size=64, lr=1e-3,
                      warmup_steps=min(100, steps // 10), ema_decay=0.995, run_dir=None,
                      progress=False, sample_every=0, eval_every=max(steps // evals, 1),
                      log_every=max(steps // evals, 1), seed=0)
    trainer.fit()
    return {"model": name, "alpha": alpha, "steps": steps, "val": trainer.best_score,
            "cpu_s": time.process_time() - cpu0}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--alphas", default="0.05,1e-6",
                   help="comma-separated margins ('none': no logit)")
    p.add_argument("--steps", type=int, default=None, help="override the live steps (smoke runs)")
    p.add_argument("--out", type=Path, default=None, help="also write a Markdown table here")
    args = p.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    torch.set_num_threads(1)
    names = [m for m in args.models.split(",") if m]
    unknown = set(names) - set(MODELS)
    if unknown:
        p.error(f"unknown model(s) {sorted(unknown)}; choose among {', '.join(MODELS)}")
    rows = []
    for name in names:
        for alpha in (parse_alpha(a) for a in args.alphas.split(",") if a):
            rows.append(run(name, alpha, args.steps))
            r = rows[-1]
            print(f"{name:15s} alpha {str(alpha):6s} steps {r['steps']:5d}  best validation "
                  f"{r['val']:.4f} bits/dim  ({r['cpu_s']:.0f} CPU-s)", flush=True)
    if args.out:
        lines = [started.line(), "",
                 "| model | alpha | steps | best validation bits/dim | CPU s |",
                 "| --- | --- | ---: | ---: | ---: |"]
        lines += [f"| {r['model']} | {r['alpha']} | {r['steps']} | {r['val']:.4f} | "
                  f"{r['cpu_s']:.0f} |" for r in rows]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
