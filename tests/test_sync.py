"""Publishing (the hook's side), backend selection and `costattr sync`, against a real server.

Ledger v2 has no outbox: the local store numbers its records and keeps, per backend, how far the
backend has received them (a delivery mark). Records past the mark are what "waits"; a backend
that is down, slow or refusing the key leaves them waiting, and the next hook or `costattr sync`
sends them. Sending one twice changes nothing (a union by id).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from builders import spend, store_with
from fake_memory_api import API_KEY, FakeMemoryApi
from helpers_claude import append_claude, claude_line

from costattr import logs
from costattr.cli import main
from costattr.errors import ConfigError
from costattr.ledger.memory_api import MemoryApiLedger
from costattr.ledger.publish import publish, target_id, waiting
from costattr.ledger.records import AnyRecord
from costattr.ledger.select import backend_name, open_backend, publish_shared
from costattr.ledger.store import LocalStore
from costattr.testing.gitrepo import commit, make_repo


@pytest.fixture
def api(memory_api: FakeMemoryApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeMemoryApi:
    server = memory_api
    monkeypatch.setenv("COSTATTR_API_URL", server.url)
    monkeypatch.setenv("COSTATTR_API_USER", server.user)
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.chdir(tmp_path)  # no repository, no config: settings come from the environment
    return server


def remote(api: FakeMemoryApi, key: str = API_KEY) -> MemoryApiLedger:
    return MemoryApiLedger(api.url, api.user, key)


def held(api: FakeMemoryApi) -> Counter[str]:
    """Record ids in the server's file, with how many copies of each (a union keeps one)."""
    return Counter(r["id"] for r in api.records())


def local_ids() -> Counter[str]:
    with LocalStore() as store:
        return Counter(store.read().records.keys())


def ids(records: Sequence[AnyRecord]) -> Counter[str]:
    return Counter(r.id for r in records)


# ----------------------------------------------------------------------------------------------
# publish: what lies past the mark


def test_publish_delivers_and_moves_the_mark(api: FakeMemoryApi) -> None:
    records = [spend("s1"), spend("s2")]
    store = store_with(records)
    led = remote(api)
    result = publish(store, led, None)
    assert (result.ok, result.message, result.sent) == (True, "memory API: published 2 records", 2)
    assert held(api) == ids(records)
    assert waiting(store, led, None) == 0
    puts = api.count("PUT")
    again = publish(store, led, None)
    assert (again.ok, again.message, again.sent) == (True, "memory API: up to date", 0)
    assert api.count("PUT") == puts and api.count("GET") == 1  # past the mark: the server is not even asked
    # The entries are CloudClawer's, computed from the records they carry.
    entry = api.data()["s1"]
    assert entry["cost_usd"] == float(records[0].cost) and entry["records"] == [records[0].to_json()]


def test_unreachable_then_back_loses_nothing(api: FakeMemoryApi) -> None:
    store = store_with([spend("s1"), spend("s2")])
    led = remote(api)
    api.stop()
    result = publish(store, led, None)
    assert not result.ok and result.waiting == 2
    assert result.message.startswith("memory API unreachable (")
    assert result.message.endswith("2 records wait in the local ledger, `costattr sync` will send them")
    store_with([spend("s1"), spend("s3")])  # the next commits while still down: their records wait too
    assert not publish(store, led, None).ok
    assert waiting(store, led, None) == 4

    api.start()  # same port: the server is back
    result = publish(store, led, None)
    assert result.message == "memory API: published 4 records"
    assert held(api) == local_ids()
    assert api.data()["s1"]["requests"] == 2  # both of s1's records, merged into one entry
    assert waiting(store, led, None) == 0


