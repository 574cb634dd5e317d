"""The built course site, opened page by page in headless Chromium.

The site is built in quick mode into a temporary folder, on one CPU core that a competing
process keeps busy (a slow machine: every chapter must still execute within the per-cell
limit), unless ``_build/html`` is already newer
than every source of the book (then that build is tested: run ``make book`` first to test the
full site).  It is served on 127.0.0.1 and every page of ``_toc.yml`` is opened in Chromium,
driven through the Chrome DevTools protocol, at two viewport widths: 1280 px (a laptop; the
content column is 688 px) and 400 px (a phone).  For each page and width the test checks that

* the page title (its ``h1``) is rendered and is the browser tab's title;
* every image has loaded (``naturalWidth > 0``), including the frames of the animations;
* MathJax (the copy served with the site) has typeset the maths: no raw ``$$`` or ``\\(`` in the
  text, ``mjx-container`` elements on pages with maths, no ``mjx-merror``;
* the console shows no errors and no request failed (the site must work offline);
* the theme's search, dark-mode switch and download button are there;
* **figures are legible as displayed**: every figure made with :mod:`flowlab.plots.style` carries
  its smallest font size in px at natural size (``data-font-px``, from the PNG's metadata, added
  by ``book/_ext/flowlab_book.py``), and ``rendered width / natural width * font px`` must be at
  least 11 CSS px (``book/_static/flowlab.js`` widens a figure in a narrow column, the figure
  scrolling inside its output box).  A content image without that
  attribute fails: it was not drawn with the book's style;
* every image has a meaningful ``alt`` text (not empty, not a file name);
* **no display equation overflows** its box (``scrollWidth > clientWidth``), and none is set in
  less than 12 px (``book/_static/flowlab.js`` shrinks wide equations to at most 75 %);
* **no page is wider than the viewport** (``document.documentElement.scrollWidth``; a phone
  must never scroll the page sideways), and **no inline formula is clipped**: none reaches past
  the right edge of its line's box or of an ancestor that clips (``overflow`` not visible);
* **axe-core** (``axe.min.js``, vendored next to this file and injected into the page) reports no
  *serious* or *critical* violation, except the theme issues in :data:`AXE_ALLOWED` (each with
  the reason).  The counts of every page go to ``_build/screenshots/axe.json``.

A separate test runs the site's search and checks that the result snippets show no raw LaTeX.

Screenshots of every page (top, and at the first figure) go to ``_build/screenshots``
(git-ignored) for a human to look at.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from .conftest import ROOT, build_site, site_sources, toc_documents

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.xdist_group("book-site"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's headless Chromium at /usr/bin/chromium "
        "(apt-get install chromium; .ci/run installs it)",
    ),
]
websocket = pytest.importorskip("websocket", reason="needs websocket-client (pip install websocket-client)")

SCREENSHOTS = ROOT / "_build" / "screenshots"
PAGE_TIMEOUT = 60.0
WIDTHS = (1280, 400)
AXE = Path(__file__).with_name("axe.min.js")
# Figure text as seen, in CSS px.  flowlab.plots.style draws figures whose text is legible at
# its MIN_FONT_PX in the column; on narrow screens book/_static/flowlab.js widens a figure (it
# scrolls inside its output) until its smallest text is shown at 11 px (issue 30).
MIN_FONT_PX = 11.0
MIN_MATH_PX = 12.0
# axe-core rules that the book cannot satisfy inside the theme it uses, with the reason.  Keep
# this empty unless a violation comes from the theme's own markup and no configuration or CSS in
# book/_static can fix it.
AXE_ALLOWED: dict[str, str] = {}


# ----------------------------------------------------------------------------- the site
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    built = ROOT / "_build" / "html"
    index = built / "index.html"
    if index.exists() and os.environ.get("FLOWLAB_SITE_REBUILD") != "1":
        newest_source = max(p.stat().st_mtime for p in site_sources())
        if all((built / f"{d}.html").exists() for d in toc_documents()) and (
            min((built / f"{d}.html").stat().st_mtime for d in toc_documents()) > newest_source
        ):
            return built
    # Built under load: one core, shared with a spinning process (conftest.build_site).
    return build_site(tmp_path_factory.mktemp("site"), quick=True, busy=True)


@pytest.fixture(scope="module")
def server(site: Path):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


# ----------------------------------------------------------------------------- the browser
class DevTools:
    """A minimal Chrome DevTools protocol client over one websocket (flat sessions)."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=PAGE_TIMEOUT, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = PAGE_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            ev = json.loads(self.ws.recv())
            if ev.get("method") == method:
                return ev
            self.events.append(ev)
        raise TimeoutError(f"no {method} within {timeout} s")

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="flowlab-chromium-")
    cmd = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--remote-debugging-port=0", "--window-size=1280,900", "about:blank",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ws_url = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ws_url is None:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        if m := re.search(r"DevTools listening on (ws://\S+)", line):
            ws_url = m.group(1)
    if ws_url is None:
        proc.kill()
        pytest.fail("Chromium did not start its DevTools endpoint")
    # Keep draining stderr so that Chromium never blocks on a full pipe.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    tools = DevTools(ws_url)
    yield tools
    tools.close()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)


