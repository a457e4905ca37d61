"""Which ledger backend to use and how to open it.

Precedence for the backend name: `COSTATTR_LEDGER` > configured (`[ledger] backend`) > "json".
For the memory API, COSTATTR_API_URL / COSTATTR_API_USER / COSTATTR_API_TIMEOUT /
COSTATTR_API_MAX_BYTES beat the config's api_url / api_user / api_timeout / api_max_bytes (CI
sets environment variables; a committed config is the team default), and the key comes only from
COSTATTR_API_KEY or the OS keyring, never from a file.

Where the key goes is the user's decision: a URL chosen by a repository's committed config is
used only once the user trusts that repository for it (`costattr trust`, like git's
safe.directory); COSTATTR_API_URL is the user's own choice and needs no trust. The check is in
`open_memory_api`, which every way of opening the memory API goes through (hook, background
publisher, sync, report, export, comment, doctor): before it, nothing is sent and no key is read.

settings keys understood by open_backend: api_url, api_user, api_path, api_timeout, api_max_bytes,
notes_ref, and `source`: the config file the others came from (`shared_settings` sets it; its
choices need the user's trust). A mapping without `source` comes from the caller's own code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from costattr import logs
from costattr.errors import ConfigError, CostattrError
from costattr.ledger.base import LEDGER_PATH_NAME, Ledger
from costattr.ledger.store import LocalStore
from costattr.secrets import mask_url, url_problem

ENV_BACKEND = "COSTATTR_LEDGER"
ENV_TIMEOUT = "COSTATTR_API_TIMEOUT"
ENV_MAX_BYTES = "COSTATTR_API_MAX_BYTES"
BACKENDS = ("json", "memory-api", "git-notes")
SOURCE = "source"
_N = TypeVar("_N", int, float)
_SETTING_KEYS = ("backend", "api_url", "api_user", "api_path", "api_timeout", "api_max_bytes", "notes_ref")


def canonical_backend(name: str, *, source: str = "the ledger backend") -> str:
    key = name.strip().lower()
    if key not in BACKENDS:
        raise ConfigError(f"{source} {name!r} is not one of {', '.join(BACKENDS)}",
                          hint=f"set it to one of {', '.join(BACKENDS)}")
    return key


def backend_name(configured: str | None) -> str:
    """The backend to use: COSTATTR_LEDGER wins over the configured one; json by default."""
    env = os.environ.get(ENV_BACKEND, "").strip()
    if env:
        return canonical_backend(env, source=ENV_BACKEND)
    if configured and configured.strip():
        return canonical_backend(configured, source="[ledger] backend")
    return "json"


def shared_settings(cfg: Any) -> dict[str, Any]:
    """The shared-ledger settings of a loaded Config (`[ledger]`), with the file they came from;
    unset ones are left out."""
    section = cfg.ledger
    out = {key: value for key in _SETTING_KEYS if (value := getattr(section, key, None)) not in (None, "")}
    if getattr(cfg, "source", None) is not None:
        out[SOURCE] = cfg.source
    return out


def settings_from_config(workdir: Path | None) -> dict[str, Any]:
    """Ledger settings from the repository's config."""
    from costattr.config import load_config

    return shared_settings(load_config(workdir))


def _env_or(setting: Mapping[str, Any], key: str, env: str) -> tuple[str | None, bool]:
    """The value and whether the environment gave it."""
    from_env = os.environ.get(env, "").strip()
    if from_env:
        return from_env, True
    value = setting.get(key)
    return (str(value).strip() or None) if value else None, False


@dataclass(frozen=True, slots=True)
class MemoryApiTarget:
    """Where the memory API ledger would send records, resolved and validated, not yet trusted."""

    url: str  # as given: COSTATTR_API_URL may carry user:password@ (for the connection only)
    user: str
    path: str
    timeout: float
    max_bytes: int
    chosen_by: Path | None  # the config file that chose the URL; None: the environment or the caller

    @property
    def shown_url(self) -> str:
        return mask_url(self.url)

    @property
    def repo(self) -> Path | None:
        return self.chosen_by.parent if self.chosen_by is not None else None

    def fingerprint(self) -> str:
        from costattr.config import trust_fingerprint

        assert self.repo is not None
        return trust_fingerprint(self.repo, self.url, self.user, self.path)

    def trusted(self) -> bool:
        from costattr.config import is_trusted

        return self.repo is None or is_trusted(self.fingerprint())


class UntrustedBackend(ConfigError):
    """The memory API URL comes from a repository's config the user has not trusted for it."""

    def __init__(self, target: MemoryApiTarget) -> None:
        super().__init__(
            f"not sending to the memory API at {target.shown_url}: {target.chosen_by} chose that URL, "
            "and you have not trusted this repository for it",
            hint="run `costattr trust` in this repository to send this machine's records there with your key "
                 "(or set COSTATTR_API_URL yourself); until then they stay in the local ledger, which "
                 "`--ledger json` reads",
        )
        self.target = target

    @property
    def notice(self) -> str:
        """The hook's one line, said once per repository and URL."""
        return (f"{self.message}; records stay on this machine until you run `costattr trust` here "
                "(or set COSTATTR_API_URL yourself)")


