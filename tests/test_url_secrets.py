"""Userinfo in a URL is a secret whatever characters its password holds (issue 13, item 3): it is
stripped before anything is stored, compared, printed or logged; a malformed URL is a
configuration error naming the setting, never an exception quoting the URL (httpx's
`InvalidURL: Invalid port: 'Pw'` carried part of a password); doctor shows `set (N chars)`.

The sweep runs the commands against a real memory API on 127.0.0.1 with a password holding
`/ # ? @ :` in COSTATTR_API_URL (percent-encoded, as a working URL needs, and raw, as a user
pastes it), then searches every file under COSTATTR_HOME and HOME, the repository's config, the
log and every byte of output for any piece of it. tests/test_secrets.py does the same for the
API key and GitHub tokens.

The memory API's settings beside the URL (`api_timeout`, `api_max_bytes` and their environment
variables) are validated the same way, naming the setting, and reach the backend.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fake_memory_api import API_KEY, FakeMemoryApi
from helpers_reliability import World, build_world

from costattr import gitctx, github
from costattr.cli import main
from costattr.ledger import git_notes, memory_api
from costattr.testing.gitrepo import commit

PASSWORD = "Zx9Q/Vlt7#Psw3?Qr5@:Kj8M"
ENCODED = quote(PASSWORD, safe="")  # Zx9Q%2FVlt7%23Psw3%3FQr5%40%3AKj8M
# Every piece of it: a password cut at any of its special characters still shows one of these.
NEEDLES = ["Zx9Q", "Vlt7", "Psw3", "Qr5", "Kj8M", ENCODED, "PwSecretA1"]
HOSTILE = ["/", "#", "?", "@", ":", "/#?@:", "@@", "p@ss:w/rd?#x"]


def _leaks(blob: bytes | str) -> list[str]:
    data = blob if isinstance(blob, bytes) else blob.encode("utf-8", "surrogateescape")
    return [n for n in NEEDLES if n.encode() in data]


# ---------------------------------------------------------------------------------------------
# secrets.py


@pytest.mark.parametrize("chars", HOSTILE)
@pytest.mark.parametrize("shape", ["{s}://alice:Pw{c}Tail9@host.example:8443/u/x?path=p",
                                   "{s}://Pw{c}Tail9@host.example",
                                   "{s}://alice:Pw{c}Tail9@[::1]:80/x#frag"])
def test_strip_userinfo_whatever_the_password_holds(chars: str, shape: str) -> None:
    from costattr.secrets import mask_url, strip_userinfo

    for scheme in ("http", "https", "ssh"):
        url = shape.format(s=scheme, c=chars)
        # The helpers other modules had each kept their own rule; they all answer with this one now.
        for shown in (strip_userinfo(url), mask_url(url), gitctx.strip_userinfo(url), memory_api.mask_url(url),
                      git_notes.mask_secrets(f"fatal: '{url}'")):
            assert "Pw" not in shown and "Tail9" not in shown, (url, shown)
        assert strip_userinfo(url).startswith(f"{scheme}://host.example") or "[::1]" in strip_userinfo(url)
        assert mask_url(url).startswith(f"{scheme}://****@")


def test_urls_without_userinfo_are_left_alone() -> None:
    from costattr.secrets import mask_url, strip_userinfo

    for url in ("https://memory.example.com", "https://ghe.acme.com:8443/org/svc.git", "/srv/git/app.git",
                "C:/src/app.git", "file:///srv/git/app.git", "http://[::1]:8080/x?y=1#z"):
        assert strip_userinfo(url) == url == mask_url(url)
    assert strip_userinfo("git@github.com:acme/app.git") == "github.com:acme/app.git"


def test_redact_masks_urls_in_free_text_and_given_values() -> None:
    from costattr.secrets import redact

    text = (f"fatal: unable to access 'https://x-access-token:{PASSWORD}@github.com/acme/app.git/': 403\n"
            f"Traceback: InvalidURL(\"http://alice:{ENCODED}@h:1\") and key {API_KEY} (plain http://h/x@y stays masked)")
    out = redact(text, API_KEY, "abc")  # a 3-character "secret" is not worth masking every "abc"
    assert _leaks(out) == [] and API_KEY not in out
    assert "https://****@github.com/acme/app.git/" in out and "fatal: unable to access" in out
    assert "abc" in redact("abc", "abc")
    assert API_KEY not in github._scrub(f"echoed {API_KEY}", API_KEY)


def test_describe_secret_shows_only_the_length() -> None:
    from costattr.secrets import describe_secret

    assert describe_secret(API_KEY) == f"set ({len(API_KEY)} chars)"
    assert describe_secret("") == "not set" and describe_secret(None) == "not set"


@pytest.mark.parametrize(("url", "problem"), [
    (f"http://alice:{PASSWORD}@127.0.0.1:9", "`@` after the host"),
    ("http://alice:Pw/#?@host", "`@` after the host"),
    ("http://host.example:Zx9Q", "port"),
    ("http://alice:Zx9Q@host.example:99999", "port"),
    ("http://alice:Zx9Q%zz@host.example", "%XX"),
    ("http://alice:Zx9Q Vlt7@host.example", "spaces"),
    ("memory.example.com", "http://"),
    ("http://", "no host"),
    ("http://[::1/x", "IPv6"),
    ("http://ho$t", "host name"),
])
def test_url_problem_names_the_problem_never_the_url(url: str, problem: str) -> None:
    from costattr.secrets import url_problem

    said = url_problem(url)
    assert said is not None and problem in said
    assert not any(piece in said for piece in ("Zx9Q", "Vlt7", "alice", "host.example", "Pw"))


@pytest.mark.parametrize("url", [f"http://alice:{ENCODED}@127.0.0.1:9/base", "https://memory.example.com",
                                 "http://[::1]:8080", "http://münchen.example", "http://a_b.example:1/x"])
def test_a_url_accepted_is_one_httpx_accepts(url: str) -> None:
    """So httpx can never raise InvalidURL (with the URL in its message) later."""
    from costattr.secrets import url_problem

    assert url_problem(url) is None
    httpx.Client().build_request("GET", url + "/u/dkr/memory/file", params={"path": "agent-costs"})


# ---------------------------------------------------------------------------------------------
# configuration errors name the setting


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def world(tmp_path: Path, env_dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> World:
    world = build_world(tmp_path, env_dirs, sessions=2)
    monkeypatch.chdir(world.repo)
    monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)
    monkeypatch.setenv("COSTATTR_API_USER", "dkr")
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_NO_FAST_PATH", "1")
    return world


@pytest.fixture
def repo(world: World) -> Path:
    return world.repo


@pytest.mark.parametrize("url", ["http://alice:Pw/#?@127.0.0.1:9", f"http://alice:{PASSWORD}@127.0.0.1:9",
                                 "http://alice:Zx9Q@127.0.0.1:Kj8M"])
def test_a_malformed_url_is_a_config_error_naming_the_setting(repo: Path, url: str, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COSTATTR_API_URL", url)
    code, hook = run(capsys, "upload", "--hook")
    assert code == 0 and "COSTATTR_API_URL is not a usable URL" in hook
    for args in (("sync",), ("-v", "sync"), ("report",), ("doctor",)):
        code, said = run(capsys, *args)
        assert code == 1 and "COSTATTR_API_URL is not a usable URL" in said, (args, said)
        assert "Traceback" not in said and "this is a bug" not in said and "InvalidURL" not in said
        assert "Pw" not in said and _leaks(said) == [], (args, said)


def test_a_committed_url_may_not_carry_a_password(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / ".costattr.toml").write_text(f'[ledger]\napi_url = "https://alice:{ENCODED}@memory.example.com"\n')
    code, said = run(capsys, "report")
    assert code == 1 and "invalid value for `ledger.api_url`" in said and "committed" in said
    assert _leaks(said) == []


def test_init_writes_the_environments_url_without_its_password(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COSTATTR_API_URL", f"https://alice:{ENCODED}@memory.example.com")
    assert run(capsys, "init", "--no-install", "--force")[0] == 0
    written = (repo / ".costattr.toml").read_text()
    assert 'api_url = "https://memory.example.com"' in written and _leaks(written) == []


# ---------------------------------------------------------------------------------------------
# the sweep


def _publisher_done(api: FakeMemoryApi, timeout: float = 20.0) -> None:
    """The hook publishes in the background, whose output goes to the log: let it finish."""
    deadline = time.monotonic() + timeout
    while not api.records() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_password_with_special_characters_is_never_stored_printed_or_logged(
    world: World, repo: Path, env_dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = FakeMemoryApi().start()
    outputs: list[tuple[str, str]] = []

    def cli(*args: str) -> int:
        code, said = run(capsys, *args)
        outputs.append((" ".join(args), said))
        return code

    host = api.url.removeprefix("http://")
    try:
        # 0.1 stored this one verbatim in hook-state.json.
        monkeypatch.setenv("COSTATTR_API_URL", f"http://alice:PwSecretA1@{host}")
        assert cli("upload", "--hook") == 0
        _publisher_done(api)
        assert (env_dirs["costattr_home"] / "hook-state.json").is_file()

        monkeypatch.setenv("COSTATTR_API_URL", f"http://alice:{ENCODED}@{host}")
        commit(repo, "login: more")
        assert cli("upload", "--hook") == 0
        for args in (("init", "--no-install"), ("upload", "--pr", "5"), ("sync",), ("sync", "--all"), ("report", "--by", "issue"),
                     ("export", "--ledger", "memory-api"), ("doctor",), ("doctor", "--format", "json"),
                     ("comment", "--dry-run", "--pr", "5")):
            assert cli(*args) == 0, outputs[-1]
        assert api.records(), "the encoded password works: the server got the records"
        cli("pricing", "update", "--url", f"http://alice:{ENCODED}@{host}/u/dkr/memory/file?path=prices")
        assert any(h.get("authorization") for h in api.seen_headers), "userinfo is used for the connection"

        # Failures log and print the URL: a refused key, a server that is down, a raw password.
        monkeypatch.setenv("COSTATTR_API_KEY", "sk-wrong-key-0000")
        cli("-v", "sync")
        monkeypatch.setenv("COSTATTR_API_KEY", API_KEY)
        api.stop()
        world.grow(2)
        commit(repo, "login: offline")
        cli("upload", "--hook")
        cli("upload")
        cli("-v", "sync")
        cli("doctor")
        monkeypatch.setenv("COSTATTR_API_URL", f"http://alice:{PASSWORD}@{host}")
        world.grow(2)
        cli("upload", "--hook")
        cli("-v", "sync")
        cli("-v", "report", "--ledger", "memory-api")
    finally:
        api.stop()

    assert any("memory API: http://****@127.0.0.1" in said for _, said in outputs), "the URL is shown, masked"
    doctor = "\n".join(said for label, said in outputs if label == "doctor")
    assert f"COSTATTR_API_KEY: set ({len(API_KEY)} chars)" in doctor and API_KEY[:4] not in doctor
    found = [f"output of `{label}`: {n}" for label, said in outputs for n in _leaks(said)]
    scanned = 0
    for root in (env_dirs["costattr_home"], env_dirs["home"], repo / ".git" / "hooks"):
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                found += [f"{path}: {n}" for n in _leaks(path.read_bytes())]
    found += [f".costattr.toml: {n}" for n in _leaks((repo / ".costattr.toml").read_bytes())]
    assert (env_dirs["costattr_home"] / "costattr.log").stat().st_size > 0, "the log was exercised"
    assert scanned >= 4
    assert found == [], "\n".join(found)


# ---------------------------------------------------------------------------------------------
# the memory API's timeout and size cap


def _settings_file(repo: Path, body: str) -> None:
    (repo / ".costattr.toml").write_text(f'[ledger]\nbackend = "memory-api"\n{body}')


def test_timeout_and_size_cap_come_from_the_config_and_the_environment(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from costattr.config import load_config
    from costattr.ledger.select import open_backend, shared_settings

    monkeypatch.setenv("COSTATTR_API_URL", "http://127.0.0.1:9")  # the user's own: no trust needed
    _settings_file(repo, "api_timeout = 7.5\napi_max_bytes = 1048576\n")

    def opened() -> tuple[float, int]:
        ledger = open_backend("memory-api", repo, shared_settings(load_config(repo)))
        return ledger.timeout, ledger.max_bytes  # type: ignore[attr-defined]

    assert opened() == (7.5, 1048576)
    monkeypatch.setenv("COSTATTR_API_TIMEOUT", "3")
    monkeypatch.setenv("COSTATTR_API_MAX_BYTES", "4096")
    assert opened() == (3.0, 4096)


@pytest.mark.parametrize(("body", "key"), [
    ("api_timeout = 0\n", "ledger.api_timeout"), ("api_timeout = -1\n", "ledger.api_timeout"),
    ("api_timeout = 86400\n", "ledger.api_timeout"), ("api_timeout = nan\n", "ledger.api_timeout"),
    ("api_timeout = 'soon'\n", "ledger.api_timeout"), ("api_max_bytes = 0\n", "ledger.api_max_bytes"),
    ("api_max_bytes = 10\n", "ledger.api_max_bytes"), ("api_max_bytes = 1099511627776\n", "ledger.api_max_bytes"),
    ("api_max_bytes = 1.5\n", "ledger.api_max_bytes"), ("api_max_bytes = true\n", "ledger.api_max_bytes"),
])
def test_bad_values_in_the_config_name_the_key(tmp_path: Path, body: str, key: str) -> None:
    from costattr.config import load_config
    from costattr.errors import ConfigError

    _settings_file(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert f"invalid value for `{key}`" in e.value.message


@pytest.mark.parametrize(("env", "value"), [("COSTATTR_API_TIMEOUT", "0"), ("COSTATTR_API_TIMEOUT", "inf"),
                                            ("COSTATTR_API_TIMEOUT", "2s"), ("COSTATTR_API_MAX_BYTES", "-5"),
                                            ("COSTATTR_API_MAX_BYTES", "64MiB")])
def test_bad_values_in_the_environment_name_the_variable(repo: Path, env: str, value: str,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COSTATTR_API_URL", "http://127.0.0.1:9")
    monkeypatch.setenv(env, value)
    code, said = run(capsys, "sync")
    assert code == 1 and f"costattr: {env}: expected" in said, said


def test_the_settings_bound_what_the_server_may_do(repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Against a real server: a slow answer is given up at COSTATTR_API_TIMEOUT (the default would
    wait it out), a file larger than COSTATTR_API_MAX_BYTES is refused (the default takes it)."""
    api = FakeMemoryApi().start()
    try:
        api.write_direct("someone-else", {"session_id": "someone-else", "note": "x" * 4000})
        monkeypatch.setenv("COSTATTR_API_URL", api.url)
        monkeypatch.setenv("COSTATTR_API_MAX_BYTES", "2048")
        code, said = run(capsys, "sync")
        assert code == 1 and "larger than" in said, said
        monkeypatch.delenv("COSTATTR_API_MAX_BYTES")
        api.mode, api.delay = "slow", 3.0
        monkeypatch.setenv("COSTATTR_API_TIMEOUT", "0.5")
        started = time.monotonic()
        code, said = run(capsys, "sync")
        assert code == 1 and time.monotonic() - started < 2.5, said
    finally:
        api.stop()