# JavaScript run in the page once it has loaded and MathJax has finished.
_INSPECT = r"""
(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  // Images still loading (animation frames are set by a script on load) get a moment.
  const pending = [...document.images].filter(im => !im.complete);
  await Promise.all(pending.map(im => new Promise(r => { im.onload = im.onerror = r;
                                                         setTimeout(r, 10000); })));
  const main = document.querySelector('main') || document.body;
  // The article's own inline formulas (the sidebars' copies of headings live in drawers that
  // are hidden off-screen on a phone).
  const article = document.querySelector('article') || main;
  const clipped = [...article.querySelectorAll('mjx-container:not([display="true"])')]
    .filter(c => c.offsetParent !== null && getComputedStyle(c).visibility !== 'hidden')
    .map(c => {
      const r = c.getBoundingClientRect();
      let worst = r.right - window.innerWidth;
      for (let el = c.parentElement; el && el !== document.body; el = el.parentElement) {
        const cs = getComputedStyle(el);
        if (cs.overflowX !== 'visible') {
          const b = el.getBoundingClientRect();
          worst = Math.max(worst, r.right - b.right, b.left - r.left);
        }
      }
      return {tex: (c.getAttribute('aria-label') || c.textContent || '').slice(0, 80),
              over: worst};
    })
    .filter(e => e.over > 1);
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, textarea')
       .forEach(e => e.remove());
  const h1 = main.querySelector('h1');
  return JSON.stringify({
    title: document.title,
    h1: h1 ? h1.innerText.replace('#', '').trim() : null,
    images: [...document.images].map(im => ({src: im.src.slice(0, 120),
                                             ok: im.complete && im.naturalWidth > 0})),
    mathjax: !!(window.MathJax && MathJax.version),
    pageWidth: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
    clipped: clipped,
    mjx: document.querySelectorAll('mjx-container').length,
    merror: document.querySelectorAll('mjx-merror').length,
    text: clone.innerText,
    search: !!document.querySelector('.search-button, form.bd-search, [aria-label="Search"]'),
    darkmode: !!document.querySelector('.theme-switch-button'),
    download: !!document.querySelector('.dropdown-download-buttons, .btn-download-source-button'),
    figures: [...main.querySelectorAll('img')].filter(im => im.offsetWidth > 0).map(im => ({
      src: (im.getAttribute('src') || im.id || '').slice(-60),
      alt: im.getAttribute('alt'),
      fontPx: im.dataset.fontPx || null,
      shown: im.getBoundingClientRect().width,
      natural: im.naturalWidth,
      content: !!im.closest('.cell_output, .output, .animation'),
    })),
    overflowing: (window.MathJax && MathJax.startup && MathJax.startup.document
                  ? Array.from(MathJax.startup.document.math) : [])
      .filter(item => item.display && item.typesetRoot)
      .map(item => {
        const box = item.typesetRoot;
        const outer = box.closest('div.math') || box;
        return {tex: item.math.trim().slice(0, 90),
                over: Math.max(box.scrollWidth - box.clientWidth, outer.scrollWidth - outer.clientWidth),
                px: parseFloat(getComputedStyle(box).fontSize)};
      })
      .filter(e => e.over > 1 || e.px < MIN_MATH_PX),
  });
})()
"""

