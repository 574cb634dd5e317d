"""Shared helpers of the book tests: where the chapters are, and building the site."""

from __future__ import annotations

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


def build_site(output: Path, quick: bool = True) -> Path:
    """Build the book into ``output/_build/html`` (quick mode by default); return that folder."""
    env = dict(os.environ, FLOWLAB_QUICK="1" if quick else "0")
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(ROOT), "--path-output", str(output), "--warningiserror",
           "--keep-going"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    if proc.returncode != 0:
        pytest.fail(f"the book does not build cleanly (-W):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return output / "_build" / "html"
