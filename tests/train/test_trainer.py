"""The Trainer on a tiny 2-D flow built from the foundation only (see _toy.py)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from _toy import toy_data, toy_data_entropy, toy_flow
from flowlab.train import (
    NegativeLogLikelihood,
    RunDirExistsError,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    load_checkpoint,
    read_metrics,
)

QUIET = dict(progress=False, log_every=5, eval_every=10_000, sample_every=0)


def cfg(**kw) -> TrainConfig:
    base = dict(steps=30, batch_size=64, lr=5e-3, warmup_steps=5, run_dir=None, **QUIET)
    base.update(kw)
    return TrainConfig(**base)


def test_converges_to_the_data_entropy():
    # The best achievable NLL is the data's differential entropy; the toy flow contains the
    # true model (an affine map of a Gaussian), so training must get close to it.
    x = toy_data(2048)
    trainer = Trainer(toy_flow(), x, x[:512], cfg(steps=200, batch_size=128, lr=2e-2))
    start = trainer.evaluate()["nll"]
    trainer.fit()
    end = trainer.evaluate()["nll"]
    assert start > toy_data_entropy() + 5
    assert end < toy_data_entropy() + 0.1


def test_evaluate_is_the_mean_nll_and_bits_per_dim():
    flow = toy_flow()
    x = toy_data(300)
    trainer = Trainer(flow, x, x, cfg(eval_batch_size=128))  # 3 uneven batches
    metrics = trainer.evaluate()
    expected = -flow.log_prob(x).mean().item()
    assert metrics["nll"] == pytest.approx(expected, rel=1e-6)
    assert metrics["bits_per_dim"] == pytest.approx(expected / (2 * math.log(2)), rel=1e-6)


def test_evaluate_uses_a_custom_bits_per_dim():
    x = toy_data(64)
    trainer = Trainer(toy_flow(), x, x, cfg(val_fraction=0), bits_per_dim=lambda nll: nll + 100.0)
    m = trainer.evaluate()
    assert m["bits_per_dim"] == pytest.approx(m["nll"] + 100.0)


def test_run_folder_holds_checkpoint_metrics_config_and_samples(tmp_path):
    run = tmp_path / "run"
    x = toy_data(256)
    c = cfg(run_dir=str(run), steps=20, eval_every=10, sample_every=10, checkpoint_every=10)
    history = Trainer(toy_flow(), x, x[:64], c).fit()
    assert (run / "config.yaml").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_0000010.png", "step_0000020.png"
    ]
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 20 and state["config"]["steps"] == 20
    assert load_checkpoint(run / "previous.pt")["step"] == 10  # kept beside the last
    assert (run / "best.pt").is_file() and (run / "split.json").is_file()
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["step"]) for r in rows if r["loss"]] == [5, 10, 15, 20]
    # validation every eval_every steps; the test set once, at the end
    assert [int(r["step"]) for r in rows if r["val_nll"]] == [10, 20]
    assert [int(r["step"]) for r in rows if r["test_nll"]] == [20]
    assert len(rows) == len(history)
    train_rows = [r for r in rows if r["loss"]]
    assert all(float(r["samples_per_s"]) > 0 for r in train_rows)
    assert float(train_rows[-1]["loss"]) < float(train_rows[0]["loss"])
    # bits/dim of a training row is its loss / (D ln 2), D = 2
    r = train_rows[-1]
    assert float(r["bits_per_dim"]) == pytest.approx(float(r["loss"]) / (2 * math.log(2)))


def test_existing_run_folder_is_never_overwritten_silently(tmp_path):
    run = tmp_path / "run"
    x = toy_data(128)
    Trainer(toy_flow(), x, None, cfg(run_dir=str(run), steps=5)).fit()
    before = (run / "metrics.csv").read_text()
    with pytest.raises(RunDirExistsError, match="--resume.*--overwrite"):
        Trainer(toy_flow(), x, None, cfg(run_dir=str(run), steps=5)).fit()
    assert (run / "metrics.csv").read_text() == before
    Trainer(toy_flow(), x, None, cfg(run_dir=str(run), steps=10, overwrite=True)).fit()
    assert load_checkpoint(run / "last.pt")["step"] == 10


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    x = toy_data(128)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(toy_flow(), x, None, cfg(run_dir=str(tmp_path / "new"), resume=True)).fit()


class PairDataset(torch.utils.data.Dataset):
    """A map-style dataset of (x, label) pairs: exercises the DataLoader path."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], 0


