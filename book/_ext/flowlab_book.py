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
"""

from __future__ import annotations

import os
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config

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


def setup(app: Sphinx) -> dict:
    app.add_config_value("flowlab_quick", QUICK, "env")
    # Before myst-nb reads its settings (builder-inited).
    app.connect("config-inited", _use_quick_cache)
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    # Before the theme builds its header buttons (default priority 500).
    app.connect("html-page-context", _offer_ipynb, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
