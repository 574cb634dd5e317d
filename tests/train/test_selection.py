"""Honest model selection: validation split from the training data, best-on-validation
weights, early stopping, the test set once at the end, and a resume that keeps all of it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from _toy import toy_data, toy_flow
from flowlab.train import (
    TrainConfig,
    Trainer,
    ValidationSplit,
    load_checkpoint,
    read_metrics,
    seed_everything,
)

QUIET = dict(progress=False, log_every=5, sample_every=0, batch_size=32, lr=5e-3,
             warmup_steps=2)


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**QUIET, "steps": 20, "eval_every": 5, "run_dir": None, **kw})


class Spy(torch.nn.Module):
    """A flow wrapper that records at which step the far-away test points were scored."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow
        self.trainer = None
        self.test_calls: list[int] = []

    def log_prob(self, x):
        if not torch.is_grad_enabled() and bool((x[:, 0] > 50).all()):
            self.test_calls.append(self.trainer.step)
        return self.flow.log_prob(x)

    def sample(self, n, temperature=1.0):
        return self.flow.sample(n, temperature)


# ------------------------------------------------------------------------ the split
def test_split_is_seeded_stratified_disjoint_and_recorded(tmp_path):
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    a = ValidationSplit.draw(100, 0.2, seed=0, labels=labels)
    assert a == ValidationSplit.draw(100, 0.2, seed=0, labels=labels)
    assert a != ValidationSplit.draw(100, 0.2, seed=1, labels=labels)
    val = torch.tensor(a.val_indices)
    assert np.bincount(labels[val].numpy()).tolist() == [12, 6, 2]  # 20 % of every class
    assert sorted(a.val_indices + tuple(a.train_indices.tolist())) == list(range(100))

    run = tmp_path / "run"
    x = toy_data(200)
    trainer = Trainer(toy_flow(), x, None, cfg(run_dir=str(run), steps=5, val_fraction=0.25),
                      labels=torch.arange(200) % 4)
    trainer.fit()
    recorded = json.loads((run / "split.json").read_text())
    # 4 classes of 50: round(0.25 * 50) = 12 of each
    assert recorded["seed"] == 0 and recorded["stratified"] and len(recorded["val_indices"]) == 48
    assert torch.equal(trainer.val_data, x[recorded["val_indices"]])
    assert len(trainer.train_data) == 152


def test_a_split_too_small_or_empty_data_is_a_clear_error():
    with pytest.raises(ValueError, match="gives 0 validation samples"):
        Trainer(toy_flow(), toy_data(4), None, cfg(batch_size=2, val_fraction=0.1))
    with pytest.raises(ValueError, match="the training data is empty"):
        Trainer(toy_flow(), torch.empty(0, 2), None, cfg())
    with pytest.raises(ValueError, match="the test data is empty"):
        Trainer(toy_flow(), toy_data(64), torch.empty(0, 2), cfg())


# ------------------------------------------------------------ never the test set in training
def test_the_test_set_is_scored_once_at_the_end_on_the_selected_weights(tmp_path):
    x = toy_data(256)
    test = toy_data(100, seed=5)
    test[:, 0] += 100.0  # far away: the spy recognises it
    model = Spy(toy_flow())
    trainer = Trainer(model, x, test, cfg(run_dir=str(tmp_path / "run"), steps=20))
    model.trainer = trainer
    history = trainer.fit()
    assert model.test_calls == [20]  # one batch (eval_batch_size 1000), after the last step
    assert [r["step"] for r in history if "test_nll" in r] == [20]
    assert [r["step"] for r in history if "val_nll" in r] == [5, 10, 15, 20]
    saved = json.loads((tmp_path / "run" / "test.json").read_text())
    assert saved == trainer.test_result
    assert saved["selected_on"] == "validation" and saved["selected_step"] == trainer.best_step
    trainer.fit()  # nothing left to train: no second look at the test set
    assert model.test_calls == [20]


