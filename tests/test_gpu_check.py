"""The GPU check script's dry run (CPU, seconds): it cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_gpu_check_dry_run_writes_its_figures(tmp_path):
    pytest.importorskip("mlxtend")
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True
    assert result["bf16"] is True  # the CPU runs the autocast path the GPU will run
    # ... and the compiled one, wherever inductor can build CPU kernels
    assert result["compile"] is bool(shutil.which("c++") or shutil.which("g++")
                                     or shutil.which("clang++"))
    for key in ("images_per_s", "test_bits_per_dim", "peak_memory_mib", "baselines", "steps"):
        assert key in result
    assert result["images_per_s"] > 0
    assert 0 < result["test_bits_per_dim"] < 20
    assert result["baselines"]["uniform"] == 8.0


def test_gpu_check_rejects_unknown_arguments():
    proc = subprocess.run(["bash", str(SCRIPT), "--fast"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "unknown argument" in proc.stderr
