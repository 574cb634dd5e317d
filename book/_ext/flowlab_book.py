"""Sphinx glue for the flowlab course book (loaded through ``_config.yml``).

Quick mode.  ``FLOWLAB_QUICK=1`` makes the chapters train for fewer steps (tests, previews).
Two things keep quick and full builds apart:

* ``flowlab_quick`` is a config value with ``rebuild="env"``: switching the mode makes Sphinx
  re-read (and so re-execute) every chapter instead of keeping the other mode's pages;
* quick builds use their own jupyter-cache (``_build/.jupyter_cache-quick``), so quick outputs
  never end up in a full build, and switching back to a full build is a cache hit.

Notebook downloads.  The chapters are MyST Markdown notebooks; for each one the build also
writes a Jupyter notebook (``_sources/book/NN_name.ipynb``, made by jupytext, code and text
without outputs) and the theme's download menu offers it as ``.ipynb``.

Figures.  The chapters draw with :mod:`flowlab.plots.style`, whose PNGs carry two text chunks:
``flowlab:alt`` (what the figure shows) and ``flowlab:font-px`` (its smallest font, in px at
natural size).  Every ``<img>`` of a page gets that alt text (instead of the file path that
docutils writes) and a ``data-font-px`` attribute, which ``tests/book/test_site.py`` uses to
check legibility as displayed; and each image is wrapped in a link to itself, which
``_static/flowlab.js`` opens in an enlarged view (click to enlarge; without JavaScript the
link opens the PNG).

Search.  Mathematics is left out of the search index and of the result snippets (which would
otherwise show raw LaTeX such as ``\log\left|\det Df\right|``): the words come from the
text around it; ``_static/flowlab.js`` drops ``.math`` elements before Sphinx cuts a snippet.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.search import WordCollector

QUICK = os.environ.get("FLOWLAB_QUICK", "0") not in ("", "0", "false", "False")


def _use_quick_cache(app: Sphinx, config: Config) -> None:
    if QUICK and not config.nb_execution_cache_path:
        config.nb_execution_cache_path = str(
            Path(app.outdir).parent.joinpath(".jupyter_cache-quick").resolve()
        )


def _drop_duplicate_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Some extensions (sphinx-thebe, sphinx-togglebutton) register their inline scripts twice,
    and the second ``const THEBE_JS_URL`` throws a ``SyntaxError`` in the reader's console.
    Keep the first copy of every script on every page."""
    files = context.get("script_files")
    if not files:
        return
    seen, unique = set(), []
    for js in files:
        attrs = getattr(js, "attributes", {})
        key = (getattr(js, "filename", None) or "", repr(sorted(attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def _offer_ipynb(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Write ``_sources/<page>.ipynb`` for a MyST notebook page and point the theme's
    ``.ipynb`` download button at it (the theme reads ``context["ipynb_source"]``)."""
    source = Path(app.srcdir, pagename + ".md")
    if not source.is_file() or "jupytext:" not in source.read_text(encoding="utf-8")[:400]:
        return
    import jupytext  # part of the book's requirements

    target = Path(app.outdir, "_sources", pagename + ".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(jupytext.read(source), target, fmt="ipynb")
    context["ipynb_source"] = pagename + ".ipynb"


_IMG = re.compile(r"<img\b[^>]*>")
_ATTR = re.compile(r'\s(alt|src)="([^"]*)"')


def _png_text(path: Path) -> dict[str, str]:
    """The text chunks of a PNG (``{}`` for other files or unreadable ones)."""
    if path.suffix.lower() != ".png" or not path.is_file():
        return {}
    from PIL import Image  # matplotlib depends on Pillow

    try:
        with Image.open(path) as im:
            return {k: v for k, v in im.info.items() if isinstance(v, str)}
    except OSError:
        return {}


def _figures(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """Alt text and font size from each figure's PNG metadata; each figure links to itself."""
    body = context.get("body")
    if not body or "<img" not in body:
        return
    sources = {Path(dest).name: src for src, dest in getattr(app.builder, "images", {}).items()}

    def rewrite(match: re.Match) -> str:
        tag = match.group(0)
        attrs = dict(_ATTR.findall(tag))
        src = attrs.get("src", "")
        if not src or src.startswith("data:"):
            return tag
        source = sources.get(Path(src).name)
        meta = _png_text(Path(app.srcdir, source)) if source else {}
        if "flowlab:alt" in meta:
            alt = html.escape(meta["flowlab:alt"], quote=True)
            tag = re.sub(r'\salt="[^"]*"', "", tag)
            tag = tag.replace("<img", f'<img alt="{alt}"', 1)
        if "flowlab:font-px" in meta:
            tag = tag.replace("<img", f'<img data-font-px="{html.escape(meta["flowlab:font-px"])}"', 1)
        label = html.escape("Enlarge the figure", quote=True)
        return (f'<a class="flowlab-zoom" href="{src}" title="{label}">{tag}</a>')

    # Images already inside a link (a figure with a target) are left alone.
    parts = re.split(r"(<a\b[^>]*>.*?</a>)", body, flags=re.S)
    context["body"] = "".join(
        p if p.startswith("<a") else _IMG.sub(rewrite, p) for p in parts
    )


def _aria(app: Sphinx, pagename, templatename, context, doctree) -> None:
    """ARIA fixes in the page body.

    * sphinxcontrib-bibtex marks each reference ``role="doc-biblioentry"`` inside a
      ``role="list"``: a deprecated role, and a list without list items (axe-core: critical).
      Each reference becomes a ``listitem``.
    * A matplotlib animation made without :func:`flowlab.plots.style.animation_html` has an
      unlabelled frame slider: it gets a label (its frame still needs an alt text).
    """
    body = context.get("body")
    if not body:
        return
    body = body.replace('role="doc-biblioentry"', 'role="listitem"')
    body = re.sub(r'(<input id="_anim_slider\w+" type="range")(?![^>]*aria-label)',
                  r'\1 aria-label="animation frame"', body)
    context["body"] = body


_dispatch_visit = WordCollector.dispatch_visit


def _dispatch_visit_without_math(self, node) -> None:
    if isinstance(node, (nodes.math, nodes.math_block)):
        raise nodes.SkipNode
    _dispatch_visit(self, node)


def setup(app: Sphinx) -> dict:
    # Search: the index holds words, not LaTeX (the snippets: _static/flowlab.js).
    WordCollector.dispatch_visit = _dispatch_visit_without_math
    app.add_js_file("flowlab.js", loading_method="defer")
    app.connect("html-page-context", _figures, priority=600)
    app.connect("html-page-context", _aria, priority=600)
    app.add_config_value("flowlab_quick", QUICK, "env")
    # Before myst-nb reads its settings (builder-inited).
    app.connect("config-inited", _use_quick_cache)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    # Before the theme builds its header buttons (default priority 500).
    app.connect("html-page-context", _offer_ipynb, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
