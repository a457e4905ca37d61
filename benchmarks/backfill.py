#!/usr/bin/env python3
"""How fast is `costattr backfill` on six months of history? Prints throughput, not a pass/fail.

    python benchmarks/backfill.py [--months 6] [--branches 120] [--sessions 300] [--commits 3000]

Builds, in a temporary directory, a repository with `--commits` commits over `--months` months
(written with `git fast-import`, committer times set): main plus `--branches` feature branches,
each merged into main with a merge commit; two thirds of them then deleted, so their commits are
found through the merges. `--sessions` Claude Code sessions (written by the transcript generator)
ran on those branches while they were worked on. Then it times, in-process:
- reading git history (`gitctx.branch_history`),
- a first backfill (scan, coverage, attribution, one transaction),
- a second backfill (every request already covered),
and prints commits, sessions and requests per second, and where the requests went.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build(root: Path, months: int, branches: int, sessions: int, commits: int, rng: random.Random) -> int:
    """The repository and the transcripts; returns the number of responses written."""
    from costattr.testing.gitrepo import git, make_repo
    from costattr.testing.transcripts import ClaudeSessionWriter

    repo = make_repo(root / "app", origin="git@github.com:acme/app.git")
    start = datetime(2026, 5, 1, 9, tzinfo=UTC)
    span = timedelta(days=30 * months)
    per_branch = max(1, (commits - branches) // (branches + 1))
    stream: list[str] = []
    mark = 0

    def commit(ref: str, when: datetime, message: str, parents: list[int]) -> int:
        nonlocal mark
        mark += 1
        data = message.encode()
        stream.append(f"commit {ref}\nmark :{mark}\ncommitter Dev <dev@example.com> {int(when.timestamp())} +0000\n"
                      f"data {len(data)}\n{message}\n")
        if parents:
            stream.append(f"from :{parents[0]}\n" + "".join(f"merge :{p}\n" for p in parents[1:]))
        stream.append(f"M 644 inline f{mark}.txt\ndata 2\n{mark % 10}\n\n")
        return mark

    main = commit("refs/heads/main", start, "initial", [])
    slots: list[tuple[str, datetime, datetime]] = []  # branch, first, last commit time
    for b in range(branches):
        t = start + span * (b / branches)
        name = f"feature/PROJ-{b + 1}-work"
        tip = main
        first = t
        for c in range(per_branch):
            t += timedelta(minutes=rng.randint(20, 240))
            tip = commit(f"refs/heads/{name}", t, f"step {c} of PROJ-{b + 1}", [tip])
        slots.append((name, first, t))
        t += timedelta(minutes=30)
        main = commit("refs/heads/main", t, f"Merge branch '{name}'", [main, tip])
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input="".join(stream).encode(), check=True)
    for name, _first, _last in slots[: 2 * len(slots) // 3]:
        git(repo, "branch", "-q", "-D", name)
    git(repo, "checkout", "-q", "-f", "main")

    projects = root / "claude" / "projects"
    responses = 0
    for s in range(sessions):
        name, first, last = slots[s % len(slots)]
        when = first + (last - first) * rng.random()
        w = ClaudeSessionWriter(projects, f"sess-{s:04d}", str(repo), branch=name, start=when, seed=s,
                                autoflush=False)
        for _ in range(rng.randint(10, 40)):
            w.user_prompt()
            w.response(input=5, output=rng.randint(100, 1500), cache_write_5m=2000, cache_read=rng.randint(0, 90000))
            w.clock.advance(rng.uniform(20, 600))
            responses += 1
        w.close()
    return responses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", type=int, default=6)
    ap.add_argument("--branches", type=int, default=120)
    ap.add_argument("--sessions", type=int, default=300)
    ap.add_argument("--commits", type=int, default=3000)
    ap.add_argument("--keep", action="store_true", help="keep the repository, transcripts and ledger")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="costattr-bench-backfill-"))
    os.environ.update(COSTATTR_HOME=str(root / "home"), CLAUDE_CONFIG_DIR=str(root / "claude"),
                      CODEX_HOME=str(root / "codex"), GIT_CONFIG_NOSYSTEM="1", HOME=str(root))
    t0 = time.perf_counter()
    responses = build(root, args.months, args.branches, args.sessions, args.commits, random.Random(19))
    built = time.perf_counter() - t0

    from costattr import gitctx
    from costattr.backfill import backfill
    from costattr.config import load_config

    git = gitctx.discover(root / "app")
    cfg = load_config(git.workdir)
    t0 = time.perf_counter()
    history = gitctx.branch_history(git.workdir)
    t_history = time.perf_counter() - t0
    n_commits = int(subprocess.run(["git", "-C", str(git.workdir), "rev-list", "--count", "--all"],
                                   capture_output=True, text=True, check=True).stdout)
    t0 = time.perf_counter()
    first = backfill(git, cfg)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = backfill(git, cfg)
    t_second = time.perf_counter() - t0

    print(f"history: {n_commits} commits, {len(history.commits)} branches "
          f"({sum(1 for e in history.evidence.values() if e == 'merged')} known only from merges); "
          f"{args.sessions} sessions, {responses} responses (built in {built:.1f} s)")
    print(f"git history read   {t_history:7.2f} s  {n_commits / t_history:9.0f} commits/s")
    print(f"first backfill     {t_first:7.2f} s  {first.requests / t_first:9.0f} requests/s  "
          f"{first.sessions / t_first:7.1f} sessions/s (history read included)")
    print(f"second backfill    {t_second:7.2f} s  {second.requests} requests recorded (all covered)")
    print(f"attributed: closed {len(first.attribution.of_state('closed'))} records, "
          f"open {sum(n for n, _ in first.left_open().values())} requests, "
          f"unattributed {sum(n for n, _ in first.unattributed().values())} requests; "
          f"{len(first.by_issue())} issues, ${first.cost:.2f}")
    if args.keep:
        print(f"(kept in {root})")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
