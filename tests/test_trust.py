"""Where a key may go is the user's decision (issue 13, item 3): a repository's committed config
that names a memory API gets nothing from this machine (no connection at all: not the hook, not
upload, sync, report, export or doctor) until the user runs `costattr trust` there; then it gets
the records. COSTATTR_API_URL, the user's own choice, needs no trust. Every server here is real
(127.0.0.1) and counts each TCP connection it accepts."""

from __future__ import annotations

import itertools
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_memory_api import API_KEY, FakeMemoryApi

from costattr.cli import main
from costattr.testing.gitrepo import commit, git, make_repo
from costattr.testing.transcripts import ClaudeSessionWriter

BRANCH = "feature/APP-1-login"


class CaptureApi(FakeMemoryApi):
    """The fake memory API, also counting the connections it accepts: a client that connects
    and sends nothing (or half a request) is counted too."""

    def __init__(self) -> None:
        super().__init__()
        self.connections = 0

    def _handler_class(self) -> Any:
        base = super()._handler_class()
        api = self

        class Counting(base):  # type: ignore[misc,valid-type]
            def setup(self) -> None:
                with api.lock:
                    api.connections += 1
                super().setup()

        return Counting


@pytest.fixture
def servers() -> Iterator[tuple[CaptureApi, CaptureApi]]:
    chosen, other = CaptureApi().start(), CaptureApi().start()
    try:
        yield chosen, other
    finally:
        chosen.stop()
        other.stop()


def _config(url: str, user: str = "dkr") -> str:
    return f'[ledger]\nbackend = "memory-api"\napi_url = "{url}"\napi_user = "{user}"\n'


_seeds = itertools.count(1)


def _spend(env_dirs: dict[str, Path], repo: Path, output: int = 300) -> None:
    """A new session's spend in `repo` (each its own session id)."""
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch=BRANCH, seed=next(_seeds))
    w.user_prompt()
    w.response(output=output, cache_read=4000)
    w.close()


@pytest.fixture
def repo(tmp_path: Path, env_dirs: dict[str, Path], servers: tuple[CaptureApi, CaptureApi],
         monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cloned-looking repository whose committed config points at the first server; only the
    user's key is in the environment (as in the reported attack)."""
    path = make_repo(tmp_path / "app", origin="https://github.com/acme/app.git").resolve()
    commit(path, "initial", {"README.md": "app\n", ".costattr.toml": _config(servers[0].url)})
    git(path, "checkout", "-q", "-b", BRANCH)
    _spend(env_dirs, path)
    commit(path, "login: first cut")
    monkeypatch.chdir(path)
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)
    monkeypatch.setenv("COSTATTR_NO_FAST_PATH", "1")
    return path


