"""Config, schedule, EMA, checkpoint files and the learning-curve plot."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from flowlab.plots.curves import load_history, plot_learning_curve
from flowlab.train import (
    TrainConfig,
    load_checkpoint,
    make_ema,
    rng_state,
    save_checkpoint,
    set_rng_state,
    warmup_cosine,
)
from flowlab.train import checkpoint as checkpoint_module


# ------------------------------------------------------------------------------ config
def test_config_reads_yaml_and_toml_and_flags_win(tmp_path):
    (tmp_path / "a.yaml").write_text("steps: 12\nbatch-size: 32\nlr: 0.01\nbf16: true\n")
    (tmp_path / "b.toml").write_text("[train]\nsteps = 7\nval_fraction = 0.25\n")
    a = TrainConfig.from_file(tmp_path / "a.yaml", lr=0.5)
    assert (a.steps, a.batch_size, a.lr, a.bf16) == (12, 32, 0.5, True)
    b = TrainConfig.from_file(tmp_path / "b.toml")
    assert b.steps == 7 and b.val_fraction == 0.25
    assert TrainConfig.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    "values, match",
    [
        ({"stesp": 3}, "unknown training setting 'stesp'. Did you mean 'steps'"),
        ({"steps": 0}, "steps must be a positive integer"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"lr": "fast"}, "lr must be a number"),
        ({"ema_decay": 1.0}, "ema_decay must lie in"),
        ({"resume": True, "overwrite": True}, "choose one of resume"),
        ({"bf16": "yes"}, "bf16 must be true or false"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(values, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(values)


def test_config_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ValueError, match=".yaml, .yml or .toml"):
        TrainConfig.from_file(tmp_path / "c.json")


# ----------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("warmup", [0, 1, 4])
def test_warmup_cosine_follows_the_formula(warmup):
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    total, ratio = 12, 0.1
    sched = warmup_cosine(opt, total, warmup, ratio)
    for t in range(total + 1):
        if t < warmup:
            expected = 2.0 * (t + 1) / warmup
        else:
            expected = 0.2 + 0.5 * (2.0 - 0.2) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9, abs=1e-12), t
        opt.step()
        sched.step()


# ---------------------------------------------------------------------------------- EMA
def test_ema_is_the_exponential_average_and_copies_integer_buffers():
    model = nn.Linear(2, 1)
    model.register_buffer("counter", torch.tensor(0))
    ema = make_ema(model, decay=0.9)
    values = []
    for k in range(3):
        with torch.no_grad():
            model.weight.fill_(float(k + 1))
        model.counter.fill_(k + 10)
        ema.update_parameters(model)
        values.append(float(k + 1))
    expected = values[0]
    for v in values[1:]:
        expected = 0.9 * expected + 0.1 * v
    assert torch.allclose(ema.module.weight, torch.full_like(model.weight, expected))
    assert int(ema.module.counter) == 12


# --------------------------------------------------------------------------- checkpoint
def test_checkpoint_round_trip_and_random_states(tmp_path):
    path = tmp_path / "ck" / "checkpoint.pt"
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    saved = rng_state()
    save_checkpoint({"model": {"w": torch.ones(2)}, "rng": saved}, path)
    expected = (torch.rand(3), random.random(), np.random.rand())
    set_rng_state(load_checkpoint(path)["rng"])
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_a_crash_while_writing_leaves_the_last_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {"w": torch.zeros(3)}, "step": 1}, path)

    def dies_half_way(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of torch.save

    monkeypatch.setattr(checkpoint_module.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model": {"w": torch.ones(3)}, "step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left


def test_loading_something_else_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable flowlab checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


# ------------------------------------------------------------------------------- curves
def test_plot_learning_curve_from_history_and_csv(tmp_path):
    history = [
        {"step": 5, "loss": 3.0, "bits_per_dim": 2.1},
        {"step": 10, "loss": 2.0, "bits_per_dim": 1.4},
        {"step": 10, "test_nll": 2.5, "test_bits_per_dim": 1.8},
    ]
    fig = plot_learning_curve(history, reference=1.0)
    lines = fig.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines[:2]] == [[3.0, 2.0], [2.5]]
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("step,loss,test_nll\n5,3.0,\n10,2.0,\n10,,2.5\n")
    assert load_history(tmp_path) == [
        {"step": 5.0, "loss": 3.0}, {"step": 10.0, "loss": 2.0}, {"step": 10.0, "test_nll": 2.5}
    ]
    fig = plot_learning_curve(csv_path)
    assert fig.axes[0].get_ylabel().startswith("negative log-likelihood")
    with pytest.raises(ValueError, match="no 'bits_per_dim'"):
        plot_learning_curve(csv_path, unit="bpd")


def test_a_checkpoint_with_the_old_chained_scheduler_resumes_on_the_same_schedule(tmp_path):
    """Checkpoints written before the closed-form schedule hold a SequentialLR state; a resume
    puts the closed form at the checkpoint's step (the same rate), without a jump."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    from flowlab.train import Trainer

    from _toy import toy_flow

    x = torch.randn(256, 2)
    cfg = TrainConfig(steps=20, warmup_steps=4, lr=1e-2, min_lr_ratio=0.1, batch_size=32,
                      progress=False, sample_every=0, val_fraction=0, run_dir=str(tmp_path / "r"),
                      checkpoint_every=10)
    trainer = Trainer(toy_flow(), x, config=cfg)
    trainer.fit(stop_at=10)
    state = load_checkpoint(tmp_path / "r" / "last.pt")
    # the scheduler state flowlab wrote before: LinearLR then CosineAnnealingLR, at step 10
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-2)
    old = SequentialLR(opt, [LinearLR(opt, 0.25, 1.0, total_iters=3),
                             CosineAnnealingLR(opt, T_max=16, eta_min=1e-3)], milestones=[4])
    for _ in range(10):
        opt.step()
        old.step()
    state["scheduler"] = old.state_dict()
    resumed = Trainer(toy_flow(), x, config=cfg.updated({"resume": True}))
    resumed.prepare()
    resumed.load_state_dict(state)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(
        opt.param_groups[0]["lr"], rel=1e-9)
    assert resumed.scheduler.last_epoch == 10


