"""Outbox, publish (the hook's side), backend selection and `costattr sync`, against a real server."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
from fake_memory_api import API_KEY, FakeMemoryApi

from costattr import logs
from costattr.cli import main
from costattr.errors import ConfigError
from costattr.ledger import JsonLedger, outbox
from costattr.ledger.memory_api import MemoryApiLedger
from costattr.ledger.select import backend_name, open_backend, publish_shared
from costattr.models import LedgerEntry


def entry(sid: str, updated_at: float = 100.0, cost: float = 1.0) -> LedgerEntry:
    return LedgerEntry(session_id=sid, updated_at=updated_at, cost_usd=cost, cost_str=f"{cost:.4f}")


@pytest.fixture
def api(memory_api: FakeMemoryApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeMemoryApi:
    server = memory_api
    monkeypatch.setenv("COSTATTR_API_URL", server.url)
    monkeypatch.setenv("COSTATTR_API_USER", server.user)
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.chdir(tmp_path)  # no repository, no config: settings come from the environment
    return server


def remote(api: FakeMemoryApi) -> MemoryApiLedger:
    return MemoryApiLedger(api.url, api.user, API_KEY)


def outbox_files(led: MemoryApiLedger) -> list[Path]:
    return sorted(outbox.target_dir(led).glob("*.json"))


# ----------------------------------------------------------------------------------------------
# publish + outbox


def test_publish_delivers(api: FakeMemoryApi) -> None:
    led = remote(api)
    msg = outbox.publish([entry("s1"), entry("s2")], led)
    assert msg == "memory API: published 2 entries"
    assert set(api.data()) == {"s1", "s2"}
    assert outbox_files(led) == []


def test_unreachable_then_back_loses_nothing(api: FakeMemoryApi) -> None:
    led = remote(api)
    api.stop()
    msg = outbox.publish([entry("s1"), entry("s2")], led)
    assert msg.startswith("memory API unreachable (")
    assert msg.endswith("2 entries kept in the outbox, `costattr sync` will send them")
    assert len(outbox_files(led)) == 2
    # A newer copy of s1 while still down replaces the waiting one; still one file per session.
    outbox.publish([entry("s1", 200, 3.0)], led)
    assert len(outbox_files(led)) == 2

    api.start()  # same port: the server is back
    msg = outbox.publish([entry("s3")], led)
    assert msg == "memory API: published 1 entry (+2 entries from the outbox)"
    data = api.data()
    assert set(data) == {"s1", "s2", "s3"}
    assert data["s1"]["cost_usd"] == 3.0
    assert outbox_files(led) == []


def test_5xx_goes_to_outbox_and_sync_sends_it(api: FakeMemoryApi, capsys: pytest.CaptureFixture[str]) -> None:
    led = remote(api)
    api.mode = "error"
    msg = outbox.publish([entry("s1")], led)
    assert "HTTP 503" in msg and "1 entry kept in the outbox" in msg

    assert main(["sync"]) == 1  # still failing: exit 1 with a hint
    err = capsys.readouterr().err
    assert "sync incomplete" in err and "hint:" in err

    api.mode = "ok"
    assert main(["sync", "--ledger", "memory-api"]) == 0
    out = capsys.readouterr().out
    assert "outbox: sent 1, 0 still waiting" in out
    assert "reachable, 1 entry" in out
    assert set(api.data()) == {"s1"}
    assert outbox_files(led) == []


def test_auth_failure_keeps_entries_and_names_the_setting(
    api: FakeMemoryApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = MemoryApiLedger(api.url, api.user, "wrong-key-123")
    msg = outbox.publish([entry("s1"), entry("s2")], wrong)
    assert "refused the credentials" in msg and "fix COSTATTR_API_KEY" in msg
    assert "2 entries kept in the outbox" in msg
    # The outbox is per backend target, not per key: fixing the key delivers the same files.
    assert len(outbox_files(remote(api))) == 2
    assert main(["sync"]) == 0
    assert set(api.data()) == {"s1", "s2"}


def test_publish_is_fast_when_the_server_is_down_or_hangs(api: FakeMemoryApi) -> None:
    led = remote(api)
    api.mode = "hang"
    t0 = time.monotonic()
    msg = outbox.publish([entry("s1")], led)
    assert time.monotonic() - t0 < 3.0
    assert "no answer within" in msg
    api.stop()
    t0 = time.monotonic()
    outbox.publish([entry("s2")], led)
    assert time.monotonic() - t0 < 3.0
    assert len(outbox_files(led)) == 2


def test_corrupt_outbox_file_is_moved_aside_not_deleted(api: FakeMemoryApi) -> None:
    led = remote(api)
    api.stop()
    outbox.publish([entry("good")], led)
    bad = outbox.target_dir(led) / "bad.json"
    bad.write_bytes(b'{"entry": {"session_id": ')
    api.start()
    warnings: list[str] = []
    sent, remaining = outbox.deliver(led, warn=warnings.append)
    assert (sent, remaining) == (1, 0)
    assert len(warnings) == 1 and "bad.json is unreadable" in warnings[0]
    kept = list(bad.parent.glob("bad.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b'{"entry": {"session_id": '
    assert set(api.data()) == {"good"}


def test_outbox_keeps_the_newest_copy_per_session(tmp_path: Path) -> None:
    led = JsonLedger(tmp_path / "shared.json")
    outbox.store([entry("s1", 200, 2.0)], led)
    outbox.store([entry("s1", 100, 1.0)], led)  # older: ignored
    assert [e.cost_usd for e in outbox.pending(led)] == [2.0]
    outbox.store([entry("s1", 300, 3.0)], led)
    assert [e.cost_usd for e in outbox.pending(led)] == [3.0]
    assert outbox.count(led) == 1


class _RacingLedger(JsonLedger):
    """A real JSON ledger during whose write another hook stores a newer copy in the outbox."""

    def upsert(self, entries: Iterable[LedgerEntry]) -> None:
        super().upsert(entries)
        outbox.store([entry("s1", 500, 9.0)], self)


def test_delivery_never_removes_a_file_replaced_meanwhile(tmp_path: Path) -> None:
    led = _RacingLedger(tmp_path / "shared.json")
    outbox.store([entry("s1", 100, 1.0), entry("s2")], led)
    sent, remaining = outbox.deliver(led)
    assert (sent, remaining) == (2, 1)
    assert [e.cost_usd for e in outbox.pending(led)] == [9.0]


def test_odd_session_ids_get_safe_file_names(tmp_path: Path) -> None:
    led = JsonLedger(tmp_path / "shared.json")
    outbox.store([entry("../../etc/passwd"), entry("a/b"), entry("a_b")], led)
    names = sorted(p.name for p in outbox.target_dir(led).glob("*.json"))
    assert len(names) == 3 and all("/" not in n and not n.startswith(".") for n in names)
    assert {e.session_id for e in outbox.pending(led)} == {"../../etc/passwd", "a/b", "a_b"}


# ----------------------------------------------------------------------------------------------
# the key never leaks


def test_api_key_appears_nowhere(
    api: FakeMemoryApi, capsys: pytest.CaptureFixture[str], env_dirs: dict[str, Path]
) -> None:
    led = remote(api)
    outbox.publish([entry("s1")], led)
    api.mode = "error"
    outbox.publish([entry("s2")], led)
    api.mode = "malformed"
    outbox.publish([entry("s3")], led)
    api.mode = "ok"
    api.key = "rotated-on-the-server"  # ours is now wrong: 401 path
    outbox.publish([entry("s4")], led)
    main(["sync"])
    api.stop()
    outbox.publish([entry("s5")], led)
    main(["sync"])
    logs.log(f"checking {led!r}")
    captured = capsys.readouterr()
    assert API_KEY not in captured.out + captured.err
    home = env_dirs["costattr_home"]
    files = [p for p in home.rglob("*") if p.is_file()]
    assert logs.log_path() in files and any(p.parent.name.startswith("memory-api-") for p in files)
    for path in files:
        assert API_KEY.encode() not in path.read_bytes(), path


# ----------------------------------------------------------------------------------------------
# backend selection


def test_backend_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert backend_name(None) == "json"
    assert backend_name("git-notes") == "git-notes"
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    assert backend_name("git-notes") == "memory-api"
    monkeypatch.setenv("COSTATTR_LEDGER", "s3")
    with pytest.raises(ConfigError, match="COSTATTR_LEDGER"):
        backend_name(None)


def test_open_backend_names_the_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_backend("json", None, {}), JsonLedger)
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
    assert publish_shared([entry("s1")], workdir=tmp_path, configured_backend="json") is None
    msg = publish_shared([entry("s1")], workdir=tmp_path, configured_backend="memory-api")
    assert msg is not None and "COSTATTR_API_URL" in msg and "costattr sync --all" in msg


def test_publish_shared_to_the_api(api: FakeMemoryApi, tmp_path: Path) -> None:
    msg = publish_shared([entry("s1")], workdir=tmp_path, configured_backend="memory-api", settings={})
    assert msg == "memory API: published 1 entry"


def test_sync_all_sends_the_local_ledger(api: FakeMemoryApi, capsys: pytest.CaptureFixture[str]) -> None:
    JsonLedger().upsert([entry("old-1"), entry("old-2")])  # recorded before the backend was set up
    assert main(["sync", "--ledger", "memory-api", "--all"]) == 0
    assert "local ledger: sent 2 entries" in capsys.readouterr().out
    assert set(api.data()) == {"old-1", "old-2"}


def test_sync_json_has_nothing_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    led = JsonLedger(tmp_path / "elsewhere.json")
    outbox.store([entry("s1")], led)
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "nothing to sync" in out
    assert "outbox: 1 entry wait for json" in out


def test_outbox_file_shape(tmp_path: Path) -> None:
    led = JsonLedger(tmp_path / "shared.json")
    outbox.store([entry("s1")], led)
    doc = orjson.loads(outbox_files(led)[0].read_bytes())  # type: ignore[arg-type]
    assert doc["backend"] == "json" and doc["target"] == str(tmp_path / "shared.json")
    assert doc["entry"]["session_id"] == "s1"
