"""A failed chapter is reported by name with what to do, and the release never waits on the book.

``book/_ext/build_report.py`` reads the tracebacks MyST-NB leaves in ``_build/html/reports``
(one ``.err.log`` per chapter that failed to execute) and prints one paragraph per chapter;
``make book`` runs it after every build.  These tests feed it reports of the three kinds a
build meets (a cell past the time limit, a dead kernel, an exception) and check the Makefile's
``course`` target: the release is built first and on its own, and a failed book still fails
the target.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from .conftest import BOOK, ROOT

_spec = importlib.util.spec_from_file_location("build_report", BOOK / "_ext" / "build_report.py")
build_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_report)


def _reports(html: Path, logs: dict[str, str]) -> None:
    for page, text in logs.items():
        log = html / "reports" / f"{page}.err.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(text)


def test_no_reports_means_every_chapter_ran(tmp_path: Path, capsys) -> None:
    assert build_report.main([str(tmp_path)]) == 0
    assert "every chapter executed" in capsys.readouterr().out


def test_each_failed_chapter_is_named_with_its_error_and_what_to_do(tmp_path: Path, capsys) -> None:
    _reports(tmp_path, {
        "book/07_glow": "Traceback ...\n\x1b[0;31mCellTimeoutError\x1b[0m: A cell timed out while "
                        "it was being executed, after 1800 seconds.\n",
        "book/09_beyond_coupling": "Traceback ...\nDeadKernelError: Kernel died\n",
        "book/05_coupling_flows": "Traceback ...\nValueError: x must be positive\n",
    })
    assert build_report.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "3 chapter(s) failed" in out
    blocks = {m.group(1): m.group(2) for m in
              re.finditer(r"\* (book/\w+): (.*?)(?=\n  \* |\n  \(full)", out, flags=re.S)}
    assert set(blocks) == {"book/07_glow", "book/09_beyond_coupling", "book/05_coupling_flows"}
    assert "CellTimeoutError" in blocks["book/07_glow"] and "\x1b" not in out
    assert "make book-quick" in blocks["book/07_glow"] and "execute.timeout" in blocks["book/07_glow"]
    assert "out of memory" in blocks["book/09_beyond_coupling"]
    assert "ValueError: x must be positive" in blocks["book/05_coupling_flows"]
    assert "-k 05_coupling_flows" in blocks["book/05_coupling_flows"]


def test_clear_removes_old_reports(tmp_path: Path) -> None:
    _reports(tmp_path, {"book/07_glow": "CellTimeoutError\n"})
    assert build_report.main([str(tmp_path), "--clear"]) == 0
    assert build_report.failures(tmp_path) == []


def _recipe(target: str) -> tuple[str, str]:
    makefile = (ROOT / "Makefile").read_text()
    m = re.search(rf"^{target}:([^\n]*)\n((?:\t[^\n]*\n)*)", makefile, flags=re.M)
    assert m, f"Makefile has no {target} target"
    return m.group(1), m.group(2)


def test_course_builds_the_release_independently_of_the_book() -> None:
    prereqs, recipe = _recipe("course")
    assert "book" not in prereqs.split(), "course must not stop before the release if the book fails"
    assert recipe.index("release") < recipe.index(" book"), "the release is built before the book"
    assert "exit 1" in recipe, "a failed book or release must still fail `make course`"
    _, book = _recipe("book")
    assert "BOOK_BUILD" in book
    assert "build_report.py" in (ROOT / "Makefile").read_text()


_NOTEBOOK = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
# {title}

```{{code-cell}} ipython3
{code}
```
"""


@pytest.mark.slow
def test_a_failing_chapter_leaves_the_other_pages_and_a_summary(tmp_path: Path) -> None:
    """A three-page book with the course book's execution settings (from ``_config.yml``; only
    the per-cell timeout is shortened): one chapter raises, one runs past the time limit.  The
    build must go on to the end, write every page, exit non-zero, and the summary must name both
    chapters."""
    import subprocess
    import sys

    import yaml

    execute = dict(yaml.safe_load((ROOT / "_config.yml").read_text())["execute"])
    execute.update(timeout=3, execute_notebooks="force")
    (tmp_path / "_config.yml").write_text(yaml.safe_dump({"title": "mini", "execute": execute}))
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: bad\n  - file: slow\n")
    (tmp_path / "intro.md").write_text("# Intro\n\nThe pages that follow fail.\n")
    (tmp_path / "bad.md").write_text(_NOTEBOOK.format(
        title="Bad", code='raise ValueError("x must be positive")'))
    (tmp_path / "slow.md").write_text(_NOTEBOOK.format(
        title="Slow", code="import time; time.sleep(60)"))
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(tmp_path), "--warningiserror", "--keep-going"],
                          capture_output=True, text=True, timeout=600, check=False)
    html = tmp_path / "_build" / "html"
    assert proc.returncode != 0, "a chapter that fails to execute must fail the build"
    assert all((html / f"{p}.html").exists() for p in ("intro", "bad", "slow")), proc.stdout[-3000:]
    summary = build_report.report(html)
    assert "* bad: ValueError: x must be positive" in summary, summary
    assert "* slow: CellTimeoutError" in summary and "time.sleep(60)" in summary, summary
