"""The instructor's class report: one self-contained HTML page with figures, failures and flags."""

from __future__ import annotations

import csv
import os
import sys
from html.parser import HTMLParser

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import course as synthetic
from test_export import STUDENTS, build_graded_class

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("lms-class")]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from flowlab_course.report import class_report

    root = synthetic.once_per_session(tmp_path_factory, "lms-class", build_graded_class)["root"]
    # a submission that nbgrader could not grade: submitted, never autograded
    synthetic.submit(root, "zed", synthetic.CORRECT)
    out = tmp_path_factory.mktemp("report")
    try:
        return class_report(root, synthetic.ASSIGNMENT, str(out))
    finally:
        import shutil

        shutil.rmtree(os.path.join(root, "submitted", "zed"))


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _page(report) -> _Page:
    page = _Page()
    with open(report.html_path, encoding="utf-8") as handle:
        page.feed(handle.read())
    return page


def test_page_is_self_contained_with_figures_that_have_alt_text(report):
    page = _page(report)
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 2
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,") and len(attrs["src"]) > 2000
        assert len(attrs.get("alt", "")) > 40               # says what the figure shows
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe")]
    assert not [a for _, a in page.tags for k in ("src", "href")
                if k in a and not a[k].startswith("data:")]
    assert "median" in images[0]["alt"] and "test_partial" in images[1]["alt"]


def test_per_part_distributions_and_most_frequent_failures(report):
    assert set(report.scores) == {"test_visible", "test_hidden", "test_partial"}
    assert report.scores["test_partial"] == {"ada": (2.0, 2.0), "bob": (1.0, 2.0),
                                             "dee": (0.0, 2.0), "fay": (2.0, 2.0)}
    messages = {(part, msg): n for part, msg, n in report.failures}
    assert messages[("test_hidden", "AssertionError: negative inputs: (-4)**2 = 16")] == 1
    assert messages[("test_partial",
                     "◐ partial credit: square is wrong for negative inputs")] == 1
    assert messages[("test_visible", "NotImplementedError:")] == 1
    text = "".join(_page(report).text)
    assert "Most frequently failed checks" in text and "negative inputs" in text
    assert synthetic.HIDDEN_MARKER not in open(report.html_path, encoding="utf-8").read()


def test_flagged_submissions_are_listed_for_review(report):
    flags = [(f["student"], f["part"], f["kind"]) for f in report.flags]
    assert ("fay", "test_hidden", "delegation") in flags
    assert ("fay", None, "note") in flags
    assert ("zed", None, "not_graded") in flags
    assert not [f for f in flags if f[0] in ("ada", "bob", "dee")]
    text = "".join(_page(report).text)
    assert "Flagged for review" in text and "reference implementation" in text
    folder = os.path.dirname(report.html_path)
    with open(os.path.join(folder, "flags.csv"), newline="") as handle:
        assert len(list(csv.reader(handle))) == 1 + len(flags)
    with open(os.path.join(folder, "scores.csv"), newline="") as handle:
        assert len(list(csv.reader(handle))) == 1 + 3 * len(STUDENTS)


def test_similarity_section_and_csv(report):
    """ada and fay hand in the same code: 100 % to each other; the section names the parts."""
    rows = {r.student: r for r in report.similarity}
    assert rows["ada"].peer == 1.0 and rows["ada"].peer_name == "fay"
    assert rows["ada"].reference_name == "assignment's solution"
    text = "".join(_page(report).text)
    assert "Similarity of the code" in text and "square (parts: test_visible" in text
    folder = os.path.dirname(report.html_path)
    with open(os.path.join(folder, "similarity.csv"), newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["cell", "student", "tokens", "reference", "reference_source", "peer",
                        "peer_student"]
    assert {row[1] for row in table[1:]} >= {"ada", "bob", "fay"}
