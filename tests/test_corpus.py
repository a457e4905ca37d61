"""The whole pipeline against an independently computed ground truth: a ~2 MB seeded corpus with
every trap planted (streaming splits, subagents and replays, resume and /btw copies, Codex
re-emits, forks and archives, unknown models, long context, fast mode, 1h cache writes, junk)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from costattr.cli import cli
from costattr.testing.corpus import compare_to_truth, generate_corpus

CORPUS_BYTES = 2_000_000


@pytest.fixture
def corpus(env_dirs: dict[str, Path]) -> dict[str, Any]:
    return generate_corpus(env_dirs["claude"], env_dirs["codex"], CORPUS_BYTES, seed=20261101,
                           truth_path=env_dirs["home"] / "truth.json")


def sessions_json() -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["sessions", "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)  # type: ignore[no-any-return]


def test_every_session_matches_the_ground_truth(corpus: dict[str, Any]) -> None:
    report = sessions_json()
    assert len(report["sessions"]) == len(corpus["sessions"]) > 5
    assert compare_to_truth(corpus, report) == []


def test_the_corpus_plants_every_trap(corpus: dict[str, Any]) -> None:
    assert abs(corpus["bytes"] - CORPUS_BYTES) < 0.05 * CORPUS_BYTES
    expected = {"largest usage not last", "missing requestId", "unknown model", "1h cache write",
                "long context (>200k prompt)", "fast mode", "<synthetic> / isApiErrorMessage", "/btw sidechain replay",
                "lone-surrogate escapes", "invalid UTF-8 inside a usage line (recovered)", "resume copy",
                "implausible token counts", "null token count (= 0)", "malformed JSON", "torn last line",
                "flat agent-*.jsonl subagent", "costUSD (old format)", "inline sidechain lines", "huge line",
                "codex fork replay", "codex archived copy", "codex identical totals in two sessions",
                "codex info null / re-emit / missing last_token_usage", "codex re-emitted token_count",
                "progress replay", "toolUseResult.usage summary", "binary file"}
    assert expected <= corpus["traps"].keys()
    assert corpus["skipped_lines"] >= 9
    assert any(s["unpriced_requests"] for s in corpus["sessions"].values())


def test_the_corpus_is_reproducible(tmp_path: Path) -> None:
    digests = []
    for run in ("a", "b"):
        root = tmp_path / run
        generate_corpus(root / "claude", root / "codex", 300_000, seed=7)
        h = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(str(path.relative_to(root)).encode() + path.read_bytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1]


def test_a_warm_rerun_gives_the_same_figures(corpus: dict[str, Any]) -> None:
    assert sessions_json() == sessions_json()
