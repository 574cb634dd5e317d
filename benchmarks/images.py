#!/usr/bin/env python
r"""Image-flow benchmarks: bits/dim under a fixed CPU budget with honest model selection, and
training-step speed.

    python benchmarks/images.py                   # (a) digits, (b) MNIST-5k, (c) speed
    python benchmarks/images.py --quick           # smoke run, under a minute
    python benchmarks/images.py --parts a --budget 180 --models realnvp,glow
    python benchmarks/images.py --parts a --spec '{"name": "x", "model": "glow", "args": {"steps": 4}}'

Parts:

``a``  8x8 digits (17 levels 0..16; 1,438 train images, of which a stratified 10 % (seed 0,
       the trainer's default split) is held out for **validation**; 359 test images).
``b``  MNIST-5k (28x28, 256 levels; 4,000 train of which 10 % validation; 1,000 test).
``c``  time of one forward + backward pass (the NLL and its gradient) on a batch of 64
       1x28x28 images: Glow and the multi-scale RealNVP at comparable parameter counts.

**Protocol of (a) and (b).**  Each model trains with AdamW (batch 64, lr warm-up over the
first 3 % of the budget, cosine decay to 1 % over the rest of it, gradient norm clipped at
10) until it has spent ``--budget`` CPU seconds (``time.process_time()``: a loaded machine
slows training down without shortening it).  Twelve times during the run, and at its end,
the validation bits/dim is measured (fixed dequantization noise); the weights with the best
validation score are kept and **only they** are evaluated on the test set, once.  The test
set never selects anything.

Bits/dim is :func:`flowlab.metrics.dataset_bits_per_dim` of the model's ``log_prob``, which
contains the dequantizer's :math:`-D\log K`: ``test`` averages 4 dequantization draws per image
(the plain bound), ``test IW`` combines 16 draws per image inside the log (the
importance-weighted bound, the estimate published numbers use; with variational
dequantization the draws come from the learned :math:`q(u\mid x)`).  Both are upper bounds
on the discrete model's bits/dim.  Every table prints the baselines beside them
(:func:`flowlab.metrics.baselines`: uniform :math:`\log_2 K`, per-pixel histogram fit on the
training images and scored on the test images).

Results: ``<out>/images.md`` (tables), ``<out>/images.json`` (everything, with the learning
curves), ``<out>/images_*.png`` (sample grids); ``--out`` defaults to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flowlab.data.images import ImageData, load_digits, load_mnist5k, stratified_split  # noqa: E402
from flowlab.metrics import baselines, dataset_bits_per_dim  # noqa: E402
from flowlab.models.glow import Glow  # noqa: E402
from flowlab.models.multiscale import MultiScaleFlow  # noqa: E402
from provenance import Provenance  # noqa: E402

#: The configurations of the book (chapters 6-7) and of the pretrained checkpoints, selected
#: on the validation split (benchmarks/NOTES.md, section 8).
MODELS: dict[str, dict[str, Any]] = {
    "digits": {
        "realnvp": {"model": "multiscale", "lr": 1e-3, "args": {
            "hidden_channels": 32, "blocks": 1, "dequantization": "variational",
            "logit_alpha": 0.05}},
        "glow": {"model": "glow", "lr": 1e-3, "args": {
            "steps": 8, "hidden_channels": 128, "logit_alpha": 0.05,
            "dequantization": "variational"}},
    },
    "mnist5k": {
        "realnvp": {"model": "multiscale", "args": {"hidden_channels": 32, "blocks": 1,
                                                     "logit_alpha": 0.05}, "lr": 1e-3},
        "glow": {"model": "glow", "args": {"steps": 8, "hidden_channels": 128, "logit_alpha": 0.05}, "lr": 1e-3},
    },
}


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load(name: str) -> tuple[ImageData, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(train ImageData, train part, validation part, test)``: float levels; the validation
    part is the trainer's default split (stratified 10 %, seed 0)."""
    loader = load_digits if name == "digits" else load_mnist5k
    train, test = loader("train"), loader("test")
    fit_idx, val_idx = stratified_split(train.labels.numpy(), 0.1, 0)
    x = train.float()
    return train, x[fit_idx], x[val_idx], test.float()


def build(spec: dict[str, Any], shape: tuple[int, int, int], num_levels: int) -> torch.nn.Module:
    cls = MultiScaleFlow if spec["model"] == "multiscale" else Glow
    return cls(shape, num_levels, validate=False, **spec.get("args", {}))


