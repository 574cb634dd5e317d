"""Where does a coupling flow send an image it finds very unlikely?  A layer-by-layer trace.

A run's validation mean can rise while its median keeps falling: one held-out image is sent
far into the tails of the base distribution (``benchmarks/NOTES.md``, 8f).  This script loads a
run folder's weights (``flowlab.train.load_run``: EMA weights when the run kept them), scores
every validation image of the run's own split (``split.json``), and follows the worst image and
the median image through every affine coupling (the multi-scale model's
:class:`~flowlab.transforms.image.MaskedAffineCoupling`, Glow's
:class:`~flowlab.transforms.glow.GlowCoupling`).  For each coupling it reports, per image:

* ``|kept|``: the largest absolute value the conditioner reads,
* ``|t|``: the largest absolute shift it returns,
* ``max s``: the largest log-scale it applies (a value at the layer's bound means the layer
  multiplies by the most it can).

A row where the worst image's values run away from the median image's shows where the
extrapolation starts and whether scales (at their bound) or shifts carry it.  When the run kept
an EMA of the weights (which the table uses, as the trainer does), the raw weights' scores are
printed after it.

    python benchmarks/outlier_trace.py runs/pretrained/mnist5k-realnvp --checkpoint last
    python benchmarks/outlier_trace.py RUN_DIR --out benchmarks/results/outlier_trace.md

Prints a Markdown table (and writes it with ``--out``).
"""

from __future__ import annotations

import argparse
import sys
import json
import os
from pathlib import Path

import torch

from flowlab.metrics import bits_per_dim
from flowlab.train import load_run
from flowlab.transforms.glow import GlowCoupling
from flowlab.transforms.image import MaskedAffineCoupling
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from provenance import Provenance  # noqa: E402

COUPLINGS = (MaskedAffineCoupling, GlowCoupling)


def per_image_bits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Bits/dim of each image, one seeded dequantization draw each."""
    torch.manual_seed(0)
    with torch.no_grad():  # log_prob starts from the integer levels: no num_levels term
        return torch.cat([bits_per_dim(model.log_prob(c), c.shape[1:]) for c in x.split(200)])


def trace(model: torch.nn.Module,
          x: torch.Tensor) -> list[tuple[str, list[float], list[float], list[float]]]:
    """``(name, |kept|, |t|, max s)`` of every coupling for each image of ``x``, in the order
    the normalizing pass meets them."""
    rows: list = []
    patched = []
    for name, module in model.named_modules():
        if isinstance(module, COUPLINGS):
            original = module._params  # (batch, C, H, W, 2): (shift, raw log-scale)

            def recorded(kept, *args, _original=original, _name=name, _module=module):
                params = _original(kept, *args)
                shift, raw = params.unbind(-1)
                log_scale = _module.transformer.log_scale(raw)
                dims = tuple(range(1, kept.dim()))
                rows.append((_name, kept.abs().amax(dims).tolist(), shift.abs().amax(dims).tolist(),
                             log_scale.amax(dims).tolist()))
                return params

            module._params = recorded  # an instance attribute shadows the method
            patched.append(module)
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            model.log_prob(x)
    finally:
        for module in patched:
            del module._params
    return rows


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a flowlab train run folder (with split.json)")
    p.add_argument("--checkpoint", default="best", help="best (default), last, previous or a file")
    p.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = p.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    run = load_run(args.run_dir, args.checkpoint)
    split = Path(args.run_dir) / "split.json"
    if not split.is_file():
        raise SystemExit(f"{split} is missing: the run kept no validation split to trace")
    val = run.data.train[json.loads(split.read_text())["val_indices"]].float()
    bits = per_image_bits(run.model, val)
    order = bits.argsort()
    worst, median = order[-1].item(), order[len(order) // 2].item()
    lines = [
        f"Run `{args.run_dir}`, checkpoint `{run.checkpoint.name}` (step {run.step}), "
        f"{len(val)} validation images: mean {bits.mean():.3f}, median {bits.median():.3f}, "
        f"worst {bits[worst]:.1f} bits/dim (image {worst} of the split).",
        "",
        started.line(),
        "",
        "| coupling | \\|kept\\| worst (median img) | \\|t\\| worst (median) | max s worst (median) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, kept, shift, log_scale in trace(run.model, val[[worst, median]]):
        lines.append(f"| `{name}` | {kept[0]:.1f} ({kept[1]:.1f}) | {shift[0]:.1f} "
                     f"({shift[1]:.1f}) | {log_scale[0]:.2f} ({log_scale[1]:.2f}) |")
    if run.state.get("ema"):  # the trainer validated the EMA: how do the raw weights compare?
        raw = per_image_bits(load_run(args.run_dir, args.checkpoint, use_ema=False).model, val)
        lines += ["", f"Raw (non-EMA) weights of the same checkpoint: mean {raw.mean():.3f}, "
                      f"median {raw.median():.3f}, worst {raw.max():.1f} bits/dim."]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(f"# Outlier trace\n\n{table}")
    return table


if __name__ == "__main__":
    main()