_AXE_RUN = r"""
(async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return JSON.stringify(result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5), count: v.nodes.length})));
})()
"""


def _has_math(doc: str) -> bool:
    text = (ROOT / f"{doc}.md").read_text(encoding="utf-8")
    text = re.sub(r"^(`{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)  # code blocks
    text = re.sub(r"`[^`\n]+`", "", text)  # inline code (`$FLOWLAB_...` is no formula)
    return "$" in text


@pytest.fixture(scope="module")
def axe_counts():
    """Collects the axe-core violations of every page and width into _build/screenshots/axe.json."""
    counts: dict[str, dict] = {}
    yield counts
    if counts:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / "axe.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(counts)
        path.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")


def _evaluate(browser: DevTools, session: str, expression: str) -> object:
    result = browser.call("Runtime.evaluate", session=session, expression=expression,
                          awaitPromise=True, returnByValue=True, timeout=PAGE_TIMEOUT * 1000)
    if "exceptionDetails" in result:
        raise RuntimeError(f"script failed: {result['exceptionDetails']}")
    return result["result"].get("value")


@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: f"{w}px")
@pytest.mark.parametrize("doc", toc_documents())
def test_page_renders_offline(doc: str, width: int, server: str, browser: DevTools,
                              axe_counts: dict) -> None:
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.call(f"{domain}.enable", session=session)
        browser.call("Emulation.setDeviceMetricsOverride", session=session, width=width,
                     height=900, deviceScaleFactor=1, mobile=width < 600)
        browser.events.clear()
        browser.call("Page.navigate", session=session, url=f"{server}/{doc}.html")
        browser.wait_for("Page.loadEventFired")
        script = _INSPECT.replace("MIN_MATH_PX", str(MIN_MATH_PX))
        # flowlab.js fits wide equations once MathJax is done: run it before measuring.
        _evaluate(browser, session, "(async () => { if (window.MathJax && MathJax.startup) "
                  "{ await MathJax.startup.promise; } if (window.flowlabFitEquations) "
                  "flowlabFitEquations(); if (window.flowlabFitFigures) flowlabFitFigures(); "
                  "return 1; })()")
        page = json.loads(_evaluate(browser, session, script))
        time.sleep(0.3)  # let late console messages arrive
        browser.call("Runtime.evaluate", session=session, expression="1")
        _screenshot(browser, session, f"{doc}_{width}")
        problems = _console_problems(browser.events, session)
        _evaluate(browser, session, AXE.read_text(encoding="utf-8") + "\n;1")
        violations = json.loads(_evaluate(browser, session, _AXE_RUN))
    finally:
        browser.call("Target.closeTarget", targetId=target)

    severe = [v for v in violations if v["impact"] in ("serious", "critical")]
    axe_counts[f"{doc}@{width}"] = {
        "serious": sum(v["count"] for v in severe if v["impact"] == "serious"),
        "critical": sum(v["count"] for v in severe if v["impact"] == "critical"),
        "other": sum(v["count"] for v in violations if v not in severe),
        "rules": {v["id"]: v["count"] for v in violations},
    }

    assert page["h1"], f"{doc}: no rendered <h1> title"
    assert page["h1"] in page["title"], f"{doc}: tab title {page['title']!r} lacks {page['h1']!r}"
    broken = [im["src"] for im in page["images"] if not im["ok"]]
    assert not broken, f"{doc}: images that did not load: {broken}"
    raw = [tok for tok in ("$$", "\\(", "\\[", "\\begin{") if tok in page["text"]]
    assert not raw, f"{doc}: raw TeX {raw} in the rendered text: math was not typeset"
    if _has_math(doc):  # Sphinx adds MathJax only to pages with maths
        assert page["mathjax"], f"{doc}: MathJax did not load (book/_static/mathjax served?)"
        assert page["mjx"] > 0, f"{doc}: has maths in its source but none was typeset"
    assert page["merror"] == 0, f"{doc}: MathJax reports {page['merror']} TeX error(s)"
    assert not problems, f"{doc}: console errors or failed requests:\n" + "\n".join(problems)
    assert page["search"] and page["darkmode"], f"{doc}: search or dark-mode button missing"
    if doc.startswith("book/0") and width >= 1000:
        assert page["download"], f"{doc}: no download button"

    bad_alt = [f["src"] for f in page["figures"] if not _meaningful_alt(f["alt"])]
    assert not bad_alt, (f"{doc}: images without a meaningful alt text (give one with "
                         f"flowlab.plots.style.book_figure(alt=...) or set_alt): {bad_alt}")
    unstyled = [f["src"] for f in page["figures"] if f["content"] and not f["fontPx"]]
    assert not unstyled, (f"{doc}: figures not drawn with flowlab.plots.style (no data-font-px; "
                          f"call use_book_style() in the set-up cell): {unstyled}")
    small = [f"{f['src']}: smallest text shown at {_shown_px(f):.1f} px "
             f"({f['shown']:.0f} of {f['natural']} px wide)"
             for f in page["figures"] if _shown_px(f) < MIN_FONT_PX]
    assert not small, (f"{doc} at {width} px: figure text below {MIN_FONT_PX} px; draw it at most "
                       f"6 in wide with >= 11 pt fonts (flowlab.plots.style):\n" + "\n".join(small))
    assert not page["overflowing"], (
        f"{doc} at {width} px: display equations wider than the column or set below "
        f"{MIN_MATH_PX} px (break them into lines with aligned/gathered):\n"
        + "\n".join(f"{e['over']:.0f} px too wide at {e['px']:.1f} px: {e['tex']}"
                    for e in page["overflowing"]))
    assert page["pageWidth"] <= page["viewport"], (
        f"{doc} at {width} px: the page is {page['pageWidth']} px wide, wider than the "
        f"{page['viewport']} px viewport (a phone scrolls it sideways): find the wide element "
        "and let it wrap or scroll inside its own box (book/_static/flowlab.css)")
    assert not page["clipped"], (
        f"{doc} at {width} px: inline formulas cut off by their line or a clipping box:\n"
        + "\n".join(f"{e['over']:.0f} px: {e['tex']}" for e in page["clipped"]))
    blocking = [v for v in severe if v["id"] not in AXE_ALLOWED]
    assert not blocking, f"{doc} at {width} px: axe-core violations:\n" + "\n".join(
        f"{v['impact']} {v['id']} ({v['help']}) x{v['count']}: {v['nodes']}" for v in blocking)


