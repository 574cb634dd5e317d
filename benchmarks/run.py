#!/usr/bin/env python
"""flowlab benchmarks: framework overhead against bare PyTorch, and a side-by-side comparison
with zuko, nflows, normflows and FrEIA.

    python benchmarks/run.py            # the full run (about 15 min on 2 CPU cores)
    python benchmarks/run.py --quick    # a smoke run (about 1-2 min); results/quick/

Three sections (``--sections`` picks some):

``overhead``  flowlab's RealNVP (8 affine couplings, 2x256 MLPs, 64-d, batch 256) against the
              same model written by hand (``bare.py``): training-step time, sampling time, peak
              memory, as ratios.  Optional ``--compile`` and ``--bf16`` variants.
``speed``     the same measurements for every installed library, affine and spline couplings,
              as ratios to the bare affine model.
``density``   every library trains the same architecture on the same batches (lockstep: one
              shared batch per step) on 2-D toy sets and the flat 8x8 digits; test NLL or
              bits/dim.

Timings alternate the implementations (A B C, C B A, ...) so that machine drift cancels, warm
up first, and report medians with interquartile ranges.  Results go to ``benchmarks/results/``
(``--out``): ``RESULTS.md`` (tables), ``results.json`` (every number), ``speed.png`` and
``density.png``.  See ``benchmarks/README.md`` for the method and ``NOTES.md`` for findings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from contenders import available_impls, build, flowlab_available  # noqa: E402
from measure import interleaved_times, paired_ratio, peak_memory, summarize  # noqa: E402
from peers import Contender, ModelSpec, Unsupported  # noqa: E402

KINDS = ("affine", "spline", "spline-lu")
DEFAULT_TASKS = ("two_moons", "eight_gaussians", "checkerboard", "digits", "digits-multiscale")


@dataclass
class Budget:
    """How much work each section does."""

    overhead_rounds: int  # rounds of the flowlab-vs-bare timing
    speed_rounds: int  # rounds of the all-libraries timing
    inner: int  # calls per timed block
    warmup: int
    time_budget: float  # seconds per timing group, after which it stops early
    steps_2d: int
    steps_digits: int
    batch: int = 256
    sample_n: int = 256


FULL = Budget(overhead_rounds=60, speed_rounds=25, inner=4, warmup=5, time_budget=90.0,
              steps_2d=1000, steps_digits=500)
QUICK = Budget(overhead_rounds=12, speed_rounds=5, inner=2, warmup=2, time_budget=15.0,
               steps_2d=150, steps_digits=60)


def vector_spec(args, features: int = 64, bound: float = 3.0) -> ModelSpec:
    """The benchmark architecture (issue 2: 8 couplings, 2x256 MLPs), shrinkable for tests."""
    return ModelSpec(features=features, couplings=args.couplings, hidden=tuple(args.hidden),
                     bins=8, bound=bound)


# ------------------------------------------------------------------------------- step & sample
def _autocast(variant: str, device: torch.device):
    if variant == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_step(c: Contender, x: torch.Tensor, variant: str, lr: float = 1e-4) -> Callable[[], None]:
    """One training step: zero the gradients, forward, backward, Adam update."""
    opt = torch.optim.Adam(c.module.parameters(), lr=lr)

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        return -c.log_prob(batch).mean()

    if variant == "compile":
        loss_fn = torch.compile(loss_fn)
    device = x.device

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with _autocast(variant, device):
            loss = loss_fn(x)
        loss.backward()
        opt.step()

    return step


def make_sampler(c: Contender, n: int, variant: str, device: torch.device) -> Callable[[], None]:
    """Draw ``n`` samples (no gradient)."""
    sample = torch.compile(c.sample) if variant == "compile" else c.sample

    def draw() -> None:
        with torch.no_grad(), _autocast(variant, device):
            sample(n)

    return draw


def _mb(n_bytes: int | None) -> float | None:
    return None if n_bytes is None else n_bytes / 2**20


# ------------------------------------------------------------------------------------ sections
def section_overhead(args, budget: Budget, device: torch.device) -> dict:
    """Issue 2: flowlab's affine RealNVP against bare.py, per variant (eager, compile, bf16)."""
    spec = vector_spec(args)
    x = torch.randn(budget.batch, spec.features, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    variants = ["eager"] + (["compile"] if args.compile else []) + (["bf16"] if args.bf16 else [])
    rows = []
    for variant in variants:
        models = {impl: build(impl, "affine", spec, seed=args.seed) for impl in ("flowlab", "bare")}
        for c in models.values():
            c.module.to(device)
        try:
            steps = {k: make_step(c, x, variant) for k, c in models.items()}
            samplers = {k: make_sampler(c, budget.sample_n, variant, device)
                        for k, c in models.items()}
            kw = dict(rounds=budget.overhead_rounds, inner=budget.inner, warmup=budget.warmup,
                      device=device, time_budget=budget.time_budget)
            t_step = interleaved_times(steps, **kw)
            t_sample = interleaved_times(samplers, **kw)
        except Exception as err:  # e.g. torch.compile without a working C++ compiler
            rows.append({"variant": variant, "error": f"{type(err).__name__}: {err}"[:300]})
            continue
        rows.append({
            "variant": variant,
            "params": {k: c.n_params for k, c in models.items()},
            "step": {k: summarize(v) for k, v in t_step.items()},
            "sample": {k: summarize(v) for k, v in t_sample.items()},
            "step_ratio": paired_ratio(t_step["flowlab"], t_step["bare"]),
            "sample_ratio": paired_ratio(t_sample["flowlab"], t_sample["bare"]),
            "mem_step_mb": {k: _mb(peak_memory(f, device)) for k, f in steps.items()},
            "mem_sample_mb": {k: _mb(peak_memory(f, device)) for k, f in samplers.items()},
            "raw": {"step": t_step, "sample": t_sample},
        })
        print(_overhead_line(rows[-1]), flush=True)
    return {"features": spec.features, "couplings": spec.couplings, "hidden": list(spec.hidden),
            "batch": budget.batch, "sample_n": budget.sample_n, "rows": rows}


def _overhead_line(row: dict) -> str:
    return (f"  overhead [{row['variant']}]: step x{row['step_ratio']['median']:.3f} "
            f"(flowlab {1e3 * row['step']['flowlab']['median']:.2f} ms, bare "
            f"{1e3 * row['step']['bare']['median']:.2f} ms), sampling "
            f"x{row['sample_ratio']['median']:.3f}")


def section_speed(args, budget: Budget, device: torch.device, impls: list[str]) -> dict:
    """Issue 8: every library, affine and spline, timed against the bare affine model."""
    spec = vector_spec(args)
    x = torch.randn(budget.batch, spec.features, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    models: dict[str, Contender] = {}
    skipped = []
    for impl in impls:
        for kind in args.kinds:
            try:
                c = build(impl, kind, spec, seed=args.seed)
            except Unsupported as err:
                skipped.append(f"{impl} {kind}: {err}")
                continue
            c.module.to(device)
            models[c.label] = c
    if "bare affine" not in models:
        raise SystemExit("the speed section needs the bare affine model as its yardstick")
    steps = {k: make_step(c, x, "eager") for k, c in models.items()}
    samplers = {k: make_sampler(c, budget.sample_n, "eager", device) for k, c in models.items()}
    kw = dict(rounds=budget.speed_rounds, inner=budget.inner, warmup=budget.warmup,
              device=device, time_budget=2 * budget.time_budget)
    t_step = interleaved_times(steps, **kw)
    t_sample = interleaved_times(samplers, **kw)
    rows = []
    for label, c in models.items():
        row = {
            "impl": c.impl, "kind": c.kind, "params": c.n_params, "notes": c.notes,
            "step": summarize(t_step[label]), "sample": summarize(t_sample[label]),
            "step_ratio": paired_ratio(t_step[label], t_step["bare affine"]),
            "sample_ratio": paired_ratio(t_sample[label], t_sample["bare affine"]),
            "mem_step_mb": _mb(peak_memory(steps[label], device)),
            "mem_sample_mb": _mb(peak_memory(samplers[label], device)),
        }
        rows.append(row)
        print(f"  speed {label:18s} step x{row['step_ratio']['median']:.2f} "
              f"sample x{row['sample_ratio']['median']:.2f}", flush=True)
    return {"features": spec.features, "couplings": spec.couplings, "hidden": list(spec.hidden),
            "bins": spec.bins, "bound": spec.bound, "batch": budget.batch,
            "sample_n": budget.sample_n, "rows": rows, "skipped": skipped,
            "raw": {"step": t_step, "sample": t_sample}}


def _evaluate(c: Contender, test: torch.Tensor, chunk: int = 4096) -> float:
    """Mean test NLL in nats per sample (NaN if the model produced non-finite values)."""
    with torch.no_grad():
        total = 0.0
        for part in test.split(chunk):
            total += float(-c.log_prob(part).sum())
    value = total / len(test)
    return value if math.isfinite(value) else float("nan")


def train_lockstep(task, models: dict[str, Contender], budget: Budget, seed: int,
                   device: torch.device, lr: float = 1e-3) -> dict[str, dict]:
    """Train every model on the same batch at each step, alternating their order."""
    opts = {k: torch.optim.Adam(c.module.parameters(), lr=lr) for k, c in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    last_losses: dict[str, list[float]] = {k: [] for k in models}
    diverged: dict[str, int | None] = {k: None for k in models}
    generator = torch.Generator().manual_seed(seed)
    names = list(models)
    for step in range(task.steps):
        x = task.batch(budget.batch, generator).to(device)
        for name in names if step % 2 == 0 else names[::-1]:
            if diverged[name] is not None:
                continue
            c, opt = models[name], opts[name]
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = -c.log_prob(x).mean()
            if not torch.isfinite(loss):
                diverged[name] = step
                continue
            loss.backward()
            opt.step()
            times[name].append(time.perf_counter() - t0)
            if step >= 0.9 * task.steps:
                last_losses[name].append(float(loss.detach()))
    out = {}
    test = task.test.to(device)
    for name, c in models.items():
        nll = _evaluate(c, test) if diverged[name] is None else float("nan")
        out[name] = {
            "impl": c.impl, "kind": c.kind, "params": c.n_params,
            "test": task.to_metric(nll) if math.isfinite(nll) else float("nan"),
            "train_last": (task.to_metric(sum(last_losses[name]) / len(last_losses[name]))
                           if last_losses[name] else float("nan")),
            "step": summarize(times[name]),
            "diverged_at": diverged[name],
        }
    return out


def section_density(args, budget: Budget, device: torch.device, impls: list[str]) -> dict:
    """Issue 8: the same architecture, data, batches, optimiser and steps for every library."""
    import tasks as T

    task_list, skipped = [], []
    for name in args.tasks:
        try:
            if name in T.TOY_NAMES:
                task_list.append(T.toy_task(name, steps=budget.steps_2d, couplings=args.couplings))
            elif name in ("digits", "mnist5k"):
                task_list.append(T.flat_image_task(name, steps=budget.steps_digits, seed=args.seed,
                                                   couplings=args.couplings,
                                                   hidden=tuple(args.hidden)))
            elif name in ("digits-multiscale", "mnist5k-multiscale"):
                task_list.append(T.multiscale_task(name.split("-")[0], steps=budget.steps_digits,
                                                   seed=args.seed))
            else:
                skipped.append(f"{name}: unknown task")
        except ImportError as err:
            skipped.append(f"{name}: {err}")
    results = []
    for task in task_list:
        t0 = time.perf_counter()
        if task.build_models is not None:
            models = task.build_models(impls, args.kinds, args.seed)
        else:
            models = {}
            for impl in impls:
                for kind in args.kinds:
                    try:
                        c = build(impl, kind, task.spec, seed=args.seed)
                    except Unsupported:
                        continue
                    models[c.label] = c
        if not models:
            skipped.append(f"{task.name}: no implementation selected")
            continue
        for c in models.values():
            c.module.to(device)
        rows = train_lockstep(task, models, budget, args.seed, device)
        entry = {
            "name": task.name, "metric": task.metric, "reference": task.reference,
            "steps": task.steps, "batch": budget.batch, "source": task.source,
            "spec": vars(task.spec) | {"hidden": list(task.spec.hidden)},
            "rows": list(rows.values()), "seconds": time.perf_counter() - t0,
            "notes": task.notes,
        }
        same = next((r for r in results if r["name"] == task.name), None)
        if same is not None:  # e.g. the multi-scale model on the digits: one more row
            same["rows"] += entry["rows"]
            same["seconds"] += entry["seconds"]
            same["notes"] += entry["notes"]
        else:
            results.append(entry)
        best = min(rows.values(), key=lambda r: r["test"] if math.isfinite(r["test"]) else 1e9)
        print(f"  density {task.name}: {task.metric}, best {best['impl']} {best['kind']} "
              f"{best['test']:.3f} ({entry['seconds']:.0f} s)", flush=True)
    return {"tasks": results, "skipped": skipped}


# ---------------------------------------------------------------------------------------- main
def environment(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    for lib in ("zuko", "nflows", "normflows", "FrEIA"):
        try:
            from importlib.metadata import version

            versions[lib] = version(lib)
        except Exception:
            pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "device": str(device), "versions": versions}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds and steps")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default benchmarks/results, --quick: results/quick)")
    p.add_argument("--sections", default="overhead,speed,density",
                   help="comma-separated: overhead, speed, density")
    p.add_argument("--impls", default=None,
                   help="comma-separated implementations (default: all installed)")
    p.add_argument("--kinds", default="affine,spline", help="coupling kinds")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                   help="density tasks (also: mnist5k, mnist5k-multiscale)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (overhead)")
    p.add_argument("--bf16", action="store_true", help="also time bf16 autocast (overhead)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--couplings", type=int, default=8, help="coupling layers (vector models)")
    p.add_argument("--hidden", default="256,256", help="MLP hidden sizes (vector models)")
    # Budget overrides (tests use them to stay within seconds).
    for name in ("overhead_rounds", "speed_rounds", "inner", "warmup", "steps_2d",
                 "steps_digits", "batch", "sample_n"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds per timing group before it stops early")
    args = p.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.hidden = [int(h) for h in args.hidden.split(",") if h]
    unknown = set(args.sections) - {"overhead", "speed", "density"}
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}")
    if set(args.kinds) - set(KINDS):
        p.error(f"kinds must be among {KINDS}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    budget = QUICK if args.quick else FULL
    overrides = {k: getattr(args, k) for k in vars(budget) if getattr(args, k, None) is not None}
    budget = Budget(**(vars(budget) | overrides))
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    impls = available_impls() if args.impls is None else args.impls.split(",")
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)

    results: dict = {"meta": {
        "command": command.strip(), "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "budget": vars(budget),
        "environment": environment(device), "impls": impls,
        "loadavg_start": os.getloadavg(),
    }}
    print(f"flowlab benchmarks ({results['meta']['mode']}): {', '.join(impls)} on {device}, "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}", flush=True)
    t0 = time.perf_counter()
    skipped = []
    if "overhead" in args.sections:
        if flowlab_available():
            print("overhead: flowlab vs bare PyTorch", flush=True)
            results["overhead"] = section_overhead(args, budget, device)
        else:
            skipped.append("overhead: flowlab.models.realnvp is not available")
    if "speed" in args.sections:
        print("speed: every library against the bare affine step", flush=True)
        results["speed"] = section_speed(args, budget, device, impls)
        skipped += results["speed"]["skipped"]
    if "density" in args.sections:
        print("density: lockstep training on shared batches", flush=True)
        results["density"] = section_density(args, budget, device, impls)
        skipped += results["density"]["skipped"]
    results["meta"]["elapsed_s"] = time.perf_counter() - t0
    results["meta"]["loadavg_end"] = os.getloadavg()
    results["meta"]["skipped"] = skipped

    import report

    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "RESULTS.md").write_text(report.markdown(results))
    report.plots(results, out)
    print(f"done in {results['meta']['elapsed_s']:.0f} s: {out / 'RESULTS.md'}", flush=True)
    return results


if __name__ == "__main__":
    main()
