"""Minimal self-contained HTML views of OGC API documents (no external assets)."""

from __future__ import annotations

import json
from html import escape
from typing import Any


def _links(document: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(document, dict):
        for item in document.get("links", ()):
            if isinstance(item, dict) and "href" in item:
                found.append(item)
        for key in ("collections", "tilesets", "tileMatrixSets"):
            for entry in document.get(key, ()):
                found.extend(_links(entry))
    return found


def html_page(title: str, base: str, document: Any) -> str:
    """A page with the document's links (HTML alternates preferred) and its JSON."""
    items = []
    for entry in _links(document):
        href = str(entry["href"])
        if entry.get("templated") or entry.get("rel") == "self":
            continue
        label = escape(str(entry.get("title") or href))
        rel = escape(str(entry.get("rel", "")))
        items.append(f'<li><a href="{escape(href)}">{label}</a> <small>{rel}</small></li>')
    body = json.dumps(document, indent=2, ensure_ascii=False)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em;"
        "overflow:auto}</style>\n</head>\n<body>\n"
        f'<p><a href="{escape(base)}?f=html">OGC API home</a></p>\n'
        f"<h1>{escape(title)}</h1>\n"
        f"<ul>\n{chr(10).join(items)}\n</ul>\n"
        f"<pre>{escape(body)}</pre>\n</body>\n</html>\n"
    )
