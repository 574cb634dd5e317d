r"""The book's figure conventions: one size and one font, legible in the content column and on a phone.

Every figure of the course book (chapters 1-9) is made with these helpers, so that
``tests/book/test_site.py`` can check in Chromium that it is legible where it is shown.

The conventions
---------------
* **Width.**  At most :data:`WIDTH_IN` = 6.0 in at :data:`DPI` = 100, i.e. 600 px: the figure is
  shown at its natural size in the 688 px column of a 1280 px screen and scaled to about 0.6 on
  a 400 px phone.  Use *at most two panels per row* (three only for pictures without tick
  labels, such as image grids); stack more panels in rows (``book_figure(2, 2, ...)``).
* **Fonts.**  Titles and axis labels :data:`FONT_PT` = 12 pt; tick labels, legends, colour-bar
  ticks and annotations at least :data:`SMALL_FONT_PT` = 11 pt.  Never pass a smaller
  ``fontsize=``.
* **Legibility threshold** (what the browser test enforces at 1280 and 400 px): the smallest text
  of a figure, as displayed, is at least :data:`MIN_FONT_PX` = 9 CSS pixels::

      displayed font px = (rendered width / natural width) * (smallest font pt * DPI / 72)

  A 6 in figure with 11 pt ticks shown 360 px wide on a phone: 360/600 * 15.3 = 9.2 px.
* **Alt text.**  Every figure carries a sentence that says what it shows (not its file name):
  ``book_figure(..., alt="...")`` or :func:`set_alt` after drawing.  :func:`use_book_style`
  makes the notebook's PNGs carry it (PNG text chunk ``flowlab:alt``), together with the
  smallest font in px at natural size (``flowlab:font-px``); the book's Sphinx extension
  (``book/_ext/flowlab_book.py``) turns them into the ``<img>``'s ``alt`` and ``data-font-px``
  and links the image to itself (click to enlarge).
* **Not colour alone.**  Two things told apart by colour are told apart by a marker or line
  style too (data: dots, samples: crosses; curves: ``-``, ``--``, ``:``): see :data:`MARKERS`
  and :data:`LINESTYLES`.
* **Animations**: :func:`animation_html` (alt text, a labelled slider, no CDN stylesheet).

Typical chapter code::

    from flowlab.plots.style import book_figure, use_book_style
    use_book_style()                          # once, in the chapter's set-up cell
    fig, axes = book_figure(1, 2, height=3.0, alt="Left: ..., right: ...")
    ...
    plt.show()

Example:
    >>> from flowlab.plots.style import book_figure, min_font_pt, use_book_style
    >>> use_book_style()
    >>> fig, ax = book_figure(alt="an empty plot")
    >>> _ = ax.plot([0, 1], [0, 1], label="a line"); _ = ax.legend()
    >>> bool(fig.get_size_inches()[0] <= WIDTH_IN), min_font_pt(fig) >= SMALL_FONT_PT
    (True, True)
"""

from __future__ import annotations

import base64
import contextlib
import io
import re

import matplotlib
from matplotlib.figure import Figure
from matplotlib.text import Text

__all__ = [
    "DPI", "WIDTH_IN", "FONT_PT", "SMALL_FONT_PT", "MIN_FONT_PX", "MAX_COLS", "MARKERS",
    "LINESTYLES", "BOOK_RC", "book_figure", "book_style", "use_book_style", "set_alt",
    "get_alt", "min_font_pt", "figure_png", "animation_html",
]  # fmt: skip