def _number(settings: Mapping[str, Any], key: str, env: str, check: Callable[[Any], _N], default: _N,
            where: str) -> _N:
    raw, from_env = _env_or(settings, key, env)
    if raw is None:
        return default
    try:
        return check(raw)
    except ValueError as e:
        setting = env if from_env else f"`{key}` under [ledger]{where}"
        raise ConfigError(f"{setting}: {e}", hint=f"set {env} (or {key} under [ledger]) to a sane value") from None


def memory_api_target(settings: Mapping[str, Any], *, env_url: bool = True) -> MemoryApiTarget:
    """The memory API's URL, user, file and limits, environment first; ConfigError names the
    setting that is missing or malformed (never quoting a URL: it may hold a password).
    `env_url=False` ignores COSTATTR_API_URL (what `costattr trust` trusts is the config's URL)."""
    from costattr.config import check_api_max_bytes, check_api_timeout
    from costattr.ledger import memory_api as m

    source = settings.get(SOURCE)
    where = f" in {source}" if source else ""
    if env_url:
        url, url_from_env = _env_or(settings, "api_url", m.ENV_URL)
    else:
        url, url_from_env = (str(settings.get("api_url") or "").strip() or None), False
    if not url:
        raise ConfigError("the memory-api ledger needs the API's URL",
                          hint=f"set {m.ENV_URL} (or api_url under [ledger] in .costattr.toml)")
    problem = url_problem(url, allow_userinfo=url_from_env)
    if problem:
        setting = m.ENV_URL if url_from_env else f"`api_url` under [ledger]{where}"
        raise ConfigError(f"{setting} is not a usable URL: {problem}",
                          hint=f"set {setting} to the memory API's base URL, like https://memory.example.com")
    user, _ = _env_or(settings, "api_user", m.ENV_USER)
    if not user:
        raise ConfigError("the memory-api ledger needs the API user",
                          hint=f"set {m.ENV_USER} (or api_user under [ledger] in .costattr.toml)")
    return MemoryApiTarget(
        url=url.rstrip("/"),
        user=user,
        path=str(settings.get("api_path") or LEDGER_PATH_NAME),
        timeout=_number(settings, "api_timeout", ENV_TIMEOUT, check_api_timeout, m.DEFAULT_TIMEOUT_S, where),
        max_bytes=_number(settings, "api_max_bytes", ENV_MAX_BYTES, check_api_max_bytes, m.DEFAULT_MAX_BYTES, where),
        chosen_by=None if url_from_env or not source else Path(source),
    )


def open_memory_api(settings: Mapping[str, Any]) -> Ledger:
    """The memory API ledger, only where the user lets the key go: UntrustedBackend otherwise
    (raised before the key is read or anything is sent)."""
    from costattr.ledger import memory_api as m

    target = memory_api_target(settings)
    if not target.trusted():
        raise UntrustedBackend(target)
    key = m.load_api_key(target.user)
    if key is None:
        raise ConfigError("the memory-api ledger needs an API key",
                          hint=f"set {m.ENV_KEY} in the environment (never in a config file)")
    return m.MemoryApiLedger(target.url, target.user, key, target.path, timeout=target.timeout,
                             max_bytes=target.max_bytes)


def open_backend(backend: str, workdir: Path | None, settings: Mapping[str, Any] | None = None) -> Ledger:
    """Open a backend by name ("json", "memory-api", "git-notes"); ConfigError names what is missing."""
    settings = settings or {}
    name = canonical_backend(backend)
    if name == "json":
        return LocalStore()
    if name == "memory-api":
        return open_memory_api(settings)
    from costattr.ledger.git_notes import DEFAULT_REF, GitNotesLedger

    return GitNotesLedger(workdir or Path.cwd(), str(settings.get("notes_ref") or DEFAULT_REF))


def publish_shared(
    store: LocalStore,
    *,
    workdir: Path | None,
    repo: str | None,
    configured_backend: str | None = None,
    settings: Mapping[str, Any] | None = None,
    background: bool = False,
) -> str | None:
    """What the hook calls after writing the local ledger: copy what the shared backend lacks
    (`background`: a backend over the network gets it from the background publisher, unwaited).

    None when the shared backend is the local ledger itself (nothing to do), or when it is a
    repository's untrusted choice the hook has already told about; otherwise one line to show.
    Never raises for a misconfigured or unreachable backend: the records wait in the
    local ledger, and the next hook or `costattr sync` sends them.
    """
    from costattr.ledger.publish import publish

    name = backend_name(configured_backend)
    if name == "json":
        return None
    try:
        ledger = open_backend(name, workdir, settings)
    except UntrustedBackend as e:
        # Said once per repository and URL (then only `doctor` and `sync` repeat it): trusting is
        # a decision, not a fault to nag about on every commit.
        target = e.target
        if not logs.first_time(f"untrusted {target.repo} {target.fingerprint()}"):
            return None
        logs.log(e.notice)
        return e.notice
    except CostattrError as e:
        message = (f"{name} ledger unusable: {e.message}" + (f" ({e.hint})" if e.hint else "")
                   + "; the records wait in the local ledger, `costattr sync` sends them once fixed")
        logs.log(message)
        return message
    result = publish(store, ledger, repo, background_from=workdir if background else None)
    return None if result.ok and not result.sent else result.message
