"""Shared helpers of the book tests: where the chapters are, and building the site."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "book"


def toc_documents() -> list[str]:
    """Every page of the book in ``_toc.yml`` order, as paths relative to the root, no suffix."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    docs = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            docs.append(chapter["file"])
            docs.extend(s["file"] for s in chapter.get("sections", []))
    return docs


def is_notebook(path: Path) -> bool:
    """A MyST Markdown notebook (has a kernelspec in its front matter), not a plain page."""
    head = path.read_text(encoding="utf-8")[:1000]
    return head.startswith("---") and "kernelspec:" in head


def chapter_notebooks() -> list[Path]:
    return [p for d in toc_documents() if is_notebook(p := ROOT / f"{d}.md")]


def site_sources() -> list[Path]:
    """The files a site build depends on (book pages, config, static files, flowlab)."""
    files = [ROOT / "_config.yml", ROOT / "_toc.yml"]
    files += [p for p in BOOK.rglob("*") if p.is_file() and p.suffix != ".ipynb"]
    files += list((ROOT / "flowlab").rglob("*.py"))
    return files


def build_site(output: Path, quick: bool = True, busy: bool = False) -> Path:
    """Build the book into ``output/_build/html`` (quick mode by default); return that folder.

    ``busy=True`` builds the way a busy machine would: the build and every kernel it starts are
    pinned to one CPU core (``os.sched_setaffinity``, inherited by child processes) and a
    competing process spins on that same core for the whole build, so the build gets about
    half a core.  The course's site test builds this way (issue 30: a busy 2-core machine once
    ran a chapter past the per-cell time limit)."""
    env = dict(os.environ, FLOWLAB_QUICK="1" if quick else "0")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(output), "--warningiserror",
           "--keep-going"]
    pin = None
    spinner = None
    if busy:
        core = min(os.sched_getaffinity(0))
        pin = functools.partial(os.sched_setaffinity, 0, {core})
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                              timeout=1800 if busy else 900, check=False, preexec_fn=pin)
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if proc.returncode != 0:
        report = ""
        reporter = BOOK / "_ext" / "build_report.py"
        html = output / "_build" / "html"
        if html.is_dir():
            report = subprocess.run([sys.executable, str(reporter), str(html)],
                                    capture_output=True, text=True, check=False).stdout
        pytest.fail(f"the book does not build cleanly (-W{', one busy core' if busy else ''}):\n"
                    f"{report}\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return output / "_build" / "html"