@pytest.mark.parametrize("as_dataset", [False, True])
def test_stopped_and_resumed_run_is_bit_for_bit_identical(tmp_path, as_dataset):
    x = toy_data(200)  # 3 batches of 64 per epoch: the stop falls mid-epoch
    data = PairDataset(x) if as_dataset else x
    c = dict(steps=25, ema_decay=0.9, checkpoint_every=100)

    straight = Trainer(toy_flow(), data, None, cfg(run_dir=str(tmp_path / "a"), **c))
    straight.fit()

    first = Trainer(toy_flow(), data, None, cfg(run_dir=str(tmp_path / "b"), **c))
    first.fit(stop_at=11)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 11
    torch.manual_seed(1234)  # a different global random state must not matter
    resumed = Trainer(toy_flow(seed=99), data, None,
                      cfg(run_dir=str(tmp_path / "b"), resume=True, **c))
    resumed.fit()

    assert resumed.step == straight.step == 25
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name
    for p, q in zip(straight.ema.module.parameters(), resumed.ema.module.parameters()):
        assert torch.equal(p, q)
    assert straight.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]
    # the resumed metrics file continues the old one (plus the row logged at the stop)
    steps = [int(r["step"]) for r in read_metrics(tmp_path / "b" / "metrics.csv") if r["loss"]]
    assert steps == [5, 10, 11, 15, 20, 25]


class Flaky(nn.Module):
    """Wraps a flow; log_prob returns NaN on the training calls listed in `bad`."""

    def __init__(self, flow, bad):
        super().__init__()
        self.flow = flow
        self.bad = set(bad)
        self.calls = 0

    def log_prob(self, x):
        lp = self.flow.log_prob(x)
        if torch.is_grad_enabled():
            self.calls += 1
            if self.calls in self.bad or (self.bad and max(self.bad) < 0 and self.calls > -max(self.bad)):
                return lp * float("nan")
        return lp


def test_non_finite_step_is_skipped_with_a_warning():
    x = toy_data(128)
    model = Flaky(toy_flow(), bad={3})
    trainer = Trainer(model, x, None, cfg(steps=2))
    trainer.fit()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.config = trainer.config.updated({"steps": 4})
    with pytest.warns(RuntimeWarning, match="step 3: non-finite loss"):
        trainer.fit(stop_at=3)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update at step 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit()  # step 4 is fine again
    assert not all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.bad_steps == 0


def test_repeated_failures_stop_with_the_likely_causes(tmp_path):
    run = tmp_path / "run"
    x = toy_data(128)
    model = Flaky(toy_flow(), bad={-7})  # every training call after the 7th is NaN
    c = cfg(run_dir=str(run), steps=50, checkpoint_every=5, max_bad_steps=4)
    with pytest.warns(RuntimeWarning), pytest.raises(TrainingDiverged) as err:
        Trainer(model, x, None, c).fit()
    msg = str(err.value)
    assert "step 11" in msg and "4 consecutive" in msg
    for cause in ("learning rate", "unbounded scale", "bad data", "last good checkpoint"):
        assert cause in msg
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("grad_clip", [0.0, 1.0])
def test_a_nan_gradient_with_a_finite_loss_is_skipped(grad_clip):
    # Without clipping, steps between two logged rows only check the gradients for NaN/inf
    # (a fused flag, not a norm): a poisoned gradient must still skip the step.
    x = toy_data(128)
    flow = toy_flow()
    param = next(flow.parameters())
    poisoned = {3}
    calls = []

    def hook(grad):
        calls.append(1)
        return grad * float("nan") if len(calls) in poisoned else grad

    param.register_hook(hook)
    trainer = Trainer(flow, x, None, cfg(steps=5, grad_clip=grad_clip, log_every=100))
    trainer.prepare()  # its initialisation pass changes no parameter
    snapshots = [param.detach().clone()]  # before step 1, then after each step
    records = []

    @trainer.on_step
    def record(r):
        snapshots.append(param.detach().clone())
        records.append(r)

    # the gradient norm (a public torch API) is the check, with and without clipping
    with pytest.warns(RuntimeWarning, match="step 3: non-finite loss .* gradients \\(norm nan"):
        rows = trainer.fit()
    assert [r.finite for r in records] == [True, True, False, True, True]
    assert math.isnan(records[2].grad_norm) and math.isfinite(records[2].loss)
    assert torch.equal(snapshots[2], snapshots[3])  # step 3 changed nothing
    assert not torch.equal(snapshots[3], snapshots[4])  # step 4 trained again
    assert trainer.bad_steps == 0
    train_rows = [r for r in rows if "loss" in r]
    assert train_rows[-1]["skipped"] == 1 and math.isfinite(train_rows[-1]["loss"])