def test_5xx_keeps_records_waiting_and_sync_sends_them(api: FakeMemoryApi, capsys: pytest.CaptureFixture[str]) -> None:
    store = store_with([spend("s1")])
    led = remote(api)
    api.mode = "error"
    result = publish(store, led, None)
    assert "HTTP 503" in result.message and "1 record wait in the local ledger" in result.message

    assert main(["sync"]) == 1  # still failing: exit 1 saying how many wait, why, and a hint
    captured = capsys.readouterr()
    assert "sync incomplete: 1 record waits for the memory API: " in captured.err and "HTTP 503" in captured.err
    assert "hint:" in captured.err
    assert waiting(store, led, None) == 1

    api.mode = "ok"
    assert main(["sync", "--ledger", "memory-api"]) == 0
    out = capsys.readouterr().out
    assert "memory API: published 1 record" in out
    assert "the memory API holds all 1 record of this machine" in out
    assert held(api) == local_ids()
    assert waiting(store, led, None) == 0


def test_sync_against_a_hanging_server_waits_one_deadline_and_says_what_waits(
    api: FakeMemoryApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store_with([spend("s1"), spend("s2")])
    monkeypatch.setenv("COSTATTR_API_TIMEOUT", "1")
    api.mode = "hang"
    t0 = time.monotonic()
    assert main(["sync"]) == 1
    assert time.monotonic() - t0 < 2.5  # publishing failed: the re-check does not ask a second time
    err = capsys.readouterr().err
    assert "sync incomplete: 2 records wait for the memory API: memory API unreachable (" in err
    assert "no answer within 1 s" in err


@pytest.mark.parametrize(("mode", "setting"), [("wrong-key", "COSTATTR_API_KEY"),
                                               ("forbidden", "COSTATTR_API_USER / COSTATTR_API_KEY")])
def test_auth_failure_keeps_records_and_names_the_setting(api: FakeMemoryApi, mode: str, setting: str) -> None:
    store = store_with([spend("s1"), spend("s2")])
    if mode == "forbidden":
        api.mode = "forbidden"
    wrong = remote(api, "wrong-key-123") if mode == "wrong-key" else remote(api)
    result = publish(store, wrong, None)
    assert "refused the credentials" in result.message and f"fix {setting}, then run `costattr sync`" in result.message
    assert "2 records wait in the local ledger" in result.message
    assert api.count("PUT") == 0
    api.mode = "ok"
    # The mark belongs to the backend (URL, user, file), not to the key: fixing the key sends them.
    assert target_id(wrong) == target_id(remote(api))
    assert main(["sync"]) == 0
    assert held(api) == local_ids()


def test_publish_is_fast_when_the_server_is_down_or_hangs(api: FakeMemoryApi) -> None:
    store = store_with([spend("s1")])
    budget = 1.0  # the backend's deadline ([ledger] api_timeout), shorter than the default for speed
    led = MemoryApiLedger(api.url, api.user, API_KEY, timeout=budget)
    api.mode = "hang"
    t0 = time.monotonic()
    result = publish(store, led, None)
    assert time.monotonic() - t0 < budget + 1.0
    assert f"no answer within {budget:g} s" in result.message
    api.stop()
    store_with([spend("s2")])
    t0 = time.monotonic()
    result = publish(store, led, None)
    assert time.monotonic() - t0 < 1.0  # connection refused: no waiting at all
    assert "connection refused" in result.message.lower()
    assert waiting(store, led, None) == 2


def test_a_record_that_fails_validation_waits_alone(api: FakeMemoryApi, env_dirs: dict[str, Path]) -> None:
    """0.1 moved a damaged outbox file aside; in v2 a damaged record in the local store is set
    aside when read (never sent, counted), and the others are delivered."""
    good, bad = spend("good"), spend("bad")
    store = store_with([good, bad])
    db = sqlite3.connect(env_dirs["costattr_home"] / "ledger.sqlite")
    db.execute("UPDATE records SET doc = ? WHERE id = ?", (b'{"v": 2, "kind": "spend", "id": ', bad.id))
    db.commit()
    db.close()
    result = publish(store, remote(api), None)
    assert result.ok and result.sent == 1
    assert held(api) == Counter({good.id: 1})
    assert store.read().set_aside.count == 1


def test_sending_twice_changes_nothing(api: FakeMemoryApi) -> None:
    """0.1's outbox kept the newest copy per session; records are never newer or older, so a
    record sent again (a mark lost, another machine, a replay) is the same record: no change."""
    records = [spend("s1"), spend("s1"), spend("s2")]
    store = store_with(records)
    led = remote(api)
    publish(store, led, None)
    before = api.data()
    store.forget_target(target_id(led))  # as if the mark had been lost
    puts = api.count("PUT")
    result = publish(store, led, None)
    assert result.ok and result.sent == 3
    assert api.count("PUT") == puts  # the file already held all three: nothing written
    assert api.data() == before and held(api) == ids(records)


class _ConcurrentHookLedger(MemoryApiLedger):
    """A real memory API backend during whose delivery another hook records a new commit."""

    def __init__(self, *args: object, store: LocalStore, late: AnyRecord) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.store, self.late = store, late

    def add(self, records: Sequence[AnyRecord]) -> None:
        store_with([self.late], self.store.path)
        super().add(records)


def test_a_record_written_during_delivery_waits_for_the_next_run(api: FakeMemoryApi) -> None:
    first = spend("s1")
    store = store_with([first])
    late = spend("s2")
    led = _ConcurrentHookLedger(api.url, api.user, API_KEY, store=store, late=late)
    assert publish(store, led, None).sent == 1
    assert held(api) == Counter({first.id: 1})
    assert waiting(store, led, None) == 1  # the mark moved only past what was read and delivered
    assert publish(store, remote(api), None).sent == 1
    assert held(api) == Counter({first.id: 1, late.id: 1})


def test_odd_session_ids_round_trip(api: FakeMemoryApi, env_dirs: dict[str, Path]) -> None:
    odd = ["../../etc/passwd", "a/b", "a_b", "sess ☃ 1", ".hidden"]
    records = [spend(sid) for sid in odd]
    store = store_with(records)
    assert publish(store, remote(api), None).ok
    assert set(api.data()) == set(odd)
    assert {r.session_id for r in remote(api).read().records.values()} == set(odd)
    # Nothing is named after a session on disk any more: the store is one SQLite file.
    names = {p.name for p in env_dirs["costattr_home"].rglob("*") if p.is_file()}
    assert names <= {"ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "ledger.sqlite.open-lock",
                     logs.log_path().name}


def test_targets_are_registered_even_before_the_first_delivery(api: FakeMemoryApi) -> None:
    store = store_with([spend("s1")])
    api.stop()
    led = remote(api)
    publish(store, led, None)
    assert store.targets() == [(target_id(led), f"memory API: {led.describe()}", 1)]
    api.start()
    publish(store, led, None)
    assert store.targets() == [(target_id(led), f"memory API: {led.describe()}", 0)]


# ----------------------------------------------------------------------------------------------
# The hook records while the server is away; `costattr sync` delivers (the hook's hand-off to the
# background publisher is tests/test_publisher.py's)


def _hook_commit(repo: Path, message: str) -> str:
    """A real `git commit` (the installed hook fires): what the hook printed."""
    proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo, capture_output=True,
                          text=True, check=True)
    return proc.stdout + proc.stderr


