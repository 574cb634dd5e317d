r"""nbgrader plug-ins that make autograding robust; switched on in ``assignments/nbgrader_config.py``.

* :class:`GradingExecute` — nbgrader's ``Execute`` as the trust boundary: the hidden tests run
  in this (the grader's) process against plain values from the kernel (:mod:`.trusted`), plus a
  memory limit inside the kernel (a runaway allocation raises ``MemoryError`` in the cell instead
  of taking the machine down); when a cell kills the kernel (``os._exit``, a segfault, the OOM
  killer) or runs past the timeout, that cell gets an error, a fresh kernel replays the other
  cells and grading goes on.  A student therefore loses the points of what they broke, the next
  student is still graded and the gradebook gets a score for every cell.
* :class:`LimitOutputSize` — caps the characters a cell may print (nbgrader's ``LimitOutput``
  counts lines, and one line can be megabytes long).
* :class:`SanitizeFeedback` — for ``generate_feedback``: removes hidden-test regions from the
  cells and shortens the tracebacks of test cells to their last line (``GradingFailure: ...``), so
  that the feedback never shows hidden test code or inputs.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from nbclient.exceptions import DeadKernelError
from nbconvert.preprocessors.execute import NotebookClient
from nbformat.notebooknode import NotebookNode
from traitlets import Integer, Unicode

from nbgrader.preprocessors import NbGraderPreprocessor
from nbgrader.preprocessors.execute import Execute

__all__ = ["GradingExecute", "LimitOutputSize", "SanitizeFeedback"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(
        output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
    )


def _has_timeout(cell: NotebookNode) -> bool:
    return any(
        o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
        for o in cell.get("outputs", [])
    )


class GradingExecute(Execute):
    """Execute a submission, then grade it from the trusted side; one broken cell costs only that cell.

    1. The hidden regions of the test cells are cut out (:func:`.trusted.runner.plan`): they
       never reach the kernel.  The grader modules' ``GRADED`` declarations give the redacted
       flowlab (:mod:`.trusted.redaction`) that the sandbox mounts in flowlab's place: the
       reference implementations of what is graded do not exist in the student's kernel.  The
       student's cells are read statically for the instructor's notes (:mod:`.trusted.static`;
       no points depend on them).
    2. The notebook runs in the (sandboxed) kernel as nbgrader would run it.  A cell that kills
       the kernel or times out gets an error, a fresh kernel replays the other cells and the run
       goes on.
    3. In the same kernel, every hidden test runs *here*, in the grader's process: it calls the
       student's code through :class:`.trusted.bridge.KernelBridge` and receives plain values,
       which it checks against flowlab's reference.  A probe that kills the kernel fails its
       part; a fresh kernel replays the notebook (outputs discarded) and grading continues.
    4. The verdicts become the test cells' deciding outputs (:func:`.trusted.runner.apply`);
       the instructor's flags go to ``nb.metadata.flowlab.flags``.

    **Without the sandbox** (bubblewrap missing, ``FLOWLAB_SANDBOX=0``, ``configure(c,
    enabled=False)``) there is no separation guarantee: the kernel is started with the redacted
    copy first on ``PYTHONPATH`` (so ``import flowlab`` finds the stubs), but the original source
    stays readable on disk.  Every notebook graded that way carries a ``separation_off`` flag.
    """

    memory_limit_mb = Integer(
        8192,
        help="Address-space limit (RLIMIT_AS) set inside the kernel, in MiB; 0 disables it.",
    ).tag(config=True)

    max_kernel_restarts = Integer(
        3, help="How many kernel deaths/timeouts to survive per notebook before giving up."
    ).tag(config=True)

    _redacted: str | None = None

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if self._redacted and km.has_trait("replace_packages"):
            km.replace_packages = {"flowlab": self._redacted}
        return km

    def _sandboxed(self) -> bool:
        from .sandbox.manager import SandboxKernelManager

        cls = self.kernel_manager_class
        return isinstance(cls, type) and issubclass(cls, SandboxKernelManager)

    def _kernel_env(self) -> dict:
        """Without the sandbox: the redacted copy first on the kernel's PYTHONPATH (best effort)."""
        import os

        if not self._redacted or self._sandboxed():
            return {}
        env = dict(os.environ)
        parent = os.path.dirname(self._redacted)
        env["PYTHONPATH"] = os.pathsep.join([parent, *filter(None, [env.get("PYTHONPATH")])])
        return {"env": env}

    def _limit_memory(self) -> None:
        if self.memory_limit_mb <= 0:
            return
        limit = int(self.memory_limit_mb) * 1024 * 1024
        code = (
            "import resource as _r\n"
            f"_r.setrlimit(_r.RLIMIT_AS, ({limit}, {limit}))\n"
            "del _r\n"
        )
        assert self.kc is not None
        msg_id = self.kc.execute(code, silent=True, store_history=False)
        self.wait_for_reply(msg_id)

    def _run_cells(self, resources: Any, broken: dict[int, str], record: bool) -> int | None:
        """Run every cell not in ``broken``; the index of a cell that killed the kernel, or None.

        ``record=False`` replays the notebook for a fresh kernel: it runs on a copy, so that
        nothing of the replay (outputs, display updates) reaches the graded notebook.
        """
        original = self.nb
        if not record:
            self.nb = copy.deepcopy(original)
        try:
            for index, cell in enumerate(self.nb.cells):
                if index in broken:
                    continue
                try:
                    self.preprocess_cell(cell, resources, index)
                except DeadKernelError:
                    broken[index] = "died"
                    return index
                if _has_timeout(cell):
                    broken[index] = "timeout"
                    return index
        finally:
            self.nb = original
        return None

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None):
        from .registry import declaration, lookup
        from .trusted import redaction, runner
        from .trusted.bridge import KernelBridge
        from .trusted.static import analyse

        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        the_plan = runner.plan(self.nb, lookup)
        mine, locked = runner.student_cells(self.nb)
        parts = list(the_plan.parts.values())
        findings = analyse(mine, parts, locked)
        extra_flags = []
        stub_messages: list[str] = []
        self._redacted = None
        if parts:
            self._redacted = redaction.build(declaration(parts))
            stub_messages = list(redaction.manifest(self._redacted)["stubs"].values())
            if not self._sandboxed():
                extra_flags.append({
                    "part": None, "kind": "separation_off",
                    "message": "graded without the sandbox: flowlab's reference code was readable "
                               "on disk, so separation is not guaranteed (see book/sandbox.md)"})
        broken: dict[int, str] = {}  # cell index -> why it was taken out of the run
        verdicts: dict[int, Any] = {}
        executed = False  # the notebook's own run is complete: later kernels only replay it
        failures = 0
        while True:
            restart = False
            with self.setup_kernel(**self._kernel_env()):
                assert self.kc is not None
                info_msg = self.wait_for_reply(self.kc.kernel_info())
                assert info_msg is not None
                self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
                self._limit_memory()
                died = self._run_cells(resources, broken, record=not executed)
                if died is not None:
                    restart = True
                    self.log.warning("cell %d %s; restarting the kernel and running the other "
                                     "cells again", died, "killed the kernel"
                                     if broken[died] == "died" else "timed out")
                elif the_plan.parts or the_plan.unknown:
                    executed = True
                    widgets = copy.deepcopy((self.widget_state, self.widget_buffers))
                    bridge = KernelBridge(self, [source for _, source in mine], stub_messages)
                    try:
                        runner.grade(bridge, the_plan, findings, verdicts)
                    except DeadKernelError:
                        restart = True
                        self.log.warning("a hidden test killed the kernel; replaying the "
                                         "notebook in a fresh kernel for the other parts")
                    finally:  # widgets created while the grader called the student's code
                        self.widget_state, self.widget_buffers = widgets
            if not restart:
                break
            failures += 1
            if failures > self.max_kernel_restarts:
                for index, cell in enumerate(self.nb.cells):
                    if not executed and died is not None and index > died and cell.cell_type == "code":
                        cell.outputs = [_error("KernelError", "not run: too many kernel failures "
                                               "earlier in this notebook")]
                for index in the_plan.parts:
                    verdicts.setdefault(index, runner.Verdict(
                        0.0, "Not graded: the kernel failed too many times in this notebook.",
                        "kernel_died"))
                break
        for index, why in broken.items():
            cell = self.nb.cells[index]
            if why == "died":
                cell.outputs = list(cell.get("outputs", [])) + [
                    _error(
                        "DeadKernelError",
                        "the kernel died while running this cell (did it call exit(), crash, or "
                        "use too much memory?). Its points are lost; the other cells were graded "
                        "in a fresh kernel.",
                    )
                ]
        points = {i: runner.metadata_points(self.nb, i) for i in verdicts}
        runner.apply(self.nb, verdicts, points)
        runner.restore(self.nb, the_plan)
        self.nb.metadata.setdefault("flowlab", {})["flags"] = runner.flags(
            the_plan, verdicts, findings, extra_flags)
        self.set_widgets_metadata()
        return self.nb, self.resources


