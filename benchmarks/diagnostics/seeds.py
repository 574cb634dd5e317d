"""Density at equal steps over several seeds: is a difference between libraries real?

One seed's test bits/dim differ by about 0.01-0.02 between seeds, as much as the libraries
differ from each other, so the claim "flowlab's best flat model beats every peer" is checked on
three seeds.  For each seed this runs ``run.py --sections density`` on the digits (500 steps)
with every installed library's spline coupling and flowlab's spline-lu, then tabulates them.

    python benchmarks/seeds.py                      # seeds 0, 1, 2 (about 8 minutes on 2 cores)
    python benchmarks/seeds.py --seeds 0,1,2,3,4

A seed whose ``results/seeds/seed<N>/results.json`` exists is not run again (delete the folder
to redo it).  Writes ``benchmarks/results/density_seeds.md``.

``--study logit`` is issue 13's spline generalisation study instead (logit-space digits, bound
5, 500 steps; flowlab's spline flow in the settings given by ``--variants`` against nflows and
normflows, test and train curves every 25 steps; ``--data moons`` for two moons):

    python benchmarks/seeds.py --study logit --seeds 0,1,2 --variants 'param_scale=1;default'
    python benchmarks/seeds.py --study logit --report      # the table from the saved JSON

It writes ``results/spline_logit/seed<N>.json`` and ``results/spline_logit.md``.  ``--alpha 0``
leaves the digits in [0, 1] (no logit), the setting of ``run.py``'s digits task with ``--bound 3``:

    python benchmarks/seeds.py --study logit --alpha 0 --bound 3 --validation \
        --out benchmarks/results/spline_unit_val --variants 'param_scale=1;param_scale=0.25;default'

``--validation`` scores a stratified 10 % of the *training* images instead of the test split
(results in ``results/spline_logit_val``): the honest place to choose a setting such as
``param_scale``.

    python benchmarks/seeds.py --study logit --validation --seeds 0,1,2 \
        --variants 'param_scale=1;param_scale=0.125;default;param_scale=0.03125'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/: the shared modules and results/
sys.path.insert(0, str(HERE))

from contenders import available_impls  # noqa: E402
from provenance import Provenance  # noqa: E402


# ------------------------------------------------------------------ the spline generalisation study
# Issue 13: in an independent harness (8 spline couplings, 8 bins, bound 5, logit-space digits,
# 500 steps) flowlab's spline flow overfitted faster than nflows' and normflows'.  ``--study
# logit`` rebuilds that setting here: the same data, batches, initialisation seed and optimiser
# (Adam, lr 1e-3, batch 256) for every model, test and train bits/dim recorded every
# ``--every`` steps, so that the curves show *when* a model starts to overfit.

def _logit_digits(alpha: float, seed: int, validation: bool = False):
    """Dequantized digits moved to logit space, ``z = logit(alpha + (1 - 2 alpha) y)``
    (``alpha = 0``: left in [0, 1], ``z = y``, log-determinant 0).

    Returns the train levels, the fixed test and train-probe sets in logit space with the mean
    log-determinant of the logit map over each (added back to score bits/dim of the discrete
    data), the number of levels and a function that dequantizes and maps a training batch.

    With ``validation=True`` the test split is not touched: a stratified 10 % of the training
    images (``numpy.random.RandomState(seed)``) is held out and scored in its place, and the
    models train on the other 90 % -- the split on which settings may be *chosen*.
    """
    import math

    import torch

    from flowlab.data import images

    train = images.load_digits("train")
    test = images.load_digits("test")
    if validation:
        keep, held = images.stratified_split(train.labels.numpy(), 0.1, seed)
        test = images.ImageData(train.images[held], train.labels[held], train.num_levels,
                                "digits:validation")
        train = images.ImageData(train.images[keep], train.labels[keep], train.num_levels,
                                 "digits:train-minus-validation")
    levels, dim = train.num_levels, 64
    x_train = train.images.float().reshape(len(train), dim)
    x_test = test.images.float().reshape(len(test), dim)

    def to_logit(x, generator):
        y = (x + torch.rand(x.shape, generator=generator)) / levels
        if alpha == 0:  # no logit: the dequantized digits in [0, 1], as in run.py's task
            return y, torch.zeros(len(y))
        p = alpha + (1.0 - 2.0 * alpha) * y
        z = torch.log(p) - torch.log1p(-p)
        logdet = (math.log1p(-2.0 * alpha) - torch.log(p) - torch.log1p(-p)).sum(dim=1)
        return z, logdet

    z_test, ld_test = to_logit(x_test, torch.Generator().manual_seed(seed + 1))
    probe = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed + 2))
                    [: len(x_test)]]
    z_probe, ld_probe = to_logit(probe, torch.Generator().manual_seed(seed + 3))
    return x_train, (z_test, ld_test), (z_probe, ld_probe), levels, dim, to_logit


def _moons(n_train: int, seed: int):
    """Two moons with a small training set (so that a flow can overfit it in 500 steps), the
    same interface as :func:`_logit_digits`; NLL in nats (no log-determinant to add back)."""
    import torch

    from flowlab.data import toy2d

    train = toy2d.toy_dataset("two_moons", n_train, seed=seed).float()
    test = toy2d.toy_dataset("two_moons", 5000, seed=seed + 1000).float()
    zeros = torch.zeros(len(test))

    def identity(x, generator):
        return x, torch.zeros(len(x))

    return train, (test, zeros), (train[: len(test)], torch.zeros(min(len(train), len(test)))), \
        None, 2, identity


def _study_models(variants: list[str], impls: list[str], spec, seed: int) -> dict:
    """flowlab's spline flow in each ``variant`` (RQSplineCoupling keyword settings) and the
    installed peers' spline flows, each built right after ``torch.manual_seed(seed)``."""
    import torch

    import flowlab as fl
    from contenders import build
    from peers import Contender

    models = {}
    for variant in variants:
        kwargs = _variant_kwargs(variant)
        torch.manual_seed(seed)
        layers = [fl.RQSplineCoupling(fl.HalfMask(spec.features, flip=i % 2 == 1),
                                      bins=spec.bins, bound=spec.bound, hidden=spec.hidden,
                                      **kwargs)
                  for i in range(spec.couplings)]
        flow = fl.Flow(fl.StandardNormal(spec.features), layers, validate=False)
        models[f"flowlab {variant}"] = Contender("flowlab", variant, flow, flow.log_prob,
                                                 flow.sample)
    for impl in impls:
        models[f"{impl} spline"] = build(impl, "spline", spec, seed=seed)
    return models