DPI = 100
"""Pixels per inch of the book's figures (``figure.dpi`` and ``savefig.dpi``)."""
WIDTH_IN = 6.0
"""The widest figure in inches (600 px at :data:`DPI`)."""
FONT_PT = 12.0
"""Titles and axis labels."""
SMALL_FONT_PT = 11.0
"""Tick labels, legends, annotations: the smallest text a figure may have."""
MIN_FONT_PX = 9.0
"""The legibility threshold: the smallest text as displayed, in CSS px (see the module doc)."""
MAX_COLS = 3
"""Panels per row that :func:`book_figure` accepts (two is the norm; three for image grids)."""
MARKERS = ("o", "x", "s", "^", "D", "v")
"""Markers to pair with colours C0, C1, ...: data ``o``, samples ``x``."""
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
"""Line styles to pair with colours C0, C1, ..."""

BOOK_RC: dict[str, object] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.figsize": (WIDTH_IN, 3.6),
    "figure.constrained_layout.use": True,
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": SMALL_FONT_PT,
    "ytick.labelsize": SMALL_FONT_PT,
    "legend.fontsize": SMALL_FONT_PT,
    "legend.title_fontsize": SMALL_FONT_PT,
    "figure.titlesize": FONT_PT,
    "lines.linewidth": 2.0,
    "lines.markersize": 6.0,
}
"""rcParams of the book (applied by :func:`use_book_style` / :func:`book_style`)."""

_ALT = "_flowlab_alt"


def book_style() -> contextlib.AbstractContextManager:
    """The book's rcParams as a context manager (``with book_style(): ...``), for scripts."""
    return matplotlib.rc_context(BOOK_RC)


def use_book_style() -> None:
    """Apply the book's rcParams and, in a notebook, let every displayed figure carry its alt
    text and smallest font size (PNG metadata read by the book's Sphinx extension).

    Call it once in a chapter's set-up cell, after ``import matplotlib.pyplot as plt``.
    """
    import matplotlib.pyplot as plt

    plt.rcParams.update(BOOK_RC)
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: rcParams only
        return
    shell = get_ipython()
    if shell is None:
        return
    # Load the inline backend first: loading it registers matplotlib's own PNG formatter,
    # which would otherwise replace ours at the first figure.
    plt.switch_backend(matplotlib.get_backend())
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: base64.b64encode(figure_png(fig)).decode("ascii"))


def book_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    height: float | None = None,
    width: float = WIDTH_IN,
    alt: str | None = None,
    **subplots_kw,
) -> tuple[Figure, object]:
    """A figure in the book's size: ``fig, axes = book_figure(2, 2, height=5.5, alt=...)``.

    Args:
        nrows, ncols: the panel grid (``ncols`` at most :data:`MAX_COLS`).
        height: inches (default: 3.6 for one row, 3.0 per row otherwise).
        width: inches, at most :data:`WIDTH_IN`.
        alt: the figure's alt text (or call :func:`set_alt` later).
        **subplots_kw: passed to :func:`matplotlib.pyplot.subplots` (``sharey=True`` ...).

    Returns:
        ``(fig, axes)`` as :func:`matplotlib.pyplot.subplots` returns them.
    """
    import matplotlib.pyplot as plt

    if width > WIDTH_IN + 1e-9:
        raise ValueError(
            f"a book figure is at most {WIDTH_IN} in wide (got {width}): put panels in more "
            "rows instead (book_figure(nrows=2, ...))"
        )
    if ncols > MAX_COLS:
        raise ValueError(
            f"at most {MAX_COLS} panels per row are legible on a phone (got {ncols}): use "
            f"book_figure({-(-nrows * ncols // 2)}, 2, ...)"
        )
    if height is None:
        height = 3.6 if nrows == 1 else 3.0 * nrows
    with matplotlib.rc_context(BOOK_RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), dpi=DPI, **subplots_kw)
    for ax in fig.axes:  # ticks are made at draw time: fix their size now, whatever the rcParams
        ax.tick_params(labelsize=SMALL_FONT_PT)
    if alt is not None:
        set_alt(fig, alt)
    return fig, axes


