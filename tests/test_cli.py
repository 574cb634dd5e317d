"""The `flowlab` command line: train, sample, evaluate, help and error exits."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from flowlab.cli import main
from flowlab.train import TrainConfig, load_checkpoint, read_metrics

FAST = ["--data", "moons", "--n-train", "512", "--steps", "20", "--batch-size", "64",
        "--log-every", "10", "--eval-every", "10", "--sample-every", "20", "--no-progress"]


def test_train_help_explains_every_setting(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
    assert "(default: 3000)" in text and "--config FILE" in text


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_other_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "--run-dir" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["train", "--no-such-flag"], ["train", "--steps", "many"], ["fly"], []]
)
def test_bad_flags_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "cifar10", "--data-root", "/no/such/folder"], "does not exist"),
        (["--data", "cifar10"], "--data-root"),
        (["--data", "nonsense"], "unknown data set 'nonsense'"),
        (["--lr", "-1"], "lr must be a positive number"),
        (["--data", "moons", "--model", "glow"], "needs image data"),
        (["--config", "/no/such/file.yaml"], "does not exist"),
        (["--resume"], "--resume needs --run-dir"),
    ],
)
def test_bad_settings_exit_with_code_2_and_a_message(argv, message, tmp_path, capsys):
    assert main(["train", *argv]) == 2
    assert message in capsys.readouterr().err


def test_train_sample_evaluate_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *FAST, "--run-dir", str(run), "--ema-decay", "0.9"]) == 0
    out = capsys.readouterr().out
    assert "test NLL" in out
    assert (run / "samples" / "step_0000020.png").is_file()
    assert [int(r["step"]) for r in read_metrics(run / "metrics.csv") if r["loss"]] == [10, 20]

    # the same command again must not overwrite the run
    assert main(["train", *FAST, "--run-dir", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err

    assert main(["sample", "--run-dir", str(run), "-n", "100", "--out", str(tmp_path / "s.png"),
                 "--save-tensor", str(tmp_path / "s.pt")]) == 0
    assert (tmp_path / "s.png").is_file()
    assert "100 samples written" in capsys.readouterr().out
    import torch

    assert torch.load(tmp_path / "s.pt").shape == (100, 2)

    assert main(["evaluate", "--run-dir", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "moons" and result["ema"] is True
    assert result["bits_per_dim"] == pytest.approx(result["nll"] / (2 * 0.6931471805599453))

    # --resume keeps the run's settings; --steps extends it
    assert main(["train", "--run-dir", str(run), "--resume", "--steps", "30"]) == 0
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 30 and state["metadata"]["recipe"]["n_train"] == 512

    assert main(["sample", "--run-dir", str(tmp_path / "nothing")]) == 2


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('data = "moons"\nn_train = 256\nsteps = 4\nbatch_size = 32\n'
                   "sample_every = 0\nprogress = false\n")
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--steps", "6", "--run-dir", str(run)]) == 0
    state = load_checkpoint(run / "last.pt")
    saved = state["config"]
    assert (saved["steps"], saved["batch_size"]) == (6, 32)
    assert state["metadata"]["recipe"]["n_train"] == 256


def test_python_dash_m_flowlab_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "flowlab", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "evaluate" in out.stdout


# ------------------------------------------------------- issue 29: help and errors without torch
def _flowlab(*argv, **kw):
    """``python -X importtime -m flowlab ARGV``: the result and the modules it imported."""
    import os

    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "flowlab", *argv],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    assert "flowlab.cli" in imported  # the measurement saw the command's own imports
    out.stderr = "\n".join(line for line in out.stderr.splitlines()
                            if not line.startswith("import time:"))
    return out, imported


@pytest.mark.parametrize("argv, code, message", [
    (["--help"], 0, "Exit codes"),
    (["train", "--help"], 0, "--model-args YAML"),
    (["sample", "--help"], 0, "--temperature"),
    (["train", "--stpes", "10"], 2, "unrecognized arguments: --stpes"),
    (["trian"], 2, "invalid choice: 'trian'"),
    (["train", "--steps", "many"], 2, "argument --steps: invalid int value: 'many'"),
    (["train", "--model-args", "{hidden: [64, 64}"], 2,
     "argument --model-args: the value is not valid YAML: line 1, column 17"),
])
def test_help_and_flag_errors_answer_without_importing_torch(argv, code, message):
    out, imported = _flowlab(*argv)
    assert out.returncode == code, out.stderr
    assert message in (out.stdout if code == 0 else out.stderr)
    assert "Traceback" not in out.stderr
    assert not {m for m in imported if m.split(".")[0] == "torch"}


@pytest.mark.parametrize("suffix, text, where", [
    (".yaml", "steps: 10\nlr: [1e-3\nseed: 1\n", "line 3, column 5"),
    (".yaml", "steps: 10\n  batch_size: 8: 9\n", "line 2, column 13"),
    (".toml", "steps = 10\nlr = \n", "line 2, column 6"),
])
def test_a_malformed_config_file_exits_2_naming_the_line_and_column(tmp_path, suffix, text,
                                                                     where):
    cfg = tmp_path / f"run{suffix}"
    cfg.write_text(text)
    out, _ = _flowlab("train", "--config", str(cfg), "--run-dir", str(tmp_path / "run"))
    assert out.returncode == 2, out.stderr
    assert f"config file {str(cfg)!r} is not valid" in out.stderr and where in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "run").exists()


# ----------------------------------------------------------------- issue 13: trust, issue 16
def test_help_documents_the_recipe_flags_threads_and_exit_codes(capsys):
    from flowlab.train import Recipe

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(Recipe):
        assert "--" + f.name.replace("_", "-") in text
    for code in ("0 success", "1 training stopped because it diverged", "2 a usage problem",
                 "130 interrupted"):
        assert code in text
    assert "--patience" in text and "--val-fraction" in text


def _tiny_digits(run, *extra):
    return ["train", "--data", "digits", "--model", "multiscale", "--model-args",
            "{hidden_channels: 4, blocks: 1, scales: 1}", "--steps", "4", "--batch-size", "32",
            "--eval-every", "2", "--log-every", "2", "--sample-every", "0", "--no-progress",
            "--run-dir", str(run), *extra]


def test_evaluate_prints_bits_per_dim_next_to_the_baselines(tmp_path, capsys):
    from flowlab.data.images import load_digits
    from flowlab.metrics import histogram_bits_per_dim

    run = tmp_path / "digits"
    assert main(_tiny_digits(run)) == 0
    out = capsys.readouterr().out
    assert "best validation" in out and "uniform 4.0875" in out
    assert main(["evaluate", "--run-dir", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    hist = histogram_bits_per_dim(load_digits("train").images, load_digits("test").images, 17)
    assert result["baselines_bits_per_dim"]["per-pixel histogram"] == pytest.approx(hist)
    assert result["baselines_bits_per_dim"]["uniform"] == pytest.approx(4.087462841)
    assert result["checkpoint"].endswith("best.pt")
    assert main(["evaluate", "--run-dir", str(run), "--split", "val"]) == 0
    text = capsys.readouterr().out
    assert "(val, best.pt" in text and "per-pixel histogram" in text
    assert main(["evaluate", "--run-dir", str(run), "--importance-samples", "3", "--json"]) == 0
    weighted = json.loads(capsys.readouterr().out)
    # the importance-weighted bound is tighter than the plain one (Jensen), for the same weights
    assert weighted["importance_samples"] == 3
    assert 0 < weighted["bits_per_dim"] < result["bits_per_dim"]


def test_load_run_gives_the_best_weights_and_the_settings_in_one_call(tmp_path, capsys):
    import torch

    from flowlab.train import load_run

    run = tmp_path / "run"
    assert main(["train", *FAST, "--run-dir", str(run), "--steps", "30", "--eval-every", "5"]) == 0
    loaded = load_run(run)
    best = load_checkpoint(run / "best.pt")
    assert loaded.step == best["step"] and loaded.checkpoint == run / "best.pt"
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, best["model"][k]), k
    assert loaded.recipe.data == "moons" and loaded.config.steps == 30
    assert loaded.test == json.loads((run / "test.json").read_text())
    assert not loaded.model.training
    assert load_run(run, "last").step == 30


def test_model_args_errors_exit_2_naming_the_key(tmp_path, capsys):
    assert main(["train", *FAST, "--run-dir", str(tmp_path / "r"),
                 "--model-args", "{hiden: [8, 8]}"]) == 2
    err = capsys.readouterr().err
    assert "no argument 'hiden'" in err and "Did you mean 'hidden'" in err
    assert main(["train", *FAST, "--run-dir", str(tmp_path / "r"),
                 "--model-args", "{couplings: two}"]) == 2
    assert "'couplings' must be int" in capsys.readouterr().err


def test_an_unwritable_run_folder_exits_2_with_a_message(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["train", *FAST, "--run-dir", str(tmp_path / "file" / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot write the run folder" in err and "Traceback" not in err


def test_a_full_disk_during_training_exits_2_and_keeps_the_steps(tmp_path, capsys, monkeypatch):
    import errno

    from flowlab.train import persistence as persistence_module
    from flowlab.train.runfolder import rescue_dir

    real = persistence_module.save_checkpoint

    def full(state, path, keep_previous=None):
        if rescue_dir() in path.parents:
            return real(state, path, keep_previous)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(persistence_module, "save_checkpoint", full)
    assert main(["train", *FAST, "--run-dir", str(tmp_path / "run"), "--val-fraction", "0"]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and str(rescue_dir() / "last.pt") in err
    assert load_checkpoint(rescue_dir() / "last.pt")["step"] == 20  # the first save, at the end
    (rescue_dir() / "last.pt").unlink()


def test_sample_to_an_unwritable_place_writes_a_fallback_and_says_where(tmp_path, capsys,
                                                                         monkeypatch):
    import errno

    import torch

    from flowlab.train.runfolder import rescue_dir

    run = tmp_path / "run"
    assert main(["train", *FAST, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "file" / "s.png"
    assert main(["sample", "--run-dir", str(run), "--out", str(bad), "-n", "8",
                 "--save-tensor", str(tmp_path / "file" / "s.pt")]) == 2
    captured = capsys.readouterr()
    fallback = rescue_dir() / "s.png"
    assert f"the samples were written to {fallback} instead" in captured.err
    assert fallback.is_file() and torch.load(rescue_dir() / "s.pt").shape == (8, 2)
    fallback.unlink()
    (rescue_dir() / "s.pt").unlink()

    from matplotlib.figure import Figure

    real = Figure.savefig

    def full(self, path, *a, **kw):
        if rescue_dir() not in __import__("pathlib").Path(path).parents:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *a, **kw)

    monkeypatch.setattr(Figure, "savefig", full)
    assert main(["sample", "--run-dir", str(run), "--out", str(tmp_path / "ok.png")]) == 2
    assert "the disk is full" in capsys.readouterr().err and (rescue_dir() / "ok.png").is_file()
    (rescue_dir() / "ok.png").unlink()


def test_a_damaged_checkpoint_message_says_what_to_do(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *FAST, "--run-dir", str(run), "--checkpoint-every", "10"]) == 0
    capsys.readouterr()
    (run / "last.pt").write_bytes(b"garbage")
    assert main(["train", "--run-dir", str(run), "--resume", "--steps", "30"]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and f"--resume-from {run / 'previous.pt'}" in err
    assert main(["train", "--run-dir", str(run), "--resume-from", str(run / "previous.pt"),
                 "--steps", "30"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 30
    (run / "best.pt").write_bytes(b"garbage")
    assert main(["sample", "--run-dir", str(run)]) == 2
    assert "--checkpoint" in capsys.readouterr().err


def test_ctrl_c_before_any_checkpoint_does_not_suggest_resume(tmp_path, capsys, monkeypatch):
    from flowlab.train import Trainer

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "prepare", interrupted)
    assert main(["train", *FAST, "--run-dir", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "nothing was saved" in err and "--resume" not in err


def test_ctrl_c_saves_and_suggests_resume(tmp_path):
    import os
    import signal
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlab", "train", "--data", "moons", "--n-train", "512",
         "--steps", "1000000", "--batch-size", "64", "--checkpoint-every", "20",
         "--eval-every", "100000", "--sample-every", "0", "--no-progress",
         "--run-dir", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and f"flowlab train --run-dir {run} --resume" in err
    step = int(err.split("interrupted at step ")[1].split(";")[0])
    assert f"step {step} is saved in {run / 'last.pt'}" in err
    assert load_checkpoint(run / "last.pt")["step"] == step > 0


def test_threads_flag_sets_torch_threads(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        short = [*FAST, "--steps", "2", "--sample-every", "0"]
        assert main(["train", *short, "--run-dir", str(tmp_path / "a"), "--threads", "2"]) == 0
        assert "2 thread(s)" in capsys.readouterr().out
        assert main(["train", *short, "--run-dir", str(tmp_path / "b")]) == 0
        assert "1 thread(s)" in capsys.readouterr().out  # auto: a small 2-D model
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------- issue 29: --resume --steps N, a new horizon
def _lrs(run):
    return {int(r["step"]): float(r["lr"]) for r in read_metrics(run / "metrics.csv") if r["lr"]}


def test_resume_with_more_steps_continues_the_decay_and_never_raises_the_rate(tmp_path, capsys):
    import math

    run = tmp_path / "run"
    lr, floor = 1e-3, 1e-5
    common = ["--log-every", "1", "--eval-every", "100", "--sample-every", "0",
              "--checkpoint-every", "10", "--no-progress"]
    assert main(["train", "--data", "moons", "--n-train", "512", "--batch-size", "64",
                 "--steps", "40", "--warmup-steps", "4", "--lr", str(lr),
                 "--min-lr-ratio", "0.01", "--run-dir", str(run), *common]) == 0
    planned = _lrs(run)  # the row of step s holds the rate step s ran at: factor(s - 1)
    for s in (1, 4, 5, 22, 40):
        t = s - 1
        want = lr * (t + 1) / 4 if t < 4 else floor + (lr - floor) * 0.5 * (
            1 + math.cos(math.pi * (t - 4) / 36))
        assert planned[s] == pytest.approx(want, rel=1e-9), s
    capsys.readouterr()

    # from step 30 (previous.pt), 30 more steps than planned: a cosine from the rate at step 30
    # down to the floor at step 60
    assert main(["train", "--run-dir", str(run), "--resume-from", str(run / "previous.pt"),
                 "--steps", "60", *common]) == 0
    err = capsys.readouterr().err
    assert "steps changed from 40 to 60 on resume" in err and "never rises" in err
    lrs = _lrs(run)
    assert [lrs[s] for s in range(1, 31)] == [planned[s] for s in range(1, 31)]
    at_30 = planned[31]  # the rate of step 31 as planned = the rate at step 30
    for s in range(31, 61):
        u = (s - 1 - 30) / 30
        assert lrs[s] == pytest.approx(floor + (at_30 - floor) * 0.5 * (1 + math.cos(math.pi * u)),
                                       rel=1e-9), s
    assert all(b <= a for a, b in zip([lrs[s] for s in range(30, 61)],
                                      [lrs[s] for s in range(31, 61)]))
    assert load_checkpoint(run / "last.pt")["step"] == 60

    # a finished run extended: it stays at the floor (before: back up to 1e-3), and a second
    # resume with the same horizon keeps the continued schedule
    assert main(["train", "--run-dir", str(run), "--resume", "--steps", "70", *common]) == 0
    lrs = _lrs(run)
    assert max(lrs[s] for s in range(61, 71)) == pytest.approx(floor, rel=1e-6)


# ----------------------------------------------- issue 29: full disk, damaged files, umask
def _train_process(argv, tmp_path, preexec_fn=None):
    """``python -m flowlab train ARGV`` in a child process, its temporary folder (and so the
    rescue folder) under ``tmp_path``."""
    import os

    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "flowlab", "train", *argv], capture_output=True, text=True,
        timeout=600, preexec_fn=preexec_fn,
        env={**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)},
    )


def _rescued(err):
    """The fallback checkpoint a message names."""
    from pathlib import Path

    return Path(err.split("was saved to '")[1].split("'")[0])


def test_a_write_failing_mid_run_saves_the_state_to_a_fallback_that_loads(tmp_path):
    # the sample grid of step 10 cannot be written (`samples` is a file): the state goes to
    # the fallback folder, which is read back before the message names it
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples").write_text("not a folder")
    out = _train_process([*FAST, "--sample-every", "10", "--run-dir", str(run)], tmp_path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"cannot write samples/step_0000010.png in the run folder {str(run)!r}" in out.stderr
    rescued = _rescued(out.stderr)
    assert tmp_path / "tmp" in rescued.parents
    assert "Training stopped at step 10" in out.stderr and "read back: it loads" in out.stderr
    assert load_checkpoint(rescued)["step"] == 10
    # and the run continues from it
    (run / "samples").unlink()
    again = _train_process(["--run-dir", str(run), "--resume-from", str(rescued)], tmp_path)
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(run / "last.pt")["step"] == 20


def test_a_file_size_limit_at_a_checkpoint_write_exits_2_and_says_nothing_could_be_saved(
        tmp_path):
    # RLIMIT_FSIZE makes every write past 64 KiB fail with EFBIG (Python ignores SIGXFSZ), as
    # a full disk would: torch.save raises a RuntimeError there, and the fallback fails too
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    run = tmp_path / "run"
    out = _train_process([*FAST, "--run-dir", str(run)], tmp_path, preexec_fn=limit)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"cannot write best.pt in the run folder {str(run)!r}" in out.stderr
    assert "larger than this process may write" in out.stderr
    assert "could not be saved anywhere else either" in out.stderr
    assert "no readable checkpoint is left" in out.stderr
    assert not list((tmp_path / "tmp").rglob("*.pt"))  # no half-written fallback left


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_checkpoint_advice_points_only_to_a_checkpoint_that_loads(tmp_path):
    run = tmp_path / "run"
    out = _train_process([*FAST, "--checkpoint-every", "10", "--run-dir", str(run)], tmp_path)
    assert out.returncode == 0, out.stderr
    _truncate(run / "last.pt")
    _truncate(run / "previous.pt")
    out = _train_process(["--run-dir", str(run), "--resume", "--steps", "30"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "last.pt' is not a readable flowlab checkpoint" in out.stderr
    assert "previous.pt" not in out.stderr.split("damaged or was cut short")[1].split(")")[1]
    assert f"--resume-from {run / 'best.pt'}" in out.stderr  # the one that loads

    _truncate(run / "best.pt")
    out = _train_process(["--run-dir", str(run), "--resume", "--steps", "30"], tmp_path)
    assert out.returncode == 2
    assert ("No readable checkpoint is kept beside it ('previous.pt', 'best.pt' beside it are "
            "damaged too)") in out.stderr
    assert "--resume-from" not in out.stderr

    # last.pt gone, previous.pt damaged: no advice to resume from it
    (run / "last.pt").unlink()
    out = _train_process(["--run-dir", str(run), "--resume"], tmp_path)
    assert out.returncode == 2 and "nothing to resume" in out.stderr
    assert "--resume-from" not in out.stderr


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_run_files_follow_the_umask(tmp_path, umask, mode):
    import os
    import stat

    run = tmp_path / "run"
    out = _train_process([*FAST, "--checkpoint-every", "10", "--run-dir", str(run)], tmp_path,
                         preexec_fn=lambda: os.umask(umask))
    assert out.returncode == 0, out.stderr
    names = ["last.pt", "previous.pt", "best.pt", "metrics.csv", "config.yaml", "split.json",
             "test.json", "samples/step_0000020.png"]
    modes = {n: oct(stat.S_IMODE((run / n).stat().st_mode)) for n in names}
    assert modes == dict.fromkeys(names, oct(mode))


def test_sample_checks_the_temperature(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *FAST, "--steps", "2", "--sample-every", "0",
                 "--run-dir", str(run)]) == 0
    capsys.readouterr()
    for bad in ["-0.5", "-1", "nan", "inf"]:
        assert main(["sample", "--run-dir", str(run), "--temperature", bad,
                     "--out", str(tmp_path / "s.png")]) == 2
        err = capsys.readouterr().err
        assert "--temperature must be a finite number >= 0" in err, bad
    assert not (tmp_path / "s.png").exists()
    assert main(["sample", "--run-dir", str(run), "--temperature", "0.5",
                 "--out", str(tmp_path / "s.png")]) == 0


# ------------------------------- issue 29: resume with changed optimisation settings, refused
def test_resume_with_changed_optimisation_settings_is_refused_and_says_how(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *FAST, "--run-dir", str(run), "--lr", "0.002"]) == 0
    kept = {name: (run / name).read_bytes() for name in ("last.pt", "metrics.csv")}
    capsys.readouterr()
    for flag, value in (("--lr", "0.01"), ("--warmup-steps", "3"), ("--min-lr-ratio", "0.5"),
                        ("--weight-decay", "0.1")):
        # before: ignored without a word (the optimiser and scheduler states hold them)
        assert main(["train", "--run-dir", str(run), "--resume", "--steps", "30",
                     flag, value]) == 2, flag
        err = capsys.readouterr().err
        assert "cannot resume with" in err and f"({flag}): the run was trained with" in err
        assert f"Drop {flag} to continue the run" in err and "in a new run" in err
        assert "Traceback" not in err
        assert {n: (run / n).read_bytes() for n in kept} == kept  # nothing was touched
    # the run's own value is no change; the run continues
    assert main(["train", "--run-dir", str(run), "--resume", "--steps", "30",
                 "--lr", "0.002"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 30


def test_resume_locates_the_checkpoint_in_one_place_for_the_cli_and_the_trainer(tmp_path):
    """`flowlab train --resume` (its settings) and the Trainer (its state) read the checkpoint
    that flowlab.train.runfolder.resume_checkpoint locates: the same file, the same errors."""
    import torch

    from flowlab.models import realnvp
    from flowlab.train import Trainer
    from flowlab.train.runfolder import resume_checkpoint

    run = tmp_path / "run"
    assert main(["train", *FAST, "--run-dir", str(run), "--checkpoint-every", "10"]) == 0
    path, state = resume_checkpoint(run)
    assert path == run / "last.pt" and state["step"] == 20
    path, state = resume_checkpoint(run, run / "previous.pt")
    assert state["step"] == 10
    (run / "last.pt").unlink()
    with pytest.raises(FileNotFoundError, match=f"nothing to resume.*--resume-from {run}"):
        resume_checkpoint(run)
    with pytest.raises(ValueError, match="--resume needs --run-dir"):
        resume_checkpoint(None)
    trainer = Trainer(realnvp(2, couplings=2), torch.randn(256, 2),
                      config=TrainConfig(run_dir=str(run), resume=True, val_fraction=0))
    with pytest.raises(FileNotFoundError, match=f"nothing to resume.*--resume-from {run}"):
        trainer.prepare()
    assert main(["train", "--run-dir", str(run), "--resume"]) == 2