def test_best_weights_are_kept_and_patience_stops_early(tmp_path, monkeypatch):
    run = tmp_path / "run"
    x = toy_data(256)
    trainer = Trainer(toy_flow(), x, toy_data(64, seed=3),
                      cfg(run_dir=str(run), steps=100, patience=2, checkpoint_every=1000))
    scores = iter([3.0, 2.0, 2.5, 2.6, 1.0])  # validation bits/dim at steps 5, 10, 15, 20, ...
    real = trainer.evaluate
    weights_at = {}

    def scripted(data=None, use_ema=True):
        if data is trainer.val_data:
            weights_at[trainer.step] = {k: v.clone() for k, v in trainer.model.state_dict().items()}
            return {"nll": 0.0, "bits_per_dim": next(scores)}
        return real(data, use_ema)

    monkeypatch.setattr(trainer, "evaluate", scripted)
    with pytest.warns(UserWarning, match="early stop at step 20"):
        trainer.fit()
    assert trainer.stopped_early and trainer.step == 20
    assert (trainer.best_step, trainer.best_score) == (10, 2.0)
    best = load_checkpoint(run / "best.pt")
    assert best["step"] == 10 and best["selection"]["best_score"] == 2.0
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == 20 and last["selection"]["stopped_early"]
    # the model now holds the step-10 weights, and the test set was scored on them
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, weights_at[10][k]), k
        assert torch.equal(v, best["model"][k]), k
    assert trainer.test_result["selected_step"] == 10
    assert trainer.test_result["nll"] == pytest.approx(real(trainer.test_data)["nll"])
    # the last checkpoint still holds the last weights (to resume from)
    assert any(not torch.equal(last["model"][k], best["model"][k]) for k in best["model"])


def test_a_real_run_selects_the_minimum_of_its_validation_curve(tmp_path):
    x = toy_data(512)
    trainer = Trainer(toy_flow(), x, None, cfg(steps=40, eval_every=4, lr=3e-2))
    rows = [r for r in trainer.fit() if "val_bits_per_dim" in r]
    assert len(rows) == 10
    best = min(rows, key=lambda r: r["val_bits_per_dim"])
    assert trainer.best_step == best["step"]
    assert trainer.best_score == best["val_bits_per_dim"]
    assert math.isclose(trainer.evaluate(trainer.val_data)["bits_per_dim"], trainer.best_score,
                        rel_tol=1e-6)


def test_resume_keeps_the_split_the_best_score_and_the_patience_counter(tmp_path):
    x = toy_data(300)
    c = dict(steps=30, eval_every=3, patience=50, ema_decay=0.8, checkpoint_every=1000)
    straight = Trainer(toy_flow(), x, None, cfg(run_dir=str(tmp_path / "a"), **c))
    straight.fit()
    first = Trainer(toy_flow(), x, None, cfg(run_dir=str(tmp_path / "b"), **c))
    first.fit(stop_at=13)
    split_before = (tmp_path / "b" / "split.json").read_text()
    resumed = Trainer(toy_flow(seed=7), x, None, cfg(run_dir=str(tmp_path / "b"), resume=True, **c))
    resumed.fit()
    assert (tmp_path / "b" / "split.json").read_text() == split_before
    assert (resumed.best_step, resumed.best_score, resumed.evals_since_best) == (
        straight.best_step, straight.best_score, straight.evals_since_best)
    val = lambda run: [r["val_bits_per_dim"] for r in read_metrics(run / "metrics.csv")
                       if r["val_bits_per_dim"]]
    assert val(tmp_path / "a") == val(tmp_path / "b")
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def _val_rows(trainer):
    return [r for r in trainer.history if "val_bits_per_dim" in r]


