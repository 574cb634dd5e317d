"""Where a benchmark result came from: command, machine, date, load, CPU and wall seconds.

Every result file under ``benchmarks/results/`` starts with this line, so that a figure can be
rerun and judged: a timing taken at a load average above the core count is unreliable, and a
ratio is only comparable to one measured on the same CPU model.

Example:
    >>> from provenance import Provenance
    >>> run = Provenance("python benchmarks/x.py --quick")
    >>> line = run.line()
    >>> line.startswith("Command: `python benchmarks/x.py --quick`")
    True
    >>> "load average" in line and "cores" in line
    True
    >>> Provenance.for_script("/any/where/images.py", ["--quick"]).command
    'python benchmarks/images.py --quick'
    >>> Provenance.for_script(__file__.replace("provenance", "diagnostics/seeds"), []).command
    'python benchmarks/diagnostics/seeds.py'
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

__all__ = ["Provenance", "cpu_model"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Provenance:
    """Started when the benchmark starts; :meth:`line` is the header of its result file."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        self.load_start = os.getloadavg()[0]
        self.wall_start = time.perf_counter()
        self.cpu_start = _cpu_seconds()

    @classmethod
    def for_script(cls, script: str, argv: list[str] | None = None) -> "Provenance":
        """Provenance of ``python benchmarks/<script> ARGS`` (``argv``: the parsed arguments)."""
        args = sys.argv[1:] if argv is None else list(argv)
        path = Path(script).resolve()
        root = Path(__file__).resolve().parents[1]
        shown = path.relative_to(root) if path.is_relative_to(root) else f"benchmarks/{path.name}"
        return cls(shlex.join(["python", str(shown), *args]))

    def line(self) -> str:
        """``Command: `...`; machine: CPU, N cores, torch V; date; load start/end; CPU s, wall s.``"""
        try:
            import torch

            software = f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)"
        except ImportError:  # pragma: no cover - every benchmark has torch
            software = "no torch"
        wall = time.perf_counter() - self.wall_start
        cpu = _cpu_seconds() - self.cpu_start
        return (f"Command: `{self.command}`; machine: {cpu_model()}, {os.cpu_count()} cores, "
                f"{software}; {self.date}; load average (1 min) {self.load_start:.1f} at the "
                f"start, {os.getloadavg()[0]:.1f} at the end (above the core count, timings "
                f"are unreliable); {cpu:.0f} CPU s (this process and its children), "
                f"{wall:.0f} s wall.")


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
