"""Big real histories and notes trees for the git-notes tests, built in a second with `git fast-import`.

fast-import writes notes the way git does: past 256 notes the tree is fanned out (`ab/cdef…`),
the layout `git notes merge`, `git notes add` and other tools leave behind. 10,000 `git notes add`
calls would take minutes; one fast-import stream takes about a second.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builders import spend

from costattr import gitctx
from costattr.ledger.records import SpendRecord
from costattr.testing.gitrepo import clean_env

# The git configuration of a module-scoped fixture (built before conftest isolates each test):
# never the developer's own.
ISOLATED_GIT = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def _fast_import(repo: Path, stream: str, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet", *args], input=stream.encode(),
                   env=clean_env(ISOLATED_GIT), check=True, capture_output=True)


def import_commits(repo: Path, n: int, branch: str = "main") -> list[str]:
    """`n` empty commits on `branch` (on top of it, if it exists); their ids, oldest first."""
    marks = repo / ".git" / "costattr-test-marks" if (repo / ".git").is_dir() else repo / "costattr-test-marks"
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
                          capture_output=True, text=True, env=clean_env(ISOLATED_GIT), check=False).stdout.strip()
    parts = []
    for i in range(1, n + 1):
        message = f"change {i}\n"
        parent = f"from {head}\n" if i == 1 and head else ""
        parts.append(f"commit refs/heads/{branch}\nmark :{i}\ncommitter Dev <dev@example.com> {1_700_000_000 + i} +0000\n"
                     f"data {len(message)}\n{message}{parent}\n")
    _fast_import(repo, "".join(parts), f"--export-marks={marks}")
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    marks.unlink()
    return [by_mark[f":{i}"] for i in range(1, n + 1)]


def import_notes(repo: Path, notes: Mapping[str, str], ref: str = "refs/notes/costattr") -> None:
    """One notes commit on `ref` (on top of it, if it exists) adding `notes` (commit id -> text)."""
    tip = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", ref], capture_output=True,
                         text=True, env=clean_env(ISOLATED_GIT), check=False).stdout.strip()
    parts = [f"commit {ref}\ncommitter Dev <dev@example.com> 1800000000 +0000\ndata 6\nnotes\n"
             + (f"from {tip}\n" if tip else "")]
    for sha, text in notes.items():
        body = text.encode()
        parts.append(f"N inline {sha}\ndata {len(body)}\n{text}")
    _fast_import(repo, "".join(parts) + "\n")


def tree_paths(repo: Path, ref: str = "refs/notes/costattr") -> list[str]:
    """Every blob path of the notes tree (`ab/cdef…` when fanned out)."""
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", ref], capture_output=True,
                         text=True, env=clean_env(ISOLATED_GIT), check=True).stdout
    return out.splitlines()


def repo_id(path: Path) -> str:
    """The repository identity the hook writes in records (origin's URL: a path in these tests)."""
    return gitctx.discover(path).repo_id


def rec(path: Path, session: str, **kw: Any) -> SpendRecord:
    """A spend record of the repository at `path`."""
    return spend(session, repo=repo_id(path), **kw)
