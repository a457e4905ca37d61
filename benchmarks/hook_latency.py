"""How long the post-commit hook adds to `git commit`, and whether it grows with the corpus.

    python benchmarks/hook_latency.py --sizes 5MB,100MB,400MB [--runs 5]

For each corpus size (the seeded corpus of benchmarks/run.py, with a session of this repository
added to it) it measures, as medians:
- `git commit` without the hook (the baseline),
- the hook when nothing new was written (the common commit): fast path, and full path
  (COSTATTR_NO_FAST_PATH=1, the whole upload with a warm parse cache),
- the hook after a response was appended to the session (a real incremental upload),
- the first hook after install (cold cache: every transcript is read once).
Figures are ratios to the baseline commit and to Python's own start-up, not timed assertions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import DEFAULT_CACHE, ensure_corpus, label, parse_size  # noqa: E402

from costattr.testing.transcripts import ClaudeSessionWriter  # noqa: E402


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def median_of(runs: int, fn) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(fn() for _ in range(runs))


def measure(size: int, runs: int, cache: Path) -> dict[str, float]:
    corpus = ensure_corpus(cache, size, seed=1)
    with tempfile.TemporaryDirectory(prefix="costattr-hook-") as tmp:
        root = Path(tmp)
        claude = root / "claude"
        shutil.copytree(corpus.claude, claude, copy_function=os.link)  # hard links: no copy of the bytes
        env = {**os.environ, "COSTATTR_HOME": str(root / "home"), "CLAUDE_CONFIG_DIR": str(claude),
               "CODEX_HOME": str(corpus.codex), "HOME": str(root), "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
               "GIT_CONFIG_NOSYSTEM": "1"}
        (root / "gitconfig").write_text("[user]\n\tname = Bench\n\temail = bench@example.com\n"
                                        "[init]\n\tdefaultBranch = main\n")
        repo = root / "repo"
        subprocess.run(["git", "init", "-q", str(repo)], env=env, check=True)
        commit = ["git", "commit", "-q", "--allow-empty", "-m", "bench"]
        baseline = median_of(runs, lambda: timed(commit, repo, env))
        session = ClaudeSessionWriter(claude / "projects", cwd=str(repo), branch="main", seed=3)
        session.response(output=200)
        py = [sys.executable, "-m", "costattr"]
        subprocess.run([*py, "install"], cwd=repo, env=env, check=True, capture_output=True)
        startup = median_of(runs, lambda: timed([sys.executable, "-c", "pass"], repo, env))
        upload = [*py, "upload", "--hook"]
        cold = timed(upload, repo, env)
        fast = median_of(runs, lambda: timed(upload, repo, env))
        full = median_of(runs, lambda: timed(upload, repo, {**env, "COSTATTR_NO_FAST_PATH": "1"}))

        def appended() -> float:
            session.response(output=200)
            return timed(upload, repo, env)

        incremental = median_of(runs, appended)
        with_hook = median_of(runs, lambda: timed(commit, repo, env))
    return {"size": size, "baseline": baseline, "startup": startup, "cold": cold, "fast": fast, "full": full,
            "incremental": incremental, "commit_with_hook": with_hook}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="5MB,100MB")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = ap.parse_args()
    print("| corpus | commit alone | python start | hook, nothing new | full upload, nothing new "
          "| hook, one new response | first hook (cold) | commit with hook |")
    print("|---|---|---|---|---|---|---|---|")
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        r = measure(size, args.runs, args.cache)
        own = r["fast"] - r["startup"]
        print(f"| {label(size)} | {r['baseline'] * 1000:.0f} ms | {r['startup'] * 1000:.0f} ms "
              f"| {r['fast'] * 1000:.0f} ms ({own * 1000:.0f} ms own) | {r['full'] * 1000:.0f} ms "
              f"| {r['incremental'] * 1000:.0f} ms | {r['cold']:.2f} s | {r['commit_with_hook'] * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