class LimitOutputSize(NbGraderPreprocessor):
    """Truncate each cell's text output to ``max_chars`` characters in total."""

    max_chars = Integer(20000, help="Characters of text output kept per cell.").tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int):
        if cell.cell_type != "code" or self.max_chars < 0:
            return cell, resources
        budget = self.max_chars
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = out.get("text", "")
                if len(text) > budget:
                    out.text = text[: max(budget, 0)] + (
                        f"\n... output truncated ({len(text) - budget} more characters) ...\n"
                    )
                    kept.append(out)
                    budget = 0
                    continue
                budget -= len(text)
            elif out.get("output_type") in ("execute_result", "display_data"):
                data = out.get("data", {})
                for key, value in list(data.items()):
                    if key.startswith("text/") and isinstance(value, str) and len(value) > max(budget, 1000):
                        data[key] = value[: max(budget, 1000)] + "\n... output truncated ..."
            kept.append(out)
        cell.outputs = kept
        return cell, resources


class SanitizeFeedback(NbGraderPreprocessor):
    """Remove hidden tests and their tracebacks from the feedback a student receives."""

    begin = Unicode("### BEGIN HIDDEN TESTS").tag(config=True)
    end = Unicode("### END HIDDEN TESTS").tag(config=True)
    placeholder = Unicode("# (hidden tests, run by the grader)").tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int):
        if cell.cell_type != "code" or self.begin not in cell.source:
            return cell, resources
        lines, inside = [], False
        for line in cell.source.splitlines():
            if self.begin in line:
                inside = True
                lines.append(line[: line.index(self.begin)] + self.placeholder)
                continue
            if self.end in line:
                inside = False
                continue
            if not inside:
                lines.append(line)
        cell.source = "\n".join(lines)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out.traceback = [_ANSI.sub("", f"{out.get('ename', 'Error')}: {out.get('evalue', '')}")]
        return cell, resources