def bits(model: torch.nn.Module, x: torch.Tensor, *, seed: int = 123, **kwargs) -> float:
    """Bits/dim of ``model`` on ``x`` with fixed dequantization noise (eval mode)."""
    was = model.training
    model.eval()
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        out = dataset_bits_per_dim(model.log_prob, x, batch_size=500, **kwargs)
    model.train(was)
    return out


def train_budgeted(
    model: torch.nn.Module,
    train: torch.Tensor,
    val: torch.Tensor,
    cpu_budget: float,
    *,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 64,
    evals: int = 12,
    seed: int = 0,
) -> dict[str, Any]:
    """Train until ``cpu_budget`` CPU seconds are spent; keep the best-on-validation weights
    (loaded into ``model`` at the end).  Returns steps, CPU/wall seconds and the curve."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.log_prob(train[:512])  # Glow's ActNorm: initialise on a large batch
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warm = 0.03
    model.train()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step, pos = 0, len(train)
    best: tuple[float, Any, int] = (math.inf, None, 0)
    curve: list[dict[str, float]] = []
    next_eval = cpu_budget / evals

    def validate(train_bpd: float | None) -> None:
        nonlocal best
        v = bits(model, val)
        curve.append({"step": step, "cpu_s": round(time.process_time() - cpu0, 1),
                      "train_batch_bpd": train_bpd, "val_bpd": round(v, 4)})
        if v < best[0]:
            best = (v, copy.deepcopy(model.state_dict()), step)

    while (frac := (time.process_time() - cpu0) / cpu_budget) < 1:
        scale = frac / warm if frac < warm else 0.01 + 0.495 * (
            1 + math.cos(math.pi * (frac - warm) / (1 - warm))
        )
        for group in opt.param_groups:
            group["lr"] = lr * scale
        if pos + batch_size > len(train):
            perm, pos = torch.randperm(len(train), generator=gen), 0
        x = train[perm[pos : pos + batch_size]]
        pos += batch_size
        loss = model.nll(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        step += 1
        if time.process_time() - cpu0 >= next_eval:
            validate(round(loss.item() / (x[0].numel() * math.log(2)), 4))
            next_eval += cpu_budget / evals
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    validate(None)
    model.load_state_dict(best[1])
    model.eval()
    return {"steps": step, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "best_step": best[2], "val_bpd": round(best[0], 4), "curve": curve}


def run_images(data_name: str, specs: dict[str, dict[str, Any]], budget: float, out: Path,
               quick: bool) -> dict[str, Any]:
    train_d, fit, val, test = load(data_name)
    if quick:
        fit, val, test = fit[:256], val[:64], test[:64]
    base = baselines(train_d.images, (load_digits if data_name == "digits" else load_mnist5k)(
        "test").images, train_d.num_levels)
    rows = []
    for name, spec in specs.items():
        torch.manual_seed(spec.get("seed", 0))
        model = build(spec, train_d.shape, train_d.num_levels)
        res = train_budgeted(model, fit, val, budget, lr=spec.get("lr", 1e-3),
                             weight_decay=spec.get("wd", 0.0), seed=spec.get("seed", 0))
        res.update(name=name, spec=spec, params=count_params(model),
                   test_bpd=round(bits(model, test, repeats=1 if quick else 4), 4),
                   test_iw_bpd=round(bits(model, test, importance_samples=2 if quick else 16), 4))
        torch.manual_seed(0)
        with torch.no_grad():
            samples = model.sample(64, temperature=0.8 if spec["model"] == "glow" else 1.0)
        from flowlab.plots.images import real_vs_generated

        fig = real_vs_generated(test[:64], samples, nrow=8, num_levels=train_d.num_levels,
                                titles=("test images", name))
        res["figure"] = f"images_{data_name}_{name}.png"
        fig.savefig(out / res["figure"], dpi=80, bbox_inches="tight")
        rows.append(res)
        print(f"[{data_name}] {name}: {res['steps']} steps, best step {res['best_step']}, val "
              f"{res['val_bpd']:.3f}, test {res['test_bpd']:.3f} (IW {res['test_iw_bpd']:.3f})",
              flush=True)
    return {"data": data_name, "budget_cpu_s": budget, "baselines": base, "runs": rows}


def part_c(reps: int, quick: bool) -> list[dict]:
    shape = (1, 28, 28)
    g_steps, g_hidden = (4, 32) if quick else (8, 128)
    small, big = (16, 16) if quick else (32, 64)
    models = {  # the margins of the committed timings (the default is now 1e-6, NOTES 8k)
        f"Glow (2 levels x {g_steps} steps, {g_hidden} hidden)": lambda: Glow(
            shape, 256, levels=2, steps=g_steps, hidden_channels=g_hidden, logit_alpha=None,
            validate=False),
        f"multi-scale RealNVP (2 scales, {small} hidden, 1 block)": lambda: MultiScaleFlow(
            shape, 256, scales=2, hidden_channels=small, blocks=1, logit_alpha=0.05,
            validate=False),
        f"multi-scale RealNVP (2 scales, {big} hidden, 2 blocks)": lambda: MultiScaleFlow(
            shape, 256, scales=2, hidden_channels=big, blocks=2, logit_alpha=0.05,
            validate=False),
    }
    x = torch.randint(0, 256, (64, *shape)).float()
    rows = []
    for name, make in models.items():
        torch.manual_seed(0)
        flow = make()
        flow.nll(x)  # ActNorm initialisation and warm-up
        times = []
        for _ in range(reps):
            flow.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            flow.nll(x).backward()
            times.append(time.perf_counter() - t0)
        rows.append({"model": name, "params": count_params(flow),
                     "median_ms": 1000 * statistics.median(times), "min_ms": 1000 * min(times),
                     "reps": reps})
        print(f"[c] {name}: {rows[-1]['median_ms']:.0f} ms", flush=True)
    return rows


def write_report(path: Path, args, parts: dict[str, Any], started: Provenance) -> None:
    mode = "quick (smoke test: tiny subsets, seconds of training)" if args.quick else "full"
    lines = [
        "# Image flows: bits/dim with validation selection, and speed", "",
        started.line(), "",
        f"Mode: {mode}.  Protocol: the docstring of `benchmarks/images.py`.", "",
    ]
    for key in ("a", "b"):
        part = parts.get(key)
        if part is None:
            continue
        b = part["baselines"]
        lines += [
            f"## ({key}) {part['data']}, {part['budget_cpu_s']:.0f} CPU-s per model", "",
            f"Baselines on the test split: uniform {b['uniform']:.3f}, per-pixel histogram "
            f"(fit on train, add-one smoothing) {b['per-pixel histogram']:.3f} bits/dim.", "",
            "| model | params | steps | CPU s | best step (val) | val bpd | test bpd | test IW bpd (16) | samples |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in part["runs"]:
            lines.append(
                f"| {r['name']} | {r['params']:,} | {r['steps']} | {r['cpu_s']:.0f} | "
                f"{r['best_step']} | {r['val_bpd']:.3f} | {r['test_bpd']:.3f} | "
                f"{r['test_iw_bpd']:.3f} | [{r['figure']}]({r['figure']}) |")
        lines.append("")
    if parts.get("c"):
        lines += ["## (c) forward + backward, batch 64, 1x28x28", "",
                  "| model | params | median ms | min ms | reps |", "| --- | ---: | ---: | ---: | ---: |"]
        for r in parts["c"]:
            lines.append(f"| {r['model']} | {r['params']:,} | {r['median_ms']:.0f} | "
                         f"{r['min_ms']:.0f} | {r['reps']} |")
        lines.append("")
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    p.add_argument("--budget", type=float, default=180.0,
                   help="CPU seconds of training per model in (a) and (b) (default 180)")
    p.add_argument("--parts", default="a,b,c", help="comma-separated subset of a,b,c")
    p.add_argument("--models", default="realnvp,glow", help="which of MODELS to train")
    p.add_argument("--spec", action="append", default=[],
                   help="JSON model spec to train instead of MODELS (repeatable; for searches)")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions in (c)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", type=Path, default=HERE / "results")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    args.argv = argv
    if args.quick:
        args.budget, args.reps = min(args.budget, 3.0), min(args.reps, 2)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = set(args.parts.split(","))
    parts: dict[str, Any] = {}
    for key, data_name in (("a", "digits"), ("b", "mnist5k")):
        if key not in chosen:
            continue
        if args.spec:
            specs = {s["name"]: s for s in map(json.loads, args.spec)}
        else:
            specs = {m: MODELS[data_name][m] for m in args.models.split(",")}
        parts[key] = run_images(data_name, specs, args.budget, args.out, args.quick)
    if "c" in chosen:
        parts["c"] = part_c(args.reps, args.quick)
    write_report(args.out / "images.md", args, parts, started)
    (args.out / "images.json").write_text(json.dumps(parts, indent=1) + "\n")
    print(f"wrote {args.out / 'images.md'}")


if __name__ == "__main__":
    main()
