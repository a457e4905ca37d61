"""Shared pieces of the reliability suite (tests/test_reliability_*.py, tests/test_secrets.py).

Everything runs for real: `python -m costattr` processes in real git repositories over
transcripts written by costattr.testing.transcripts (the realistic writers). Figures are compared
with those of a single clean upload made in a fresh COSTATTR_HOME over the same transcripts.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from costattr.ledger.records import dec
from costattr.ledger.store import STORE_NAME, LocalStore
from costattr.ledger.view import session_entries, visible
from costattr.testing.gitrepo import commit, git, make_repo
from costattr.testing.transcripts import ClaudeSessionWriter, CodexRolloutWriter

PY = sys.executable
HOOK = ("upload", "--hook")


def env_with(**overrides: str | None) -> dict[str, str]:
    """The (test-isolated) environment with some variables set or removed."""
    env = dict(os.environ)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 120,
            input_: str | None = None) -> subprocess.CompletedProcess[str]:
    # Undecodable output bytes come back as lone surrogates, for the tests to find (never a crash here).
    return subprocess.run([PY, "-m", "costattr", *args], cwd=cwd, env=dict(env or os.environ), capture_output=True,
                          text=True, errors="surrogateescape", timeout=timeout, check=False, input=input_,
                          stdin=None if input_ is not None else subprocess.DEVNULL)


def start_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([PY, "-m", "costattr", *args], cwd=cwd, env=dict(env or os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)


def ledger_file(home: Path) -> Path:
    return home / STORE_NAME


def read_records(home: Path, set_aside: int = 0) -> dict[str, Any]:
    """The store's records, validated by the real decoder; a record set aside fails the test
    (unless the test put exactly `set_aside` bad ones there)."""
    path = ledger_file(home)
    if not path.exists():
        return {}
    with LocalStore(path) as store:
        read = store.read()
    assert read.set_aside.count == set_aside, read.set_aside.summary()
    return read.records


def read_entries(home: Path) -> dict[str, Any]:
    """The per-session entry view (CloudClawer shape) of the store's records."""
    return session_entries(read_records(home))


def figures(home: Path, set_aside: int = 0) -> dict[str, dict[str, Any]]:
    """Everything a report shows, per session: the entry's figures and its spend per (state,
    branch, commit). Not the records themselves: two hooks racing may record one session's new
    requests in two records where one clean upload writes one, with the same figures.
    `set_aside`: the number of invalid records the test planted (left out, as reports leave them)."""
    records = read_records(home, set_aside)
    out: dict[str, dict[str, Any]] = {}
    for sid, entry in session_entries(records).items():
        out[sid] = {k: v for k, v in entry.items() if k not in ("updated_at", "branch", "records")}
    by: dict[str, dict[tuple[Any, ...], list[Any]]] = {}
    for s in visible(records):
        key = (s.record.state, s.branch, s.commit, s.issue)
        slot = by.setdefault(s.session_id, {}).setdefault(key, [0, Decimal(0)])
        slot[0] += s.record.requests
        slot[1] += s.record.cost
    for sid, groups in by.items():
        # dec(): the exact amount without trailing zeros, which depend on how many parts were summed
        out[sid]["spend"] = sorted((*k[:2], k[2] or "", k[3] or "", n, dec(c)) for k, (n, c) in groups.items())
    return out


def total_cost(figs: Mapping[str, Mapping[str, Any]]) -> float:
    return round(sum(f["cost_usd"] for f in figs.values()), 10)


def leftovers(home: Path) -> dict[str, list[str]]:
    """Files a crash or a race may leave behind: temp files and moved-aside copies."""
    out: dict[str, list[str]] = {"tmp": [], "corrupt": []}
    if not home.exists():
        return out
    for p in home.rglob("*"):
        if p.name.endswith(".tmp"):
            out["tmp"].append(str(p.relative_to(home)))
        if ".corrupt-" in p.name:
            out["corrupt"].append(str(p.relative_to(home)))
    return out


# ---------------------------------------------------------------------------------------------
# A repository with a linked worktree and realistic transcripts in both


@dataclass
class World:
    repo: Path
    wt: Path
    claude_projects: Path
    codex_home: Path
    rng: random.Random
    writers: list[ClaudeSessionWriter] = field(default_factory=list)
    codex: list[CodexRolloutWriter] = field(default_factory=list)

    @property
    def work_trees(self) -> tuple[Path, Path]:
        return self.repo, self.wt

    def grow(self, n: int = 3) -> int:
        """Append `n` responses to randomly chosen sessions (as a live assistant would)."""
        for _ in range(n):
            if self.codex and self.rng.random() < 0.25:
                cx = self.rng.choice(self.codex)
                cx.token_count(input=self.rng.randint(1000, 40000), cached=self.rng.randint(0, 30000),
                               output=self.rng.randint(10, 2000), reasoning=self.rng.randint(0, 300))
                continue
            w = self.rng.choice(self.writers)
            w.response(input=self.rng.randint(1, 50), output=self.rng.randint(5, 3000),
                       cache_write_5m=self.rng.randint(0, 20000), cache_read=self.rng.randint(0, 90000),
                       blocks=self.rng.randint(1, 3))
        return n

    def close(self) -> None:
        for w in self.writers:
            w.close()
        for c in self.codex:
            c.close()


