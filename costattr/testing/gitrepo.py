"""Build real git repositories for tests and the demo, with the git binary and a clean environment.

Real repositories (not mocks) because what matters is how costattr copes with what git actually
writes: linked worktrees, detached HEADs, unborn branches, rebases in progress.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Variables a hook (or an outer git command) exports that would redirect a child git to another
# repository or index. Tests run git inside tmp repos and must never touch the developer's own.
_DROP = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_PREFIX", "GIT_NAMESPACE", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
)

# An identity so commits work on machines (CI, containers) with no user.name configured.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Test Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    for k, v in _IDENTITY.items():
        env.setdefault(k, v)
    env["GIT_TERMINAL_PROMPT"] = "0"  # a test must fail, never wait for a password
    if extra:
        env.update(extra)
    return env


def git(path: Path | str, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
    """Run `git -C path args...` and return stdout without the final newline.

    Raises RuntimeError with git's stderr on failure (when check is true), so a failing test shows why.
    """
    proc = subprocess.run(
        ["git", "-C", str(path), *args],
        capture_output=True,
        text=True,
        env=clean_env(env),
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed ({proc.returncode}) in {path}:\n{proc.stderr}{proc.stdout}")
    return proc.stdout.removesuffix("\n")


def make_repo(path: Path | str, *, branch: str = "main", bare: bool = False, origin: str | None = None) -> Path:
    """Create an empty repository at `path` (made if missing) on `branch`; return its path."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    args = ["init", "-q", "-b", branch]
    if bare:
        args.append("--bare")
    # No core.hooksPath or template tricks: tests of `costattr install` need a repo as git makes it.
    git(p, *args)
    if origin:
        git(p, "remote", "add", "origin", origin)
    return p


def commit(path: Path | str, message: str = "change", files: Mapping[str, str] | None = None) -> str:
    """Write `files` (relative path -> text), stage everything and commit; return the new sha.

    With no files the commit is empty (--allow-empty), which is all most tests need.
    """
    p = Path(path)
    for rel, text in (files or {}).items():
        target = p / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    if files:
        git(p, "add", "-A")
    git(p, "commit", "-q", "--allow-empty", "--no-verify", "-m", message)
    return git(p, "rev-parse", "HEAD")