def set_alt(fig: Figure, text: str) -> Figure:
    """Give ``fig`` its alt text: one or two sentences saying what the figure shows."""
    text = " ".join(str(text).split())
    if len(text) < 10 or re.fullmatch(r"[\w./\\-]+\.(png|svg|jpe?g)", text):
        raise ValueError(
            f"alt text {text!r} is too short to describe a figure: say what it shows "
            "(e.g. 'Scatter of the data (dots) and the samples (crosses); they overlap.')"
        )
    setattr(fig, _ALT, text)
    return fig


def get_alt(fig: Figure) -> str | None:
    """The alt text given with :func:`book_figure` or :func:`set_alt` (``None`` if none)."""
    return getattr(fig, _ALT, None)


def min_font_pt(fig: Figure) -> float | None:
    """The smallest font size (pt) of the visible, non-empty text of ``fig`` (``None``: no text).

    Tick labels exist only once a figure is laid out, so the figure is drawn (without
    rendering) first.
    """
    fig.draw_without_rendering()
    sizes = [
        t.get_fontsize()
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and _shown(t)
    ]
    return float(min(sizes)) if sizes else None


def _shown(t: Text) -> bool:
    """Tick labels outside the axis' view limits are kept invisible in place by matplotlib
    only sometimes; a text whose axes is switched off is not shown."""
    ax = t.axes
    return ax is None or ax.axison or t in ax.texts or t is ax.title


def figure_png(fig: Figure, **savefig_kw) -> bytes:
    """``fig`` as PNG bytes (tight bounding box, the figure's dpi), with the text chunks
    ``flowlab:alt`` (if set) and ``flowlab:font-px`` (smallest font, px at natural size;
    ``"none"`` for a figure without text)."""
    font = min_font_pt(fig)
    dpi = savefig_kw.pop("dpi", fig.dpi)
    metadata = {"flowlab:font-px": "none" if font is None else f"{font * dpi / 72:.2f}"}
    if (alt := get_alt(fig)) is not None:
        metadata["flowlab:alt"] = alt
    buf = io.BytesIO()
    kw = dict(format="png", dpi=dpi, bbox_inches="tight", facecolor=fig.get_facecolor(),
              edgecolor=fig.get_edgecolor(), metadata=metadata)
    kw.update(savefig_kw)
    fig.canvas.print_figure(buf, **kw)
    return buf.getvalue()


def animation_html(
    anim: "matplotlib.animation.Animation", alt: str, frame_format: str = "jpeg", **jshtml_kw
) -> str:
    """An animation as self-contained HTML for the book (``IPython.display.HTML(...)``).

    Compared with ``anim.to_jshtml()``: the frame has ``alt`` text and ``data-font-px`` (its
    smallest font, as for figures), the frame slider has an ``aria-label``, and the link to a
    Font Awesome copy on a CDN is dropped (the book's theme ships the icons; the site works
    offline).
    """
    fig = anim._fig
    set_alt(fig, alt)
    font = min_font_pt(fig)
    font_px = "none" if font is None else f"{font * fig.dpi / 72:.2f}"
    # JPEG frames: a third of the size of PNG ones for scatter plots (the page stays light).
    with matplotlib.rc_context({"animation.frame_format": frame_format}):
        html = anim.to_jshtml(**jshtml_kw)
    html = re.sub(r'<link rel="stylesheet"[^>]*font-awesome[^>]*>', "", html)
    escaped = (alt.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;"))
    html, n_img = re.subn(r'<img id="(_anim_img\w+)">',
                          rf'<img id="\1" alt="{escaped}" data-font-px="{font_px}">', html)
    html, n_slider = re.subn(r'<input id="(_anim_slider\w+)" type="range"',
                             r'<input id="\1" type="range" aria-label="animation frame"', html)
    if n_img != 1 or n_slider != 1:  # matplotlib changed its template: fail loudly
        raise RuntimeError("animation_html: matplotlib's to_jshtml template changed; update "
                           "flowlab.plots.style.animation_html")
    return html
