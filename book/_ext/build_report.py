"""After a book build: which chapters failed, why, and what to do (``make book`` prints it).

MyST-NB writes the traceback of every chapter whose execution failed to
``<html>/reports/<page>.err.log``.  This script reads that folder and prints one short
paragraph per failed chapter: its name, the error's last line, and what to do about it (a cell
that ran out of time gets the slow-machine advice of ``book/running.md``)::

    python book/_ext/build_report.py _build/html      # exit status 1 if a chapter failed

``--clear`` empties the reports folder (before a build, so that old reports are not read).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

ADVICE_TIMEOUT = (
    "a cell ran past the per-cell time limit (execute.timeout in _config.yml). The machine is "
    "probably busy: build again when it is quieter (finished chapters are cached and are not "
    "run again), or build the quick version with `make book-quick`, or raise execute.timeout. "
    "Each chapter's CPU cost is on the page 'Running this book' (book/running.md)."
)
ADVICE_MEMORY = ("the kernel died (often: out of memory). Close other programs and build "
                 "again, or build the quick version with `make book-quick`.")
ADVICE_OTHER = ("a cell raised an error. Run the chapter on its own to see it: "
                "`.venv/bin/python -m pytest -p no:xdist tests/book/test_notebooks.py -k {stem}` "
                "(quick mode), or open {page}.md in Jupyter and run it top to bottom.")


_ERROR = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b")


def failures(html: Path) -> list[tuple[str, str, str]]:
    """``(page, last line of the error, advice)`` for every report under ``html/reports``."""
    out = []
    for log in sorted((html / "reports").rglob("*.err.log")):
        page = log.relative_to(html / "reports").as_posix()[: -len(".err.log")]
        text = log.read_text(encoding="utf-8", errors="replace")
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", l).strip() for l in text.splitlines()]
        lines = [l for l in lines if l]
        errors = [l for l in lines if _ERROR.match(l)]
        last = (errors or lines or ["(empty report)"])[-1]
        last = re.sub(r"^(?:\w+\.)+(?=\w+(?:Error|Exception))", "", last)   # module prefix
        if re.search(r"CellTimeoutError|TimeoutError|timed out|Timeout", text):
            advice = ADVICE_TIMEOUT
            preview = re.search(r"contents:\n-+\n(.*?)\n", text)
            if preview:
                last += f" (the cell that starts: {preview.group(1).strip()[:120]})"
        elif re.search(r"DeadKernelError|Kernel died|MemoryError", text):
            advice = ADVICE_MEMORY
        else:
            advice = ADVICE_OTHER.format(stem=Path(page).name, page=page)
        out.append((page, last[:300], advice))
    return out


def report(html: Path) -> str:
    failed = failures(html)
    if not failed:
        return "Book build: every chapter executed."
    text = [f"Book build: {len(failed)} chapter(s) failed to execute; the rest of the site is "
            f"in {html}. For each:"]
    for page, last, advice in failed:
        text.append(f"  * {page}: {last}\n    What to do: {advice}")
    text.append(f"  (full tracebacks: {html / 'reports'})")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("html", type=Path, help="the built site, e.g. _build/html")
    ap.add_argument("--clear", action="store_true", help="empty the reports folder and exit")
    args = ap.parse_args(argv)
    if args.clear:
        shutil.rmtree(args.html / "reports", ignore_errors=True)
        return 0
    print(report(args.html))
    return 1 if failures(args.html) else 0


if __name__ == "__main__":
    sys.exit(main())
