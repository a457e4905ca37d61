"""Test isolation, pre-commit style: no test can read or write the real home directory,
the real transcripts, or the developer's git config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_memory_api import FakeMemoryApi

_GIT_ENV_TO_DROP = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_PREFIX", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_NAMESPACE",
)
_SECRETS_TO_DROP = ("GITHUB_TOKEN", "GH_TOKEN", "COSTATTR_API_KEY", "COSTATTR_API_URL", "COSTATTR_API_USER",
                    "COSTATTR_LEDGER", "GITHUB_REPOSITORY", "GITHUB_EVENT_PATH", "GITHUB_API_URL")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("env")
    home = base / "home"
    home.mkdir()
    # An unusable real home: anything that falls back to ~ lands in this empty temp dir.
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    dirs = {
        "home": home,
        "costattr_home": base / "costattr-home",
        "claude": base / "claude",
        "codex": base / "codex",
    }
    monkeypatch.setenv("COSTATTR_HOME", str(dirs["costattr_home"]))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(dirs["claude"]))
    monkeypatch.setenv("CODEX_HOME", str(dirs["codex"]))
    for var in _GIT_ENV_TO_DROP + _SECRETS_TO_DROP:
        monkeypatch.delenv(var, raising=False)
    gitconfig = base / "gitconfig"
    gitconfig.write_text("[init]\n\tdefaultBranch = main\n[user]\n\tname = Test Dev\n\temail = dev@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test Dev")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "dev@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test Dev")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "dev@example.com")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("COSTATTR_DEBUG", raising=False)
    return dirs


@pytest.fixture
def env_dirs(isolated_env: dict[str, Path]) -> dict[str, Path]:
    return isolated_env


@pytest.fixture
def memory_api() -> Iterator[FakeMemoryApi]:
    """A real memory API server on 127.0.0.1, stopped after the test."""
    api = FakeMemoryApi().start()
    try:
        yield api
    finally:
        api.stop()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")
