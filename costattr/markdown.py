"""Untrusted text (branch names, commit messages, model names) made inert in GitHub Markdown.

Shared by the report's markdown and the PR comment, so both escape the same way.
"""

from __future__ import annotations

import re

# Characters that mean something to GitHub Markdown or HTML, as numeric entities: GitHub decodes
# them for display, but only after tables, emphasis, links and HTML have been parsed.
_ENTITIES = {
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    '"': "&quot;",
    "|": "&#124;",
    "`": "&#96;",
    "[": "&#91;",
    "]": "&#93;",
    "(": "&#40;",
    ")": "&#41;",
    "*": "&#42;",
    "_": "&#95;",
    "~": "&#126;",
    "\\": "&#92;",
    "$": "&#36;",  # GitHub renders $...$ as math
    "!": "&#33;",
    "^": "&#94;",
}
# Entities are decoded before GitHub looks for @mentions and #references, so those need a
# zero-width space instead: "@\u200boctocat" reads the same and pings nobody (Dependabot's trick).
_ZWSP = "\u200b"
_NEUTRALISE = {"@": "@" + _ZWSP, "#": "#" + _ZWSP}
_ESCAPE_TABLE = str.maketrans({**_ENTITIES, **_NEUTRALISE})
_ESCAPE_TABLE_NO_MENTIONS = str.maketrans(_ENTITIES)
# Line breaks (incl. U+2028/2029/0085) and other control characters would end a table row or a
# paragraph; bidi overrides and other format characters could make the text display as something
# it is not ("trojan source"). All become one space.
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]+")
_SPACES = re.compile(r"\s+")


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def md_escape(text: object, limit: int | None = None, *, mentions: bool = True) -> str:
    """Untrusted text made inert in GitHub Markdown: one line, no markup, no HTML, no mentions.

    Safe inside a table cell, a link label, a heading or a <summary>. Not for code spans, where
    nothing can be escaped: see `code_or_text`. `mentions=False` leaves `@` and `#` alone: for
    Markdown written to a file (a report), where a zero-width space would only corrupt `#42`;
    the PR comment, which the bot posts, keeps them neutralised.
    """
    s = _UNSAFE_CHARS.sub(" ", str(text))
    s = _SPACES.sub(" ", s).strip()
    if limit is not None:
        s = clip(s, limit)
    return s.translate(_ESCAPE_TABLE if mentions else _ESCAPE_TABLE_NO_MENTIONS)
