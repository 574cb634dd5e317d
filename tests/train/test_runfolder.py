"""The run folder and its failures: overwrite rules, unwritable folders, a full disk, damaged
checkpoints, Ctrl-C; and the recipe (model arguments, threads)."""

from __future__ import annotations

import errno
import signal

import pytest
import torch

from _toy import toy_data, toy_flow
from flowlab.train import (
    CheckpointError,
    Recipe,
    RunDirExistsError,
    RunFolderError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
)
from flowlab.train import persistence as persistence_module
from flowlab.train.recipes import build_data, build_model, choose_threads, split_settings
from flowlab.train.runfolder import rescue_dir

QUIET = dict(progress=False, log_every=5, sample_every=0, batch_size=32, lr=5e-3,
             warmup_steps=2, eval_every=5, checkpoint_every=5)


def cfg(run, **kw) -> TrainConfig:
    return TrainConfig(**{**QUIET, "steps": 20, "run_dir": str(run), **kw})


def same_weights(a, b) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------ overwrite
def test_overwrite_removes_only_flowlab_files_and_says_which(tmp_path):
    run = tmp_path / "run"
    x = toy_data(128)
    Trainer(toy_flow(), x, None, cfg(run, steps=5)).fit()
    (run / "my_notes.txt").write_text("keep me")
    with pytest.raises(RunDirExistsError, match="last.pt.*--resume.*--overwrite"):
        Trainer(toy_flow(), x, None, cfg(run, steps=5)).prepare()
    with pytest.warns(UserWarning, match="overwrite: removed last.pt, best.pt, metrics.csv"):
        Trainer(toy_flow(), x, None, cfg(run, steps=5, overwrite=True)).prepare()
    assert (run / "my_notes.txt").read_text() == "keep me"
    assert not (run / "last.pt").exists()


# ------------------------------------------------------------------ unwritable, disk full
def test_an_unwritable_run_folder_fails_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    trainer = Trainer(toy_flow(), toy_data(128), None, cfg(tmp_path / "file" / "run"))
    with pytest.raises(RunFolderError, match="cannot write the run folder .*Nothing was trained"):
        trainer.prepare()
    assert trainer.step == 0


def _disk_full_after(monkeypatch, n_ok: int, rescue_ok: bool = True):
    """Checkpoint writes into the run folder succeed n_ok times, then raise ENOSPC."""
    real = persistence_module.save_checkpoint
    calls = {"n": 0}

    def save(state, path, keep_previous=None):
        if rescue_dir() in path.parents:
            if not rescue_ok:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(state, path, keep_previous)
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(state, path, keep_previous)

    monkeypatch.setattr(persistence_module, "save_checkpoint", save)


def test_a_full_disk_saves_the_state_elsewhere_and_says_where(tmp_path, monkeypatch):
    run = tmp_path / "run"
    x = toy_data(256)
    straight = Trainer(toy_flow(), x, None, cfg(tmp_path / "straight", val_fraction=0))
    straight.fit()

    _disk_full_after(monkeypatch, n_ok=1)  # the step-5 checkpoint, then the disk is full
    trainer = Trainer(toy_flow(), x, None, cfg(run, val_fraction=0))
    with pytest.raises(RunFolderError) as err:
        trainer.fit()
    msg = str(err.value)
    assert "the disk is full" in msg and "Training stopped at step 10" in msg
    rescued = rescue_dir() / "last.pt"
    assert str(rescued) in msg and "--resume-from" in msg
    assert not isinstance(err.value, RuntimeError)  # not a TrainingDiverged
    assert load_checkpoint(rescued)["step"] == 10  # the trained steps are not lost
    monkeypatch.undo()
    resumed = Trainer(toy_flow(), x, None, cfg(run, val_fraction=0, resume_from=str(rescued)))
    resumed.fit()
    assert same_weights(straight.model.state_dict(), resumed.model.state_dict())
    rescued.unlink()


def test_a_full_disk_everywhere_says_what_is_left(tmp_path, monkeypatch):
    _disk_full_after(monkeypatch, n_ok=1, rescue_ok=False)
    with pytest.raises(RunFolderError, match="could not be saved anywhere else.*last.pt"):
        Trainer(toy_flow(), toy_data(256), None, cfg(tmp_path / "run", val_fraction=0)).fit()


def test_a_full_disk_while_logging_metrics(tmp_path, monkeypatch):
    from flowlab.train.logger import MetricsLogger

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(MetricsLogger, "log", full)
    with pytest.raises(RunFolderError, match="cannot write metrics.csv .*disk is full.*step 5"):
        Trainer(toy_flow(), toy_data(256), None, cfg(tmp_path / "run")).fit()
    assert load_checkpoint(rescue_dir() / "last.pt")["step"] == 5
    (rescue_dir() / "last.pt").unlink()


# --------------------------------------------------------------------- damaged checkpoint
def test_a_damaged_last_checkpoint_points_to_the_previous_one(tmp_path):
    run = tmp_path / "run"
    x = toy_data(256)
    Trainer(toy_flow(), x, None, cfg(run, steps=20)).fit(stop_at=10)
    assert load_checkpoint(run / "previous.pt")["step"] == 5
    (run / "last.pt").write_bytes(b"\0" * 100)  # a disk error, a copy cut short
    with pytest.raises(CheckpointError) as err:
        Trainer(toy_flow(), x, None, cfg(run, resume=True)).prepare()
    msg = str(err.value)
    assert "damaged" in msg and "previous.pt" in msg and "--resume-from" in msg
    resumed = Trainer(toy_flow(), x, None, cfg(run, resume_from=str(run / "previous.pt")))
    resumed.prepare()
    assert resumed.step == 5


