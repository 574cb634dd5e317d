"""The book's text, checked without building it: numbers, summaries, links, citations.

* **Numbers in the prose come from executed cells.**  A measured value quoted in a chapter's text
  must be a ``{glue:text}`` substitution of a value the chapter's code computed (myst-nb's
  ``glue``), never typed by hand: hand-typed results go stale when the code or the training
  changes (chapter 8 once printed 2.069 and said 2.065).  The test strips what is not prose
  (code cells, inline code, maths, glue roles, cross-references) and fails on any remaining
  decimal number or percentage, except the definitions in :data:`ALLOWED` (constants the text
  *sets*, such as a slope of 0.2, rather than results it reports).
* Each chapter ends with a *Key ideas* section that links to the assignment that practises it,
  and the assignments page links back to the chapters.
* The bibliography has at least 20 entries, no duplicate keys, and every entry is cited
  somewhere in the book's pages.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import BOOK, ROOT, chapter_notebooks, toc_documents

# Decimal numbers that the text defines (a constant of the code, a formula's coefficient) or
# quotes from a cited paper, and that therefore need no glue, per chapter.  Keep it short: a
# result *measured by the book's code* never belongs here.
ALLOWED: dict[str, set[str]] = {
    "04_layer_types": {"0.2"},   # the leaky ReLU's slope, a setting of the code shown
    "06_images": {"10 %"},       # the Trainer's held-out fraction, a setting
    "07_glow": {"1.2"},          # the largest temperature of the sweep the code sets
    "09_beyond_coupling": {"10 %", "2.99"},  # the held-out fraction; TarFlow's published
                                             # bits/dim, quoted from the cited paper
}

_NUMBER = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])|(?<![\w.])\d+(?:\.\d+)?\s?%")


def prose(markdown: str) -> str:
    """The text a reader reads as prose: without front matter, code, maths and roles."""
    text = re.sub(r"\A---\n.*?\n---\n", "", markdown, flags=re.S)          # front matter
    text = re.sub(r"^(`{3,})\{code-cell\}.*?^\1\s*$", "", text, flags=re.S | re.M)
    text = re.sub(r"^(`{3,})(?!\{admonition|\{note|\{tip|\{warning|\{important)[^\n]*\n.*?^\1\s*$",
                  "", text, flags=re.S | re.M)                            # other code blocks
    text = re.sub(r"^:[\w-]+:.*$", "", text, flags=re.M)                  # directive options
    text = re.sub(r"\$\$.*?\$\$(\s*\([\w-]+\))?", " ", text, flags=re.S)  # display maths
    text = re.sub(r"\\begin\{(\w+\*?)\}.*?\\end\{\1\}", " ", text, flags=re.S)
    text = re.sub(r"(?<!\\)\$[^$]+?(?<!\\)\$", " ", text, flags=re.S)     # inline maths
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", text)                       # roles: glue, doc, cite
    text = re.sub(r"`[^`]*`", " ", text)                                  # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)                              # link targets
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    return text


def test_prose_strips_what_it_should() -> None:
    sample = (
        "---\nkernelspec: x\n---\nThe NLL is {glue:text}`nll:.2f` nats, $p = 0.5$ and\n"
        "$$\nx = 1.5\n$$ (eq-a)\n`lr=2e-3 0.1`\n```{code-cell} ipython3\nprint(3.14)\n```\n"
        "but 2.42 was typed, and 41 % too.\n"
    )
    found = _NUMBER.findall(prose(sample))
    assert found == ["2.42", "41 %"], found


@pytest.mark.parametrize("chapter", chapter_notebooks(), ids=lambda p: p.stem)
def test_numbers_in_prose_come_from_glue(chapter: Path) -> None:
    text = prose(chapter.read_text(encoding="utf-8"))
    allowed = ALLOWED.get(chapter.stem, set())
    typed = []
    for lineno, line in enumerate(text.splitlines(), 1):
        typed += [f"{n!r} in: {line.strip()[:110]}" for n in _NUMBER.findall(line)
                  if n not in allowed]
    assert not typed, (
        f"{chapter.name}: numbers typed into the prose; compute them in a cell, "
        "`glue('name', value, display=False)` (from myst_nb import glue), and write "
        "{glue:text}`name:.3f` in the text (or, for a constant the text defines, add it to "
        "ALLOWED in tests/book/test_prose.py):\n" + "\n".join(typed))


def _chapters() -> list[Path]:
    return [p for p in chapter_notebooks() if re.match(r"\d\d_", p.stem)]


@pytest.mark.parametrize("chapter", _chapters(), ids=lambda p: p.stem)
def test_chapter_ends_with_key_ideas_and_its_assignment(chapter: Path) -> None:
    text = chapter.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert "Key ideas" in headings, f"{chapter.name}: no '## Key ideas' summary section"
    after = headings[headings.index("Key ideas") + 1:]
    assert set(after) <= {"Exercises"}, (
        f"{chapter.name}: 'Key ideas' must close the chapter (only 'Exercises' may follow), "
        f"found {after}")
    key_ideas = text.split("## Key ideas", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\{ref\}`[^`]*<assignment-\d>`|\{doc\}`[^`]*assignments`", key_ideas), (
        f"{chapter.name}: its Key ideas do not link to the assignment that practises it "
        "({ref}`Assignment N <assignment-N>`)")


def test_assignments_page_names_the_assignments_and_links_back() -> None:
    page = (BOOK / "assignments.md").read_text(encoding="utf-8")
    authored = sorted((ROOT / "assignments" / "authoring").glob("0*.py"))
    assert authored, "no assignments/authoring/*.py found"
    for source in authored:
        number = int(source.stem[:2])
        title = re.search(r"^# # Assignment \d+ — (.+)$", source.read_text(encoding="utf-8"),
                          flags=re.M)
        assert title, f"{source.name}: no '# # Assignment N — title' line"
        assert f"(assignment-{number})=" in page, f"assignments.md: no label assignment-{number}"
        assert title.group(1).strip() in page, (
            f"assignments.md does not name assignment {number}, {title.group(1).strip()!r}")
    linked = set(re.findall(r"\{doc\}`(\d\d_\w+)`", page))
    chapters_with_assignments = {p.stem for p in _chapters()
                                 if re.search(r"<assignment-\d>", p.read_text(encoding="utf-8"))}
    missing = {c for c in chapters_with_assignments if c != "01_why_flows"} - linked
    assert not missing, f"assignments.md does not link back to {sorted(missing)}"


def test_instructor_pages_are_a_separate_part() -> None:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = {p["caption"]: [c["file"] for c in p["chapters"]] for p in toc["parts"]}
    assert {"book/instructors", "book/sandbox"} <= set(parts.get("For instructors", [])), parts
    student = [f for caption, files in parts.items() if caption != "For instructors"
               for f in files]
    assert "book/instructors" not in student and "book/sandbox" not in student


def _bib_keys() -> list[str]:
    bib = (BOOK / "references.bib").read_text(encoding="utf-8")
    return re.findall(r"^@\w+\{([^,\s]+),", bib, flags=re.M)


def test_bibliography_covers_the_field_and_every_entry_is_cited() -> None:
    keys = _bib_keys()
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"references.bib: duplicate keys {duplicates}"
    assert len(keys) >= 20, f"references.bib has {len(keys)} entries, the book wants >= 20"
    cited: set[str] = set()
    for doc in toc_documents():
        for roles in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`",
                                (ROOT / f"{doc}.md").read_text(encoding="utf-8")):
            cited |= {k.strip() for k in roles.split(",")}
    unknown = sorted(cited - set(keys))
    assert not unknown, f"cited but not in references.bib: {unknown}"
    uncited = sorted(set(keys) - cited)
    assert not uncited, f"references.bib entries that no page cites: {uncited}"


# ---------------------------------------------------------------- the assignments' pages
_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _source_notebooks() -> list[Path]:
    return sorted((ROOT / "assignments" / "source").glob("*/*.ipynb"))


def _section(page: str, number: int) -> str:
    start = page.index(f"(assignment-{number})=")
    nxt = page.find("(assignment-", start + 5)
    end = page.find("\n## ", start)
    stops = [i for i in (nxt, end) if i != -1]
    return page[start:min(stops) if stops else len(page)]


@pytest.mark.parametrize("source", _source_notebooks(), ids=lambda p: p.stem)
def test_assignments_page_points_come_from_the_notebooks(source: Path) -> None:
    """Every assignment's total and each part's points on the page are those of its source
    notebook: the total of its graded cells' ``points`` (nbgrader metadata), the parts as the
    notebook's own ``## Part N — ... (K points)`` headings give them."""
    import nbformat

    nb = nbformat.read(source, as_version=4)
    total = sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade"))
    parts = [int(m) for c in nb.cells if c.cell_type == "markdown"
             for m in re.findall(r"^## Part \d+\b.*\((\d+) points?\)\s*$", c.source, flags=re.M)]
    assert parts and sum(parts) == total, (
        f"{source.name}: its Part headings give {parts} (sum {sum(parts)}), its graded cells "
        f"{total} points")
    page = (BOOK / "assignments.md").read_text(encoding="utf-8")
    number = int(source.stem[:2])
    section = _section(page, number)
    heading = re.search(r"^### Assignment \d+: .*\((\d+) points\)\s*$", section, flags=re.M)
    assert heading, f"assignments.md: assignment {number}'s heading has no '(N points)'"
    assert int(heading.group(1)) == total, (
        f"assignments.md says {heading.group(1)} points for assignment {number}; the notebook "
        f"has {total}")
    listed = [int(m) for m in re.findall(r"\((\d+) points?\)\.?\s*$",
                                         "\n".join(re.split(r"\n(?=\d+\. )", section)[1:]),
                                         flags=re.M)]
    assert listed == parts, (
        f"assignments.md lists parts worth {listed} for assignment {number}; the notebook's "
        f"parts are worth {parts}")


