"""The trusted side of the channel to a student's kernel.

:class:`KernelBridge` is handed to every hidden test.  Its one method, :meth:`KernelBridge.call`,
runs a few lines of grader code in the student's kernel (a *probe*: call the student's class on
inputs the grader chose) and returns what the probe left in ``result`` as plain values
(:mod:`.wire`).  What the kernel prints, displays or raises during a probe never reaches the
notebook: outputs are dropped, display updates and widget state are cut off, and an error comes
back as its type, the line of the student's own cell that raised it and a message from which
numbers with decimals and any text that quotes the grader are removed (so hidden inputs and
hidden test code cannot be smuggled into the feedback).

The bridge drives the kernel through the nbclient client that executed the notebook (nbgrader's
``Execute``), so probes obey the same per-cell timeout and the same sandbox.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from nbformat.v4 import new_code_cell, new_notebook

from . import wire

__all__ = ["KernelBridge", "StudentError", "NoAnswer"]

_MARKER = "\x1eFLOWLAB-GRADER-RESULT "
_KERNEL_SIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_side.py")
_DECIMAL = re.compile(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")


class StudentError(Exception):
    """The student's code raised while the grader called it."""

    def __init__(self, error: str, message: str, where: list | None) -> None:
        super().__init__(f"{error}: {message}")
        self.error, self.message, self.where = error, message, where

    def describe(self, what: str) -> str:
        """``"<what> raised ValueError: ... (line 12 of your cell: `z = ...`)"``."""
        text = f"{what} raised {self.error}"
        if self.message:
            text += f": {self.message}"
        if self.where:
            text += f" (line {self.where[0]} of your cell: `{self.where[1]}`)"
        return text


class NoAnswer(Exception):
    """The kernel sent no answer (a timeout, or code that swallowed the grader's request)."""


@dataclass
class KernelBridge:
    """Run probes in the student's kernel through ``client`` (an nbclient ``NotebookClient``).

    Args:
        client: the client that executed the notebook (its kernel is still running).
        watch: source files of flowlab's reference implementation; a call into one of them during
            a probe is recorded in :attr:`reference_calls` (runtime evidence of delegation).
    """

    client: Any
    watch: Sequence[str] = ()
    reference_calls: list[str] = field(default_factory=list)
    _secret: str = ""
    _started: bool = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Install the kernel side of the channel (once per kernel)."""
        with open(_KERNEL_SIDE) as handle:
            source = handle.read()
        self._secret = source
        self._execute(source)
        self._started = True

    # ------------------------------------------------------------------ probes
    def call(self, code: str, /, **inputs: Any) -> Any:
        """Run ``code`` in a copy of the student's namespace with ``inputs`` bound; return ``result``.

        Raises:
            StudentError: the student's code raised (message already cleaned of hidden data).
            NoAnswer: no answer came back (timeout, or the kernel's channel was tampered with).
        """
        if not self._started:
            self.start()
        payload = json.dumps(wire.encode(inputs))
        self._secret += "\n" + code
        request = f"_flowlab_probe({code!r}, {payload!r}, {list(self.watch)!r})"
        outputs = self._execute(request)
        reply = None
        for out in outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                for line in out.get("text", "").split("\n"):  # not splitlines(): \x1e splits
                    if line.startswith(_MARKER):
                        reply = line[len(_MARKER):]
        if reply is None:
            if os.environ.get("FLOWLAB_GRADER_DEBUG"):
                import sys; print("probe outputs:", outputs, file=sys.stderr)
            if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError"
                   for o in outputs):
                raise NoAnswer("it did not finish within the time limit (an endless loop, or "
                               "far too slow a computation?)")
            raise NoAnswer("the kernel sent no answer to the grader's request (does your code "
                           "change how the notebook runs code, or exit?)")
        try:
            answer = wire.loads(base64.b64decode(reply).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise NoAnswer(f"the kernel's answer was unreadable ({type(err).__name__})") from None
        if not isinstance(answer, dict):
            raise NoAnswer("the kernel's answer was malformed")
        calls = answer.get("reference_calls") or []
        if isinstance(calls, list):
            self.reference_calls.extend(str(c)[:200] for c in calls[:20])
        if not answer.get("ok"):
            where = answer.get("where")
            if not (isinstance(where, list) and len(where) == 2):
                where = None
            else:
                where = [int(where[0]) if isinstance(where[0], int) else 0,
                         self.clean(str(where[1]))]
            raise StudentError(self.clean(str(answer.get("error", "Error")))[:80] or "Error",
                               self.clean(str(answer.get("message", ""))), where)
        try:
            return wire.decode(answer.get("result"))
        except wire.WireError as err:
            raise NoAnswer(f"the answer was not a plain value: {err}") from None

    # ------------------------------------------------------------------ hygiene
    def clean(self, text: str, limit: int = 300) -> str:
        """``text`` without decimals (hidden inputs) and without anything quoting grader code."""
        text = _DECIMAL.sub("…", text)[: 4 * limit]
        window = 24
        for start in range(0, max(len(text) - window + 1, 0)):
            if text[start:start + window] in self._secret:
                return "(message withheld: it quotes the grader's code)"
        return text if len(text) <= limit else text[:limit] + " …"

    def _execute(self, source: str) -> list:
        """Execute ``source`` in the kernel as a cell that belongs to no notebook."""
        client = self.client
        cell = new_code_cell(source)
        # The probe runs as the only cell of a throw-away notebook: display updates and
        # clear_output messages of the student's code cannot reach the graded notebook.
        notebook, displays = client.nb, client._display_id_map
        client.nb, client._display_id_map = new_notebook(cells=[cell]), {}
        try:
            client.execute_cell(cell, 0, store_history=False)
        finally:
            client.nb, client._display_id_map = notebook, displays
        return list(cell.get("outputs", []))


class LocalBridge(KernelBridge):
    """A bridge to a namespace in *this* process, for fast tests of the graders (no kernel).

    The probe goes through the same kernel-side code and the same wire format as with a real
    kernel, so a grader tested here behaves the same under nbgrader.

    Args:
        namespace: the "student's" globals (e.g. ``runpy``/``exec`` of a solution's source).
        watch: as for :class:`KernelBridge`.
    """

    def __init__(self, namespace: dict, watch: Sequence[str] = ()) -> None:
        super().__init__(client=None, watch=watch)
        self.namespace = namespace

    def _execute(self, source: str) -> list:
        import contextlib
        import io
        import types

        shell = types.SimpleNamespace(user_ns=self.namespace)
        self.namespace.setdefault("get_ipython", lambda: shell)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                exec(compile(source, "<grader-request>", "exec"), self.namespace)
            except Exception as err:  # noqa: BLE001 - like a kernel: an error output
                return [{"output_type": "error", "ename": type(err).__name__, "evalue": str(err)}]
        return [{"output_type": "stream", "name": "stdout", "text": buffer.getvalue()}]


__all__ += ["LocalBridge"]
