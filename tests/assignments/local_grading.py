"""Grading a source notebook in-process, on a LocalBridge (helpers of the test_graders_a* files).

The setup and solution cells run in a fresh namespace, as a student's kernel would run them;
the trusted grader of a part then probes that namespace through the same kernel-side code and
wire format as under nbgrader (:class:`flowlab_course.trusted.bridge.LocalBridge`).
"""

from __future__ import annotations

import nbformat

from nbgrader_course import ASSIGNMENTS

from flowlab_course.graders.errors import GradingFailure
from flowlab_course.trusted.bridge import LocalBridge
from flowlab_course.registry import lookup


def source(assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ASSIGNMENTS / "source" / assignment / f"{assignment}.ipynb", as_version=4)


def parts(nb: nbformat.NotebookNode) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")]


def strip_solution(text: str) -> str:
    """What nbgrader's release leaves of a solution region."""
    out, skipping = [], False
    for line in text.splitlines():
        if line.strip() == "### BEGIN SOLUTION":
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError()")
            skipping = True
        elif line.strip() == "### END SOLUTION":
            skipping = False
        elif not skipping:
            out.append(line)
    return "\n".join(out)


def namespace(nb: nbformat.NotebookNode, release: bool = False) -> dict:
    """Run the setup and solution cells (not tests, not plots) in a fresh namespace."""
    ns: dict = {"__name__": "__main__"}
    for cell in nb.cells:
        kind = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (kind.get("solution") or (kind.get("locked") and not kind.get("grade"))):
            text = strip_solution(cell.source) if release and kind.get("solution") else cell.source
            exec(compile(text, f"<{kind.get('grade_id')}>", "exec"), ns)
    return ns


def grade(module: str, ns: dict, part: str) -> GradingFailure | None:
    """The failure of ``part`` (None if it passes); anything but a GradingFailure is a bug."""
    try:
        verdict = lookup(f"{module}.{part}").grade(LocalBridge(ns))
    except GradingFailure as err:
        return err
    assert verdict is None, f"{part}: unexpected partial verdict {verdict}"
    return None


def grade_separated(module: str, nb: nbformat.NotebookNode, part: str) -> GradingFailure | None:
    """Like :func:`grade`, but the "student's" code sees the redacted flowlab of the grading kernel.

    The namespace is built, and the probe runs, with ``sys.modules`` holding the redacted copy
    (:func:`flowlab_course.trusted.redaction.load`); the grader around it keeps the real flowlab.
    """
    import importlib

    from flowlab_course.trusted import redaction

    graded = importlib.import_module(f"flowlab_course.graders.{module}").GRADED
    copy = redaction.build(graded)
    modules = redaction.load(copy)
    with redaction.swapped(modules):
        ns = namespace(nb)
    bridge = LocalBridge(ns, stub_messages=redaction.manifest(copy)["stubs"].values(),
                         modules=modules)
    try:
        verdict = lookup(f"{module}.{part}").grade(bridge)
    except GradingFailure as err:
        return err
    assert verdict is None, f"{part}: unexpected partial verdict {verdict}"
    return None
