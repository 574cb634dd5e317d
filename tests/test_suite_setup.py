"""The suite's own machinery works as the tests assume.

Several tests share expensive work through ``xdist_group`` (one site build under load, one
hostile class, one JupyterLab semester), which only holds when ``--dist loadgroup`` really
groups them: pytest 9.2.0 silently broke that (pytest-xdist issue 1386), and every worker then
rebuilt the site.  This runs a two-worker session on a scratch file and checks that the marked
tests carry their group and run on one worker.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_loadgroup_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(
        "import pytest\n"
        "pytestmark = pytest.mark.xdist_group('g')\n"
        "@pytest.mark.parametrize('i', range(6))\n"
        "def test_one(i):\n    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "-c", "/dev/null", str(tmp_path / "test_grouped.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    runs = re.findall(r"\[(gw\d+)\].*PASSED \S+::test_one\[\d\](@\S+)?", proc.stdout)
    assert len(runs) == 6, proc.stdout[-3000:]
    assert all(group == "@g" for _, group in runs), (
        "pytest-xdist's --dist loadgroup ignores xdist_group with this pytest (pin it below "
        f"9.2 in pyproject's test extra):\n{proc.stdout[-2000:]}")
    assert len({worker for worker, _ in runs}) == 1, proc.stdout[-2000:]
