"""`costattr doctor`: where it looks, what it finds, what is broken and how to fix it; it never
prints a secret, never waits long on a dead server, and never changes what it inspects."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from builders import spend, store_with
from click.testing import CliRunner
from fake_memory_api import FakeMemoryApi
from helpers_reliability import read_records

from costattr.cli import cli
from costattr.commands.doctor import check_pricing
from costattr.commands.install import render_hook
from costattr.ledger.store import STORE_NAME, V1_NAME
from costattr.testing.gitrepo import commit, git, make_repo
from costattr.testing.transcripts import ClaudeSessionWriter, CodexRolloutWriter

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-test-SECRET-012345678"  # 24 characters


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = make_repo(tmp_path / "app", origin="https://github.com/acme/app.git").resolve()
    commit(path, "initial", {"README.md": "app\n"})
    monkeypatch.chdir(path)
    return path


def doctor(*args: str, color: bool = False) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["doctor", *args], color=color, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def doctor_json() -> tuple[int, dict[str, list[dict[str, Any]]]]:
    code, out, _ = doctor("--format", "json")
    doc = json.loads(out)
    return code, {s["title"]: s["findings"] for s in doc["sections"]}


def finding(findings: list[dict[str, Any]], text: str) -> dict[str, Any]:
    found = [f for f in findings if text in f["text"]]
    assert found, f"no finding containing {text!r} in {[f['text'] for f in findings]}"
    return found[0]


def plant_sessions(env_dirs: dict[str, Path], cwd: Path) -> None:
    claude = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(cwd), branch="feature/APP-1-x")
    claude.user_prompt()
    claude.response(cache_read=5000)
    claude.close()
    codex = CodexRolloutWriter(env_dirs["codex"], cwd=str(cwd), branch="feature/APP-1-x", seed=1)
    codex.turn()
    codex.token_count()
    codex.close()


def test_fresh_repository_says_what_is_missing_and_how_to_fix_it(env_dirs: dict[str, Path], repo: Path) -> None:
    code, sections = doctor_json()
    assert code == 0  # warnings, no failure
    claude = finding(sections["Transcripts"], "claude: no transcripts")
    assert claude["status"] == "warn" and "CLAUDE_CONFIG_DIR" in claude["fix"]
    assert f"looked in {env_dirs['claude'] / 'projects'} (missing)" in claude["details"]
    assert finding(sections["Transcripts"], "codex: no transcripts")["status"] == "warn"
    hook = finding(sections["Hook"], "no post-commit hook")
    assert hook["status"] == "warn" and "costattr install" in hook["fix"]
    assert finding(sections["Ledger"], "backend: json")["status"] == "info"
    assert "costattr install" in finding(sections["Ledger"], "local ledger: none yet")["fix"]
    assert "costattr init" in finding(sections["Configuration"], "no .costattr.toml")["fix"]
    assert finding(sections["Price table"], "dated ")["status"] == "ok"


def test_installed_hook_and_found_transcripts(env_dirs: dict[str, Path], repo: Path) -> None:
    plant_sessions(env_dirs, repo)
    CliRunner().invoke(cli, ["install"], catch_exceptions=False)
    code, sections = doctor_json()
    assert code == 0
    claude = finding(sections["Transcripts"], "claude: 1 file")
    assert claude["status"] == "ok" and "1 session, 2026-10-01 to 2026-10-01" in claude["text"]
    assert finding(sections["Transcripts"], "codex: 1 file")["status"] == "ok"
    assert finding(sections["Transcripts"], "2 sessions ran in this work tree")["status"] == "ok"
    assert finding(sections["Hook"], "installed:")["status"] == "ok"
    assert not [f for f in sections["Hook"] if f["status"] != "ok"]  # post-rewrite is there too


def test_an_01_install_without_post_rewrite_is_a_warning(repo: Path) -> None:
    hooks = repo / ".git" / "hooks"
    (hooks / "post-commit").write_text(render_hook(None))  # what costattr 0.1 installed: post-commit alone
    (hooks / "post-commit").chmod(0o755)
    _, sections = doctor_json()
    missing = finding(sections["Hook"], "post-rewrite hook is missing")
    assert missing["status"] == "warn" and "costattr install" in missing["fix"]
    CliRunner().invoke(cli, ["install"], catch_exceptions=False)
    _, sections = doctor_json()
    assert not [f for f in sections["Hook"] if "post-rewrite" in f["text"]]


def test_unpriced_models_and_unreadable_lines(env_dirs: dict[str, Path], repo: Path) -> None:
    writer = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo))
    writer.response("claude-nonesuch-9")
    for _ in range(4):
        writer.raw(b'{"type": "assistant", "message": {"usage": \n')  # broken, and not skipped unread
    writer.close()
    _, sections = doctor_json()
    unpriced = finding(sections["Transcripts"], "1 request of models with no known price: claude-nonesuch-9 (1)")
    assert unpriced["status"] == "warn" and "costattr pricing update" in unpriced["fix"]
    skipped = finding(sections["Transcripts"], "4 unreadable lines skipped")
    assert skipped["status"] == "info" and len(skipped["details"]) == 4  # three shown, then the count
    assert skipped["details"][-1].startswith("+1 more (`costattr -v doctor`")
    verbose = json.loads(CliRunner().invoke(cli, ["-v", "doctor", "--format", "json"]).stdout)
    transcripts = next(s["findings"] for s in verbose["sections"] if s["title"] == "Transcripts")
    details = finding(transcripts, "unreadable lines")["details"]
    assert len(details) == 4 and not any(d.startswith("+") for d in details)  # -v: every one


def test_text_output_has_fixes_and_no_progress_bar_off_a_terminal(repo: Path) -> None:
    code, out, err = doctor()
    assert code == 0
    assert "Transcripts\n" in out and "fix: `costattr install`" in out
    assert err == ""  # no progress bar: stderr is not a terminal


def test_no_color_wins(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" in doctor(color=True)[1]
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in doctor(color=True)[1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers: the slowest kind of dead server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_unreachable_memory_api_fails_fast_and_never_shows_the_key(
    repo: Path, monkeypatch: pytest.MonkeyPatch, silent_server: str
) -> None:
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", silent_server)
    monkeypatch.setenv("COSTATTR_API_USER", "alice")
    monkeypatch.setenv("COSTATTR_API_KEY", SECRET)
    started = time.monotonic()
    code, out, err = doctor()
    took = time.monotonic() - started
    assert code == 1
    assert took < 10, f"doctor waited {took:.1f} s on a dead server"
    assert "FAIL  unreachable: the memory API did not answer within 2 s" in out
    assert "fix: check COSTATTR_API_URL" in out
    assert "COSTATTR_API_KEY: set (24 chars)" in out
    assert SECRET not in out + err and "SECRET" not in out + err


def test_refused_connection_and_missing_settings(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("COSTATTR_API_USER", "alice")
    monkeypatch.setenv("COSTATTR_API_KEY", SECRET)
    code, sections = doctor_json()
    assert code == 1
    assert finding(sections["Ledger"], "backend: memory-api (from COSTATTR_LEDGER)")
    assert finding(sections["Ledger"], "unreachable")["status"] == "fail"
    assert SECRET not in json.dumps(sections)

    monkeypatch.delenv("COSTATTR_API_KEY")
    code, sections = doctor_json()
    missing = finding(sections["Ledger"], "needs an API key")
    assert code == 1 and missing["status"] == "fail" and "COSTATTR_API_KEY" in missing["fix"]


def test_an_unused_key_is_mentioned_masked(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTATTR_API_KEY", SECRET)
    code, out, _ = doctor()
    assert code == 0
    assert "COSTATTR_API_KEY is set (24 chars) but the backend is json" in out
    assert SECRET not in out


def test_broken_config_is_a_failure_with_its_fix(repo: Path) -> None:
    (repo / ".costattr.toml").write_text("[ledger]\nbackend = 'json'\nbakend = 'x'\n")
    code, sections = doctor_json()
    broken = finding(sections["Configuration"], "unknown key `ledger.bakend`")
    assert code == 1 and broken["status"] == "fail" and "backend" in broken["fix"]
    # the other checks still ran, on defaults
    assert finding(sections["Ledger"], "backend: json")


def test_a_secret_in_the_config_is_refused_without_echoing_it(repo: Path) -> None:
    (repo / ".costattr.toml").write_text(f"[ledger]\napi_key = '{SECRET}'\n")
    code, out, err = doctor()
    assert code == 1 and "looks like a secret" in out
    assert SECRET not in out + err


def _home_files(env_dirs: dict[str, Path]) -> dict[str, bytes]:
    """The ledger files' bytes. Not SQLite's -wal and -shm: a read-only reader of a WAL database
    creates them (empty of changes) and may not remove them."""
    home = env_dirs["costattr_home"]
    return {p.name: p.read_bytes() for p in home.iterdir()
            if p.is_file() and p.name.startswith("ledger") and not p.name.endswith(("-wal", "-shm"))}


def _zero_records_page(ledger: Path) -> None:
    """A valid store whose records table's root page is zeroed: opening works, reading fails."""
    store_with([spend("s1"), spend("s2")]).close()
    db = sqlite3.connect(ledger)
    size = db.execute("PRAGMA page_size").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'records'").fetchone()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    raw = ledger.read_bytes()
    ledger.write_bytes(raw[: (root - 1) * size] + b"\0" * size + raw[root * size:])


