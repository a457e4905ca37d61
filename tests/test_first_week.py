"""What a new user met in their first week (issue 15), each in a real repository with the real CLI:
the hook's feedback, several PRs in every report, a units line, doctor's honesty, and hints that
are said once rather than on every commit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from builders import cli
from helpers_claude import append_claude, claude_line

from costattr.testing.gitrepo import commit, git, make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(path, "initial")
    return path


def say(env_dirs: dict[str, Path], session: str, cwd: Path, branch: str, ts: str, out: int = 100) -> None:
    append_claude(env_dirs["claude"] / "projects", session, [claude_line(session, str(cwd), branch, ts, out=out)])


def test_several_prs_show_in_every_report(repo: Path, env_dirs: dict[str, Path]) -> None:
    git(repo, "checkout", "-q", "-b", "feature/PROJ-1-a")
    say(env_dirs, "s", repo, "feature/PROJ-1-a", "2026-11-20T09:00:00.000Z")
    commit(repo, "a")
    out = cli("upload", "--pr", "7", cwd=repo).stdout
    assert "linked PR #7" in out
    out = cli("upload", "--pr", "8", "--pr", "9", cwd=repo).stdout
    assert "linked PR #8, PR #9" in out
    doc = json.loads(cli("report", "--by", "pr", "--format", "json", cwd=repo).stdout)
    assert [r["key"] for r in doc["rows"]] == ["#7 #8 #9"]  # one row naming all: rows still add up
    assert doc["rows"][0]["prs"] == [7, 8, 9]
    for n in (7, 8, 9):
        one = json.loads(cli("report", "--pr", str(n), "--format", "json", cwd=repo).stdout)
        assert one["totals"]["requests"] == 1, n
    either = json.loads(cli("report", "--pr", "8", "--pr", "123", "--format", "json", cwd=repo).stdout)
    assert either["totals"]["requests"] == 1


def test_dry_run_shows_only_what_would_change(repo: Path, env_dirs: dict[str, Path]) -> None:
    say(env_dirs, "old", repo, "main", "2026-11-20T09:00:00.000Z")
    commit(repo, "one")
    cli("upload", cwd=repo)
    say(env_dirs, "new", repo, "main", "2026-11-20T09:30:00.000Z")
    commit(repo, "two")
    out = cli("upload", "--dry-run", cwd=repo).stdout
    assert "would record new" in out and "old" not in out.replace("would record new", "")
    # and it wrote nothing: the real upload still has it to record
    assert cli("upload", cwd=repo).stdout.startswith("costattr: 0.0068 (")


def test_with_no_transcripts_the_hint_is_said_once_per_repository(repo: Path) -> None:
    cli("install", cwd=repo)
    first = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "one"], cwd=repo, capture_output=True,
                           text=True, check=True)
    assert "no assistant transcripts found" in first.stderr and "costattr doctor" in first.stderr
    second = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "two"], cwd=repo, capture_output=True,
                            text=True, check=True)
    assert "no assistant transcripts found" not in second.stderr


def test_the_hook_says_once_how_many_unreadable_lines_it_skipped(repo: Path, env_dirs: dict[str, Path]) -> None:
    say(env_dirs, "s", repo, "main", "2026-11-20T09:00:00.000Z")
    path = env_dirs["claude"] / "projects" / "-repo" / "s.jsonl"
    with path.open("a") as f:
        f.write('{"type":"assistant","message":{"usage": {"input_tokens": 5,\n')  # a damaged line mid-file
        f.write('{"type":"assistant","timestamp":"not a time","message":{"id":"x","usage":{"input_tokens":1}}}\n')
    say(env_dirs, "s", repo, "main", "2026-11-20T09:05:00.000Z")
    cli("install", cwd=repo)
    first = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "one"], cwd=repo, capture_output=True,
                           text=True, check=True)
    assert "2 unreadable transcript lines skipped" in first.stderr
    second = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", "two"], cwd=repo, capture_output=True,
                            text=True, check=True)
    assert "unreadable" not in second.stderr


def test_sessions_explains_plus_n_question_mark(env_dirs: dict[str, Path], tmp_path: Path) -> None:
    append_claude(env_dirs["claude"] / "projects", "u", [
        claude_line("u", str(tmp_path), "main", "2026-11-20T09:00:00.000Z", model="acme-coder-9")])
    out = cli("sessions", cwd=tmp_path).stdout
    assert "+1?" in out and "+N? = N requests of unknown models, not priced" in " ".join(out.split())


def test_pricing_show_says_its_units_at_the_top(tmp_path: Path) -> None:
    out = cli("pricing", "show", cwd=tmp_path).stdout
    head = "\n".join(out.splitlines()[:6])
    assert "USD per million tokens" in head


# ---------------------------------------------------------------------------------------------
# doctor


def test_doctor_counts_every_unreadable_line_and_says_how_many_it_did_not_list(
        repo: Path, env_dirs: dict[str, Path]) -> None:
    say(env_dirs, "s", repo, "main", "2026-11-20T09:00:00.000Z")
    path = env_dirs["claude"] / "projects" / "-repo" / "s.jsonl"
    with path.open("a") as f:
        for _ in range(3):
            f.write('{"type":"assistant","message":{"usage": {"input_tokens": 5,\n')  # malformed, mid-file
        f.write('{"type":"assistant","timestamp":"never","message":{"id":"x","usage":{"input_tokens":1}}}\n')
    say(env_dirs, "s", repo, "main", "2026-11-20T09:05:00.000Z")
    out = cli("doctor", cwd=repo).stdout
    assert "4 unreadable lines skipped (3 malformed JSON, 1 missing or invalid timestamp)" in out
    assert "+1 more" in out


def test_doctor_says_truly_where_the_backend_came_from(repo: Path) -> None:
    (repo / ".costattr.toml").write_text('[ledger]\nbackend = "json"\n')
    assert f"backend: json (from {repo / '.costattr.toml'})" in cli("doctor", cwd=repo).stdout
    (repo / ".costattr.toml").write_text("[hook]\nquiet = false\n")
    assert "backend: json (from the default)" in cli("doctor", cwd=repo).stdout


def test_doctor_creates_nothing(repo: Path, env_dirs: dict[str, Path]) -> None:
    say(env_dirs, "s", repo, "main", "2026-11-20T09:00:00.000Z")
    home = env_dirs["costattr_home"]
    assert not home.exists()
    cli("doctor", cwd=repo)
    assert not home.exists(), sorted(p.name for p in home.rglob("*"))