def _variant_kwargs(variant: str) -> dict:
    """``"default"`` or ``"key=value,key=value"`` -> keyword arguments of RQSplineCoupling."""
    if variant == "default":
        return {}
    out = {}
    for item in variant.split(","):
        key, value = item.split("=")
        out[key] = None if value == "None" else float(value)
    return out


def study_logit(argv: list[str] | None = None) -> int:
    import math
    import shlex
    import time

    import torch

    from peers import ModelSpec, available_peers

    p = argparse.ArgumentParser(description="spline generalisation on logit-space digits")
    p.add_argument("--study", default="logit")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--data", default="digits", choices=["digits", "moons"],
                   help="logit-space digits (bits/dim) or two moons (NLL in nats)")
    p.add_argument("--n-train", type=int, default=1000, help="moons: training points")
    p.add_argument("--hidden", default="256,256")
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--bound", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--variants", default="default",
                   help="flowlab settings, ';'-separated: default or key=value,key=value")
    p.add_argument("--impls", default=None, help="peers (default: nflows,normflows if installed)")
    p.add_argument("--out", default=str(HERE / "results" / "spline_logit"))
    p.add_argument("--report", action="store_true", help="only rewrite the table from --out")
    p.add_argument("--validation", action="store_true",
                   help="digits: score a validation split carved from the training images "
                        "instead of the test split (for choosing settings; default --out "
                        "results/spline_logit_val)")
    args = p.parse_args(argv)
    if args.validation and args.out == str(HERE / "results" / "spline_logit"):
        args.out = str(HERE / "results" / "spline_logit_val")
    if args.report:
        write_study_table(Path(args.out))
        return 0
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(";")
    impls = ([i for i in args.impls.split(",") if i] if args.impls is not None
             else [i for i in ("nflows", "normflows") if i in available_peers()])
    hidden = tuple(int(h) for h in args.hidden.split(","))
    features = 64 if args.data == "digits" else 2
    spec = ModelSpec(features=features, couplings=8, hidden=hidden, bins=8, bound=args.bound)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        x_train, (z_test, ld_test), (z_probe, ld_probe), levels, dim, to_logit = (
            _logit_digits(args.alpha, seed, args.validation) if args.data == "digits"
            else _moons(args.n_train, seed))

        def bpd(model, z, logdet):
            """Bits/dim of the discrete digits, or the NLL in nats on moons."""
            with torch.no_grad():
                nll = -(model.log_prob(z) + logdet).mean().item()
            if levels is None:
                return nll
            return (nll + dim * math.log(levels)) / (dim * math.log(2.0))

        models = _study_models(variants, impls, spec, seed)
        opts = {k: torch.optim.Adam(c.module.parameters(), lr=1e-3) for k, c in models.items()}
        curves = {k: [] for k in models}
        seconds = {k: 0.0 for k in models}
        generator = torch.Generator().manual_seed(seed)
        names = list(models)
        for step in range(args.steps + 1):
            if step % args.every == 0 or step == args.steps:
                for k, c in models.items():
                    curves[k].append((step, bpd(c, z_test, ld_test), bpd(c, z_probe, ld_probe)))
            if step == args.steps:
                break
            idx = torch.randint(len(x_train), (256,), generator=generator)
            z, _ = to_logit(x_train[idx], generator)
            for k in names if step % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                opts[k].zero_grad(set_to_none=True)
                loss = -models[k].log_prob(z).mean()
                loss.backward()
                opts[k].step()
                seconds[k] += time.perf_counter() - t0
        result = {
            "command": "python benchmarks/seeds.py " + shlex.join(sys.argv[1:] if argv is None
                                                                  else argv),
            "seed": seed, "steps": args.steps, "data": args.data,
            "metric": "bits/dim" if args.data == "digits" else "NLL (nats)",
            "alpha": args.alpha if args.data == "digits" else None,
            "scored_on": "validation (10 % of digits:train, stratified)" if args.validation
                         else "test",
            "n_train": len(x_train), "spec": vars(spec) | {"hidden": list(spec.hidden)},
            "models": {k: {"curve": curves[k], "test": curves[k][-1][1],
                           "train": curves[k][-1][2],
                           "best_test": min(c[1] for c in curves[k]),
                           "seconds_per_step": seconds[k] / args.steps} for k in models},
        }
        path = out / f"seed{seed}.json"
        old = json.loads(path.read_text()) if path.exists() else {"models": {}}
        old["models"].update(result["models"])
        result["models"] = old["models"]
        path.write_text(json.dumps(result, indent=1))
        for k in models:
            r = result["models"][k]
            print(f"seed {seed} {k:40s} test {r['test']:.4f} train {r['train']:.4f} "
                  f"best {r['best_test']:.4f} {1000 * r['seconds_per_step']:.0f} ms/step",
                  flush=True)
    write_study_table(out)
    return 0


