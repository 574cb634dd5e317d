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
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 30 and state["config"]["n_train"] == 512

    assert main(["sample", "--run-dir", str(tmp_path / "nothing")]) == 2


def test_config_file_and_flags(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('data = "moons"\nn_train = 256\nsteps = 4\nbatch_size = 32\n'
                   "sample_every = 0\nprogress = false\n")
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--steps", "6", "--run-dir", str(run)]) == 0
    saved = load_checkpoint(run / "checkpoint.pt")["config"]
    assert (saved["steps"], saved["batch_size"], saved["n_train"]) == (6, 32, 256)


def test_python_dash_m_flowlab_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "flowlab", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "train" in out.stdout and "evaluate" in out.stdout
