"""Which ledger backend to use and how to open it.

Precedence for the backend name: `COSTATTR_LEDGER` > configured (`[ledger] backend`) > "json".
For the memory API, COSTATTR_API_URL / COSTATTR_API_USER beat the config's api_url / api_user
(CI sets environment variables; a committed config is the team default), and the key comes only
from COSTATTR_API_KEY or the OS keyring, never from a file.

settings keys understood by open_backend: api_url, api_user, api_path, api_timeout, notes_ref.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from costattr import logs
from costattr.errors import ConfigError, CostattrError
from costattr.ledger.base import LEDGER_PATH_NAME, Ledger
from costattr.ledger.store import LocalStore

ENV_BACKEND = "COSTATTR_LEDGER"
BACKENDS = ("json", "memory-api", "git-notes")
_SETTING_KEYS = ("backend", "api_url", "api_user", "api_path", "api_timeout", "notes_ref")


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
    """The shared-ledger settings of a loaded Config (`[ledger]`); unset ones are left out."""
    section = cfg.ledger
    return {key: value for key in _SETTING_KEYS if (value := getattr(section, key, None)) not in (None, "")}


def settings_from_config(workdir: Path | None) -> dict[str, Any]:
    """Ledger settings from the repository's config."""
    from costattr.config import load_config

    return shared_settings(load_config(workdir))


def _env_or(setting: Mapping[str, Any], key: str, env: str) -> str | None:
    value = os.environ.get(env, "").strip() or setting.get(key)
    return str(value).strip() if value else None


def open_memory_api(settings: Mapping[str, Any]) -> Ledger:
    from costattr.ledger import memory_api as m

    url = _env_or(settings, "api_url", m.ENV_URL)
    if not url:
        raise ConfigError("the memory-api ledger needs the API's URL",
                          hint=f"set {m.ENV_URL} (or api_url under [ledger] in .costattr.toml)")
    user = _env_or(settings, "api_user", m.ENV_USER)
    if not user:
        raise ConfigError("the memory-api ledger needs the API user",
                          hint=f"set {m.ENV_USER} (or api_user under [ledger] in .costattr.toml)")
    key = m.load_api_key(user)
    if key is None:
        raise ConfigError("the memory-api ledger needs an API key",
                          hint=f"set {m.ENV_KEY} in the environment (never in a config file)")
    timeout = float(settings.get("api_timeout") or m.DEFAULT_TIMEOUT_S)
    return m.MemoryApiLedger(url, user, key, str(settings.get("api_path") or LEDGER_PATH_NAME), timeout=timeout)


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
) -> str | None:
    """What the hook calls after writing the local ledger: copy what the shared backend lacks.

    None when the shared backend is the local ledger itself (nothing to do); otherwise one line
    to show. Never raises for a misconfigured or unreachable backend: the records wait in the
    local ledger, and the next hook or `costattr sync` sends them.
    """
    from costattr.ledger.publish import publish

    name = backend_name(configured_backend)
    if name == "json":
        return None
    try:
        ledger = open_backend(name, workdir, settings)
    except CostattrError as e:
        message = (f"{name} ledger unusable: {e.message}" + (f" ({e.hint})" if e.hint else "")
                   + "; the records wait in the local ledger, `costattr sync` sends them once fixed")
        logs.log(message)
        return message
    result = publish(store, ledger, repo)
    return None if result.ok and not result.sent else result.message
