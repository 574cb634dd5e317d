"""Tests of flowlab.plots.style: the book's figure size, fonts, alt text and PNG metadata."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import animation  # noqa: E402
from PIL import Image  # noqa: E402

from flowlab.plots import style  # noqa: E402


@pytest.fixture(autouse=True)
def _book_rc():
    with style.book_style():
        yield
    plt.close("all")


def test_book_figure_is_within_the_column_and_fonts_are_large_enough():
    fig, axes = style.book_figure(1, 2, alt="two panels with a line each")
    for ax in axes:
        ax.plot([0, 1], [1, 0], label="line")
        ax.legend()
    assert fig.get_size_inches()[0] <= style.WIDTH_IN
    assert fig.dpi == style.DPI
    assert style.min_font_pt(fig) >= style.SMALL_FONT_PT
    # The documented threshold holds for the widest figure on a 360 px phone column.
    shown_px = 360 / (style.WIDTH_IN * style.DPI) * style.SMALL_FONT_PT * style.DPI / 72
    assert shown_px >= style.MIN_FONT_PX


def test_book_figure_refuses_wide_figures_and_crowded_rows():
    with pytest.raises(ValueError, match="more rows"):
        style.book_figure(width=9)
    with pytest.raises(ValueError, match=r"book_figure\(2, 2"):
        style.book_figure(1, 4)


def test_min_font_sees_small_text_and_ignores_hidden_axes():
    fig, ax = style.book_figure(alt="a plot with a small note")
    ax.plot([0, 1])
    assert style.min_font_pt(fig) == style.SMALL_FONT_PT
    ax.text(0.5, 0.5, "small", fontsize=7)
    assert style.min_font_pt(fig) == 7
    fig2, ax2 = style.book_figure(alt="an image without any text")
    ax2.imshow(np.zeros((4, 4)))
    ax2.set_axis_off()
    assert style.min_font_pt(fig2) is None


def test_figure_png_carries_alt_and_font_size():
    fig, ax = style.book_figure(alt="a rising straight line")
    ax.plot([0, 1], [0, 1])
    info = Image.open(io.BytesIO(style.figure_png(fig))).info
    assert info["flowlab:alt"] == "a rising straight line"
    assert float(info["flowlab:font-px"]) == pytest.approx(style.SMALL_FONT_PT * style.DPI / 72,
                                                           abs=0.01)
    fig2, ax2 = plt.subplots()
    ax2.set_axis_off()
    info2 = Image.open(io.BytesIO(style.figure_png(fig2))).info
    assert "flowlab:alt" not in info2 and info2["flowlab:font-px"] == "none"


def test_set_alt_wants_a_description():
    fig, _ = style.book_figure()
    with pytest.raises(ValueError, match="say what it shows"):
        style.set_alt(fig, "fig1.png")
    with pytest.raises(ValueError, match="too short"):
        style.set_alt(fig, "plot")
    style.set_alt(fig, "  a   histogram\nof samples ")
    assert style.get_alt(fig) == "a histogram of samples"


def test_animation_html_is_labelled_and_offline():
    fig, ax = plt.subplots(figsize=(2, 2))
    (line,) = ax.plot([0, 1], [0, 0])

    def draw(k):
        line.set_ydata([0, k])
        return (line,)

    anim = animation.FuncAnimation(fig, draw, frames=3)
    html = style.animation_html(anim, alt='a line that tilts up "slowly"')
    assert 'alt="a line that tilts up &quot;slowly&quot;"' in html
    assert 'aria-label="animation frame"' in html
    assert "data-font-px=" in html
    assert "font-awesome" not in html and "cdnjs" not in html
    assert "data:image/jpeg;base64" in html
