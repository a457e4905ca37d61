#!/usr/bin/env python3
"""Benchmark `costattr sessions` against ccusage on a generated corpus with ground truth.

    python benchmarks/run.py --size 400MB [--runs 3] [--ccusage PATH]
    python benchmarks/run.py --sizes 100MB,400MB,1GB     # how the figures grow
    python benchmarks/run.py --small                     # CI: a few MB, one run, seconds
    python benchmarks/run.py --size 400MB --profile      # where a cold scan spends its time

Each size gets a seeded corpus (costattr.testing.corpus) under the cache dir, generated once and
reused. The page cache is warmed first, so "cold" means an empty parse cache, not a cold disk.
Each run executes, back to back so that machine load hits all three alike:
  cold     `costattr sessions --format json` with an empty COSTATTR_HOME
  warm     the same again (parse cache in place)
  ccusage  `ccusage session --json --offline`, CLAUDE_CONFIG_DIR/CODEX_HOME at the corpus,
           HOME/XDG dirs at an empty directory
and reports medians, MB/s, ratios to ccusage, CPU (user+sys of the process tree) and peak RSS.
costattr's figures are checked against the ground truth (exit 1 on any difference) and its
token totals compared with ccusage's, every differing session listed with the traps planted in
it. ccusage is optional: without it the ratios are skipped, not the run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from costattr.testing.corpus import CORPUS_VERSION, compare_to_truth, generate_corpus  # noqa: E402

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "costattr-bench"
NATIVE_CCUSAGE = Path("@ccusage") / "ccusage-linux-x64" / "bin" / "ccusage"
KNOWN_CCUSAGE = [Path("/tmp/ccu/node_modules") / NATIVE_CCUSAGE]
UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9}
TOKEN_FIELDS = {"input": "inputTokens", "output": "outputTokens", "cache_write": "cacheCreationTokens",
                "cache_read": "cacheReadTokens"}
UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]B)?\s*", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 400MB")
    return int(float(m.group(1)) * UNITS[m.group(2) or "MB"])


def label(size: int) -> str:
    return f"{size / 10**9:g}GB" if size >= 10**9 else f"{size / 10**6:g}MB"


# ---------------------------------------------------------------------------------------------
# Corpus and tools


@dataclass
class Corpus:
    root: Path
    truth: dict[str, Any]

    @property
    def claude(self) -> Path:
        return self.root / "claude"

    @property
    def codex(self) -> Path:
        return self.root / "codex"

    @property
    def files(self) -> list[Path]:
        return [p for p in self.root.rglob("*.jsonl") if p.is_file()]


def ensure_corpus(cache: Path, size: int, seed: int) -> Corpus:
    """The seeded corpus of this size, generated on first use."""
    root = cache / f"corpus-{label(size)}-seed{seed}-v{CORPUS_VERSION}"
    truth_path = root / "truth.json"
    if truth_path.is_file():
        return Corpus(root, orjson.loads(truth_path.read_bytes()))
    if root.exists():
        shutil.rmtree(root)  # an interrupted generation
    root.mkdir(parents=True)
    t = time.perf_counter()
    partial = root / "truth.partial.json"
    truth = generate_corpus(root / "claude", root / "codex", size, seed, truth_path=partial)
    partial.rename(truth_path)
    print(f"generated {label(size)} corpus in {time.perf_counter() - t:.0f}s: {root}", file=sys.stderr)
    return Corpus(root, truth)


def find_ccusage(arg: str | None, cache: Path) -> Path | None:
    """The native ccusage binary: --ccusage (a binary, or a dir holding node_modules), then
    $CCUSAGE_BIN, the known install, `ccusage` on PATH. A copy without the exec bit (npm leaves
    some so) is run from a private copy that has it."""
    raw = [arg] if arg else [os.environ.get("CCUSAGE_BIN"), *map(str, KNOWN_CCUSAGE), shutil.which("ccusage")]
    for cand in filter(None, raw):
        path = Path(cand)
        for inner in (path, path / NATIVE_CCUSAGE, path / "node_modules" / NATIVE_CCUSAGE):
            if inner.is_file():
                return _executable(inner, cache)
    return None


def _executable(path: Path, cache: Path) -> Path:
    if os.access(path, os.X_OK):
        return path
    copy = cache / "bin" / path.name
    if not copy.is_file() or copy.stat().st_size != path.stat().st_size:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    copy.chmod(0o755)
    return copy


def warm_page_cache(files: Iterable[Path]) -> None:
    for path in files:
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Sample:
    wall: float  # seconds
    cpu: float  # user + sys of the whole process tree
    rss_mb: float  # peak resident set of the largest process in the tree
    out: bytes


def measure(cmd: list[str], env: dict[str, str]) -> Sample:
    """Run `cmd` to completion; its own rusage comes from wait4 (children included)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {err.read().decode(errors='replace')[-2000:]}")
        return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read())


