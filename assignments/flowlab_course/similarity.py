r"""How similar each submission's code is to flowlab's source and to the other submissions.

Separation keeps the reference implementations out of the student's kernel; copying their
*text* (from flowlab's repository, or from another student) is what remains.  This module puts
numbers on it for the instructor's class report.  It never changes a grade.

For each solution cell of an assignment (the code a student writes, named by its ``grade_id``):

1. **Normalised tokens.**  The cell is read with the standard library's :mod:`tokenize`;
   comments, blank lines and the layout go; every identifier becomes ``ID``, every number
   ``NUM`` and every string ``STR``; keywords, operators and the structure (``INDENT``,
   ``DEDENT``, ``NEWLINE``) stay.  Renaming variables, reformatting and rewording comments
   change nothing.
2. **What the student wrote.**  The tokens the release already gave (the signature, the
   docstring, the stub) are removed: the longest matching blocks between the student's tokens
   and the released cell's (:class:`difflib.SequenceMatcher`).  Untouched cells have nothing
   left and are not compared.
3. **Similarity.**  ``2 * LCS / (len(a) + len(b))`` of two token sequences (the Indel
   similarity of `RapidFuzz <https://github.com/rapidfuzz/RapidFuzz>`_, computed on all pairs
   of the class at once; :class:`difflib.SequenceMatcher`'s ``ratio`` measures the same
   thing): 1 for the same code up to names, literals and layout.  Each student's cell is
   compared with the reference source — the definitions in flowlab with the names the cell
   defines (``class LeakyReLU`` in ``flowlab/transforms/``) and the assignment's own solution —
   and with every other student's.

Short code (fewer than ``min_tokens`` written tokens) is reported but not highlighted: three
correct lines look alike whoever writes them.
"""

from __future__ import annotations

import ast
import difflib
import functools
import io
import keyword
import os
import tokenize
from dataclasses import dataclass

__all__ = ["CellSimilarity", "assignment_similarity", "class_similarity", "flowlab_definitions",
           "normalised_tokens", "parts_of_cells", "similarity", "written_tokens"]

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}


def normalised_tokens(source: str) -> list[str]:
    """The tokens of ``source`` with identifiers, numbers and strings replaced by their kind.

    Code that does not tokenize (an unfinished cell) gives the tokens before the error; IPython
    magics (``%timeit``, ``!ls``) are dropped line by line.

        >>> normalised_tokens("total = alpha * 2  # doubled")
        ['ID', '=', 'ID', '*', 'NUM', 'NEWLINE']
        >>> normalised_tokens("s = b * 4") == normalised_tokens("total = alpha * 2  # doubled")
        True
    """
    lines = [line for line in source.splitlines(keepends=True)
             if not line.lstrip().startswith(("%", "!"))]
    out: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
            if token.type in _SKIP:
                continue
            if token.type == tokenize.NAME:
                out.append(token.string if keyword.iskeyword(token.string) else "ID")
            elif token.type == tokenize.NUMBER:
                out.append("NUM")
            elif token.type == tokenize.STRING or token.type in _fstring_types():
                if not out or out[-1] != "STR":
                    out.append("STR")
            elif token.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                out.append(tokenize.tok_name[token.type])
            else:
                out.append(token.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def _fstring_types() -> set[int]:
    return {getattr(tokenize, name) for name in ("FSTRING_START", "FSTRING_MIDDLE",
                                                 "FSTRING_END") if hasattr(tokenize, name)}


def written_tokens(student: list[str], released: list[str]) -> list[str]:
    """``student``'s tokens without the blocks it shares with the ``released`` cell."""
    matcher = difflib.SequenceMatcher(None, released, student, autojunk=False)
    keep = [True] * len(student)
    for block in matcher.get_matching_blocks():
        for i in range(block.b, block.b + block.size):
            keep[i] = False
    return [t for t, k in zip(student, keep) if k]


def similarity(a: list[str], b: list[str]) -> float:
    """``2 * LCS / (len(a) + len(b))`` of two token lists (1.0: the same; 0.0: nothing shared).

        >>> similarity(["ID", "=", "NUM"], ["ID", "=", "NUM"]), similarity(["ID"], ["NUM"])
        (1.0, 0.0)
    """
    from rapidfuzz.distance import Indel

    if not a and not b:
        return 0.0
    return float(Indel.normalized_similarity(a, b))


def flowlab_definitions(names: set[str], package: str | None = None) -> dict[str, str]:
    """``{name: source}`` of flowlab's top-level classes and functions with these names."""
    if package is None:
        import flowlab

        package = os.path.dirname(flowlab.__file__)
    found: dict[str, str] = {}
    for top, dirs, files in os.walk(package):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(top, name), encoding="utf-8") as handle:
                text = handle.read()
            if not any(n in text for n in names):
                continue
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) \
                        and node.name in names and node.name not in found:
                    found[node.name] = ast.get_source_segment(text, node) or ""
    return found


def _defined(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.name for n in tree.body
            if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}


