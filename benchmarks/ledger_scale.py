#!/usr/bin/env python3
"""Does a year of history cost anything per commit? The hook and the report against ledger size.

    python benchmarks/ledger_scale.py --sessions 1000,10000,100000 [--runs 5]
    python benchmarks/ledger_scale.py --small            # CI: 1k and 5k sessions, 3 runs

For each ledger size it builds a local store holding N sessions of history (each with an open,
a closed and an unattributed record, a PR link for one session in ten: about 3.1 N records), in a
real repository whose transcripts hold one live session, then measures as medians:
- hook: costattr's own time for one upload that records one new response (the use case,
  `record.upload`, in-process: no Python start-up, no imports), and the same as a whole process;
- report: `costattr report --by issue --format json` over the whole ledger (a whole process).
The figure that matters is the growth: hook time at N over hook time at the smallest N (flat
means O(what changed)), and report throughput in records per second.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from costattr.ledger.records import (  # noqa: E402
    LinkRecord,
    Part,
    SpendRecord,
    bucket_of,
    keys_digest,
    link_id,
    spend_id,
)
from costattr.ledger.store import LocalStore  # noqa: E402
from costattr.models import Tokens  # noqa: E402
from costattr.testing.transcripts import ClaudeSessionWriter  # noqa: E402

REPO = "acme/bench"


def history(n: int, seed: int = 1) -> list[SpendRecord | LinkRecord]:
    rng = random.Random(seed)
    out: list[SpendRecord | LinkRecord] = []
    for i in range(n):
        sid = f"hist-{i:07d}"
        day = 1 + i % 28
        branch = f"feature/PROJ-{i % 5000}-x"
        for state, br, commit in (("closed", branch, f"{i:040x}"), ("open", f"eng-{i % 700}-y", None),
                                  ("unattributed", None, None)):
            ts = f"2026-10-{day:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00.000Z"
            parts = (Part(bucket_of(ts), "claude-sonnet-4-5-20250929", 3, 0, Tokens(30, 900, 4000, 0, 20000, 0),
                          Decimal("0.0411"), Decimal(0)),)
            issue = (br.split("/")[-1].rsplit("-", 1)[0].upper() if br else None)
            out.append(SpendRecord(
                id=spend_id(REPO, sid, state, br, commit, None, keys_digest([f"{sid}-{state}"])), session_id=sid,
                tool="claude", repo=REPO, state=state, branch=br, commit=commit, issue=issue,  # type: ignore[arg-type]
                related=(), message="work" if commit else None, note=None, first_ts=ts, last_ts=ts, parts=parts,
                host="bench", author="Bench", cwd="/src/bench", recorded_at=ts))
        if i % 10 == 0:
            out.append(LinkRecord(link_id(REPO, sid, branch, i), sid, REPO, branch, i))
    return out


def build(root: Path, n: int) -> tuple[Path, dict[str, str], ClaudeSessionWriter]:
    env = {**os.environ, "COSTATTR_HOME": str(root / "home"), "CLAUDE_CONFIG_DIR": str(root / "claude"),
           "CODEX_HOME": str(root / "codex"), "HOME": str(root), "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
           "GIT_CONFIG_NOSYSTEM": "1", "COSTATTR_NO_FAST_PATH": "1"}
    (root / "gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n"
                                    "[init]\n\tdefaultBranch = main\n")
    repo = root / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], env=env, check=True)
    subprocess.run(["git", "-C", str(repo), "remote", "add", "origin", f"git@github.com:{REPO}.git"], env=env,
                   check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "initial"], env=env, check=True)
    store = LocalStore(root / "home" / "ledger.sqlite")
    records = history(n)
    with store.write() as tx:
        tx.insert(records)
    store.close()
    live = ClaudeSessionWriter(root / "claude" / "projects", cwd=str(repo), branch="main", seed=5)
    live.response(output=100)
    return repo, env, live


def timed_process(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def hook_in_process(repo: Path, env: dict[str, str]) -> float:
    """costattr's own time for one upload (the hook's use case), imports already paid."""
    code = (
        "import time, sys\n"
        "from pathlib import Path\n"
        "from costattr import gitctx\nfrom costattr.config import load_config\nfrom costattr.record import upload\n"
        "t = time.perf_counter()\n"
        "g = gitctx.discover(Path.cwd()); upload(g, load_config(g.workdir))\n"
        "print(time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(n: int, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="costattr-scale-") as tmp:
        root = Path(tmp)
        repo, env, live = build(root, n)
        commit = ["git", "commit", "-q", "--allow-empty", "-m", "bench"]
        hook_self, hook_proc = [], []
        subprocess.run([sys.executable, "-m", "costattr", "upload"], cwd=repo, env=env, check=True,
                       capture_output=True)  # warm the parse cache: the first hook after install is its own figure
        for _ in range(runs):
            live.response(output=100)
            subprocess.run(commit, cwd=repo, env=env, check=True)
            hook_self.append(hook_in_process(repo, env))
            live.response(output=100)
            subprocess.run(commit, cwd=repo, env=env, check=True)
            hook_proc.append(timed_process([sys.executable, "-m", "costattr", "upload", "--hook"], repo, env))
        report = [timed_process([sys.executable, "-m", "costattr", "report", "--by", "issue", "--format", "json"],
                                repo, env) for _ in range(max(1, runs // 2))]
        records = LocalStore(root / "home" / "ledger.sqlite").count()
        live.close()
    return {"sessions": n, "records": records, "hook_self": statistics.median(hook_self),
            "hook_process": statistics.median(hook_proc), "report": statistics.median(report)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", default="1000,10000,100000", help="comma list of ledger sizes, in sessions")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="CI: 1k and 5k sessions, 3 runs")
    args = ap.parse_args()
    sizes = [1000, 5000] if args.small else [int(s) for s in args.sessions.split(",")]
    runs = 3 if args.small else args.runs
    load = os.getloadavg()[0]
    print(f"ledger scale: medians of {runs}; load average {load:.2f} at start")
    print(f"{'sessions':>9} {'records':>8} {'hook (costattr)':>16} {'x smallest':>10} {'hook (process)':>15} "
          f"{'report':>8} {'records/s':>10}")
    first: float | None = None
    for n in sizes:
        m = measure(n, runs)
        first = first or m["hook_self"]
        print(f"{m['sessions']:>9,} {m['records']:>8,} {m['hook_self']:>15.3f}s {m['hook_self'] / first:>9.2f}x "
              f"{m['hook_process']:>14.3f}s {m['report']:>7.2f}s {m['records'] / m['report']:>10,.0f}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