def base_env(corpus: Corpus) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COSTATTR_", "CLAUDE_", "CODEX_"))}
    env.update(CLAUDE_CONFIG_DIR=str(corpus.claude), CODEX_HOME=str(corpus.codex), NO_COLOR="1")
    return env


def ccusage_env(corpus: Corpus, scratch: Path) -> dict[str, str]:
    empty = scratch / "empty-home"
    empty.mkdir(parents=True, exist_ok=True)
    env = base_env(corpus)
    env.update(HOME=str(empty), XDG_CONFIG_HOME=str(empty / ".config"), XDG_CACHE_HOME=str(empty / ".cache"),
               XDG_DATA_HOME=str(empty / ".local"))
    return env


@dataclass
class SizeResult:
    size: int
    corpus: Corpus
    cold: list[Sample] = field(default_factory=list)
    warm: list[Sample] = field(default_factory=list)
    ccusage: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return int(self.corpus.truth["bytes"])


def bench_size(size: int, corpus: Corpus, runs: int, ccusage: Path | None, scratch: Path) -> SizeResult:
    res = SizeResult(size, corpus)
    warm_page_cache(corpus.files)
    costattr = [sys.executable, "-m", "costattr", "sessions", "--format", "json"]
    for i in range(runs):
        env = base_env(corpus)
        home = scratch / f"costattr-home-{label(size)}"
        shutil.rmtree(home, ignore_errors=True)
        env["COSTATTR_HOME"] = str(home)
        res.cold.append(measure(costattr, env))
        res.warm.append(measure(costattr, env))
        if ccusage is not None:
            res.ccusage.append(measure([str(ccusage), "session", "--json", "--offline"], ccusage_env(corpus, scratch)))
        print(f"  {label(size)} run {i + 1}/{runs}: cold {res.cold[-1].wall:.2f}s  warm {res.warm[-1].wall:.2f}s"
              + (f"  ccusage {res.ccusage[-1].wall:.2f}s" if res.ccusage else ""), file=sys.stderr)
    report = orjson.loads(res.cold[0].out)
    res.problems = compare_to_truth(corpus.truth, report)
    if orjson.loads(res.warm[0].out) != report:
        res.problems.append("the warm run's report differs from the cold run's")
    return res


# ---------------------------------------------------------------------------------------------
# Reporting


def median(samples: list[Sample], attr: str) -> float:
    return statistics.median(getattr(s, attr) for s in samples)


