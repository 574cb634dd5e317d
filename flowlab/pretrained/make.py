r"""Remake a pretrained checkpoint: ``python -m flowlab.pretrained.make digits-glow``.

``python -m flowlab.pretrained.make --rescore NAME`` only re-scores a shipped checkpoint (same
weights, same training record) and rewrites the evaluation fields of ``<name>.json``; when the
run folder that made those weights is still there (its ``best.pt`` holds the same weights), it
also records that run's learning curve.

Runs ``flowlab train --config flowlab/pretrained/<name>.yaml --run-dir runs/pretrained/<name>``
in a subprocess (timed: user + system CPU seconds of the child), then copies the
best-on-validation weights (``best.pt``'s model state, or its EMA state when the recipe
keeps an EMA, float32) to ``<name>.pt`` and writes
``<name>.json``: the command, CPU and wall time, the trainer's ``test.json``, the test bits/dim
of :func:`flowlab.pretrained.evaluate`, plain and importance-weighted (which
``tests/test_pretrained.py`` checks), the learning curve (training and validation bits/dim at
every validation) and the versions.  Nothing here is selected on the test set: the trainer
picks the weights on its validation split, the test set is only scored.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from . import DATA, HERE, evaluate, load, recipe, record


IW_SAMPLES = 16  #: draws per image of the recorded importance-weighted test bits/dim
RUNS = Path("runs") / "pretrained"  #: where ``make`` trains (relative to the working directory)


def _usage() -> SystemExit:
    return SystemExit(
        "usage: python -m flowlab.pretrained.make [--rescore] NAME  (a NAME.yaml in "
        f"{HERE}; --rescore keeps the weights and re-evaluates them)"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    rescore = "--rescore" in argv
    argv = [a for a in argv if a != "--rescore"]
    if len(argv) != 1 or argv[0].startswith("-"):
        raise _usage()
    name = argv[0]
    path = HERE / f"{name}.json"
    if rescore:
        trained = record(name)
        run_dir = RUNS / name
        ran = all((run_dir / f).is_file() for f in ("metrics.csv", "best.pt"))
        if ran and _same_weights(shipped_weights(run_dir), torch.load(HERE / f"{name}.pt")):
            trained["curve"] = learning_curve(run_dir)  # the run that made these weights
    else:
        trained = train(name)
        # written before scoring: a failure while scoring never loses the training record
        path.write_text(json.dumps(trained, indent=2) + "\n")
    result = {**trained, **score(name)}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def train(name: str) -> dict:
    """Train ``name`` from its recipe, ship its best-on-validation weights; the run's record."""
    spec = recipe(name)
    run_dir = RUNS / name
    cmd = [sys.executable, "-m", "flowlab", "train", "--config", str(HERE / f"{name}.yaml"),
           "--run-dir", str(run_dir), "--overwrite", "--no-progress"]
    shown = (f"flowlab train --config flowlab/pretrained/{name}.yaml "
             f"--run-dir runs/pretrained/{name} --overwrite --no-progress")
    print("running:", shown, flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    torch.save(shipped_weights(run_dir), HERE / f"{name}.pt")
    return {
        "name": name,
        "command": shown,
        "cpu_s": round(cpu, 1),
        "wall_s": round(wall, 1),
        "threads": 1,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": spec["data"],
        "shape_levels": list(DATA[spec["data"]]),
        "train_split": f"{spec['data']}:train minus the trainer's validation split "
                       f"(val_fraction {spec.get('val_fraction', 0.1)}, seed {spec.get('seed', 0)}, "
                       "stratified; split.json of the run)",
        "trainer_test": json.loads((run_dir / "test.json").read_text()),
        "curve": learning_curve(run_dir),
    }


def shipped_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The weights a run ships: ``best.pt``'s model state, or its EMA state when the trainer
    kept one (the trainer validated, and selected, the EMA weights), as float32."""
    from ..train.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "best.pt")
    weights = state["model"]
    if state.get("ema"):
        weights = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    return {k: v.detach().to(torch.float32) if v.is_floating_point() else v
            for k, v in weights.items()}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def learning_curve(run_dir: Path) -> dict[str, list]:
    """The run's learning curve from its ``metrics.csv``, one point per validation: the step,
    the validation bits/dim (the weights the trainer validates: EMA when it keeps one) and the
    mean bits/dim of the training batches logged since the previous validation (raw weights,
    training mode, one dequantization draw each).  Small enough for the record; the book
    plots it."""
    import csv

    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    curve: dict[str, list] = {"step": [], "train_bits_per_dim": [], "val_bits_per_dim": []}
    since: list[float] = []
    for row in rows:
        if row.get("bits_per_dim"):
            since.append(float(row["bits_per_dim"]))
        if row.get("val_bits_per_dim"):
            curve["step"].append(int(row["step"]))
            curve["val_bits_per_dim"].append(round(float(row["val_bits_per_dim"]), 4))
            curve["train_bits_per_dim"].append(round(sum(since) / len(since), 4) if since else None)
            since = []
    return curve


def score(name: str) -> dict:
    """Evaluate the shipped weights of ``name`` on the test split (plain and IW) and beside
    the baselines; nothing here feeds back into training or selection."""
    from ..data.images import load_digits, load_mnist5k
    from ..metrics import baselines

    spec = recipe(name)
    loader = load_digits if spec["data"] == "digits" else load_mnist5k
    train_data, test = loader("train"), loader("test")
    torch.set_num_threads(1)
    model = load(name)
    draws = ("uniform-dequantization draws"
             if spec.get("model_args", {}).get("dequantization", "uniform") == "uniform"
             else "draws of the learned (variational) dequantization noise")
    return {
        "test_split": f"{spec['data']}:test ({len(test)} images)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_bits_per_dim": evaluate(model, test.float()),
        "test_estimate": f"flowlab.pretrained.evaluate: mean over 4 {draws} per image, "
                         "torch.manual_seed(0) (an upper bound on the discrete bits/dim)",
        "test_bits_per_dim_iw": evaluate(model, test.float(), importance_samples=IW_SAMPLES),
        "test_estimate_iw": f"flowlab.pretrained.evaluate(importance_samples={IW_SAMPLES}): "
                            f"{IW_SAMPLES} {draws} per image combined inside "
                            "the logarithm, torch.manual_seed(0) (a tighter upper bound)",
        "baselines": baselines(train_data.images, test.images, train_data.num_levels),
        "file_mb": round((HERE / f"{name}.pt").stat().st_size / 2**20, 2),
        "scored": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


if __name__ == "__main__":
    main()
