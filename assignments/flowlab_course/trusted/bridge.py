"""The trusted side of the channel to a student's kernel.

:class:`KernelBridge` is handed to every hidden test.  Its one method, :meth:`KernelBridge.call`,
asks the student's kernel to run one *probe*: a function of :mod:`flowlab_course.kernel.probes`
(build the student's class from data the grader chose, call it), **named** in the request, with
its arguments as plain data; the kernel answers with plain values (:mod:`.wire`).  The code that
runs there is :mod:`flowlab_course.kernel`, sent as module text once per kernel (the channel and
the probes when the bridge starts, a grader's piece when a request first needs it); no code
string is built or sent per request, and a name that is not a probe is refused.
What the kernel prints, displays or raises during a probe never reaches the
notebook: outputs are dropped, display updates and widget state are cut off, and an error comes
back as its **type and the line of the student's own cell** that raised it, never as free text:
the type must be a built-in exception or a name the student's own cells spell, the line must be
a line of their own cells (the trusted side checks both against the submitted source), and the
message is dropped unless it is one of the redacted flowlab's own stub messages (known here).
So neither hidden inputs (as decimals, integers or any encoding) nor the probe request can be
carried into the feedback by an exception.

The bridge drives the kernel through the nbclient client that executed the notebook (nbgrader's
``Execute``), so probes obey the same per-cell timeout and the same sandbox.
"""

from __future__ import annotations

import base64
import builtins
import inspect
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from nbformat.v4 import new_code_cell, new_notebook

from .. import kernel
from ..kernel import probes as kernel_probes
from ..kernel.pieces import NAMES as PIECES
from . import wire

__all__ = ["KernelBridge", "StudentError", "NoAnswer"]

#: The payload entry that carries grader pieces' source (:mod:`flowlab_course.kernel.channel`).
PIECES_KEY = "$pieces"

_MARKER = "\x1eFLOWLAB-GRADER-RESULT "
_DECIMAL = re.compile(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")
_NAME_ERROR = re.compile(r"name '([A-Za-z_][A-Za-z0-9_]{0,60})' is not defined")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,60}")
#: Exception names that need no check: Python's own and the redacted flowlab's stub error.
_KNOWN_ERRORS = frozenset(
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
) | {"ReferenceUnavailable", "LinAlgError", "OutOfMemoryError", "CellTimeoutError"}


def _safe_words() -> frozenset:
    """Names of Python, torch and flowlab: type names an answer may legitimately carry."""
    global _SAFE
    if _SAFE is None:
        import torch

        words = set(dir(builtins)) | set(dir(torch)) | set(dir(torch.nn)) | {
            "NoneType", "function", "method", "module", "generator", "a", "an", "object",
            "tensor", "strided", "sparse_coo", "nested", "too", "deeply", "builtin_function_or_method"}
        try:
            import flowlab
            import flowlab.distributions
            import flowlab.transforms

            for m in (flowlab, flowlab.distributions, flowlab.transforms):
                words |= set(dir(m))
        except ImportError:  # pragma: no cover - flowlab is installed with the course
            pass
        _SAFE = frozenset(words)
    return _SAFE


_SAFE: frozenset | None = None