def write_study_table(out: Path) -> str:
    """``<out>.md``: final test and train score, and the best test score on the way, per model
    and seed, from every ``seed<N>.json`` in ``out`` (also ``--study logit --report``)."""
    import statistics

    runs = {int(f.stem[4:]): json.loads(f.read_text()) for f in sorted(out.glob("seed*.json"))}
    if not runs:
        raise SystemExit(f"no seed*.json in {out}")
    seeds = sorted(runs)
    first = runs[seeds[0]]
    metric = first.get("metric", "bits/dim")
    models = list(first["models"])
    on_val = first.get("scored_on", "test") != "test"
    word = "val" if on_val else "test"
    lines = [
        f"# Spline generalisation: {first.get('data', 'digits')}, {first['steps']} steps, "
        f"{'validation' if on_val else 'test'} {metric} over seeds"
        + (" (scored on a validation split carved from the training images; the test split "
           "untouched)" if on_val else ""),
        "",
        "8 RQ-spline couplings (8 bins, bound "
        f"{first['spec']['bound']:g}, MLP {first['spec']['hidden']}), Adam lr 1e-3, batch 256, "
        "the same batches and initialisation seed for every model within a seed"
        + (f"; digits in logit space (alpha {first['alpha']})" if first.get("alpha") else
           "; digits in [0, 1] (no logit, as in run.py)" if first.get("alpha") == 0 else "")
        + ". Commands (one per seed): "
        + "; ".join(f"`{runs[s]['command']}`" for s in seeds) + ".",
        "",
        "| model | " + " | ".join(f"seed {s}" for s in seeds)
        + f" | **mean {word}** | mean train | mean best {word} (step) | ms/step |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: | ---: | ---: | ---: |",
    ]
    def mean_test(k: str) -> float:
        return statistics.mean(runs[s]["models"][k]["test"] for s in seeds
                               if k in runs[s]["models"])

    for k in sorted(models, key=mean_test):
        rows = [runs[s]["models"].get(k) for s in seeds]
        have = [r for r in rows if r is not None]
        best_steps = [min(r["curve"], key=lambda c: c[1])[0] for r in have]
        label = {"flowlab default": "flowlab default (param_scale = 1/sqrt(hidden))",
                 "flowlab param_scale=1": "flowlab param_scale=1 (the old default)"}.get(k, k)
        lines.append(
            f"| {label} | " + " | ".join(f"{r['test']:.4f}" if r else "-" for r in rows)
            + f" | **{statistics.mean(r['test'] for r in have):.4f}**"
            + f" | {statistics.mean(r['train'] for r in have):.4f}"
            + f" | {statistics.mean(r['best_test'] for r in have):.4f} "
            f"({', '.join(map(str, best_steps))})"
            + f" | {statistics.mean(1000 * r['seconds_per_step'] for r in have):.0f} |")
    lines += ["", "ms/step: measured inside the lockstep loop on a shared, loaded machine "
              "(ratios only roughly meaningful; see benchmarks/run.py for speed).", ""]
    text = "\n".join(lines)
    out.with_suffix(".md").write_text(text)
    print(text)
    return text