# ------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    # the handler the trainer must put back: Python's default in a terminal, SIG_IGN when
    # the test runs as a background job (nohup ... &)
    before = signal.getsignal(signal.SIGINT)
    x = toy_data(256)
    straight = Trainer(toy_flow(), x, None, cfg(tmp_path / "a", checkpoint_every=100))
    straight.fit()

    flow = toy_flow()
    trainer = Trainer(flow, x, None, cfg(tmp_path / "b", checkpoint_every=100))

    @trainer.on_step
    def press_ctrl_c_at_7(record):
        if record.step == 7:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(TrainingInterrupted) as err:
        trainer.fit()
    assert err.value.step == 7 and err.value.checkpoint == tmp_path / "b" / "last.pt"
    assert err.value.saved_step == 7
    assert load_checkpoint(tmp_path / "b" / "last.pt")["step"] == 7
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler restored
    resumed = Trainer(toy_flow(), x, None, cfg(tmp_path / "b", checkpoint_every=100, resume=True))
    resumed.fit()
    assert same_weights(straight.model.state_dict(), resumed.model.state_dict())


def test_ctrl_c_without_a_run_folder_reports_no_checkpoint():
    trainer = Trainer(toy_flow(), toy_data(256), None,
                      TrainConfig(**{**QUIET, "steps": 20, "run_dir": None}),
                      callbacks=[lambda record: signal.raise_signal(signal.SIGINT)])
    with pytest.raises(TrainingInterrupted) as err:
        trainer.fit()
    assert err.value.checkpoint is None and err.value.step == 1


# ------------------------------------------------------------------------------ recipes
def test_model_args_errors_name_the_key_and_the_expected_type():
    data = build_data(Recipe(data="moons", n_train=256))
    with pytest.raises(ValueError, match=r"has no argument 'couplngs'. Did you mean 'couplings'\?"):
        build_model(Recipe(data="moons", model_args={"couplngs": 2}), data)
    with pytest.raises(ValueError, match=r"'couplings' must be int \(default 8\), got str 'many'"):
        build_model(Recipe(data="moons", model_args={"couplings": "many"}), data)
    with pytest.raises(ValueError, match=r"'hidden' must be .*sequence.*got int 3"):
        build_model(Recipe(data="moons", model_args={"hidden": 3}), data)
    with pytest.raises(ValueError, match="--model-args for --model realnvp.*kind"):
        build_model(Recipe(data="moons", model_args={"kind": "wobbly"}), data)
    flow = build_model(Recipe(data="moons", model_args={"couplings": 2, "hidden": [8, 8]}), data)
    assert flow.log_prob(data.train[:4]).shape == (4,)
    with pytest.raises(ValueError, match="model_args must be a mapping"):
        Recipe(model_args=[1, 2])


def test_model_args_follow_union_annotations_such_as_per_level_steps():
    data = build_data(Recipe(data="digits"))
    recipe = Recipe(data="digits", model="glow",
                    model_args={"steps": [1, 2], "hidden_channels": [4, 8], "logit_alpha": 0.05})
    flow = build_model(recipe, data)
    transform = flow.transform[-1]
    assert len(transform.steps) == 1 and len(transform.next_level.steps) == 2
    with pytest.raises(ValueError, match=r"'steps' must be int or sequence \(default 8\), got str"):
        build_model(Recipe(data="digits", model="glow", model_args={"steps": "2"}), data)
    with pytest.raises(ValueError, match=r"--model-args for --model glow.*one per level"):
        build_model(Recipe(data="digits", model="glow", model_args={"steps": [1, 2, 3]}), data)


def test_settings_split_into_recipe_and_loop():
    recipe, loop = split_settings({"data": "moons", "steps": 3, "model-args": {}})
    assert recipe == {"data": "moons", "model_args": {}} and loop == {"steps": 3}
    with pytest.raises(ValueError, match="unknown training setting 'stpes'. Did you mean 'steps'"):
        split_settings({"stpes": 3})


def test_threads_default_to_one_for_small_models_and_to_the_free_cores(monkeypatch):
    from flowlab.train import recipes

    monkeypatch.setattr(recipes, "_cores", lambda: 8)
    monkeypatch.setattr(recipes, "_load", lambda: 0)
    assert choose_threads(3) == 3
    assert choose_threads(0, toy_flow()) == 1
    conv = torch.nn.Conv2d(16, 16, 3)  # 2,320 parameters
    assert choose_threads(0, conv, (16, 8, 8)) == 1  # x 64 positions: small
    assert choose_threads(0, conv, (16, 100, 100)) == 4  # x 10,000: not small; at most 4
    big = torch.nn.Linear(5000, 5000)
    assert choose_threads(0, big) == 4
    monkeypatch.setattr(recipes, "_load", lambda: 6)  # a busy machine: 2 cores free
    assert choose_threads(0, big) == 2
    monkeypatch.setattr(recipes, "_load", lambda: 20)  # overloaded: one thread
    assert choose_threads(0, big) == 1


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_written_checkpoint(tmp_path):
    trainer = Trainer(toy_flow(), toy_data(256), None, cfg(tmp_path / "r", checkpoint_every=5))

    @trainer.on_step
    def press_twice_at_7(record):
        if record.step == 7:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # raises KeyboardInterrupt here, mid-loop

    with pytest.raises(TrainingInterrupted) as err:
        trainer.fit()
    assert (err.value.step, err.value.saved_step) == (7, 5)
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 5