@pytest.mark.parametrize("damage", ["garbage", "records-page"])
def test_corrupt_ledger_is_reported_and_left_in_place(damage: str, env_dirs: dict[str, Path], repo: Path) -> None:
    ledger = env_dirs["costattr_home"] / STORE_NAME
    if damage == "garbage":
        ledger.parent.mkdir(parents=True)
        ledger.write_bytes(b"{ not a database" * 300)
    else:
        _zero_records_page(ledger)
    before = _home_files(env_dirs)
    code, sections = doctor_json()
    broken = finding(sections["Ledger"], "is damaged")
    assert code == 1 and broken["status"] == "fail" and "costattr upload" in broken["fix"]
    assert _home_files(env_dirs) == before  # doctor only looks: not moved aside, not recreated
    assert list(ledger.parent.glob("*.corrupt-*")) == []


def test_a_newer_schema_is_reported_and_left_untouched(env_dirs: dict[str, Path], repo: Path) -> None:
    store_with([spend("s1")]).close()
    ledger = env_dirs["costattr_home"] / STORE_NAME
    db = sqlite3.connect(ledger)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    before = _home_files(env_dirs)
    code, sections = doctor_json()
    newer = finding(sections["Ledger"], "schema version 99")
    assert code == 1 and newer["status"] == "fail" and "upgrade costattr" in newer["fix"]
    assert _home_files(env_dirs) == before