def build_world(tmp_path: Path, env_dirs: Mapping[str, Path], *, seed: int = 7, sessions: int = 4) -> World:
    """repo (on feature/PROJ-7-login) + linked worktree wt (on ENG-42-cache), one commit each, and
    Claude sessions (with subagents and progress replays), a Codex rollout and a foreign session."""
    rng = random.Random(seed)
    repo = make_repo(tmp_path / "app")
    commit(repo, "initial", {"README.md": "app\n"})
    git(repo, "checkout", "-q", "-b", "feature/PROJ-7-login")
    commit(repo, "login: first cut")
    wt = tmp_path / "app-wt"
    git(repo, "worktree", "add", "-q", "-b", "ENG-42-cache", str(wt))
    commit(wt, "cache: first cut")
    projects = env_dirs["claude"] / "projects"
    world = World(repo, wt, projects, env_dirs["codex"], rng)
    for i in range(sessions):
        in_wt = i % 2 == 1
        cwd = str((wt if in_wt else repo) / ("src" if i % 3 == 0 else ""))
        branch = "ENG-42-cache" if in_wt else "feature/PROJ-7-login"
        w = ClaudeSessionWriter(projects, cwd=cwd.rstrip("/"), branch=branch, rng=rng)
        w.user_prompt()
        resp = w.response(input=3, output=200, cache_write_5m=4000, cache_read=12000)
        w.user_tool_result(resp.tool_use_id)
        w.response(input=5, output=900, cache_read=16000, branch="main")  # spend recorded on main, not committed
        if i == 0:  # a subagent, replayed in the parent file: counted once
            sub = w.subagent()
            sub_resp = sub.response(input=2, output=450, cache_write_5m=900, cache_read=3000)
            w.progress_replay(sub_resp, agent_id=sub.agent_id)
            sub.close()
        w.bookkeeping()
        world.writers.append(w)
    cx = CodexRolloutWriter(env_dirs["codex"], cwd=str(repo), branch="feature/PROJ-7-login", rng=rng)
    cx.turn()
    cx.token_count(input=20000, cached=15000, output=400, reasoning=100)
    cx.reemit()
    cx.token_count(input=26000, cached=20000, output=700, reasoning=200)
    world.codex.append(cx)
    # Another repository's session: never attributed here.
    other = ClaudeSessionWriter(projects, cwd=str(tmp_path / "elsewhere"), branch="main", rng=rng)
    other.response(output=77)
    other.close()
    return world


def clean_reference(cwds: Sequence[Path], home: Path, env: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """The figures of a single clean upload per work tree, in a fresh COSTATTR_HOME."""
    ref_env = dict(env or os.environ)
    ref_env["COSTATTR_HOME"] = str(home)
    for cwd in cwds:
        proc = run_cli(*HOOK, cwd=cwd, env=ref_env)
        assert proc.returncode == 0 and "not recorded" not in proc.stderr, proc.stderr
    return figures(home)


def wait_all(procs: Iterable[subprocess.Popen[str]], timeout: float = 120) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def store_dump(home: Path) -> list[str]:
    """Everything the store holds (every table, as SQL), to compare states before and after a
    kill. Opened as the next costattr process would: a killed writer's WAL is recovered first."""
    conn = sqlite3.connect(ledger_file(home))
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def assert_store_intact(home: Path) -> None:
    """No store yet, or one SQLite's own integrity check passes; and the ledger is valid
    (assert_valid_ledger)."""
    assert_valid_ledger(home)
    if not ledger_file(home).exists():
        return
    conn = sqlite3.connect(ledger_file(home))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def assert_valid_ledger(home: Path) -> None:
    """The store opens, every record validates, and nothing was moved aside."""
    read_records(home)
    assert not leftovers(home)["corrupt"], leftovers(home)


def diff_figures(got: Mapping[str, Mapping[str, Any]], want: Mapping[str, Mapping[str, Any]]) -> str:
    """A readable account of how two ledgers' figures differ (for assertion messages)."""
    out = []
    for sid in sorted(set(got) | set(want)):
        a, b = got.get(sid), want.get(sid)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"{sid[:8]}: {'missing' if a is None else 'unexpected'}")
            continue
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                out.append(f"{sid[:8]} {k}: got {a.get(k)!r} want {b.get(k)!r}")
    return "\n".join(out)
