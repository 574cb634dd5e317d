"""DDP scaling on CPU: samples/s of the same training command on 1 and 2 processes.

Each configuration is a real ``torchrun`` launch (gloo backend) of this script in worker mode;
the global batch is the same in all of them, so 2 processes each compute half of every batch
and DDP averages their gradients.  On a machine with C cores, compare
``1 process x C threads`` with ``2 processes x C/2 threads``.

    python benchmarks/ddp_scaling.py                   # full: 200 timed steps per configuration
    python benchmarks/ddp_scaling.py --quick           # < 1 min on an idle machine: 30 steps
    python benchmarks/ddp_scaling.py --model digits    # a compute-heavy model (64-d, 2x256 MLPs)

``--model moons`` (default) is ``realnvp(2)``: tiny layers, where the per-step gradient
all-reduce is a large share; ``--model digits`` is ``realnvp(64)`` (8 couplings, 2x256 MLPs,
725k parameters) on uniformly dequantized 8x8 digits, where computation dominates.

Writes benchmarks/results/ddp_scaling[-digits].md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import Provenance

RESULTS = Path(__file__).parent / "results" / "ddp_scaling.md"
ROOT = Path(__file__).resolve().parents[1]
BATCH = 1024


def _model_and_data(model: str):
    import torch

    if model == "digits":
        from flowlab.data.images import load_digits
        from flowlab.models.realnvp import realnvp

        digits = load_digits("train")
        x = digits.images.float().reshape(len(digits), -1)
        noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
        x = (x + noise) / digits.num_levels
        return realnvp(64), x.repeat(8, 1)  # enough samples for BATCH-sized epochs
    from flowlab.data.toy2d import toy_dataset
    from flowlab.models.realnvp import realnvp

    return realnvp(2), toy_dataset("two_moons", 32768, seed=0)


def worker(steps: int, out: str, model: str) -> None:
    import torch

    from flowlab.train import TrainConfig, Trainer, teardown

    torch.manual_seed(0)
    cfg = TrainConfig(steps=steps, batch_size=BATCH, run_dir=None, progress=False,
                      sample_every=0, log_every=10**9, warmup_steps=0, device="cpu")
    flow, data = _model_and_data(model)
    trainer = Trainer(flow, data, None, cfg)
    trainer.prepare()
    trainer.fit(stop_at=3)  # warm-up steps, not timed
    start = time.perf_counter()
    trainer.fit()
    elapsed = time.perf_counter() - start
    if trainer.info.is_main:
        Path(out).write_text(json.dumps({
            "samples_per_s": (steps - 3) * BATCH / elapsed,
            "world_size": trainer.info.world_size, "threads": torch.get_num_threads(),
        }))
    teardown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, threads: int, steps: int, model: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
               __file__, "--worker", "--steps", str(steps), "--out", out, "--model", model]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
        subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=1800)
        return json.loads(Path(out).read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 timed steps per configuration")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=["moons", "digits"], default="moons")
    args = parser.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    steps = args.steps or (30 if args.quick else 200)
    if args.worker:
        worker(steps, args.out, args.model)
        return 0
    cores = os.cpu_count() or 1
    configs = [(1, 1), (1, cores), (2, max(cores // 2, 1))]
    rows = []
    for nproc, threads in configs:
        r = launch(nproc, threads, steps, args.model)
        rows.append((nproc, threads, r["samples_per_s"]))
        print(f"{nproc} process(es) x {threads} thread(s): {r['samples_per_s']:.0f} samples/s",
              flush=True)
    base = rows[0][2]
    lines = [
        "# DDP scaling on CPU (gloo)",
        "",
        started.line(),
        "",
        ("Model `realnvp(2)` on two moons" if args.model == "moons" else
         "Model `realnvp(64)` (8 couplings, 2x256 MLPs) on dequantized 8x8 digits")
        + f", global batch {BATCH}, {steps - 3} timed steps, {cores} CPU cores.",
        "",
        "| processes | threads each | samples/s | vs 1 x 1 |",
        "| ---: | ---: | ---: | ---: |",
        *[f"| {n} | {t} | {s:.0f} | {s / base:.2f} |" for n, t, s in rows],
        "",
    ]
    target = RESULTS if args.model == "moons" else RESULTS.with_name(f"ddp_scaling-{args.model}.md")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