def test_a_lagging_ema_loses_to_the_raw_weights_and_the_raw_ones_are_kept(tmp_path):
    # decay 0.999 over 30 steps: the average is still close to the initial weights
    x = toy_data(512)
    run = tmp_path / "run"
    trainer = Trainer(toy_flow(), x, toy_data(64, seed=5),
                      cfg(steps=30, eval_every=10, lr=3e-2, ema_decay=0.999, run_dir=str(run)))
    trainer.fit()
    rows = _val_rows(trainer)
    for r in rows:  # both are scored; the row's score is the better one
        assert r["val_bits_per_dim"] == min(r["val_ema_bits_per_dim"], r["val_raw_bits_per_dim"])
    assert rows[-1]["val_raw_bits_per_dim"] < rows[-1]["val_ema_bits_per_dim"] - 0.05
    assert trainer.selected_weights == "raw" and trainer.test_result["selected_weights"] == "raw"
    # the EMA slot holds the chosen (raw) weights: evaluation, sampling and best.pt agree
    best = load_checkpoint(run / "best.pt")
    assert best["selection"]["selected_weights"] == "raw"
    for k, v in best["model"].items():
        assert torch.equal(best["ema"][f"module.{k}"], v), k
        assert torch.equal(trainer.ema.module.state_dict()[k], v), k
    assert math.isclose(trainer.evaluate(trainer.val_data)["bits_per_dim"], trainer.best_score,
                        rel_tol=1e-6)
    # the last checkpoint keeps the real running average, to resume from
    last = load_checkpoint(run / "last.pt")
    assert any(not torch.equal(last["ema"][f"module.{k}"], last["model"][k])
               for k in last["model"])


def test_select_raw_false_selects_on_the_ema_alone():
    x = toy_data(512)
    trainer = Trainer(toy_flow(), x, toy_data(64, seed=5),
                      cfg(steps=30, eval_every=10, lr=3e-2, ema_decay=0.999, select_raw=False))
    trainer.fit()
    rows = _val_rows(trainer)
    assert rows and all("val_raw_bits_per_dim" not in r for r in rows)
    assert trainer.selected_weights == "ema" and trainer.test_result["selected_weights"] == "ema"


def test_without_an_ema_the_model_itself_is_selected():
    trainer = Trainer(toy_flow(), toy_data(256), None, cfg(steps=10))
    trainer.fit()
    assert trainer.selected_weights == "model"
    assert all("val_raw_bits_per_dim" not in r for r in _val_rows(trainer))


def test_no_validation_split_keeps_the_last_weights():
    x = toy_data(128)
    trainer = Trainer(toy_flow(), x, x[:32], cfg(val_fraction=0, steps=10))
    history = trainer.fit()
    assert trainer.val_data is None and not [r for r in history if "val_nll" in r]
    assert trainer.test_result["selected_on"].startswith("last step")
    with pytest.raises(ValueError, match="patience .* needs a validation split"):
        cfg(val_fraction=0, patience=3)


def test_an_explicit_validation_set_is_used_as_given():
    x, v = toy_data(128), toy_data(40, seed=9)
    trainer = Trainer(toy_flow(), x, None, cfg(steps=5), val_data=v)
    assert trainer.split is None and trainer.val_data is v and len(trainer.train_data) == 128


def test_progress_bar_shows_validation_bits_per_dim(monkeypatch):
    import io

    from tqdm import tqdm

    out = io.StringIO()
    trainer = Trainer(toy_flow(), toy_data(256), None, cfg(steps=10, log_every=5))
    monkeypatch.setattr(trainer, "_progress_bar",
                        lambda end: tqdm(total=end, file=out, mininterval=0, disable=False))
    trainer.fit()
    text = out.getvalue()
    assert "val_bpd=" in text and "best=" in text


