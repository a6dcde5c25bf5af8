"""The fleet page: one self-contained HTML file (``page.html``: its style and script inline, no
CDN, no external font or script, so it works in an air-gapped cluster) that reads
``fleet.json`` beside it and draws the image x platform matrix, the summary per platform, the
what-if columns, filters and each cell's explanation, one page of 100 images at a time.
Filters live in the query string (``/fleet?outcome=missing&target=linux/arm64/v8``), so a view
can be linked."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def page_html() -> bytes:
    return (files("proxy.fleet") / "page.html").read_bytes()
