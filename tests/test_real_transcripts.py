"""Conformance on real transcripts: `costattr sessions --format json`, run as a real process on
every group of `../shared/real-transcripts/` (Claude Code and Codex sessions other projects
committed to public repositories, laid out as the assistants store them), against the truth in
its `expected.json`: tokens exact, cost to 1e-6 where `check_cost` is true, unpriced exactly
where `must_be_unpriced` is set, no session missing or extra.

The files are read where they are (they belong to their authors; they are never copied into
this repository). Where the directory is absent, these tests fail and say so, unless
COSTATTR_SKIP_REAL_TRANSCRIPTS=1 marks them skipped: a clone without the data must not pass the
check it could not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT.parent / "shared" / "real-transcripts"
SKIP_VAR = "COSTATTR_SKIP_REAL_TRANSCRIPTS"
EXPECTED: dict[str, dict[str, Any]] = (
    json.loads((REAL / "expected.json").read_text()) if (REAL / "expected.json").is_file() else {}
)
COST_TOLERANCE = 1e-6


@pytest.fixture(scope="module", autouse=True)
def real_transcripts() -> Path:
    if EXPECTED:
        return REAL
    why = f"{REAL} (with expected.json) is not there: the real-transcript conformance check cannot run"
    if os.environ.get(SKIP_VAR) == "1":
        pytest.skip(f"{why} ({SKIP_VAR}=1)")
    pytest.fail(f"{why}. Put the shared data next to this checkout, or set {SKIP_VAR}=1 to skip it knowingly.")


def sessions_of(group: str, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """`costattr sessions --format json` on one group, in a fresh home: (its JSON, its stderr)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "CLAUDE_CONFIG_DIR": str(REAL / group / "claude"), "CODEX_HOME": str(REAL / group / "codex"),
           "COSTATTR_HOME": str(tmp_path / "costattr-home"), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "XDG_CACHE_HOME": str(home / ".cache")}
    done = subprocess.run([sys.executable, "-m", "costattr", "sessions", "--format", "json"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


@pytest.mark.parametrize("group", sorted(EXPECTED) or ["(no data)"])
def test_every_session_of_the_group_is_exact(group: str, tmp_path: Path) -> None:
    data, stderr = sessions_of(group, tmp_path)
    got = {s["session_id"]: s for s in data["sessions"]}
    expected = EXPECTED[group]
    assert sorted(got) == sorted(expected), "sessions missing or extra"
    wrong = []
    for sid, truth in expected.items():
        s = got[sid]
        unpriced = bool(truth.get("must_be_unpriced"))
        # what is checked -> (passed, what was got, what was expected)
        checks: dict[str, tuple[bool, Any, Any]] = {
            "tool": (s["tool"] == truth["tool"], s["tool"], truth["tool"]),
            "tokens": (s["tokens"] == truth["tokens"], s["tokens"], truth["tokens"]),
            "cost": (not truth["check_cost"] or abs(s["cost_usd"] - truth["cost_usd"]) <= COST_TOLERANCE,
                     s["cost_usd"], truth["cost_usd"]),
            "unpriced": ((s["unpriced_requests"] > 0) == unpriced, s.get("unpriced_models", s["unpriced_requests"]),
                         "some" if unpriced else "none"),
        }
        if unpriced:  # never a silent $0: said, and named
            checks["named"] = (bool(s.get("unpriced_models")) and "not priced" in stderr, stderr.strip(), "a note")
        wrong += [f"{sid}: {what}: got {got_}, expected {want} ({truth['why']})"
                  for what, (ok, got_, want) in checks.items() if not ok]
    assert not wrong, "\n".join(wrong)


def test_the_truth_covers_39_sessions() -> None:
    """The count the issue was written against: a shrunken expected.json would pass vacuously."""
    assert sum(len(sessions) for sessions in EXPECTED.values()) == 39
