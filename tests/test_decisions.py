"""The decisions the code relies on are records in ``decisions/``, and the code cites them.

The library's docstrings and the shipped recipes cite ``decisions/NNNN-*.md``, never the
measurement log ``benchmarks/NOTES.md`` (a diary kept by session), and every cited record exists
and says what it decided and on what evidence.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECISIONS = ROOT / "decisions"
CITED = re.compile(r"decisions/(\d{4}-[\w-]+\.md)")


def _library_files() -> list[Path]:
    return sorted(p for p in (ROOT / "flowlab").rglob("*") if p.suffix in (".py", ".yaml"))


def test_the_library_cites_no_session_notes() -> None:
    citing = [str(p.relative_to(ROOT)) for p in _library_files()
              if "NOTES.md" in p.read_text(encoding="utf-8") or "NOTES 8" in p.read_text(
                  encoding="utf-8")]
    assert not citing, f"cite a record in decisions/ instead of benchmarks/NOTES.md: {citing}"


def test_every_cited_record_exists() -> None:
    files = _library_files() + [ROOT / "README.md", ROOT / "benchmarks" / "README.md",
                                *sorted((ROOT / "book").glob("*.md"))]
    missing = sorted({(str(p.relative_to(ROOT)), m) for p in files
                      for m in CITED.findall(p.read_text(encoding="utf-8"))
                      if not (DECISIONS / m).exists()})
    assert not missing, f"citations of decision records that do not exist: {missing}"


@pytest.mark.parametrize("record", sorted(DECISIONS.glob("0*.md")), ids=lambda p: p.stem)
def test_a_record_states_its_decision_and_evidence_and_is_indexed(record: Path) -> None:
    text = record.read_text(encoding="utf-8")
    assert text.startswith(f"# {record.stem[:4]} "), "title: '# NNNN What was decided'"
    for part in ("**Decision.**", "**Evidence.**", "**Reopen when**"):
        assert part in text, f"{record.name} has no {part} paragraph"
    assert f"({record.name})" in (DECISIONS / "README.md").read_text(encoding="utf-8"), \
        f"decisions/README.md does not list {record.name}"