def _meaningful_alt(alt: str | None) -> bool:
    if not alt or len(alt.strip()) < 10:
        return False
    return not re.search(r"(\.(png|jpe?g|gif|svg)$)|jupyter_execute|_images/", alt.strip(), re.I)


def _shown_px(figure: dict) -> float:
    """The smallest text of a figure as displayed, in CSS px (inf: no text or not measured)."""
    try:
        font = float(figure["fontPx"])
    except (TypeError, ValueError):
        return float("inf")
    return figure["shown"] / max(figure["natural"], 1) * font


def test_min_font_is_at_least_the_style_threshold() -> None:
    """The site asks for at least what the figure helpers guarantee in the column."""
    from flowlab.plots import style

    assert MIN_FONT_PX >= style.MIN_FONT_PX


_SEARCH = r"""
(async () => {
  for (let i = 0; i < 100; i++) {
    const snippets = [...document.querySelectorAll('#search-results p.context')];
    const done = document.querySelector('#search-results .search-summary, #search-results h2');
    if (snippets.length && done && !document.querySelector('#search-progress:not(:empty)')) {
      return JSON.stringify(snippets.map(p => p.textContent));
    }
    await new Promise(r => setTimeout(r, 200));
  }
  return JSON.stringify(null);
})()
"""


@pytest.mark.parametrize("query", ["determinant", "Jacobian", "temperature"])
def test_search_snippets_show_no_latex(query: str, server: str, browser: DevTools) -> None:
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    try:
        browser.call("Page.enable", session=session)
        browser.call("Page.navigate", session=session, url=f"{server}/search.html?q={query}")
        browser.wait_for("Page.loadEventFired")
        snippets = json.loads(_evaluate(browser, session, _SEARCH))
    finally:
        browser.call("Target.closeTarget", targetId=target)
    assert snippets, f"searching {query!r} found no pages with snippets"
    latex = [t for t in snippets if re.search(r"\\[a-zA-Z]+|\$\$|\\\(", t)]
    assert not latex, f"search snippets with raw LaTeX for {query!r}:\n" + "\n".join(
        t[:200] for t in latex)
    # Formulas are written out as text (flowlab.js), not dropped: no "with ." holes.
    holes = [t for t in snippets if re.search(r"\b(with|of|is|by|to)\s+[.,;:]", t)]
    assert not holes, f"search snippets with a formula missing for {query!r}:\n" + "\n".join(
        t[:200] for t in holes)


