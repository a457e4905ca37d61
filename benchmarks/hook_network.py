#!/usr/bin/env python3
"""Does a shared backend cost a commit anything, whatever its server does? And does the shared
file stay publishable at 20,000 sessions?

    python benchmarks/hook_network.py [--runs 7] [--scale 20000] [--modes ok,hang,...]
    python benchmarks/hook_network.py --small          # CI: 3 runs, 2,000 sessions

Part 1, `git commit` with the post-commit hook and the memory API as the shared backend, against
the real HTTP server of tests/fake_memory_api.py behaving in each way it can: healthy, hanging,
dripping its headers or its body one byte every 1.5 s, answering after 5 s, unreachable; then
commits with nothing new while records wait for a server that hangs or is unreachable (the fast
path, starting the background publisher). Each commit brings one new response unless said
otherwise. Figures are medians, as ratios to `git commit` in the same repository without the
hook (one time: "without hook"), and to the healthy server. The background publisher is waited
for between two commits, outside the timed part, so every timed commit is one that starts it.

Part 2, the shared file at N sessions (each with a closed, an open and an unattributed record,
a PR link for one in ten, spread over the last 12 months): its size in one file, the first
publish into it (which moves the older months out of `agent-costs`), then a publish (GET + PUT of
`agent-costs` only) and a full read, against the same server in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the fake memory API server
sys.path.insert(0, str(ROOT / "benchmarks"))

from fake_memory_api import API_KEY, FakeMemoryApi  # noqa: E402
from ledger_scale import history  # noqa: E402

from costattr.hookfast import wait_for_publisher  # noqa: E402
from costattr.ledger.memory_api import MemoryApiLedger  # noqa: E402
from costattr.ledger.records import AnyRecord, SpendRecord, digest  # noqa: E402
from costattr.ledger.view import session_entries  # noqa: E402
from costattr.testing.transcripts import ClaudeSessionWriter  # noqa: E402

PUBLISHER_TIMEOUT_S = "3"  # the background run's deadline: a hanging server costs the benchmark this per commit
# (label, server mode, new spend in the commit)
MODES = [
    ("healthy", "ok", True),
    ("hanging", "hang", True),
    ("header drip (1 B / 1.5 s)", "header-drip", True),
    ("body drip (1 B / 1.5 s)", "body-drip", True),
    ("slow (answers after 5 s)", "slow", True),
    ("unreachable", "down", True),
    ("nothing new, healthy", "ok", False),
    ("nothing new, records wait, hanging", "hang", False),
    ("nothing new, records wait, unreachable", "down", False),
]


def _env(root: Path, api: FakeMemoryApi) -> dict[str, str]:
    (root / "gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n"
                                    "[init]\n\tdefaultBranch = main\n")
    return {**os.environ, "COSTATTR_HOME": str(root / "home"), "CLAUDE_CONFIG_DIR": str(root / "claude"),
            "CODEX_HOME": str(root / "codex"), "HOME": str(root), "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1", "COSTATTR_LEDGER": "memory-api", "COSTATTR_API_URL": api.url,
            "COSTATTR_API_USER": api.user, "COSTATTR_API_KEY": API_KEY, "COSTATTR_API_TIMEOUT": PUBLISHER_TIMEOUT_S}


def _timed_commit(repo: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "bench"], cwd=repo, env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def _set_mode(api: FakeMemoryApi, mode: str) -> None:
    if mode == "down":
        api.stop()
        return
    if api._server is None:
        api.start()
    api.mode = mode


def commits(runs: int, modes: list[tuple[str, str, bool]]) -> tuple[float, dict[str, float]]:
    """Median `git commit` time without the hook, and with it in each mode."""
    api = FakeMemoryApi().start()
    api.delay, api.drip = 5.0, 1.5
    with tempfile.TemporaryDirectory(prefix="costattr-hooknet-") as tmp:
        root = Path(tmp)
        env = _env(root, api)
        repo = root / "repo"
        subprocess.run(["git", "init", "-q", str(repo)], env=env, check=True)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "--allow-empty", "-m", "initial"], env=env,
                       check=True)
        session = ClaudeSessionWriter(root / "claude" / "projects", cwd=str(repo), branch="main", seed=3)
        session.response(output=200)
        baseline = statistics.median(_timed_commit(repo, env) for _ in range(runs))
        py = [sys.executable, "-m", "costattr"]
        subprocess.run([*py, "install"], cwd=repo, env=env, check=True, capture_output=True)
        subprocess.run([*py, "upload"], cwd=repo, env=env, check=True, capture_output=True)  # warm cache
        out: dict[str, float] = {}
        for label, mode, new_spend in modes:
            if not new_spend and mode != "ok":  # records must wait: one commit while the server is away
                _set_mode(api, "down")
                session.response(output=200)
                _timed_commit(repo, env)
                if not wait_for_publisher(60):
                    raise SystemExit("the background publisher outlived its deadline")
            times = []
            for _ in range(runs):
                _set_mode(api, mode)
                if new_spend:
                    session.response(output=200)
                times.append(_timed_commit(repo, env))
                _set_mode(api, "down")  # ends what hangs or drips now: the next commit starts afresh
                if not wait_for_publisher(60):
                    raise SystemExit("the background publisher outlived its deadline")
            out[label] = statistics.median(times)
            if not new_spend and mode != "ok":
                _set_mode(api, "ok")  # deliver what waits before the next mode
                subprocess.run([*py, "sync"], cwd=repo, env=env, capture_output=True)
        api.stop()
    return baseline, out


# ----------------------------------------------------------------------------------------------
# The shared file at scale


def _month(n: int) -> str:
    now = datetime.now(UTC)
    index = now.year * 12 + now.month - 1 - n
    return f"{index // 12}-{index % 12 + 1:02d}"


def _in_month(rec: SpendRecord, month: str, **changes: object) -> SpendRecord:
    """`rec` with its timestamps moved to `month` (same day and time)."""
    def move(ts: str) -> str:
        return month + ts[7:]

    parts = tuple(dataclasses.replace(p, bucket=move(p.bucket)) for p in rec.parts)
    return dataclasses.replace(rec, first_ts=move(rec.first_ts), last_ts=move(rec.last_ts), parts=parts,
                               recorded_at=move(rec.first_ts), **changes)  # type: ignore[arg-type]


def spread_history(n: int) -> list[AnyRecord]:
    """benchmarks/ledger_scale.py's history, session i moved to month i % 12 before this one."""
    return [_in_month(r, _month(int(r.session_id.rsplit("-", 1)[1]) % 12)) if isinstance(r, SpendRecord) else r
            for r in history(n)]