def timing_table(results: list[SizeResult]) -> str:
    head = ("| corpus | files | cold (s) | warm (s) | ccusage (s) | cold / ccusage | warm / ccusage "
            "| cold MB/s | CPU cold / warm / ccusage (s) | peak RSS cold / warm / ccusage (MB) |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        cold, warm = median(r.cold, "wall"), median(r.warm, "wall")
        cc = median(r.ccusage, "wall") if r.ccusage else None
        rows.append(
            f"| {label(r.size)} ({r.bytes / 1e6:.0f} MB) | {len(r.corpus.files)} | {cold:.2f} | {warm:.2f} | "
            + (f"{cc:.2f} | {cold / cc:.2f}x | {warm / cc:.2f}x" if cc else "- | - | -")
            + f" | {r.bytes / 1e6 / cold:.0f} | {_trio(r, 'cpu', '{:.2f}')} | {_trio(r, 'rss_mb', '{:.0f}')} |"
        )
    return "\n".join(rows)


def _trio(r: SizeResult, attr: str, fmt: str) -> str:
    """cold / warm / ccusage medians of one measure."""
    runs = [r.cold, r.warm] + ([r.ccusage] if r.ccusage else [])
    return " / ".join(fmt.format(median(samples, attr)) for samples in runs)


def ccusage_comparison(r: SizeResult) -> str:
    """Token totals, costattr vs ccusage, and every session where they differ, with its traps."""
    ours_report = orjson.loads(r.cold[0].out)
    theirs = orjson.loads(r.ccusage[0].out)
    ours = _ccusage_view(ours_report["totals"]["tokens"])
    lines = [f"Token totals on {label(r.size)} (costattr = ground truth: "
             f"{'yes' if not r.problems else 'NO'}):", "",
             "| tokens | costattr | ccusage | ccusage - costattr |", "|---|---|---|---|"]
    for key, theirs_key in TOKEN_FIELDS.items():
        t = theirs["totals"].get(theirs_key, 0)
        lines.append(f"| {key} | {ours[key]:,} | {t:,} | {t - ours[key]:+,} |")
    lines += ["", *_session_differences(ours_report, theirs, r.corpus)]
    return "\n".join(lines)


def _session_differences(ours_report: dict[str, Any], theirs: dict[str, Any], corpus: Corpus) -> list[str]:
    truth = corpus.truth
    ours = {s["session_id"]: _ccusage_view(s["tokens"]) for s in ours_report["sessions"]}
    parent_of = _flat_agent_parents(corpus)
    mapped: dict[str, dict[str, int]] = {}
    for row in theirs.get("session", theirs.get("sessions", [])):
        sid = _ccusage_session_id(row)
        sid = parent_of.get(sid, sid)
        acc = mapped.setdefault(sid, dict.fromkeys(TOKEN_FIELDS, 0))
        for key, theirs_key in TOKEN_FIELDS.items():
            acc[key] += row.get(theirs_key, 0)
    traps_of: dict[str, list[str]] = {}
    for trap, sids in truth.get("trap_sessions", {}).items():
        for sid in sids:
            traps_of.setdefault(sid, []).append(trap)
    out = ["Sessions where ccusage differs (ccusage - costattr), with the traps planted in them:", "",
           "| session | tool | input | output | cache write | cache read | traps in the session |",
           "|---|---|---|---|---|---|---|"]
    for sid in sorted(ours.keys() | mapped.keys()):
        a, b = ours.get(sid, dict.fromkeys(TOKEN_FIELDS, 0)), mapped.get(sid, dict.fromkeys(TOKEN_FIELDS, 0))
        if a == b:
            continue
        tool = truth["sessions"].get(sid, {}).get("tool", "?")
        diff = " | ".join(f"{b[k] - a[k]:+,}" for k in TOKEN_FIELDS)
        note = ", ".join(t for t in traps_of.get(sid, []) if t not in _EVERYWHERE) or (
            "only in ccusage (a file ccusage counts as its own session)" if sid not in ours else "-")
        out.append(f"| {sid[:13]} | {tool} | {diff} | {note} |")
    folded = f"({len(parent_of)} flat agent-*.jsonl files that ccusage reports as sessions of their own are folded " \
             "into their parent session here, as costattr does.)"
    return (out if len(out) > 4 else ["Every session agrees with ccusage."]) + ["", folded]


def _flat_agent_parents(corpus: Corpus) -> dict[str, str]:
    """`agent-<id>` -> the parent session its lines carry (pre-2.1.2 flat subagent files)."""
    out: dict[str, str] = {}
    for path in corpus.claude.glob("projects/*/agent-*.jsonl"):
        with path.open("rb") as f:
            for raw in f:
                m = re.search(rb'"sessionId":"([^"]+)"', raw)
                if m:
                    out[path.stem] = m.group(1).decode()
                    break
    return out


_EVERYWHERE = {"progress replay", "toolUseResult.usage summary", "codex re-emitted token_count"}


def _ccusage_view(tokens: dict[str, int]) -> dict[str, int]:
    return {"input": tokens["input"], "output": tokens["output"],
            "cache_write": tokens["cache_write_5m"] + tokens["cache_write_1h"], "cache_read": tokens["cache_read"]}


def _ccusage_session_id(row: dict[str, Any]) -> str:
    """ccusage names a Claude session by its file (or its subagents' parent dir) and a Codex one
    by its path under sessions/; both end in the id costattr uses."""
    period = str(row.get("period") or row.get("sessionId") or "")
    stem = period.rsplit("/", 1)[-1]
    m = UUID.search(stem)
    return m.group(1) if m else stem


def growth(results: list[SizeResult]) -> str:
    if len(results) < 2:
        return ""
    base = results[0]
    lines = ["How the figures grow (relative to the smallest corpus):", "",
             "| corpus | bytes x | cold x | warm x | ccusage x | cold s per 100 MB |", "|---|---|---|---|---|---|"]
    for r in results:
        grow = r.bytes / base.bytes
        cc = f"{median(r.ccusage, 'wall') / median(base.ccusage, 'wall'):.1f}" if r.ccusage and base.ccusage else "-"
        lines.append(f"| {label(r.size)} | {grow:.1f} | {median(r.cold, 'wall') / median(base.cold, 'wall'):.1f} | "
                     f"{median(r.warm, 'wall') / median(base.warm, 'wall'):.1f} | {cc} | "
                     f"{median(r.cold, 'wall') / (r.bytes / 1e8):.2f} |")
    return "\n".join(lines)


def profile_cold(corpus: Corpus, scratch: Path, top: int = 20) -> str:
    """cProfile of one cold scan, in process and on one core (where the Python time goes)."""
    import cProfile
    import io
    import pstats

    os.environ.update(base_env(corpus))
    os.environ["COSTATTR_HOME"] = str(scratch / "profile-home")
    shutil.rmtree(scratch / "profile-home", ignore_errors=True)
    from costattr.scan import scan

    prof = cProfile.Profile()
    prof.runcall(scan, workers=1)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=parse_size, help="corpus size, e.g. 400MB (default 400MB)")
    ap.add_argument("--sizes", help="comma list of sizes, e.g. 100MB,400MB,1GB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ccusage", help="the ccusage binary, or a directory holding its node_modules")
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--small", action="store_true", help="CI mode: a 5 MB corpus, one run")
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of one cold scan")
    ap.add_argument("--json", type=Path, help="write the raw figures here")
    args = ap.parse_args(argv)

    sizes = ([parse_size(s) for s in args.sizes.split(",")] if args.sizes
             else [5 * 10**6] if args.small else [args.size or 400 * 10**6])
    runs = 1 if args.small else args.runs
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    ccusage = find_ccusage(args.ccusage, args.cache_dir)
    if ccusage is None:
        print("ccusage not found (--ccusage PATH): ratios skipped", file=sys.stderr)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=args.cache_dir))
    try:
        results = [bench_size(size, ensure_corpus(args.cache_dir, size, args.seed), runs, ccusage, scratch)
                   for size in sorted(sizes)]
        print(render(results, runs, ccusage))
        if args.profile:
            print("\n```\n" + profile_cold(results[-1].corpus, scratch) + "```")
        if args.json:
            args.json.write_bytes(orjson.dumps([_raw(r) for r in results], option=orjson.OPT_INDENT_2))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if any(r.problems for r in results) else 0


def render(results: list[SizeResult], runs: int, ccusage: Path | None) -> str:
    parts = [f"Medians of {runs} run(s); ccusage: {ccusage or 'not found'}; {os.cpu_count()} CPUs; "
             f"load average {os.getloadavg()[0]:.1f} at the end.", "", timing_table(results), ""]
    if g := growth(results):
        parts += [g, ""]
    for r in results:
        parts.append(f"Ground truth on {label(r.size)}: "
                     + ("all sessions exact." if not r.problems else f"{len(r.problems)} difference(s):"))
        parts += [f"- {p}" for p in r.problems[:20]]
    if results[-1].ccusage:
        parts += ["", ccusage_comparison(results[-1])]
    return "\n".join(parts)


def _raw(r: SizeResult) -> dict[str, Any]:
    def samples(xs: list[Sample]) -> list[dict[str, float]]:
        return [{"wall": s.wall, "cpu": s.cpu, "rss_mb": s.rss_mb} for s in xs]

    return {"size": r.size, "bytes": r.bytes, "files": len(r.corpus.files), "cold": samples(r.cold),
            "warm": samples(r.warm), "ccusage": samples(r.ccusage), "problems": r.problems}


if __name__ == "__main__":
    sys.exit(main())