def _console_problems(events: list[dict], session: str) -> list[str]:
    problems = []
    for ev in events:
        if ev.get("sessionId") != session:
            continue
        method, params = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            problems.append(f"exception: {d.get('exception', {}).get('description', d.get('text'))}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            problems.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            e = params["entry"]
            problems.append(f"{e['source']}: {e['text']} {e.get('url', '')}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"request failed: {params.get('errorText')} ({params.get('type')})")
    return problems


def _screenshot(browser: DevTools, session: str, doc: str) -> None:
    import base64

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    name = doc.replace("/", "_")
    shot = browser.call("Page.captureScreenshot", session=session, format="png")
    (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
    # A second one at the first figure, where there is one.
    found = browser.call(
        "Runtime.evaluate", session=session, returnByValue=True,
        expression="(() => { const im = document.querySelector('.cell_output img');"
        " if (!im) return false; im.scrollIntoView({block: 'center'}); return true; })()",
    )
    if found.get("result", {}).get("value"):
        time.sleep(0.2)
        shot = browser.call("Page.captureScreenshot", session=session, format="png")
        (SCREENSHOTS / f"{name}_figure.png").write_bytes(base64.b64decode(shot["data"]))


@pytest.mark.parametrize("doc", [d for d in toc_documents() if d.startswith("book/0")])
def test_chapter_offers_its_notebook(doc: str, site: Path) -> None:
    """Each chapter's download menu links a Jupyter notebook that exists and opens."""
    import re

    import nbformat

    html = (site / f"{doc}.html").read_text(encoding="utf-8")
    link = re.search(r'href="([^"]+\.ipynb)"', html)
    assert link, f"{doc}: no .ipynb download link (book/_ext/flowlab_book.py writes it)"
    notebook = (site / doc).parent / link.group(1)
    assert notebook.is_file(), f"{doc}: the .ipynb link points to a missing file {notebook}"
    nb = nbformat.read(notebook, as_version=4)
    assert any(c.cell_type == "code" for c in nb.cells), f"{doc}: the notebook has no code"
    assert nb.metadata["kernelspec"]["name"] == "python3"


def test_execution_statistics_page_lists_every_chapter(site: Path) -> None:
    """book/execution.md's nb-exec-table is filled by the build: one row per chapter, with a run
    time and a status."""
    import html as html_lib

    page = (site / "book" / "execution.html").read_text(encoding="utf-8")
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S)
    cells = [[html_lib.unescape(re.sub(r"<[^>]+>", "", c)).strip()
              for c in re.findall(r"<td[^>]*>(.*?)</td>", r, flags=re.S)] for r in rows]
    by_doc = {c[0]: c for c in cells if c}
    chapters = [d for d in toc_documents() if d.startswith("book/0")]
    missing = [d for d in chapters if d not in by_doc]
    assert not missing, f"the execution-statistics page has no row for {missing}"
    for d in chapters:
        assert re.fullmatch(r"\d+(\.\d+)?", by_doc[d][3]), f"{d}: no run time in {by_doc[d]}"
        assert by_doc[d][4] in ("✅", "❌"), f"{d}: no status in {by_doc[d]}"
