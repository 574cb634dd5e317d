"""flowlab.train.persistence.RunWriter on its own: the run's files and the rescue policy."""

from __future__ import annotations

import errno
import json
import tempfile

import pytest
import torch

from flowlab.train.checkpoint import load_checkpoint
from flowlab.train.persistence import RunWriter, WriteFailed
from flowlab.train.runfolder import RunFolderError, rescue_dir
from flowlab.train.split import ValidationSplit


@pytest.fixture(autouse=True)
def _private_tmp(tmp_path, monkeypatch):
    """The fallback folder (in the system's temporary folder) under this test's folder."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))


def _state(step):
    return {"model": {"w": torch.full((2,), float(step))}, "step": step}


def _full(*args, **kw):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_the_run_files_are_written_where_the_run_folder_says(tmp_path):
    run = tmp_path / "run"
    writer = RunWriter(run)
    writer.prepare_folder(resume=False, overwrite=False)
    split = ValidationSplit.draw(20, 0.25, seed=0)
    writer.write_settings({"steps": 3}, split)
    assert (run / "config.yaml").read_text() == "steps: 3\n"
    assert ValidationSplit.load(run / "split.json") == split
    writer.save_last(_state(5))
    writer.save_last(_state(10))
    assert load_checkpoint(run / "previous.pt")["step"] == 5
    assert load_checkpoint(run / "last.pt")["step"] == 10
    writer.save_best(_state(7))
    assert load_checkpoint(run / "best.pt")["step"] == 7
    writer.write_test({"nll": 1.5})
    assert json.loads((run / "test.json").read_text()) == {"nll": 1.5}
    writer.open_log(resume_step=0)
    writer.log({"step": 1, "loss": 2.0})
    writer.close_log()
    assert "2.0" in (run / "metrics.csv").read_text()
    writer.write_samples(lambda x, path: path.parent.mkdir() or path.write_text(str(x)), 42, 3)
    assert (run / "samples" / "step_0000003.png").read_text() == "42"


def test_without_a_folder_or_on_another_rank_nothing_is_written(tmp_path):
    for writer in (RunWriter(None), RunWriter(tmp_path / "r", is_main=False)):
        writer.prepare_folder(resume=False, overwrite=False)
        assert writer.save_last(_state(1)) is None and writer.save_best(_state(1)) is None
        writer.write_settings({"a": 1}, None)
        writer.write_test({})
        writer.open_log(0)
        writer.log({"step": 1})
        writer.close_log()
        assert writer.saved_on_interrupt(_state(1), 1) == (None, None)
    assert not (tmp_path / "r").exists()


def test_a_failed_write_before_training_says_nothing_was_trained(tmp_path):
    writer = RunWriter(tmp_path / "run")
    with pytest.raises(WriteFailed) as failed:
        writer.write("config.yaml", _full)
    assert failed.value.what == "config.yaml" and failed.value.error.errno == errno.ENOSPC
    err = writer.failure(failed.value, _state(0), step=0, started=False)
    assert isinstance(err, RunFolderError) and err.errno == errno.ENOSPC
    assert "disk is full" in str(err) and "Nothing was trained" in str(err)
    assert err.rescued is None and not rescue_dir().exists()


def test_a_failed_write_during_training_rescues_the_state_it_is_given(tmp_path):
    writer = RunWriter(tmp_path / "run")
    failed = WriteFailed("metrics.csv", OSError(errno.ENOSPC, "No space left on device"))
    err = writer.failure(failed, _state(12), step=12)
    assert err.rescued == rescue_dir() / "last.pt"
    assert load_checkpoint(err.rescued)["step"] == 12  # read back before it is named
    msg = str(err)
    assert "Training stopped at step 12" in msg and f"--resume-from {err.rescued}" in msg


def test_when_the_fallback_fails_too_the_last_readable_checkpoint_is_named(tmp_path,
                                                                           monkeypatch):
    run = tmp_path / "run"
    writer = RunWriter(run)
    writer.prepare_folder(resume=False, overwrite=False)
    writer.save_last(_state(5))
    (tmp_path / "tmp" / "blocked").write_text("a file, not a folder")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp" / "blocked"))
    failed = WriteFailed("last.pt", OSError(errno.ENOSPC, "No space left on device"))
    err = writer.failure(failed, _state(10), step=10)
    assert err.rescued is None
    assert "could not be saved anywhere else" in str(err)
    assert f"the last checkpoint on disk is {str(run / 'last.pt')!r} (step 5)" in str(err)


def test_torch_save_runtime_errors_of_a_full_disk_are_write_failures(tmp_path):
    writer = RunWriter(tmp_path / "run")

    def torch_full():
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64")

    with pytest.raises(WriteFailed):
        writer.write("last.pt", torch_full)
    with pytest.raises(RuntimeError, match="a bug"):  # other errors are not write failures
        writer.write("last.pt", lambda: (_ for _ in ()).throw(RuntimeError("a bug")))


def test_an_interrupted_run_is_saved_or_its_last_checkpoint_named(tmp_path, monkeypatch):
    run = tmp_path / "run"
    writer = RunWriter(run)
    writer.prepare_folder(resume=False, overwrite=False)
    assert writer.saved_on_interrupt(None, 3) == (None, None)  # nothing written yet
    assert writer.saved_on_interrupt(_state(7), 7) == (run / "last.pt", 7)
    assert writer.saved_on_interrupt(None, 9) == (run / "last.pt", 7)  # unhealthy: not saved
    from flowlab.train import persistence

    real = persistence.save_checkpoint
    monkeypatch.setattr(persistence, "save_checkpoint", lambda state, path, keep_previous=None:
                        _full() if run in path.parents else real(state, path))
    path, step = writer.saved_on_interrupt(_state(11), 11)
    assert path == rescue_dir() / "last.pt" and step == 11
