"""Self-contained HTML: inline CSS, images as base64 PNG data URIs, nothing fetched.

A report is a list of :class:`Section`; each holds already-escaped HTML fragments
made with the helpers here (``table``, ``pre``, ``image``, ``paragraph``), so no
caller concatenates user text (class names, config values, paths) unescaped.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scarce.io import atomic_path, atomic_write_text

STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", Arial, sans-serif; margin: 0 auto;
       max-width: 1180px; padding: 16px 24px; color: #1d1d1f; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #dde; padding-bottom: 4px; margin-top: 1.6em; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { border: 1px solid #ccd; padding: 3px 10px; text-align: left; vertical-align: top; }
th { background: #f0f2f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f7f9; border: 1px solid #e2e4ea; padding: 8px 12px; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; height: auto; display: block; margin: 8px 0; border: 1px solid #eee; }
.note { color: #665; font-style: italic; }
summary { cursor: pointer; color: #335; margin: 6px 0; }
.meta { color: #556; font-size: 0.9em; }
"""


@dataclass
class Section:
    """One ``<section id=...>`` of the page: a title and HTML fragments."""

    id: str
    title: str
    parts: list[str] = field(default_factory=list)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers rounded for display; everything else as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value != value or abs(value) >= 1e5 or (value and abs(value) < 1e-3):
            return f"{value:.{digits}g}"  # nan, huge or tiny (learning rates): significant digits
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.{digits}f}"
    return str(value)


def paragraph(text: str, cls: str | None = None) -> str:
    attr = f' class="{esc(cls)}"' if cls else ""
    return f"<p{attr}>{esc(text)}</p>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numeric cells are right-aligned and rounded by :func:`fmt`."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(fmt(v))}</td>'
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            else f"<td>{esc(fmt(v))}</td>"
            for v in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def key_values(mapping: dict) -> str:
    return table(["key", "value"], [(k, v) for k, v in mapping.items()])


def details(summary: str, body: str, open_: bool = False) -> str:
    """A collapsible block (long tables: hundreds of epochs or classes)."""
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def image(png: bytes, alt: str) -> str:
    """An ``<img>`` carrying ``png`` inline as a base64 data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def render_page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """The whole document: header, a table of contents, then every section."""
    nav = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{esc(s.id)}">\n<h2>{esc(s.title)}</h2>\n' + "\n".join(s.parts) + "\n</section>" for s in sections
    )
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<h1>{esc(title)}</h1>\n<p class="meta">{esc(subtitle)} &middot; generated {stamp}</p>\n'
        f"<nav>{nav}</nav>\n{body}\n</body>\n</html>\n"
    )


class Figures:
    """Collects PNGs for a report: written beside the HTML and embedded in it."""

    def __init__(self, folder: Path, prefix: str):
        self.folder = Path(folder)
        self.prefix = prefix
        self.paths: list[Path] = []

    def add(self, fig, name: str, alt: str) -> str:
        """Render ``fig`` to ``<folder>/<prefix><name>.png``; return its ``<img>`` fragment."""
        from scarce.report.plots import figure_png

        png = figure_png(fig)
        path = self.folder / f"{self.prefix}{name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(png)
        self.paths.append(path)
        return image(png, alt)


def write_page(path: Path, title: str, subtitle: str, sections: Sequence[Section]) -> Path:
    atomic_write_text(path, render_page(title, subtitle, sections))
    return path