# ------------------------------------------------------- schedule on resume, on its own
def test_resume_settings_that_the_optimiser_holds_are_checked():
    from flowlab.train.schedule import RESUME_FIXED, check_resume_settings

    cfg = TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.01, weight_decay=0.0)
    saved = cfg.to_dict()
    check_resume_settings(saved, cfg.updated({"steps": 99, "grad_clip": 5.0}))  # may change
    check_resume_settings(None, cfg)  # a checkpoint without settings: nothing to compare
    check_resume_settings({"lr": 1e-3}, cfg)  # missing entries are not compared
    assert set(RESUME_FIXED) == {"lr", "warmup_steps", "min_lr_ratio", "weight_decay"}
    with pytest.raises(ValueError) as err:
        check_resume_settings(saved, cfg.updated({"lr": 2e-3, "min_lr_ratio": 0.1}))
    msg = str(err.value)
    assert "lr 0.002 (--lr): the run was trained with 0.001" in msg
    assert "min_lr_ratio 0.1 (--min-lr-ratio): the run was trained with 0.01" in msg
    assert "Drop --lr --min-lr-ratio to continue" in msg and "new run" in msg


def test_restore_schedule_says_what_a_new_length_does():
    from flowlab.train.schedule import restore_schedule

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, 10, 2, 0.1)
    for _ in range(6):
        opt.step()
        sched.step()
    saved, rate = sched.state_dict(), opt.param_groups[0]["lr"]

    def fresh():  # a new run's scheduler, then the optimiser's state (its rate) restored
        new = warmup_cosine(opt, 10, 2, 0.1)
        opt.param_groups[0]["lr"] = rate
        return new

    same, message = restore_schedule(fresh(), saved, 6, 10)
    assert message is None and opt.param_groups[0]["lr"] == rate and same.last_epoch == 6
    longer, message = restore_schedule(fresh(), saved, 6, 20)
    assert opt.param_groups[0]["lr"] == pytest.approx(rate)  # no jump
    assert "steps changed from 10 to 20" in message and "never rises" in message
    for _ in range(14):
        opt.step()
        longer.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # the floor at the new end


def test_random_states_are_restored_per_process_or_reseeded_with_a_warning_text():
    from flowlab.train.rng import restore_rng_states

    torch.manual_seed(1)
    states = [rng_state(), rng_state()]
    a = torch.rand(3)
    assert restore_rng_states(states, rank=1, world_size=2, fallback_seed=9) is None
    assert torch.equal(torch.rand(3), a)  # rank 1's stream, continued exactly
    message = restore_rng_states(states, rank=0, world_size=3, fallback_seed=9)
    assert "written by 2 process(es), this run has 3" in message and "not bit-for-bit" in message
    b = torch.rand(3)
    torch.manual_seed(9)
    assert torch.equal(torch.rand(3), b)  # reseeded with the fallback seed