def test_one_bad_record_is_a_warning_and_the_rest_is_counted(env_dirs: dict[str, Path], repo: Path) -> None:
    store_with([spend("s1"), spend("s2"), spend("s2", state="open", branch="wip")]).close()
    db = sqlite3.connect(env_dirs["costattr_home"] / STORE_NAME)
    (doc,) = db.execute("SELECT doc FROM records WHERE session_id = 's1'").fetchone()
    bad = json.loads(doc)
    bad["parts"][0][2] = "three"  # a wrong-typed field, as a hand edit leaves it
    db.execute("UPDATE records SET doc = ? WHERE session_id = 's1'", (json.dumps(bad),))
    db.commit()
    db.close()
    code, sections = doctor_json()
    assert code == 0
    assert finding(sections["Ledger"], "local ledger: 2 records of 1 session")["status"] == "ok"
    aside = finding(sections["Ledger"], "1 record set aside as invalid")
    assert aside["status"] == "warn" and "requests is not a whole number" in aside["text"]
    assert "the rest of the ledger is in use" in aside["fix"]


def test_a_01_ledger_beside_the_store_is_announced_not_converted(env_dirs: dict[str, Path], repo: Path) -> None:
    store_with([spend("s1")]).close()
    v1 = env_dirs["costattr_home"] / V1_NAME
    shutil.copy(ROOT / "examples" / "ledger.sample.json", v1)
    before = _home_files(env_dirs)
    _, sections = doctor_json()
    waits = finding(sections["Ledger"], f"a costattr 0.1 ledger waits at {v1}")
    assert waits["status"] == "info" and "converts it" in waits["fix"]
    assert finding(sections["Ledger"], "local ledger: 1 record of 1 session")
    assert _home_files(env_dirs) == before  # the next commit converts it, not doctor