def _eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_an_untrusted_repository_config_gets_nothing_until_trusted(
    repo: Path, env_dirs: dict[str, Path], servers: tuple[CaptureApi, CaptureApi],
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    chosen, other = servers
    code, first = run(capsys, "upload", "--hook")
    assert code == 0 and "costattr: 0." in first  # recorded locally
    assert "not sending to the memory API at " + chosen.url in first and "costattr trust" in first
    _spend(env_dirs, repo)
    commit(repo, "login: second")
    code, second = run(capsys, "upload", "--hook")
    assert code == 0 and "costattr trust" not in second, "the hook says it once per repository"
    assert run(capsys, "upload")[0] == 0
    for args in (("sync",), ("sync", "--all"), ("report", "--by", "issue"), ("export", "--ledger", "memory-api")):
        code, said = run(capsys, *args)
        assert code == 1 and "costattr trust" in said, (args, said)
    code, said = run(capsys, "doctor")
    assert "warn  not sending to the memory API" in said and "fix: run `costattr trust`" in said
    assert chosen.connections == 0 and chosen.requests == [], "the repository's server got nothing"

    code, said = run(capsys, "trust")
    assert code == 0 and f"trusted {repo} for the memory API at {chosen.url} (user dkr" in said
    trust_file = env_dirs["costattr_home"] / "trust.toml"  # COSTATTR_HOME moves it (documented)
    assert stat.S_IMODE(trust_file.stat().st_mode) == 0o600 and chosen.url in trust_file.read_text()
    assert chosen.connections == 0, "trusting sends nothing by itself"
    _spend(env_dirs, repo)
    commit(repo, "login: third")
    assert run(capsys, "upload", "--hook")[0] == 0  # publishes in the background
    assert _eventually(chosen.records), "once trusted, the records are published"
    assert {h.get("x-api-key") for h in chosen.seen_headers} == {API_KEY}
    code, said = run(capsys, "sync")
    assert code == 0, said
    sent = len(chosen.records())
    assert sent >= 3, "everything recorded while untrusted is sent too"

    # The trust is for that URL: the same repository pointed elsewhere is untrusted again.
    (repo / ".costattr.toml").write_text(_config(other.url))
    _spend(env_dirs, repo)
    commit(repo, "login: fourth")
    code, said = run(capsys, "upload", "--hook")
    assert code == 0 and "not sending to the memory API at " + other.url in said
    assert run(capsys, "sync")[0] == 1
    assert other.connections == 0

    # And for that user: a config naming another user on the trusted server is untrusted too.
    (repo / ".costattr.toml").write_text(_config(chosen.url, user="mallory"))
    before = chosen.connections
    assert run(capsys, "sync")[0] == 1 and chosen.connections == before

    # COSTATTR_API_URL is the user's own choice: it beats the config's URL and needs no trust.
    monkeypatch.setenv("COSTATTR_API_URL", other.url)
    monkeypatch.setenv("COSTATTR_API_USER", "dkr")
    code, said = run(capsys, "upload", "--hook")
    assert code == 0 and "costattr trust" not in said
    assert _eventually(other.records), "sent where the environment says"
    assert chosen.connections == before


def test_revoke_and_list(repo: Path, servers: tuple[CaptureApi, CaptureApi], capsys: pytest.CaptureFixture[str]) -> None:
    chosen, _ = servers
    code, listed = run(capsys, "trust", "--list")
    assert code == 0 and "no repository is trusted" in listed
    assert run(capsys, "trust")[0] == 0
    code, listed = run(capsys, "trust", "--list")
    assert f"{repo}\t{chosen.url}\tuser dkr, file agent-costs" in listed
    code, said = run(capsys, "trust", "--revoke")
    assert code == 0 and f"no longer trusted: {repo} for {chosen.url}" in said
    assert run(capsys, "sync")[0] == 1 and chosen.connections == 0
    assert "no repository is trusted" in run(capsys, "trust", "--list")[1]


def test_trust_needs_a_url_chosen_by_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = make_repo(tmp_path / "plain")
    commit(path, "initial")
    monkeypatch.chdir(path)
    code, said = run(capsys, "trust")
    assert code == 1 and "chooses no memory API" in said


def test_every_way_of_opening_the_memory_api_checks_trust(repo: Path, servers: tuple[CaptureApi, CaptureApi],
                                                           tmp_path: Path) -> None:
    """The background publisher and every command open the backend through select: the check is
    there, before the key is read. A [tool.costattr] table in pyproject.toml is a repository's
    config too."""
    from costattr.config import load_config
    from costattr.ledger.select import UntrustedBackend, open_backend, publish_shared, shared_settings
    from costattr.ledger.store import LocalStore

    chosen, _ = servers
    elsewhere = make_repo(tmp_path / "py")
    (elsewhere / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.costattr.ledger]\nbackend = "memory-api"\n'
        f'api_url = "{chosen.url}"\napi_user = "dkr"\n')
    for workdir in (repo, elsewhere):
        cfg = load_config(workdir)
        with pytest.raises(UntrustedBackend):
            open_backend("memory-api", workdir, shared_settings(cfg))
        store = LocalStore(tmp_path / f"{workdir.name}.sqlite")
        line = publish_shared(store, workdir=workdir, repo=None, configured_backend="memory-api",
                              settings=shared_settings(cfg))
        assert line is not None and "costattr trust" in line
        assert publish_shared(store, workdir=workdir, repo=None, configured_backend="memory-api",
                              settings=shared_settings(cfg)) is None, "said once"
        store.close()
    assert chosen.connections == 0


def test_without_costattr_home_trust_lives_in_the_users_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs

    from costattr.config import trust_path

    monkeypatch.delenv("COSTATTR_HOME")
    assert trust_path() == Path(platformdirs.user_config_dir("costattr", appauthor=False)) / "trust.toml"
