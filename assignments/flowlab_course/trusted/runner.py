"""The hidden-test phase of one submission, run by the trusted process after the notebook executed.

:func:`plan` reads the directives out of the test cells (and strips the hidden regions, which
never reach the kernel); :func:`student_cells` says which cells a student could have written;
:func:`grade` runs every part through a :class:`~.bridge.KernelBridge` and returns a
:class:`Verdict` per test cell; :func:`apply` writes the verdicts into the cells' outputs, the
only outputs nbgrader's scoring then looks at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from nbformat.notebooknode import NotebookNode

from .errors import DelegationError, GradingFailure
from .bridge import KernelBridge, NoAnswer, StudentError
from .parts import Part, Partial, lookup, order
from .static import Finding

__all__ = ["Verdict", "plan", "student_cells", "grade", "apply", "BEGIN", "END"]

BEGIN, END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
_DIRECTIVE = re.compile(r"#\s*flowlab-grade:\s*([A-Za-z_][\w]*\.[A-Za-z_][\w]*)")


@dataclass
class Verdict:
    """The outcome of one part: ``fraction`` of its points and the message the student reads."""

    fraction: float
    message: str
    kind: str = "ok"  # ok | partial | failure | delegation | timeout | kernel_died | grader_error

    @property
    def passed(self) -> bool:
        return self.fraction >= 1.0


@dataclass
class Plan:
    """The hidden tests of a notebook: ``cell index -> part``, and the stripped sources."""

    parts: dict[int, Part] = field(default_factory=dict)
    hidden: dict[int, str] = field(default_factory=dict)  # cell index -> original source
    unknown: dict[int, str] = field(default_factory=dict)  # cell index -> why it has no part


def _is_grade(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def plan(nb: NotebookNode, lookup: Callable[[str], Part] = lookup) -> Plan:
    """Find the directives and cut the hidden regions out of the test cells (kept in ``hidden``).

    ``lookup`` finds the part a directive names: :func:`flowlab_course.registry.lookup` (which
    imports the grader module) from the entry points; the default looks only among the parts
    already registered (this package imports no grader).
    """
    result = Plan()
    for index, cell in enumerate(nb.cells):
        if not _is_grade(cell) or BEGIN not in cell.source:
            continue
        result.hidden[index] = cell.source
        visible, hidden, inside = [], [], False
        for line in cell.source.splitlines():
            if BEGIN in line:
                inside = True
                continue
            if END in line:
                inside = False
                continue
            (hidden if inside else visible).append(line)
        cell.source = "\n".join(visible)
        match = _DIRECTIVE.search("\n".join(hidden))
        if match is None:
            result.unknown[index] = "its hidden region names no `# flowlab-grade:` part"
            continue
        try:
            result.parts[index] = lookup(match.group(1))
        except KeyError as err:
            result.unknown[index] = str(err)
    return result


def restore(nb: NotebookNode, the_plan: Plan) -> None:
    """Put the test cells' full sources back (the feedback's sanitizer removes hidden regions)."""
    for index, source in the_plan.hidden.items():
        nb.cells[index].source = source


def student_cells(nb: NotebookNode) -> tuple[list[tuple[int, str]], list[str]]:
    """``(cells a student could have written, the locked cells' sources)``.

    Test and locked cells are restored from the instructor's copy by nbgrader before grading;
    every other code cell — solution cells *and any cell a student added* — is the student's.
    """
    mine, locked = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("locked") and not meta.get("solution"):
            locked.append(cell.source)
        elif _is_grade(cell):
            continue
        else:
            mine.append((index, cell.source))
    return mine, locked


def grade(bridge: KernelBridge, the_plan: Plan, findings: list[Finding] | None,
          done: dict[int, Verdict]) -> None:
    """Run every part of ``the_plan`` not yet in ``done`` (results go into ``done``).

    A verdict depends only on the values the student's code returned to the grader's probes:
    no evidence produced in the kernel (and no static finding, ``findings`` is unused here: it
    only feeds the instructor's notes) decides anything.  Parts run in :func:`.parts.order`, so
    that a grader-written piece that implements a part enters the kernel only after that part's
    verdict is final; a verdict once in ``done`` is never revisited.

    A :class:`DeadKernelError` propagates after the part that killed the kernel is recorded, so
    that the caller can start a fresh kernel and continue with the remaining parts.
    """
    from nbclient.exceptions import DeadKernelError

    for index, why in the_plan.unknown.items():
        done.setdefault(index, Verdict(0.0, f"This test cell cannot be graded: {why}. Tell your "
                                       "instructor.", "failure"))
    for index in order(the_plan.parts):
        part = the_plan.parts[index]
        if index in done:
            continue
        try:
            outcome = part.grade(bridge)
            verdict = (Verdict(max(0.0, min(1.0, outcome.fraction)), outcome.message,
                               "partial") if isinstance(outcome, Partial)
                       else Verdict(1.0, "All hidden tests of this part passed.", "ok"))
        except DelegationError as err:
            verdict = Verdict(0.0, str(err.message), "delegation")
        except GradingFailure as err:
            verdict = Verdict(0.0, str(err.message), "failure")
        except NoAnswer as err:
            kind = "timeout" if "time limit" in str(err) else "failure"
            verdict = Verdict(0.0, f"The grader got no answer from your code: {err}", kind)
        except StudentError as err:  # a grader that did not catch it: still a clean message
            verdict = Verdict(0.0, err.describe("your code"), "failure")
        except DeadKernelError:
            done[index] = Verdict(0.0, "The kernel died while the grader called your code for "
                                  "this part (did it call exit(), crash, or use too much "
                                  "memory?). The other parts were graded in a fresh kernel.",
                                  "kernel_died")
            raise
        except Exception as err:  # noqa: BLE001 - a bug of the grader must not stop grading
            import logging

            logging.getLogger("flowlab_course").exception("grader %s failed", part.key)
            verdict = Verdict(0.0, f"The grader of this part failed ({type(err).__name__}); "
                              "your instructor will grade it by hand.", "grader_error")
        done[index] = verdict


def apply(nb: NotebookNode, verdicts: dict[int, Verdict], points: dict[int, float]) -> None:
    """Write the verdicts into the test cells: the only outputs that decide their scores.

    The kernel's own outputs of a test cell are kept for the student to read, made harmless:
    stderr becomes stdout (tqdm, logging and warnings never zero a part), a result value becomes
    a display (it cannot claim partial credit) and an error in the visible checks becomes a note
    (the points are decided by the hidden tests, which cover what the visible ones check).
    """
    for index, verdict in verdicts.items():
        cell = nb.cells[index]
        kept = []
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                kept.append(NotebookNode(output_type="stream", name="stdout", text=out.get("text", "")))
            elif kind == "execute_result":
                kept.append(NotebookNode(output_type="display_data", data=out.get("data", {}),
                                         metadata=out.get("metadata", {})))
            elif kind == "error":
                kept.append(NotebookNode(
                    output_type="stream", name="stdout",
                    text=f"[visible checks] {out.get('ename', 'Error')}: {out.get('evalue', '')}\n"))
            else:
                kept.append(out)
        max_points = points.get(index, 0.0)
        if verdict.passed:
            kept.append(NotebookNode(output_type="stream", name="stdout",
                                     text=f"✔ hidden tests passed: {verdict.message}\n"))
        elif verdict.fraction > 0:
            kept.append(NotebookNode(output_type="stream", name="stdout",
                                     text=f"◐ partial credit: {verdict.message}\n"))
            kept.append(NotebookNode(output_type="execute_result", execution_count=None,
                                     metadata={}, data={"text/plain": repr(round(
                                         verdict.fraction * max_points, 4))}))
        else:
            ename = {"delegation": "DelegationError", "timeout": "TimeoutError",
                     "kernel_died": "DeadKernelError"}.get(
                         verdict.kind, "GradingFailure")
            kept.append(NotebookNode(output_type="error", ename=ename, evalue=verdict.message,
                                     traceback=[f"{ename}: {verdict.message}"]))
        cell.outputs = kept


def flags(the_plan: Plan, verdicts: dict[int, Verdict], findings: list[Finding],
          extra: Iterable[dict] = ()) -> list[dict]:
    """What the instructor's report lists: failures to look at, and the static reader's notes.

    The static reader's findings (a flowlab reference named in the source, constructs whose
    meaning depends on run time) are *notes*: they never cost a point (the grading kernel has no
    reference to delegate to, see :mod:`.redaction`), they only help an instructor who reads a
    submission.
    """
    out = list(extra)
    for index, part in the_plan.parts.items():
        v = verdicts.get(index)
        if v is not None and v.kind in ("delegation", "timeout", "kernel_died",
                                          "grader_error"):
            out.append({"part": part.key, "kind": v.kind, "message": v.message})
    for f in findings:
        what = {"delegation": "names flowlab's reference", "undecidable": "uses a construct the "
                "static reader cannot follow"}.get(f.kind, "note")
        out.append({"part": ",".join(f.parts) if f.kind == "delegation" and f.parts else None,
                    "kind": "note",
                    "message": f"cell {f.cell + 1}, line {f.line}: {f.message} ({what}; no "
                               "points depend on it)"})
    return out


def metadata_points(nb: NotebookNode, index: int) -> float:
    return float(nb.cells[index].get("metadata", {}).get("nbgrader", {}).get("points", 0) or 0)


__all__ += ["restore", "flags", "metadata_points", "Plan"]
del Any
