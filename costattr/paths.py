"""Where transcripts live and where costattr keeps its own state.

One environment variable, COSTATTR_HOME, moves all of costattr's state (ledger, cursors, cache,
logs), as LLM_USER_PATH does for simonw/llm.
"""

from __future__ import annotations

import os
from pathlib import Path


def costattr_home() -> Path:
    env = os.environ.get("COSTATTR_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("costattr", appauthor=False))


def _split_list(value: str) -> list[Path]:
    return [Path(p.strip()).expanduser() for p in value.split(",") if p.strip()]


def claude_project_dirs() -> list[Path]:
    """Claude Code `projects/` directories, in the order Claude Code itself honours them.

    CLAUDE_CONFIG_DIR is a comma list whose entries may be the config dir or its projects/ dir;
    without it both the XDG location and ~/.claude are scanned (Claude Code has used both).
    """
    env = os.environ.get("CLAUDE_CONFIG_DIR")
    if env:
        roots = _split_list(env)
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME")
        xdg_root = Path(xdg).expanduser() if xdg else Path.home() / ".config"
        roots = [xdg_root / "claude", Path.home() / ".claude"]
    out: list[Path] = []
    for root in roots:
        projects = root if root.name == "projects" else root / "projects"
        if projects not in out:
            out.append(projects)
    return out


def codex_homes() -> list[Path]:
    env = os.environ.get("CODEX_HOME")
    return _split_list(env) if env else [Path.home() / ".codex"]


def codex_session_dirs() -> list[Path]:
    out: list[Path] = []
    for home in codex_homes():
        out += [home / "sessions", home / "archived_sessions"]
    return out
