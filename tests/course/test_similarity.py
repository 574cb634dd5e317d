"""The similarity report: copied code is near 100 % whatever its names, own code is not."""

from __future__ import annotations

import os
import sys

import nbformat

sys.path.insert(0, os.path.dirname(__file__))
import course as synthetic
from flowlab_course.repair import release_view
from flowlab_course.similarity import (
    assignment_similarity,
    class_similarity,
    normalised_tokens,
    similarity,
    written_tokens,
)

RELEASED = "def affine(x, scale, shift):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
REFERENCE = '''def affine(x, scale, shift):
    z = x * torch.exp(scale) + shift
    logdet = scale.sum(dim=-1)
    for i in range(3):
        z = z + 0 * i
    return z, logdet
'''
# the reference, names changed, comments added, reformatted
DISGUISED = '''def affine(inp, s, t):
    # my own work!
    out = inp*torch.exp(s)+t   # forward
    ld = s.sum(dim = -1)
    for k in range(7):
        out = out + 0*k
    return out, ld
'''
OWN = '''def affine(x, scale, shift):
    factor = scale.exp()
    result = []
    for row in x:
        result.append(row * factor + shift)
    return torch.stack(result), torch.log(factor).sum(-1)
'''
OTHER = '''def affine(x, scale, shift):
    if x.ndim != 2:
        raise ValueError("x must be a batch of vectors")
    y = torch.addcmul(shift, x, scale.exp())
    return y, scale.sum(dim=1)
'''


def test_tokens_ignore_names_literals_comments_and_layout():
    assert normalised_tokens(REFERENCE) == normalised_tokens(
        DISGUISED.replace("range(7)", "range(3)"))
    assert normalised_tokens(REFERENCE) != normalised_tokens(OWN)
    assert normalised_tokens("x = 1\n%timeit f(x)\n") == ["ID", "=", "NUM", "NEWLINE"]
    assert normalised_tokens("def f(:\n") == ["def", "ID", "(", ":"]  # up to the error
    released = normalised_tokens(RELEASED)
    assert written_tokens(released, released) == []                   # untouched: nothing
    assert 0 < len(written_tokens(normalised_tokens(OWN), released)) < len(
        normalised_tokens(OWN))


def test_copies_of_the_reference_and_of_a_classmate_stand_out():
    cells = {"affine_solution": {"ann": DISGUISED, "ben": OWN, "cat": OTHER,
                                 "dan": OWN.replace("result", "rows").replace("factor", "f"),
                                 "eli": RELEASED}}
    rows = class_similarity(cells, {"affine_solution": RELEASED},
                            {"affine_solution": {"flowlab affine": REFERENCE}})
    by = {r.student: r for r in rows}
    assert "eli" not in by                                     # nothing written, not compared
    assert by["ann"].reference == 1.0 and by["ann"].reference_name == "flowlab affine"
    assert by["ben"].peer == 1.0 and by["ben"].peer_name == "dan"
    assert by["dan"].peer == 1.0 and by["dan"].peer_name == "ben"
    assert by["cat"].reference < 0.7 and by["cat"].peer < 0.7   # own work stays low
    assert by["ben"].reference < 0.8
    assert rows[0].student in ("ann", "ben", "dan")            # most similar first
    assert similarity(normalised_tokens(OWN), normalised_tokens(OTHER)) < 0.7


def test_assignment_similarity_reads_the_autograded_notebooks(tmp_path):
    """flowlab's definition of the same name is a reference, found in the package's source."""
    root = tmp_path / "course"
    (root / "source" / "ps1").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text("c = get_config()\n")
    nbformat.write(synthetic.source_notebook(), root / "source" / "ps1" / "ps1.ipynb")
    package = tmp_path / "fakeflowlab"
    package.mkdir()
    (package / "ops.py").write_text(
        "import math\n\n\ndef square(value):\n    result = value * value\n"
        "    if result < 0:\n        raise ValueError('negative')\n    return result\n")
    release = release_view(synthetic.source_notebook())
    codes = {"ann": "def square(x):\n    y = x * x\n    if y < 0:\n"
                    "        raise ValueError('no')\n    return y\n",
             "ben": "def square(x):\n    return x ** 2\n",
             "cat": "def square(x):\n    return x ** 2\n"}
    for student, code in codes.items():
        nb = nbformat.from_dict(release)
        for cell in nb.cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "square":
                cell.source = code
        folder = root / "autograded" / student / "ps1"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / "ps1.ipynb")
    rows = {r.student: r for r in assignment_similarity(str(root), "ps1", str(package))}
    assert set(rows) == {"ann", "ben", "cat"}
    assert rows["ann"].reference == 1.0 and rows["ann"].reference_name == "flowlab square"
    assert rows["ben"].peer == 1.0 and rows["ben"].peer_name == "cat"
    assert rows["ben"].reference_name in ("assignment's solution", "flowlab square")