def _one_more(tag: str) -> SpendRecord:
    """One new record of this month, as a hook publishes it."""
    template = next(r for r in history(1) if isinstance(r, SpendRecord))
    return _in_month(template, _month(0), id=digest("bench", tag), session_id=f"live-{tag}")


def scale(n: int) -> dict[str, float]:
    api = FakeMemoryApi().start()
    try:
        records = spread_history(n)
        entries = session_entries(records)
        with api.lock:
            api.files["agent-costs"] = (1, entries)
        one_file = len(json.dumps({"path": "agent-costs", "data": entries}).encode())
        led = MemoryApiLedger(api.url, api.user, API_KEY, timeout=600, max_bytes=1 << 30)
        t = time.perf_counter()
        led.add([_one_more("first")])  # moves the older months out
        first = time.perf_counter() - t
        head = len(json.dumps({"path": "agent-costs", "data": api.data()}).encode())
        steady = []
        for i in range(3):
            t = time.perf_counter()
            led.add([_one_more(f"next-{i}")])
            steady.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = led.read()
        full_read = time.perf_counter() - t
        # Every record read back (ledger_scale's history has one invalid link, PR 0: set aside, kept).
        assert len(got.records) + got.set_aside.count == len(records) + 4, (len(got.records), len(records))
    finally:
        api.stop()
    return {"sessions": n, "records": len(records), "one_file": one_file, "first": first, "head": head,
            "publish": statistics.median(steady), "read": full_read}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--scale", type=int, default=20000, help="sessions in the shared file (0: skip part 2)")
    ap.add_argument("--small", action="store_true", help="CI: 3 runs, 2,000 sessions")
    ap.add_argument("--modes", help="comma list of server modes to run (ok,hang,header-drip,body-drip,slow,down); "
                                    "default all. A costattr whose hook waits on the server never ends a drip")
    args = ap.parse_args()
    runs, sessions = (3, 2000) if args.small else (args.runs, args.scale)
    chosen = [m for m in MODES if args.modes is None or m[1] in args.modes.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f} at start; medians of {runs}")
    baseline, with_hook = commits(runs, chosen)
    healthy = with_hook.get("healthy", baseline)
    print(f"\n`git commit` without the hook: {baseline * 1000:.0f} ms\n")
    print("| server | commit with hook | x without hook | x healthy |")
    print("|---|---|---|---|")
    for label, took in with_hook.items():
        print(f"| {label} | {took * 1000:.0f} ms | {took / baseline:.2f}x | {took / healthy:.2f}x |")
    if sessions:
        m = scale(sessions)
        mb = 1 / 1e6
        print(f"\nshared file: {m['sessions']:,} sessions, {m['records']:,} records")
        print("| one file (v2) | first publish (moves 10 months out) | agent-costs after | publish | read all |")
        print("|---|---|---|---|---|")
        print(f"| {m['one_file'] * mb:.1f} MB | {m['first']:.2f} s | {m['head'] * mb:.1f} MB | {m['publish']:.2f} s "
              f"| {m['read']:.2f} s |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
