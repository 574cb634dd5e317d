"""Every registered model from the command line (issue 29): `flowlab train --model NAME`, then
`flowlab evaluate` and `flowlab sample` on the run, as separate processes in tmp run folders;
conditional models on data with a context (`--data moons-labels`, `digits-labels`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowlab.models.registry import model_names
from flowlab.train import load_checkpoint, load_run

TOY = ["--n-train", "512", "--batch-size", "64", "--log-every", "5", "--eval-every", "5",
       "--sample-every", "0", "--no-progress", "--threads", "1"]
DIGITS = ["--batch-size", "32", "--log-every", "2", "--eval-every", "2", "--sample-every", "0",
          "--no-progress", "--threads", "1"]

# name -> (data, steps, model args): tiny models, a few steps each.
CASES = {
    "maf": ("moons", 10, "{hidden: [16, 16], transforms: 2}"),
    "nsf": ("moons", 10, "{hidden: [16, 16], couplings: 2}"),
    "iaf": ("moons", 10, "{hidden: [16], transforms: 2}"),
    "tarflow": ("digits", 4, "{width: 16, blocks: 2, depth: 1, heads: 2}"),
    "conditional-realnvp": ("moons-labels", 10, "{hidden: [16, 16], couplings: 2}"),
    "conditional-nsf": ("moons-labels", 10, "{hidden: [16, 16], couplings: 2}"),
    "class-conditional": ("digits-labels", 4, "{hidden: [32], transforms: 2}"),
}


def flowlab(*argv: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowlab", *argv], capture_output=True,
                          text=True, timeout=timeout, env={"OMP_NUM_THREADS": "1",
                                                           **_env()})


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


def _model(case: str) -> str:
    return case.removeprefix("conditional-")


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_train_evaluate_sample_every_model_through_the_cli(case, tmp_path):
    data, steps, args = CASES[case]
    run = tmp_path / case
    extra = TOY if not data.startswith("digits") else DIGITS
    out = flowlab("train", "--data", data, "--model", _model(case), "--model-args", args,
                  "--steps", str(steps), "--run-dir", str(run), *extra)
    assert out.returncode == 0, out.stderr
    assert "test NLL" in out.stdout and (run / "best.pt").is_file()
    assert load_checkpoint(run / "last.pt")["step"] == steps

    loaded = load_run(run)
    assert loaded.recipe.model == _model(case)
    conditional = data.endswith("-labels")
    assert bool(getattr(loaded.model, "conditional", False)) == conditional
    if conditional:
        assert loaded.data.context_features == (2 if data.startswith("moons") else 10)

    ev = flowlab("evaluate", "--run-dir", str(run), "--json")
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["data"] == data and torch.isfinite(torch.tensor(result["bits_per_dim"]))
    # the trainer's test evaluation of the selected weights (images: another dequantization
    # noise draw, so only close)
    trained = json.loads((run / "test.json").read_text())["nll"]
    assert result["nll"] == pytest.approx(trained, rel=1e-4 if extra is TOY else 2e-2)
    val = flowlab("evaluate", "--run-dir", str(run), "--split", "val")
    assert val.returncode == 0 and "(val, best.pt" in val.stdout, val.stderr

    tensor = tmp_path / "samples.pt"
    sm = flowlab("sample", "--run-dir", str(run), "-n", "12", "--out", str(tmp_path / "s.png"),
                 "--save-tensor", str(tensor))
    assert sm.returncode == 0, sm.stderr
    x = torch.load(tensor)
    assert x.shape == (12, *loaded.data.event_shape) and bool(torch.isfinite(x).all())


def test_model_choices_come_from_the_registry():
    out = flowlab("train", "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    choices = "{" + ",".join(("auto", *model_names())) + "}"
    assert choices in text
    for name in ("realnvp", "nsf", "maf", "iaf", "multiscale", "glow", "tarflow",
                 "class-conditional"):
        assert name in model_names()
    bad = flowlab("train", "--model", "nsff", "--data", "moons")
    assert bad.returncode == 2 and "invalid choice: 'nsff'" in bad.stderr


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "moons-labels", "--model", "glow"], "needs image data"),
        (["--data", "digits-labels", "--model", "glow"], "cannot condition on a context"),
        (["--data", "digits", "--model", "class-conditional"], "--data digits-labels"),
        (["--data", "moons", "--model", "maf", "--model-args", "{hiden: [8]}"],
         "Did you mean 'hidden'"),
        (["--data", "moons-labels", "--model", "nsf", "--model-args", "{context_features: 5}"],
         "disagrees with the data's context size 2"),
        (["--data", "moons-radius"], "only 'rings-radius'"),
    ],
)
def test_model_and_context_errors_exit_2_with_a_message(argv, message, tmp_path):
    from flowlab.cli import main

    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", *argv, "--steps", "1", "--run-dir", str(tmp_path / "r"), *TOY])
    assert code == 2
    assert message in err.getvalue()
    assert not Path(tmp_path / "r" / "last.pt").exists()