def _api_env(monkeypatch: pytest.MonkeyPatch, api: FakeMemoryApi) -> None:
    from fake_memory_api import API_KEY

    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", api.url)
    monkeypatch.setenv("COSTATTR_API_USER", api.user)
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)


def _hook() -> None:
    result = CliRunner().invoke(cli, ["upload", "--hook"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_records_waiting_for_a_shared_ledger(env_dirs: dict[str, Path], repo: Path, memory_api: FakeMemoryApi,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    plant_sessions(env_dirs, repo)
    commit(repo, "work")
    with monkeypatch.context() as m:  # scoped: undo() must not revert conftest's isolation
        _api_env(m, memory_api)
        memory_api.mode = "error"  # down since the first commit: it has never received anything
        _hook()
        recorded = len(read_records(env_dirs["costattr_home"]))
        assert recorded
        code, sections = doctor_json()
        waiting = finding(sections["Ledger"], f"{recorded} records waiting for memory API")
        assert code == 1 and waiting["status"] == "warn" and "costattr sync" in waiting["fix"]
        memory_api.mode = "ok"
        assert CliRunner().invoke(cli, ["sync"], catch_exceptions=False).exit_code == 0
        code, sections = doctor_json()
        assert code == 0 and not [f for f in sections["Ledger"] if "waiting" in f["text"]]
    # Back to the local ledger alone; new spend waits for the memory API it was sent to before.
    writer = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch="main")
    writer.response()
    writer.close()
    commit(repo, "more")
    _hook()
    _, sections = doctor_json()
    old = finding(sections["Ledger"], "waiting for memory API")
    assert old["status"] == "warn" and "not the backend configured here" in old["text"]
    assert "costattr sync --ledger memory-api" in old["fix"]


def test_husky_style_hooks_path(repo: Path) -> None:
    husky = repo / ".husky"
    husky.mkdir()
    git(repo, "config", "core.hooksPath", ".husky")
    _, sections = doctor_json()
    missing = finding(sections["Hook"], "core.hooksPath is '.husky'")
    assert missing["status"] == "warn" and "costattr upload --hook || true" in missing["fix"]
    shutil.copy(ROOT / "examples" / "husky" / "post-commit", husky / "post-commit")
    _, sections = doctor_json()
    assert finding(sections["Hook"], "runs costattr")["status"] == "ok"


def test_git_notes_without_the_fetch_refspec(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTATTR_LEDGER", "git-notes")
    code, sections = doctor_json()
    assert code == 0
    assert finding(sections["Ledger"], "reachable: 0 records")["status"] == "ok"
    refspec = finding(sections["Ledger"], "does not bring costattr's notes")
    assert "--notes-refspec" in refspec["fix"]


def test_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, sections = doctor_json()
    assert code == 0
    assert finding(sections["Hook"], "not in a git repository")["status"] == "info"


def test_an_old_price_table_is_a_warning() -> None:
    fresh = check_pricing(today=date(2026, 11, 25)).findings[-1]
    stale = check_pricing(today=date(2027, 6, 1)).findings[-1]
    assert fresh.status == "ok"
    assert stale.status == "warn" and "days old" in stale.text and "pricing update" in (stale.fix or "")