# --------------------------------------------------------------------- recipe fields, seeds
@pytest.mark.parametrize("name", ["data", "data_root", "n_train", "model", "model_args"])
def test_recipe_settings_are_refused_by_the_loop_with_where_they_belong(name):
    if name != "model":  # Trainer's first argument is the model itself
        with pytest.raises(TypeError, match=f"'{name}' is not a training-loop setting.*Recipe"):
            Trainer(toy_flow(), toy_data(64), None, cfg(), **{name: "moons"})
    with pytest.raises(TypeError, match="Recipe"):
        TrainConfig(**{name: 1})
    with pytest.raises(TypeError, match="Recipe"):
        TrainConfig.from_dict({name: 1})


def test_seed_everything_is_public_and_reproducible():
    import random

    seed_everything(11)
    a = (torch.rand(2), random.random(), np.random.rand())
    seed_everything(11)
    b = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


# -------------------------------------------------------------- the checks context manager
def test_checks_disabled_switches_the_flow_and_dequantization_checks():
    import flowlab as fl
    from flowlab.transforms.dequantize import UniformDequantization

    deq = UniformDequantization(4)
    flow = fl.Flow(fl.StandardNormal(2), [deq, fl.Reverse(2)])
    levels_wrong = torch.tensor([[0.5, 1.0]])
    with pytest.raises(ValueError, match="discrete levels"):
        flow.log_prob(levels_wrong)
    with flow.checks_disabled():
        assert (flow.validate, deq.validate) == (False, False)
        flow.log_prob(levels_wrong)  # no check: no error
    assert (flow.validate, deq.validate) == (True, True)
    already_off = fl.Flow(fl.StandardNormal(2), [UniformDequantization(4, validate=False)])
    with already_off.checks_disabled():
        pass
    assert already_off.transform[0].validate is False  # what was off stays off


def test_the_trainer_switches_the_dequantization_check_off_for_its_steps():
    import flowlab as fl
    from flowlab.transforms.dequantize import UniformDequantization

    seen = []

    class Spying(UniformDequantization):
        def forward(self, x, *args, **kw):
            seen.append((torch.is_grad_enabled(), self.validate))
            return super().forward(x, *args, **kw)

    torch.manual_seed(0)
    flow = fl.Flow(fl.StandardNormal(2), [Spying(8), fl.AffineCoupling(fl.HalfMask(2))])
    x = torch.randint(0, 8, (128, 2)).float()
    Trainer(flow, x, None, cfg(steps=3, val_fraction=0)).fit()
    assert [v for grad, v in seen if grad] == [False] * 3
    assert seen[0] == (False, True)  # the set-up pass (no grad) still checks the data
    assert flow.transform[0].validate is True


# ------------------------------------------------------------ one bits/dim implementation
def test_evaluation_goes_through_flowlab_metrics(monkeypatch):
    from flowlab import metrics
    from flowlab.train import evaluate_nll

    flow = toy_flow()
    x = toy_data(300)
    calls = []
    real = metrics.dataset_bits_per_dim

    def counting(*args, **kw):
        calls.append(kw.get("batch_size"))
        return real(*args, **kw)

    monkeypatch.setattr(metrics, "dataset_bits_per_dim", counting)
    result = evaluate_nll(flow, x, batch_size=128)
    assert calls == [128]
    assert result["bits_per_dim"] == pytest.approx(real(flow.log_prob, x, batch_size=128))
    assert result["nll"] == pytest.approx(-flow.log_prob(x).mean().item(), rel=1e-6)
    with pytest.raises(ValueError, match="empty data set"):
        evaluate_nll(flow, torch.empty(0, 2))


def test_changing_the_split_settings_on_resume_is_refused(tmp_path):
    x = toy_data(200)
    Trainer(toy_flow(), x, None, cfg(run_dir=str(tmp_path / "r"), steps=10)).fit(stop_at=5)
    with pytest.raises(ValueError, match="a resumed run keeps it"):
        Trainer(toy_flow(), x, None,
                cfg(run_dir=str(tmp_path / "r"), steps=10, resume=True, val_fraction=0.3))