def _as_text(tokens: list[str], vocabulary: dict[str, str]) -> str:
    """One character per token (a fast pairwise LCS on strings)."""
    return "".join(vocabulary.setdefault(t, chr(0x4E00 + len(vocabulary))) for t in tokens)


@dataclass
class CellSimilarity:
    """One student's solution cell against the reference and the class."""

    cell: str                 # the solution cell's grade_id
    student: str
    tokens: int               # tokens the student wrote (release removed)
    reference: float          # highest similarity to flowlab's / the assignment's source
    reference_name: str       # which reference
    peer: float               # highest similarity to another student's cell
    peer_name: str            # which student


def class_similarity(cells: dict[str, dict[str, str]], released: dict[str, str],
                     references: dict[str, dict[str, str]]) -> list[CellSimilarity]:
    """Similarities of every student's solution cells.

    Args:
        cells: ``{grade_id: {student: source}}`` of the solution cells.
        released: ``{grade_id: source}`` of the released cells (removed from the students').
        references: ``{grade_id: {label: source}}``: the reference sources of each cell.

    Returns one :class:`CellSimilarity` per student and cell with code of their own, most
    similar first.
    """
    from rapidfuzz.distance import Indel
    from rapidfuzz.process import cdist

    out: list[CellSimilarity] = []
    for cell, by_student in cells.items():
        base = normalised_tokens(released.get(cell, ""))
        written = {s: written_tokens(normalised_tokens(src), base)
                   for s, src in sorted(by_student.items())}
        written = {s: t for s, t in written.items() if t}
        refs = {label: written_tokens(normalised_tokens(src), base)
                for label, src in references.get(cell, {}).items()}
        refs = {k: v for k, v in refs.items() if v}
        if not written:
            continue
        vocabulary: dict[str, str] = {}
        text = functools.partial(_as_text, vocabulary=vocabulary)
        students = list(written)
        strings = [text(written[s]) for s in students]
        peers = cdist(strings, strings, scorer=Indel.normalized_similarity, workers=1)
        ref_labels = list(refs)
        to_refs = cdist(strings, [text(refs[r]) for r in ref_labels],
                        scorer=Indel.normalized_similarity, workers=1) if refs else None
        for i, student in enumerate(students):
            best_peer, peer_name = 0.0, ""
            for j, other in enumerate(students):
                if j != i and peers[i][j] > best_peer:
                    best_peer, peer_name = float(peers[i][j]), other
            best_ref, ref_name = 0.0, ""
            if to_refs is not None:
                for j, label in enumerate(ref_labels):
                    if to_refs[i][j] > best_ref:
                        best_ref, ref_name = float(to_refs[i][j]), label
            out.append(CellSimilarity(cell, student, len(written[student]), best_ref,
                                      ref_name, best_peer, peer_name))
    out.sort(key=lambda c: (-max(c.reference, c.peer), c.cell, c.student))
    return out


def assignment_similarity(course_root: str, assignment: str,
                          flowlab_package: str | None = None) -> list[CellSimilarity]:
    """:func:`class_similarity` of the autograded notebooks of ``assignment``.

    The references of a solution cell are the assignment's solution (``source/``) and the
    flowlab definitions with the names the solution defines.
    """
    import nbformat

    from .repair import templates

    source_dir = os.path.join(course_root, "source", assignment)
    release = templates(course_root, assignment)
    cells: dict[str, dict[str, str]] = {}
    released: dict[str, str] = {}
    references: dict[str, dict[str, str]] = {}
    for notebook, template in release.items():
        source = nbformat.read(os.path.join(source_dir, notebook + ".ipynb"), as_version=4)
        for cell in source.cells:
            meta = cell.metadata.get("nbgrader", {})
            if not meta.get("solution") or cell.cell_type != "code":
                continue
            grade_id = meta["grade_id"]
            solution = "\n".join(line for line in cell.source.splitlines()
                                 if "### BEGIN SOLUTION" not in line
                                 and "### END SOLUTION" not in line)
            refs = {"assignment's solution": solution}
            for name, text in flowlab_definitions(_defined(solution), flowlab_package).items():
                refs[f"flowlab {name}"] = text
            references[grade_id] = refs
            cells[grade_id] = {}
        for cell in template.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in cells:
                released[grade_id] = cell.source
    folder = os.path.join(course_root, "autograded")
    for student in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        for notebook in release:
            path = os.path.join(folder, student, assignment, notebook + ".ipynb")
            if not os.path.exists(path):
                continue
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id in cells and cell.cell_type == "code":
                    cells[grade_id][student] = cell.source
    return class_similarity(cells, released, references)


def parts_of_cells(course_root: str, assignment: str) -> dict[str, list[str]]:
    """``{solution grade_id: [the graded parts (test cells) up to the next solution cell]}``."""
    import nbformat

    out: dict[str, list[str]] = {}
    folder = os.path.join(course_root, "source", assignment)
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".ipynb"):
            continue
        current = None
        for cell in nbformat.read(os.path.join(folder, name), as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and cell.cell_type == "code":
                current = meta["grade_id"]
                out[current] = []
            elif meta.get("grade") and current is not None:
                out[current].append(meta["grade_id"])
    return out