def test_grad_norm_column_is_measured_without_clipping():
    x = toy_data(256)
    rows = Trainer(toy_flow(), x, None, cfg(steps=10, grad_clip=0.0, log_every=5)).fit()
    norms = [r["grad_norm"] for r in rows if "loss" in r]
    assert len(norms) == 2 and all(math.isfinite(g) and g > 0 for g in norms)


def test_nan_in_tensor_data_is_reported_before_training():
    x = toy_data(128)
    x[17, 1] = float("nan")
    with pytest.raises(ValueError, match=r"the training data contains NaN or infinite values \(in sample\(s\) \[17\]\)"):
        Trainer(toy_flow(), x, None, cfg()).fit()
    y = toy_data(64)
    y[3] = float("inf")
    with pytest.raises(ValueError, match=r"the test data contains NaN or infinite values \(in sample\(s\) \[3\]\)"):
        Trainer(toy_flow(), toy_data(128), y, cfg()).fit()


def test_flow_input_checks_are_off_while_training_only():
    x = toy_data(128)
    flow = toy_flow()
    seen = []
    original = flow.forward

    def spy(inp, *args, **kw):
        seen.append(flow.validate)
        return original(inp, *args, **kw)

    flow.forward = spy
    Trainer(flow, x, None, cfg(steps=3, val_fraction=0)).fit()
    assert seen[0] is True  # the set-up pass validates the first batch
    assert seen[1:] == [False] * 3
    assert flow.validate is True


def test_bf16_autocast_trains_and_keeps_the_loss_in_float32():
    x = toy_data(256)
    flow = toy_flow()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        nll = NegativeLogLikelihood(flow)(x)
    assert nll.dtype == torch.float32
    trainer = Trainer(flow, x, None, cfg(steps=40, bf16=True))
    rows = [r for r in trainer.fit() if "loss" in r]
    assert math.isfinite(rows[-1]["loss"]) and rows[-1]["loss"] < rows[0]["loss"]


def test_float64_model_trains_in_float64():
    x = toy_data(128)  # float32 data is cast to the model's dtype
    trainer = Trainer(toy_flow().double(), x, x, cfg(steps=5))
    trainer.fit()
    assert NegativeLogLikelihood(trainer.model)(x.double()).dtype == torch.float64
    assert math.isfinite(trainer.evaluate()["nll"])


def test_sample_uses_the_ema_weights_and_a_fixed_seed():
    x = toy_data(128)
    # select_raw=False: the best-on-validation weights held at the end are the EMA's
    trainer = Trainer(toy_flow(), x, None, cfg(steps=10, ema_decay=0.5, select_raw=False))
    trainer.fit()
    a, b = trainer.sample(16, seed=3), trainer.sample(16, seed=3)
    assert a.shape == (16, 2) and torch.equal(a, b)
    torch.manual_seed(3)
    assert torch.allclose(a, trainer.ema.module.sample(16))
    assert not torch.equal(
        next(trainer.ema.module.parameters()), next(trainer.model.parameters())
    )


def test_bad_setups_raise_clear_errors():
    x = toy_data(32)
    with pytest.raises(TypeError, match="log_prob"):
        Trainer(nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(toy_flow(), x, None, cfg(batch_size=64))
    with pytest.raises(ValueError, match="CUDA is not available"):
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        Trainer(toy_flow(), x, None, cfg(batch_size=8, device="cuda"))


def test_torch_compile_trains_like_eager():
    # The compiled loss (inductor on CPU) must give the eager run's losses to float tolerance.
    x = toy_data(256)
    runs = {}
    for compiled in (False, True):
        torch._dynamo.reset()
        trainer = Trainer(toy_flow(), x, None, cfg(steps=6, log_every=1, compile=compiled))
        runs[compiled] = [r["loss"] for r in trainer.fit() if "loss" in r]
    assert len(runs[True]) == 6
    assert runs[True] == pytest.approx(runs[False], rel=1e-4, abs=1e-4)
