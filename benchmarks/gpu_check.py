#!/usr/bin/env python
r"""The GPU path in one run: Glow on MNIST-5k with bf16 autocast and ``torch.compile``.

    python benchmarks/gpu_check.py                      # on a GPU: the real check (~3 min)
    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json   # CPU, seconds

Called by ``benchmarks/gpu_check.sh`` (which first runs the CUDA-marked tests).  Trains
:class:`flowlab.models.Glow` (2 levels of 8 steps, 128 hidden channels) on the 4,000 MNIST-5k
training images through :class:`flowlab.train.Trainer` (``bf16=True``, ``compile=True``,
validation split of the trainer), then writes to ``--out`` (JSON):

* ``images_per_s``: training images per second over the timed steps (after the first
  ``--warmup`` steps, which include the compilation);
* ``peak_memory_mib``: ``torch.cuda.max_memory_allocated`` over the run;
* ``test_bits_per_dim``: on the 1,000 test images, :func:`flowlab.metrics.dataset_bits_per_dim`
  with 4 uniform-dequantization draws per image (an upper bound; lower is better), next to the
  baselines (:func:`flowlab.metrics.baselines`: uniform 8.0, per-pixel histogram 1.77);
* the exact settings, device name, torch version and wall times.

``--dry-run`` (or no CUDA device) runs the same code path tiny, on the CPU, with bf16 autocast
(the CPU has it too) and ``torch.compile`` (inductor's CPU backend, when a C++ compiler is on
PATH; the compilation takes a minute or two), in the time of that compilation:
``tests/test_gpu_check.py`` runs it so that the script cannot rot.  A dry
run's figures measure nothing and say so (``"dry_run": true``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flowlab.data.images import load_mnist5k  # noqa: E402
from flowlab.metrics import baselines, dataset_bits_per_dim  # noqa: E402
from flowlab.models.glow import Glow  # noqa: E402
from flowlab.train import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="tiny CPU run in seconds")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--warmup", type=int, default=100, help="untimed first steps (compilation)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", type=Path, default=HERE / "results" / "gpu_check.json")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry_run
    dry = not cuda
    if dry:
        args.steps, args.warmup, args.batch_size = 4, 2, 16
        torch.set_num_threads(1)
    device = "cuda" if cuda else "cpu"
    # inductor compiles CPU kernels with a C++ compiler; without one the dry run stays eager
    compile_ = cuda or any(shutil.which(c) for c in ("c++", "g++", "clang++"))

    train, test = load_mnist5k("train"), load_mnist5k("test")
    x_train, x_test = train.float(), test.float()
    if dry:
        x_train, x_test = x_train[:200], x_test[:50]
    torch.manual_seed(0)
    model = (
        Glow(train.shape, 256, levels=2, steps=1, hidden_channels=8)
        if dry
        else Glow(train.shape, 256, levels=2, steps=8, hidden_channels=128)
    )
    with torch.no_grad():
        model.log_prob(x_train[:512])  # ActNorm's data-dependent initialisation, on the CPU
    settings = dict(
        steps=args.steps, batch_size=args.batch_size, lr=1e-3, warmup_steps=min(100, args.steps // 10),
        device=device, bf16=True, compile=compile_, run_dir=None, progress=False, sample_every=0,
        eval_every=max(args.steps // 5, 1), log_every=max(args.steps // 20, 1), seed=0,
    )
    trainer = Trainer(model, x_train, None, **settings)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    trainer.fit(stop_at=args.warmup)
    if cuda:
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    trainer.fit()
    if cuda:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    timed_steps = args.steps - args.warmup
    eval_model = trainer.eval_model.eval()
    torch.manual_seed(1)
    test_bpd = dataset_bits_per_dim(
        eval_model.log_prob, x_test, batch_size=500, repeats=1 if dry else 4, device=device,
    )
    result = {
        "dry_run": dry,
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "model": "Glow(levels=2, steps=1, hidden_channels=8)" if dry
        else "Glow(levels=2, steps=8, hidden_channels=128)",
        "params": sum(p.numel() for p in model.parameters()),
        "bf16": True,
        "compile": compile_,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "warmup_s": round(t1 - t0, 2),
        "train_s": round(t2 - t1, 2),
        "images_per_s": round(timed_steps * args.batch_size / (t2 - t1), 1),
        "peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "test_bits_per_dim": round(test_bpd, 4),
        "test_estimate": "mean over 4 uniform-dequantization draws per image (upper bound)",
        "test_images": len(x_test),
        "baselines": {k: round(v, 4) for k, v in baselines(train.images, test.images, 256).items()},
        "command": "benchmarks/gpu_check.sh" + (" --dry-run" if args.dry_run else ""),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