def test_instructors_page_counts_the_assignments() -> None:
    page = (BOOK / "instructors.md").read_text(encoding="utf-8")
    n = len(_source_notebooks())
    said = re.findall(r"\b(\w+) assignments live in", page)
    assert said == [_WORDS[n]], f"instructors.md says {said} assignments; there are {n}"
    assert not re.search(rf"\b(?!{_WORDS[n]}\b)({'|'.join(_WORDS[2:])}) assignments\b", page), \
        "instructors.md gives another count of assignments somewhere"


# An inline code span does not wrap inside a word: at 400 px the content column holds about
# 40 monospace characters, and `submitted/<student>/<assignment>/<assignment>.ipynb` (52) made
# the instructors' page 488 px wide.  Code blocks and tables scroll inside their own box.
LONGEST_INLINE_WORD = 36


@pytest.mark.parametrize("page", ["assignments", "instructors"])
def test_inline_code_wraps_on_a_phone(page: str) -> None:
    text = (BOOK / f"{page}.md").read_text(encoding="utf-8")
    text = re.sub(r"^(`{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)   # code blocks
    rows = [ln for ln in text.splitlines() if not ln.lstrip().startswith("|")]   # tables scroll
    long = [w for ln in rows for span in re.findall(r"(?<!`)`([^`\n]+)`(?!`)", ln)
            for w in span.split() if len(w) > LONGEST_INLINE_WORD]
    assert not long, (f"{page}.md: inline code words longer than {LONGEST_INLINE_WORD} "
                      f"characters overflow a 400 px screen; break or shorten them: {long}")


@pytest.mark.parametrize("page", ["assignments", "instructors"])
def test_pages_use_jupyterlab_menu_names(page: str) -> None:
    """JupyterLab 4's menus, not the classic Notebook's ("Restart & Run All", "Cell →")."""
    text = (BOOK / f"{page}.md").read_text(encoding="utf-8")
    classic = [m for m in ("Restart & Run All", "Cell →", "Cell ->", "Tree view",
                           "Assignments tab") if m in text]
    assert not classic, f"{page}.md uses the classic Notebook's names: {classic}"


def test_intro_map_covers_every_chapter_and_the_assignments() -> None:
    """The intro's map (its table) names every chapter of 'The course' and the assignments page,
    and the intro links the running and execution-statistics pages."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    wanted = [c["file"] for p in toc["parts"] if p["caption"] in ("The course", "Assignments")
              for c in p["chapters"]]
    intro = (BOOK / "intro.md").read_text(encoding="utf-8")
    table = "\n".join(l for l in intro.splitlines() if l.startswith("| {doc}"))
    missing = [f for f in wanted if f"{{doc}}`{Path(f).name}`" not in table]
    assert not missing, f"the intro's map has no row for {missing}"
    for page in ("running", "execution"):
        assert f"{{doc}}`{page}`" in intro, f"the intro does not link {page}.md"


_GLUE_NUMBER = re.compile(r"\{glue:text\}`(\w+):\.\d+f`")


def _paragraphs_without_code(markdown: str) -> list[str]:
    text = re.sub(r"^(`{3,})\{code-cell\}.*?^\1\s*$", "", markdown, flags=re.S | re.M)
    return re.split(r"\n\s*\n", text)


def bits_per_dim_without_baselines(markdown: str) -> list[str]:
    """Paragraphs (and table rows) that quote a glued bits/dim figure but not both baselines:
    a glued number whose name contains ``uniform`` and one whose name contains ``hist``."""
    bad = []
    for para in _paragraphs_without_code(markdown):
        if not re.search(r"bits/dim|bits per dim", para):
            continue
        numbers = _GLUE_NUMBER.findall(para)
        if not numbers:
            continue
        if not (any("uniform" in n for n in numbers) and any("hist" in n for n in numbers)):
            bad.append(" ".join(para.split())[:160])
    return bad


def test_baseline_check_finds_a_lonely_bits_per_dim() -> None:
    lonely = "The VAE scores {glue:text}`vae:.3f` bits/dim (uniform {glue:text}`u:.3f`)."
    assert bits_per_dim_without_baselines(lonely)
    worded = ("The VAE scores {glue:text}`vae:.3f` bits/dim, above the uniform model and the "
              "{glue:text}`vae_vs_hist` histogram.")
    assert bits_per_dim_without_baselines(worded)        # words are not numbers
    ok = ("The VAE scores {glue:text}`vae:.3f` bits/dim (uniform {glue:text}`ch8_uniform:.3f`,\n"
          "per-pixel histogram {glue:text}`ch8_hist:.3f`).")
    assert not bits_per_dim_without_baselines(ok)


@pytest.mark.parametrize("chapter", chapter_notebooks(), ids=lambda p: p.stem)
def test_every_bits_per_dim_sits_next_to_its_baselines(chapter: Path) -> None:
    """Issue 30: a bits/dim figure means little without the uniform model (log2 K) and the
    independent per-pixel histogram beside it (a model above the histogram has learnt nothing
    about the shapes of digits).  Every paragraph that quotes a glued bits/dim also quotes both
    baselines, glued, and the baseline names are glued by the chapter's own code."""
    text = chapter.read_text(encoding="utf-8")
    bad = bits_per_dim_without_baselines(text)
    assert not bad, (f"{chapter.name}: bits/dim quoted without both baselines (glue the uniform "
                     "and per-pixel histogram values and quote them in the same paragraph):\n"
                     + "\n".join(bad))
    glued = set(re.findall(r"glue\(\s*[\"'](\w+)[\"']", text))
    quoted = {n for para in _paragraphs_without_code(text) for n in _GLUE_NUMBER.findall(para)
              if "uniform" in n or "hist" in n}
    assert quoted <= glued, f"{chapter.name}: baseline names quoted but never glued: {quoted - glued}"
