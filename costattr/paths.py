"""Where transcripts live and where costattr keeps its own state.

One environment variable, COSTATTR_HOME, moves all of costattr's state (ledger, cursors, cache,
logs), as LLM_USER_PATH does for simonw/llm, and the user's own settings with it (the repositories
trusted to choose a shared backend): a second COSTATTR_HOME is a second, separate costattr.
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


def user_config_dir() -> Path:
    """Where the user's own settings live (never a repository's): COSTATTR_HOME when it is set,
    else the platform's config directory (~/.config/costattr on Linux)."""
    env = os.environ.get("COSTATTR_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("costattr", appauthor=False))


def is_state_path(path: Path) -> bool:
    """Whether `path` is COSTATTR_HOME or inside it (its files are private to the user)."""
    home = os.path.abspath(costattr_home())
    where = os.path.abspath(path)
    return where == home or where.startswith(home.rstrip(os.sep) + os.sep)


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