def main(argv: list[str] | None = None) -> int:
    if "--study" in (sys.argv[1:] if argv is None else argv):
        return study_logit(argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    started = Provenance.for_script(__file__, argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    impls = [i for i in available_impls() if i not in ("bare", "FrEIA")]  # no spline there
    import run

    table: dict[str, dict[int, float]] = {}
    for seed in seeds:
        out = HERE / "results" / "seeds" / f"seed{seed}"
        if not (out / "results.json").exists():
            run.main(["--sections", "density", "--tasks", "digits", "--impls", ",".join(impls),
                      "--kinds", "spline,spline-lu", "--threads", str(args.threads),
                      "--seed", str(seed), "--out", str(out)])
        data = json.loads((out / "results.json").read_text())
        for row in data["density"]["tasks"][0]["rows"]:
            table.setdefault(f"{row['impl']} {row['kind']}", {})[seed] = row["test"]
    order = sorted(table, key=lambda k: statistics.mean(table[k].values()))
    lines = [
        "# Test bits/dim on the 8x8 digits over seeds (500 steps, spline couplings)",
        "",
        started.line(),
        "",
        "Each seed is one `run.py --sections density --tasks digits` run (same data split, batches and "
        "initialisation seed for every library within a seed).",
        "",
        "| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | rank per seed |",
        "| --- | " + " | ".join("---:" for _ in seeds) + " | ---: | --- |",
    ]
    ranks = {k: [] for k in table}
    for s in seeds:
        for rank, k in enumerate(sorted(table, key=lambda k: table[k].get(s, float("inf"))), 1):
            ranks[k].append(rank)
    for k in order:
        vals = [table[k].get(s) for s in seeds]
        lines.append(f"| {k} | " + " | ".join(f"{v:.4f}" if v is not None else "-" for v in vals)
                     + f" | **{statistics.mean(v for v in vals if v is not None):.4f}** | "
                     + ", ".join(map(str, ranks[k])) + " |")
    lines.append("")
    (HERE / "results" / "density_seeds.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
