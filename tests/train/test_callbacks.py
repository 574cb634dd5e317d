"""The public per-step hook: Trainer(callbacks=[...]) and Trainer.on_step."""

from __future__ import annotations

import dataclasses
import math

import pytest
from _toy import toy_data, toy_flow

from flowlab.train import TrainConfig, Trainer, read_metrics
from flowlab.train.callbacks import StepRecord

QUIET = {"progress": False, "sample_every": 0, "batch_size": 32, "lr": 5e-3,
         "warmup_steps": 4, "val_fraction": 0, "log_every": 1}


def test_every_step_is_reported_once_with_the_rate_it_ran_at(tmp_path):
    records = []
    trainer = Trainer(toy_flow(), toy_data(256), None,
                      TrainConfig(**QUIET, steps=12, run_dir=str(tmp_path / "r")),
                      callbacks=[records.append])
    trainer.fit()
    assert [r.step for r in records] == list(range(1, 13))
    assert [r.epoch for r in records] == [0] * 8 + [1] * 4  # 256 / 32 = 8 steps per epoch
    assert all(r.finite and math.isfinite(r.loss) and r.grad_norm > 0 for r in records)
    assert all(r.batch_size == 32 for r in records)
    rows = [r for r in read_metrics(tmp_path / "r" / "metrics.csv") if r["lr"]]
    assert [float(r["lr"]) for r in rows] == [r.lr for r in records]  # log_every=1
    assert [float(r["loss"]) for r in rows] == pytest.approx([r.loss for r in records])
    assert records[0].lr == pytest.approx(5e-3 / 4)  # warm-up


def test_a_record_is_read_only_and_a_hook_must_be_callable():
    record = StepRecord(1, 0, 2.0, 1.0, 1e-3, True, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.loss = 0.0
    trainer = Trainer(toy_flow(), toy_data(64), None, TrainConfig(**QUIET, steps=2))
    with pytest.raises(TypeError, match="on_step needs a callable"):
        trainer.on_step("print")


def test_a_hook_can_stop_the_run_and_a_resumed_run_reports_from_the_next_step(tmp_path):
    class Enough(Exception):
        pass

    run = str(tmp_path / "r")
    trainer = Trainer(toy_flow(), toy_data(256), None,
                      TrainConfig(**QUIET, steps=12, run_dir=run, checkpoint_every=4))

    @trainer.on_step
    def stop_at_6(record):
        if record.step == 6:
            raise Enough

    with pytest.raises(Enough):
        trainer.fit()
    assert trainer.step == 6
    steps = []
    resumed = Trainer(toy_flow(), toy_data(256), None,
                      TrainConfig(**QUIET, steps=12, run_dir=run, resume=True))
    resumed.on_step(lambda r: steps.append(r.step))
    resumed.fit()
    assert steps == list(range(5, 13))  # from the step-4 checkpoint
