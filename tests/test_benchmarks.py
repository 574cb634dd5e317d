"""The benchmarks run and measure what they claim to (``benchmarks/``).

These tests check correctness, never speed: the bare reference computes the same function as
flowlab's RealNVP, every installed peer builds the same architecture, and a tiny
``benchmarks/run.py --quick`` writes its tables, JSON and plots.  The measured ratios are
printed (``pytest -s``) for information only.
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DIAGNOSTICS = BENCH / "diagnostics"     # one-off studies; BENCH holds what `make bench*` runs
sys.path[:0] = [str(BENCH), str(DIAGNOSTICS)]

from bare import BareRealNVP, copy_parameters  # noqa: E402
from peers import PEERS, ModelSpec, Unsupported, available_peers  # noqa: E402

realnvp_module = importlib.import_module("flowlab.models.realnvp")  # the module, not the function
TINY = ModelSpec(features=6, couplings=4, hidden=(8, 8), bins=4, bound=3.0)


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter away from its (partly zero) initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_bare_is_initialised_like_flowlab():
    torch.manual_seed(0)
    flow = realnvp_module.realnvp(7, couplings=3, hidden=(5, 4), kind="affine")
    torch.manual_seed(0)
    bare = BareRealNVP(7, couplings=3, hidden=(5, 4))
    pairs = list(zip(flow.parameters(), bare.parameters(), strict=True))
    assert all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("features", [2, 7, 64])
def test_bare_computes_the_same_function_as_flowlab(features):
    flow = realnvp_module.realnvp(features, couplings=4, hidden=(16, 16), kind="affine").double()
    bare = BareRealNVP(features, couplings=4, hidden=(16, 16)).double()
    _perturb(flow, seed=1)
    copy_parameters(flow, bare)
    x = torch.randn(9, features, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(bare.log_prob(x), flow.log_prob(x), rtol=1e-10, atol=1e-10)
    torch.manual_seed(3)
    expected = flow.sample(5)
    torch.manual_seed(3)
    torch.testing.assert_close(bare.sample(5), expected, rtol=1e-10, atol=1e-10)


def test_copy_parameters_refuses_a_different_architecture():
    with pytest.raises(ValueError, match="differ"):
        copy_parameters(BareRealNVP(6, 2, (8, 8)), BareRealNVP(6, 2, (8, 9)))


@pytest.mark.parametrize("kind", ["affine", "spline"])
@pytest.mark.parametrize("peer", available_peers())
def test_peer_builds_the_same_architecture(peer, kind):
    try:
        c = PEERS[peer][1](kind, TINY)
    except Unsupported:
        pytest.skip(f"{peer} has no {kind} coupling")
    torch.manual_seed(0)
    reference = realnvp_module.realnvp(
        TINY.features, couplings=TINY.couplings, hidden=TINY.hidden, kind=kind,
        bins=TINY.bins, bound=TINY.bound,
    )
    assert c.n_params == sum(p.numel() for p in reference.parameters())
    x = torch.randn(5, TINY.features, generator=torch.Generator().manual_seed(0))
    log_prob = c.log_prob(x)
    assert log_prob.shape == (5,) and bool(torch.isfinite(log_prob).all())
    assert c.sample(3).shape == (3, TINY.features)


def test_quick_run_writes_tables_json_and_plots(tmp_path):
    # ~12 s on an idle 2-core machine (a subprocess that imports torch, matplotlib and flowlab).
    out = tmp_path / "results"
    cmd = [
        sys.executable, str(BENCH / "run.py"), "--quick", "--out", str(out),
        "--impls", "flowlab,bare", "--threads", "1",
        "--hidden", "16,16", "--couplings", "2", "--batch", "32", "--sample-n", "32",
        "--overhead-rounds", "3", "--speed-rounds", "3", "--inner", "1", "--warmup", "1",
        "--steps-2d", "3", "--steps-digits", "3",
        "--tasks", "checkerboard,digits,digits-multiscale",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    table = (out / "RESULTS.md").read_text()
    assert "Framework overhead" in table and "| eager |" in table
    assert "| flowlab | spline |" in table and "| bare | affine |" in table
    assert "| flowlab | multi-scale |" in table and "*true density*" in table
    assert (out / "speed.png").stat().st_size > 0 and (out / "density.png").stat().st_size > 0

    results = json.loads((out / "results.json").read_text())
    row = results["overhead"]["rows"][0]
    for key in ("step_ratio", "sample_ratio"):
        assert row[key]["n"] == 3 and math.isfinite(row[key]["median"]) and row[key]["median"] > 0
    digits = next(t for t in results["density"]["tasks"] if t["name"] == "digits")
    assert {(r["impl"], r["kind"]) for r in digits["rows"]} == {
        ("flowlab", "affine"), ("flowlab", "spline"), ("bare", "affine"), ("flowlab", "multi-scale")
    }
    # flowlab and bare are the same model, initialised alike, trained on the same batches.
    by = {(r["impl"], r["kind"]): r["test"] for r in digits["rows"]}
    assert by[("flowlab", "affine")] == pytest.approx(by[("bare", "affine")], rel=1e-4)
    # Reported, not asserted (timings on a shared machine are noise).
    print(f"\nquick benchmark: step ratio {row['step_ratio']['median']:.3f}, "
          f"sampling ratio {row['sample_ratio']['median']:.3f}")


def _quick_table(script: str, tmp_path: Path) -> str:
    """Run ``benchmarks/<script>.py --quick`` and return the Markdown table it wrote."""
    out = tmp_path / f"{Path(script).name}.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text()


def test_bf16_cpu_quick_writes_its_table(tmp_path):
    text = _quick_table("bf16_cpu", tmp_path)
    _assert_provenance(text, "python benchmarks/bf16_cpu.py --quick --out ")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "ms/step" not in line
            and not line.startswith("| ---")]
    assert len(rows) == 2
    for row in rows:  # both timings measured and positive, the ratio their quotient
        fp32, bf16, ratio = (float(c.strip().rstrip("x")) for c in row.split("|")[3:6])
        assert fp32 > 0 and bf16 > 0 and abs(fp32 / bf16 - ratio) < 0.05 * ratio + 0.02


def _assert_provenance(text: str, command: str) -> None:
    """A result file names its command, machine (CPU and cores), date and load (provenance.py)."""
    line = next((ln for ln in text.splitlines() if ln.startswith("Command: `")), None)
    assert line is not None, f"no provenance line in:\n{text[:500]}"
    assert line.startswith(f"Command: `{command}"), line
    for needed in (" cores, torch ", "load average (1 min)", " CPU s ", " s wall", " UTC"):
        assert needed in line, (needed, line)


def test_iw_curve_quick_falls_with_more_draws(tmp_path):
    text = _quick_table("diagnostics/iw_curve", tmp_path)
    _assert_provenance(text, "python benchmarks/diagnostics/iw_curve.py --quick --out ")
    row = next(line for line in text.splitlines() if line.startswith("| digits"))
    plain, iw4, gain = (float(c) for c in row.split("|")[3:6])
    assert iw4 < plain and abs((plain - iw4) - gain) < 1e-3


def test_outlier_trace_follows_the_worst_and_the_median_image_through_every_coupling(tmp_path):
    from flowlab.cli import main as flowlab

    run = tmp_path / "run"
    assert flowlab(["train", "--data", "digits", "--model", "multiscale", "--model-args",
                    "{hidden_channels: 4, blocks: 1, scales: 1}", "--steps", "4",
                    "--batch-size", "32", "--eval-every", "2", "--log-every", "2",
                    "--sample-every", "0", "--ema-decay", "0.9", "--no-progress",
                    "--run-dir", str(run)]) == 0
    out = tmp_path / "trace.md"
    proc = subprocess.run(
        [sys.executable, str(DIAGNOSTICS / "outlier_trace.py"), str(run), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| `")]
    assert len(rows) == 4  # one scale: the four checkerboard couplings, in order
    for row in rows:  # |kept| and |t| are magnitudes; log-scales within the layer's bound 3
        kept, shift, scale = (c.strip() for c in row.split("|")[2:5])
        for cell, low, high in ((kept, 0, math.inf), (shift, 0, math.inf), (scale, -3, 3)):
            worst, median = (float(v.strip("()")) for v in cell.split())
            assert low <= worst <= high and low <= median <= high
    assert "Raw (non-EMA) weights of the same checkpoint: mean" in out.read_text()
    missing = subprocess.run([sys.executable, str(DIAGNOSTICS / "outlier_trace.py"), str(tmp_path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert missing.returncode != 0


def test_ema_or_raw_quick_trains_both_policies_alike_and_tables_them(tmp_path):
    out = tmp_path / "ema_or_raw.md"
    proc = subprocess.run([sys.executable, str(DIAGNOSTICS / "ema_or_raw.py"), "--quick", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]  # includes: both runs trained alike
    text = out.read_text()
    _assert_provenance(text, "python benchmarks/diagnostics/ema_or_raw.py --quick --out ")
    assert text.count("| EMA only (select_raw=False) |") == 2
    assert text.count("| better of the two (default) |") == 2
    for section in text.split("### ")[1:]:
        assert "Baselines on this test split" in section and "per-pixel histogram" in section
        curve = [line for line in section.splitlines() if line[:2] == "| " and
                 line[2:3].isdigit()]
        assert len(curve) == 6  # six validations, both weight sets scored at each
        best_raw = min(float(line.split("|")[3]) for line in curve)
        best_ema = min(float(line.split("|")[2]) for line in curve)
        chosen = float(section.split("| better of the two (default) |")[1].split("|")[3])
        assert chosen == pytest.approx(min(best_raw, best_ema), abs=1e-3)


@pytest.mark.parametrize("alpha, words", [("0.05", "logit space (alpha 0.05)"),
                                          ("0", "digits in [0, 1] (no logit")])
def test_spline_study_writes_its_table_in_logit_space_or_in_0_1(tmp_path, alpha, words):
    import seeds

    out = tmp_path / "study"
    assert seeds.study_logit(["--seeds", "0", "--steps", "4", "--every", "2", "--hidden", "8",
                              "--alpha", alpha, "--bound", "3", "--validation", "--impls", "",
                              "--variants", "param_scale=1;default", "--out", str(out)]) == 0
    run = json.loads((out / "seed0.json").read_text())
    assert run["scored_on"].startswith("validation") and run["alpha"] == float(alpha)
    assert set(run["models"]) == {"flowlab param_scale=1", "flowlab default"}
    for model in run["models"].values():
        assert [c[0] for c in model["curve"]] == [0, 2, 4]
        assert all(math.isfinite(v) for c in model["curve"] for v in c[1:])
    table = (tmp_path / "study.md").read_text()
    assert words in table and "| flowlab default" in table


def test_logit_margin_smoke_run_tables_each_margin_on_validation(tmp_path):
    import logit_margin

    out = tmp_path / "margin.md"
    rows = logit_margin.main(["--models", "digits-realnvp", "--alphas", "0.05,none",
                              "--steps", "2", "--out", str(out)])
    assert [(r["model"], r["alpha"]) for r in rows] == [("digits-realnvp", 0.05),
                                                         ("digits-realnvp", None)]
    assert all(math.isfinite(r["val"]) for r in rows)
    assert rows[0]["val"] != rows[1]["val"]    # the margin reaches the model
    table = out.read_text()
    _assert_provenance(table, "python benchmarks/diagnostics/logit_margin.py --models digits-realnvp")
    assert "| digits-realnvp | 0.05 | 2 |" in table and "| digits-realnvp | None | 2 |" in table
    with pytest.raises(SystemExit):
        logit_margin.main(["--models", "cifar-glow"])
