"""Assistant adapters, by name. Adding an assistant = one module + one line here."""

from __future__ import annotations

from costattr.sources.base import FileParse, Source
from costattr.sources.claude import ClaudeSource
from costattr.sources.codex import CodexSource

SOURCES: dict[str, Source] = {"claude": ClaudeSource(), "codex": CodexSource()}

__all__ = ["SOURCES", "FileParse", "Source"]