# -------------------------------------------------- flowlab.train.selection on its own
def _linear(value):
    m = torch.nn.Linear(1, 1)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.zero_()
    return m


def test_model_selection_keeps_a_copy_of_the_best_and_counts_patience():
    from flowlab.train.selection import ModelSelection

    sel = ModelSelection(patience=2)
    model = _linear(1.0)
    assert sel.observe(10, 3.0, model) and sel.best_weights["model"]["weight"].item() == 1.0
    with torch.no_grad():
        model.weight.fill_(2.0)  # the kept copy does not follow the live weights
    assert sel.best_weights["model"]["weight"].item() == 1.0
    assert not sel.observe(20, 3.0, model)  # equal is not better
    assert not sel.stopped_early and sel.evals_since_best == 1
    assert not sel.observe(30, 3.5, model) and sel.stopped_early
    assert (sel.best_step, sel.best_score, sel.selected_weights) == (10, 3.0, "model")
    assert ModelSelection(patience=0).observe(1, math.nan, model) is False  # nan never best


def test_raw_weights_are_chosen_only_when_strictly_better_and_fill_the_ema_slot():
    from flowlab.train.ema import make_ema
    from flowlab.train.selection import ModelSelection

    ema_m, raw_m = {"bits_per_dim": 2.0, "nll": 1.0}, {"bits_per_dim": 1.5, "nll": 0.8}
    assert ModelSelection.choose(ema_m, raw_m) == (raw_m, "raw")
    assert ModelSelection.choose(ema_m, {**raw_m, "bits_per_dim": 2.0}) == (ema_m, "ema")
    assert ModelSelection.choose(ema_m, None) == (ema_m, "ema")
    assert ModelSelection.choose(ema_m, raw_m, has_ema=False) == (ema_m, "model")
    model = _linear(1.0)
    ema = make_ema(model, 0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)  # the average still holds 1.0
    sel = ModelSelection(has_ema=True)
    sel.observe(5, 1.5, model, ema, kind="raw")
    assert sel.selected_weights == "raw"
    assert sel.best_weights["ema"]["module.weight"].item() == 3.0  # the raw weights, there


def test_holding_the_best_keeps_the_last_weights_to_continue_from():
    from flowlab.train.selection import ModelSelection

    sel = ModelSelection()
    model = _linear(1.0)
    sel.observe(10, 1.0, model)
    with torch.no_grad():
        model.weight.fill_(5.0)
    sel.observe(20, 2.0, model)
    assert sel.hold_best(model, None) and model.weight.item() == 1.0
    assert sel.held["model"]["weight"].item() == 5.0 and not sel.hold_best(model, None)
    sel.release(model, None)
    assert model.weight.item() == 5.0 and sel.held is None
    # after a resume the best weights are only on disk: they are read from there
    resumed = ModelSelection()
    resumed.load_state_dict(sel.state_dict())
    assert resumed.state_dict() == sel.state_dict() and resumed.best_weights is None
    assert resumed.hold_best(model, None, lambda: {"model": {"weight": torch.full((1, 1), 7.0),
                                                             "bias": torch.zeros(1)}})
    assert model.weight.item() == 7.0
    assert not ModelSelection().hold_best(model, None)  # nothing validated: nothing to hold


def test_the_test_report_says_which_weights_and_how_they_were_chosen():
    from flowlab.train.selection import ModelSelection

    sel = ModelSelection()
    metrics = {"nll": 1.0, "bits_per_dim": 0.7}
    assert sel.report(metrics, 50) == {
        **metrics, "selected_step": 50, "trained_steps": 50,
        "selected_on": "last step (no validation)", "best_val_bits_per_dim": None,
        "selected_weights": "model", "stopped_early": False}
    sel.observe(30, 0.9, _linear(1.0))
    report = sel.report(metrics, 50)
    assert (report["selected_step"], report["selected_on"], report["best_val_bits_per_dim"]) \
        == (30, "validation", 0.9)
