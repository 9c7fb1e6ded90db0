"""Report figures and tables for class names no font can draw, and for many classes (no training)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from scarce.report import fonts, plots
from scarce.report.run import _top_confusions

LATIN = frozenset(map(ord, "abcdefghijklmnopqrstuvwxyz"))


def test_labels_fall_back_to_a_font_with_the_glyphs_else_to_the_index(monkeypatch):
    monkeypatch.setattr(fonts, "_default_font", lambda: ("Plain", LATIN))
    monkeypatch.setattr(fonts, "_fallback_fonts", lambda: (("Other", frozenset()), ("Han", frozenset(map(ord, "猫")))))
    assert fonts.figure_labels(["cat", "猫", "big 漢", "dog"]) == (["cat", "猫", "#2", "dog"], ["Plain", "Han"])
    assert fonts.figure_labels(["cat", "dog cat"]) == (["cat", "dog cat"], ["Plain"])  # spaces need no glyph


def test_figures_of_names_no_font_has_draw_without_glyph_warnings():
    names = ["\u0378\u0379", "dog", "猫"]  # unassigned code points: in no font (Last Resort's boxes aside)
    cm = np.array([[3, 1, 0], [0, 4, 0], [1, 0, 2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" per character
        for fig in (
            plots.confusion_matrix_figure(cm, names),
            plots.per_class_figure([0.75, 1.0, 2 / 3], names, [4, 4, 3]),
        ):
            assert plots.figure_png(fig).startswith(b"\x89PNG")
    labels = [t.get_text() for t in plots.confusion_matrix_figure(cm, names).axes[0].get_xticklabels()]
    assert labels[:2] == ["#0", "dog"] and labels[2] in ("猫", "#2")  # 猫 is drawn where a CJK font is installed


def test_many_classes_show_indices_and_the_largest_confusions_as_a_table():
    c = plots.MAX_LABELLED_CLASSES + 5
    fig = plots.confusion_matrix_figure(np.eye(c, dtype=int) * 2, [f"class{i}" for i in range(c)])
    ax = fig.axes[0]
    fig.canvas.draw()
    texts = [t.get_text() for t in ax.get_xticklabels()]
    assert "0" in texts and "32" in texts and not any("class" in t for t in texts)
    assert ax.get_xlabel() == "predicted class index (the per-class table lists them)"
    cm = np.array([[5, 3, 0], [1, 6, 0], [0, 4, 2]])
    html = _top_confusions(cm, ["a", "b", "c"], most=2)
    rows = [r.split("</td>")[:4] for r in html.split("<tr>")[2:]]
    cells = [[cell.rsplit(">", 1)[-1] for cell in row] for row in rows]
    assert cells == [["c (#2)", "b (#1)", "4", "0.6667"], ["a (#0)", "b (#1)", "3", "0.3750"]]
    assert _top_confusions(np.eye(3, dtype=int), ["a", "b", "c"]) == ""  # nothing confused: no table


@pytest.mark.parametrize("names", [["ü", "Ω"], ["a b", "c"]])
def test_names_the_default_font_has_stay_names(names):
    assert fonts.figure_labels(names)[0] == names
