"""Which weights should a short run keep: the moving average (EMA) or the trained ones?

The trainer keeps the best-on-validation weights.  With an EMA it used to score only the
average; since session 7 it scores the raw weights too and keeps the better (``select_raw``).
This script trains the book's two live image models twice with the same seed, once with
``select_raw=False`` (EMA only) and once with the default, so that the two runs see the same
batches and differ only in what they select:

* chapter 6: the multi-scale RealNVP on the 8x8 digits (variational dequantization,
  1,500 steps, EMA 0.995);
* chapter 7: the live Glow on MNIST-5k (2 x 8 steps, 450 steps, EMA 0.995).

For each it prints the validation curve of both weight sets, the step and the weights each
policy selects, and the test bits/dim of what it selected (scored once per run, at the end, as
the trainer always does; the test set chooses nothing).

    OMP_NUM_THREADS=1 python benchmarks/ema_or_raw.py --out benchmarks/results/ema_or_raw.md
    python benchmarks/ema_or_raw.py --quick          # a few steps, for the test suite
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from flowlab.data.images import load_digits, load_mnist5k
from flowlab.metrics import baselines
from flowlab.models.glow import Glow
from flowlab.models.multiscale import MultiScaleFlow
from flowlab.train import Trainer
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from provenance import Provenance  # noqa: E402


def _digits(quick: bool):
    train, test = load_digits("train").float(), load_digits("test").float()

    def build():
        return MultiScaleFlow((1, 8, 8), num_levels=17, scales=2, hidden_channels=4 if quick
                              else 32, blocks=1, dequantization="variational",
                              logit_alpha=0.05)
    return "chapter 6: multi-scale RealNVP, digits", train, test, build, 6 if quick else 1500, 17


def _mnist(quick: bool):
    train, test = load_mnist5k("train").float(), load_mnist5k("test").float()
    if quick:
        train, test = train[:256], test[:64]

    def build():
        model = Glow((1, 28, 28), num_levels=256, levels=2, steps=2 if quick else 8,
                     hidden_channels=8 if quick else 128, logit_alpha=0.05)
        with torch.no_grad():
            model.log_prob(train[:256])   # ActNorm's data-dependent initialisation
        return model
    return "chapter 7: live Glow, MNIST-5k", train, test, build, 6 if quick else 450, 256


def run(setup, select_raw: bool) -> dict:
    _, x_train, x_test, build, steps, _ = setup
    torch.manual_seed(0)
    model = build()
    cpu0 = time.process_time()
    trainer = Trainer(model, x_train, x_test, steps=steps, batch_size=64, lr=1e-3,
                      warmup_steps=min(100, steps // 10), ema_decay=0.995, run_dir=None,
                      progress=False, sample_every=0, eval_every=max(steps // 6, 1),
                      log_every=max(steps // 6, 1), seed=0, select_raw=select_raw)
    history = trainer.fit()
    return {
        "cpu_s": time.process_time() - cpu0,
        "rows": [r for r in history if "val_bits_per_dim" in r],
        "best_step": trainer.best_step, "best_val": trainer.best_score,
        "weights": trainer.selected_weights, "test": trainer.test_result["bits_per_dim"],
    }


def report(setup, ema: dict, both: dict) -> list[str]:
    title, x_train, x_test, *_, levels = setup
    base = baselines(x_train.long(), x_test.long(), levels)
    lines = [f"### {title}", "",
             f"Baselines on this test split ({len(x_test)} images): uniform "
             f"{base['uniform']:.3f}, per-pixel histogram (fit on the training images) "
             f"{base['per-pixel histogram']:.3f} bits/dim.", "",
             "| step | val, EMA | val, raw |", "| ---: | ---: | ---: |"]
    for r in both["rows"]:
        lines.append(f"| {r['step']} | {r['val_ema_bits_per_dim']:.3f} | "
                     f"{r['val_raw_bits_per_dim']:.3f} |")
    lines += ["", "| selection | CPU s | selected step | weights | val | test |",
              "| --- | ---: | ---: | --- | ---: | ---: |"]
    for name, r in (("EMA only (select_raw=False)", ema), ("better of the two (default)", both)):
        lines.append(f"| {name} | {r['cpu_s']:.0f} | {r['best_step']} | {r['weights']} | "
                     f"{r['best_val']:.3f} | {r['test']:.3f} |")
    return lines + [""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps of tiny models")
    parser.add_argument("--out", type=Path, help="also write the Markdown tables here")
    args = parser.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    lines = ["## EMA or raw weights: what a short run keeps", "",
             "Seed 0.  Same seed and batches "
             "in both runs of a model; the test set is scored once per run, on what it "
             "selected.", ""]
    for setup in (_digits(args.quick), _mnist(args.quick)):
        ema, both = run(setup, select_raw=False), run(setup, select_raw=True)
        # the same training: the EMA-only run's scores are the default run's EMA column
        assert [r["val_bits_per_dim"] for r in ema["rows"]] == [
            r["val_ema_bits_per_dim"] for r in both["rows"]], "the two runs trained differently"
        section = report(setup, ema, both)
        print("\n".join(section), flush=True)
        lines += section
    lines[1:1] = ["", started.line()]
    text = "\n".join(lines)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