def test_commits_while_the_server_is_down_then_sync_delivers_everything(
    api: FakeMemoryApi, tmp_path: Path, env_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(repo, "initial")
    subprocess.run([sys.executable, "-m", "costattr", "install"], cwd=repo, check=True, capture_output=True)
    projects = env_dirs["claude"] / "projects"
    api.stop()
    for minute in range(2):
        append_claude(projects, "s1", [claude_line("s1", str(repo), "main", f"2026-11-20T09:{minute:02d}:00.000Z")])
        assert API_KEY not in _hook_commit(repo, f"down {minute}")
    assert len(local_ids()) >= 2 and not api.data()

    api.start()  # same port: the server is back
    monkeypatch.chdir(repo)
    assert main(["sync"]) == 0
    assert "the memory API holds all" in capsys.readouterr().out
    assert held(api) == local_ids()
    assert api.data()["s1"]["requests"] == 2


# ----------------------------------------------------------------------------------------------
# `costattr sync`: deliver what waits, re-check against the remote, send what it lacks


def test_sync_resends_what_the_remote_lacks(api: FakeMemoryApi, capsys: pytest.CaptureFixture[str]) -> None:
    """A delivery mark says what was sent, not what the server still holds: every sync reads the
    server back and re-sends what it lacks (0.2 needed `--all` for that, and said "up to date")."""
    records = [spend("s1"), spend("s2"), spend("s2")]
    store = store_with(records)
    assert main(["sync"]) == 0
    assert held(api) == ids(records)
    api.delete()  # the file is gone on the server (a reset, an admin); our mark says it was delivered
    capsys.readouterr()
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "memory API: up to date" in out
    assert "the memory API lacks 3 records of this machine: sending them again" in out
    assert "the memory API holds all 3 records of this machine" in out
    assert held(api) == ids(records)
    puts = api.count("PUT")
    assert main(["sync", "--all"]) == 0  # `--all` is kept for scripts: the same as a plain sync
    out = capsys.readouterr().out
    assert "lacks" not in out and "the memory API holds all 3 records of this machine" in out
    assert api.count("PUT") == puts  # nothing lacked: nothing written
    assert waiting(store, remote(api), None) == 0


def test_sync_delivers_what_a_hook_killed_mid_publish_left(
    api: FakeMemoryApi, tmp_path: Path, env_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
) -> None:
    """0.1 kept a pending-publication file that `sync` ignored: after a publish killed midway it
    said `outbox: empty`, exit 0, and the session stayed missing on the server."""
    repo = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(repo, "initial")
    append_claude(env_dirs["claude"] / "projects", "killed",
                  [claude_line("killed", str(repo), "main", "2026-11-20T09:00:00.000Z")])
    api.mode = "hang"
    publisher = subprocess.Popen([sys.executable, "-m", "costattr", "upload"], cwd=repo,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not local_ids() and time.monotonic() < deadline:  # recorded locally: publishing now
        time.sleep(0.05)
    time.sleep(0.3)
    publisher.kill()  # SIGKILL, mid-publish: no handler, no cleanup
    publisher.wait()
    api.mode = "ok"
    assert local_ids() and not api.data()  # recorded here, missing on the server

    capsys.readouterr()
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "memory API: published" in out and "the memory API holds all" in out
    assert held(api) == local_ids()
    assert "killed" in api.data()


def test_sync_all_sends_what_was_recorded_before_the_backend_was_set_up(
    api: FakeMemoryApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COSTATTR_LEDGER")
    records = [spend("old-1"), spend("old-2")]
    store_with(records)
    assert main(["sync"]) == 0
    assert "nothing to sync" in capsys.readouterr().out
    assert main(["sync", "--ledger", "memory-api"]) == 0
    out = capsys.readouterr().out
    assert "memory API: published 2 records" in out and "the memory API holds all 2 records of this machine" in out
    assert held(api) == ids(records)


def test_sync_json_names_records_waiting_for_another_backend(
    api: FakeMemoryApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = store_with([spend("s1"), spend("s2")])
    api.stop()
    led = remote(api)
    publish(store, led, None)  # never delivered, then the configuration moved back to the local ledger
    monkeypatch.delenv("COSTATTR_LEDGER")
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "local ledger (" in out and "nothing to sync" in out
    assert f"waiting: 2 records for memory API: {led.describe()} (not the backend configured here)" in out
    assert f"to drop them: `costattr sync --forget-target {target_id(led)}`" in out


def test_records_waiting_for_an_old_url_are_shown_then_dropped_on_the_users_say(
    api: FakeMemoryApi, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [spend("s1"), spend("s2")]
    store = store_with(records)
    old = MemoryApiLedger("http://127.0.0.1:9", api.user, API_KEY)  # the URL used before: gone
    assert not publish(store, old, None).ok
    assert main(["sync"]) == 0  # the configured (new) URL gets everything...
    out = capsys.readouterr().out
    assert held(api) == ids(records)
    # ... and the old one's waiting records are named, with how to deliver or drop them.
    assert f"waiting: 2 records for memory API: {old.describe()} (not the backend configured here)" in out
    assert ("to deliver them: configure that backend again and run `costattr sync`; "
            f"to drop them: `costattr sync --forget-target {target_id(old)}`") in out

    assert main(["sync", "--forget-target", "memory-api-000000000000"]) == 1
    err = capsys.readouterr().err
    assert "no delivery target named 'memory-api-000000000000'" in err and target_id(old) in err
    assert main(["sync", "--forget-target", target_id(old)]) == 0
    assert (f"forgot memory API: {old.describe()}: 2 records waiting for it will not be sent there "
            "(they stay in the local ledger)") in capsys.readouterr().out
    assert [t for t, _label, _n in store.targets()] == [target_id(remote(api))]
    assert main(["sync"]) == 0
    assert "waiting:" not in capsys.readouterr().out
    assert local_ids() == ids(records)


# ----------------------------------------------------------------------------------------------
# The key never leaks


def test_api_key_appears_nowhere(
    api: FakeMemoryApi, capsys: pytest.CaptureFixture[str], env_dirs: dict[str, Path]
) -> None:
    led = remote(api)
    store = LocalStore()

    def record_and_publish(sid: str) -> None:
        store_with([spend(sid)])
        publish(store, led, None)

    record_and_publish("s1")
    api.mode = "error"
    record_and_publish("s2")
    api.mode = "malformed"
    record_and_publish("s3")
    api.mode = "ok"
    api.key = "rotated-on-the-server"  # ours is now wrong: the 401 path
    record_and_publish("s4")
    main(["sync"])
    main(["sync", "--all"])
    api.stop()
    record_and_publish("s5")
    main(["sync"])
    logs.log(f"checking {led!r}")
    captured = capsys.readouterr()
    assert API_KEY not in captured.out + captured.err
    home = env_dirs["costattr_home"]
    files = [p for p in home.rglob("*") if p.is_file()]
    assert logs.log_path() in files and home / "ledger.sqlite" in files
    assert store.targets()[0][1] == f"memory API: {led.describe()}"  # the store names the backend...
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), path  # ... never its key
    assert API_KEY not in orjson.dumps(api.data()).decode()


# ----------------------------------------------------------------------------------------------
# Backend selection


def test_backend_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend_name(None) == "json"
    assert backend_name("git-notes") == "git-notes"
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    assert backend_name("git-notes") == "memory-api"
    monkeypatch.setenv("COSTATTR_LEDGER", "s3")
    with pytest.raises(ConfigError, match="COSTATTR_LEDGER"):
        backend_name(None)


def test_open_backend_names_the_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_backend("json", None, {}), LocalStore)
    with pytest.raises(ConfigError) as info:
        open_backend("memory-api", None, {})
    assert "COSTATTR_API_URL" in str(info.value)
    with pytest.raises(ConfigError, match="COSTATTR_API_USER"):
        open_backend("memory-api", None, {"api_url": "http://127.0.0.1:9"})
    with pytest.raises(ConfigError, match="COSTATTR_API_KEY"):
        open_backend("memory-api", None, {"api_url": "http://127.0.0.1:9", "api_user": "dkr"})
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)
    monkeypatch.setenv("COSTATTR_API_URL", "http://127.0.0.1:9")  # the environment beats the config
    led = open_backend("memory-api", None, {"api_url": "http://config.example", "api_user": "dkr", "api_path": "p"})
    assert isinstance(led, MemoryApiLedger)
    assert led.describe() == "http://127.0.0.1:9/u/dkr/memory/file?path=p"


def test_publish_shared_never_raises_on_bad_config(tmp_path: Path) -> None:
    store = store_with([spend("s1")])
    assert publish_shared(store, workdir=tmp_path, repo=None, configured_backend="json") is None
    msg = publish_shared(store, workdir=tmp_path, repo=None, configured_backend="memory-api")
    assert msg is not None and "COSTATTR_API_URL" in msg
    assert "wait in the local ledger" in msg and "`costattr sync`" in msg


def test_publish_shared_to_the_api(api: FakeMemoryApi, tmp_path: Path) -> None:
    store = store_with([spend("s1")])
    msg = publish_shared(store, workdir=tmp_path, repo=None, configured_backend="memory-api", settings={})
    assert msg == "memory API: published 1 record"
    assert publish_shared(store, workdir=tmp_path, repo=None, configured_backend="memory-api", settings={}) is None
