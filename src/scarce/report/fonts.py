"""Which installed fonts can draw a text: class names in figures (matplotlib draws a character
no font has as an empty box and warns once per glyph)."""

from __future__ import annotations

import functools
from collections.abc import Sequence


def _font(path: str) -> tuple[str, frozenset[int]] | None:
    """(family, code points) of a font file, or None where FreeType cannot open it."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    try:
        return font_manager.FontProperties(fname=path).get_name(), frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def _default_font() -> tuple[str, frozenset[int]]:
    from matplotlib import font_manager

    return _font(font_manager.findfont(font_manager.FontProperties(family=["sans-serif"]))) or (
        "sans-serif",
        frozenset(),
    )


@functools.lru_cache(maxsize=1)
def _fallback_fonts() -> tuple[tuple[str, frozenset[int]], ...]:
    """The other installed fonts (read only when a name needs them: seconds for a hundred files).
    'Last Resort' fonts are left out: they map every character to a box."""
    from matplotlib import font_manager

    paths = sorted({f.fname for f in font_manager.fontManager.ttflist if not f.name.startswith("Last Resort")})
    return tuple(font for font in map(_font, paths) if font is not None and font[0] != _default_font()[0])


def figure_labels(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Class names as a figure can draw them -> (labels, font families to draw them with).

    A name with a character that no installed font has is drawn as ``#i``, its index (the report's
    tables give the name): matplotlib would draw empty boxes and warn once per glyph. Characters
    the default font lacks (CJK, say) fall back to an installed font that has them.
    """
    default_family, default_chars = _default_font()
    families, labels = [default_family], []
    for i, name in enumerate(names):
        missing = {ord(ch) for ch in name if not ch.isspace()} - default_chars
        for family, chars in _fallback_fonts() if missing else ():
            if missing & chars and family not in families:
                families.append(family)
            missing -= chars
        labels.append(name if not missing else f"#{i}")
    return labels, families
