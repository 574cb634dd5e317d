"""The README's Python examples run as written (each ```python block, in a fresh interpreter).

The second example loads ``runs/digits``: a three-step ``flowlab train --data digits`` makes
that folder first, in a temporary working directory, so the example runs unchanged.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"),
                    flags=re.S | re.M)


def test_the_readme_has_its_examples() -> None:
    assert len(BLOCKS) >= 3, "the README lost its Python examples"


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=lambda i: f"block{i + 1}")
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    if "runs/digits" in code:
        made = subprocess.run(
            [sys.executable, "-m", "flowlab", "train", "--data", "digits", "--steps", "3",
             "--eval-every", "3", "--sample-every", "0", "--no-progress",
             "--run-dir", "runs/digits"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert made.returncode == 0, made.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"README example {index + 1} failed:\n{code}\n{proc.stderr[-3000:]}"