def _strings(value: Any, depth: int = 0) -> set:
    """Identifiers in the str keys and values of the grader's own inputs."""
    out: set = set()
    if depth > 20:
        return out
    if isinstance(value, str):
        out.update(_IDENTIFIER.findall(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            out |= _strings(k, depth + 1) | _strings(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            out |= _strings(v, depth + 1)
    return out


class StudentError(Exception):
    """The student's code raised while the grader called it."""

    def __init__(self, error: str, message: str, where: list | None) -> None:
        super().__init__(f"{error}: {message}" if message else error)
        self.error, self.message, self.where = error, message, where

    def describe(self, what: str) -> str:
        """``"<what> raised ValueError (line 12 of your cell: `z = ...`)"``.

        ``message`` is empty unless it is the redacted flowlab's own explanation of a stub.
        """
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
        student_source: the sources of the cells the student could have written: an error's
            type and line reach the feedback only if they are spelled there.
        stub_messages: the redacted flowlab's stub messages (the only error messages passed on).
    """

    client: Any
    student_source: Sequence[str] = ()
    stub_messages: Iterable[str] = ()
    _secret: str = ""
    _started: bool = False
    _defined: set = field(default_factory=set)
    _lines: set = field(default_factory=set)
    _words: set = field(default_factory=set)

    def __post_init__(self) -> None:
        for source in self.student_source:
            for line in source.splitlines():
                if line.strip():
                    self._lines.add(line.strip()[:160])
            self._words.update(_IDENTIFIER.findall(source))
        self.stub_messages = frozenset(self.stub_messages)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Install the kernel side of the channel and the probes (once per kernel)."""
        channel, probes = kernel.source("channel"), kernel.source("probes")
        self._secret = channel + "\n" + probes
        self._execute(f"{channel}\n_flowlab_probe = _flowlab_channel({probes!r}, get_ipython())\n"
                      "del _flowlab_channel\n")
        self._started = True

    def _piece_sources(self, pieces: Sequence[str]) -> dict[str, str]:
        """``{piece: module text}`` of the grader's pieces not yet defined in this kernel.

        They travel inside the request that first needs them (the channel has one entry point,
        ``_flowlab_probe(name, payload)``, so anything that passes requests through passes these
        too) and stay defined for the kernel's later requests."""
        fresh = {}
        for piece in pieces:
            if piece not in PIECES:
                raise ValueError(f"no grader piece {piece!r}: the pieces are {', '.join(PIECES)} "
                                 "(flowlab_course/kernel/pieces/)")
            if piece not in self._defined and piece not in fresh:
                fresh[piece] = kernel.source(f"pieces/{piece}")
                self._secret += "\n" + fresh[piece]
        return fresh

    # ------------------------------------------------------------------ probes
    def call(self, probe: str, /, *, pieces: Sequence[str] = (), **inputs: Any) -> Any:
        """Run the kernel's probe function ``probe`` on ``inputs``; return what it returned.

        ``probe`` names a function of :mod:`flowlab_course.kernel.probes` and ``inputs`` are its
        arguments (plain values: :mod:`.wire`); ``pieces`` are the grader's pieces
        (:mod:`flowlab_course.kernel.pieces`) it uses, defined in the kernel first.  A name that
        is not a probe, or arguments the probe does not take, are refused here (a grader's bug)
        before anything is sent.

        Raises:
            StudentError: the student's code raised (message already cleaned of hidden data).
            NoAnswer: no answer came back (timeout, or the kernel's channel was tampered with).
        """
        fn = kernel_probes.PROBES.get(probe) if isinstance(probe, str) else None
        if fn is None:
            raise ValueError(f"no probe {probe!r}: a request names one of "
                             f"{', '.join(sorted(kernel_probes.PROBES))} "
                             "(flowlab_course/kernel/probes.py)")
        try:
            inspect.signature(fn).bind(None, **inputs)
        except TypeError as err:
            raise TypeError(f"probe {probe!r}: {err}") from None
        if not self._started:
            self.start()
        fresh = self._piece_sources(pieces)
        payload = json.dumps(wire.encode({**inputs, PIECES_KEY: fresh} if fresh else inputs))
        self._defined.update(fresh)
        self._words.update(_strings(inputs))   # names the grader sent (attribute names, keys)
        request = f"_flowlab_probe({probe!r}, {payload!r})"
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
        if not answer.get("ok"):
            raise StudentError(*self._student_error(answer))
        try:
            return self._scrub(wire.decode(answer.get("result")))
        except wire.WireError as err:
            raise NoAnswer(f"the answer was not a plain value: {err}") from None

    # ------------------------------------------------------------------ hygiene
    def _student_error(self, answer: dict) -> tuple[str, str, list | None]:
        """``(type, message, [line, text])`` of a failed probe, reduced to what is safe to show.

        The type is kept if Python defines it or the student's cells spell it; the line if it is
        a line of their cells (the kernel could send anything); the message only if it is a
        stub message of the redacted flowlab.
        """
        error = str(answer.get("error", ""))
        if not (_IDENTIFIER.fullmatch(error) and (error in _KNOWN_ERRORS or error in self._words)):
            error = "an exception"
        message = str(answer.get("message", ""))
        missing = _NAME_ERROR.fullmatch(message)
        if missing and error == "NameError" and (missing.group(1) in self._words or re.search(
                rf"\b{missing.group(1)}\b", self._secret)):
            pass  # "name 'AffineCoupling' is not defined": a name of their cells or of the probe
        elif message not in self.stub_messages:
            message = ""
        where = answer.get("where")
        if (isinstance(where, list) and len(where) == 2 and isinstance(where[0], int)
                and not isinstance(where[0], bool) and 0 < where[0] < 100_000
                and isinstance(where[1], str) and where[1].strip()[:160] in self._lines):
            where = [where[0], where[1].strip()[:160]]
        else:
            where = None
        return error, message, where

    def _known(self, text: str) -> bool:
        """Is ``text`` made only of names the grader knows (not data the kernel chose)?"""
        if len(text) > 80:
            return False
        words = _IDENTIFIER.findall(text)
        if "".join(words) != re.sub(r"[^A-Za-z0-9_]", "", text):
            return False   # digits glued to nothing, or characters outside names
        return all(w in self._words or w in _safe_words() or re.search(rf"\b{w}\b", self._secret)
                   for w in words)

    def _scrub(self, value: Any) -> Any:
        """Strings of an answer (type names, labels) are passed on only if made of known names.

        Graders quote them in messages ("got NoneType"); an arbitrary string could carry the
        probe request or hidden inputs into the notebook in any encoding.
        """
        if isinstance(value, str):
            return value if self._known(value) else "?"
        if isinstance(value, wire.Opaque):
            return value if self._known(value.what) else wire.Opaque("an object")
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._scrub(v) for v in value)
        if isinstance(value, dict):
            return {(k if self._known(k) else "?"): self._scrub(v) for k, v in value.items()}
        return value

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
        student_source, stub_messages: as for :class:`KernelBridge`.
        modules: the redacted flowlab's modules (:func:`.redaction.load`): ``sys.modules``
            holds them while a probe runs, as the grading kernel would (build ``namespace``
            inside :class:`.redaction.swapped` too).
    """

    def __init__(self, namespace: dict, student_source: Sequence[str] = (),
                 stub_messages: Iterable[str] = (), modules: dict | None = None) -> None:
        super().__init__(client=None, student_source=student_source, stub_messages=stub_messages)
        self.namespace = namespace
        self.modules = modules

    def _execute(self, source: str) -> list:
        import contextlib
        import io
        import types

        from .redaction import swapped

        shell = types.SimpleNamespace(user_ns=self.namespace)
        self.namespace.setdefault("get_ipython", lambda: shell)
        buffer = io.StringIO()
        modules = swapped(self.modules) if self.modules else contextlib.nullcontext()
        with contextlib.redirect_stdout(buffer), modules:
            try:
                exec(compile(source, "<grader-request>", "exec"), self.namespace)
            except Exception as err:  # noqa: BLE001 - like a kernel: an error output
                return [{"output_type": "error", "ename": type(err).__name__, "evalue": str(err)}]
        return [{"output_type": "stream", "name": "stdout", "text": buffer.getvalue()}]


__all__ += ["LocalBridge"]
