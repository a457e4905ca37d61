"""Ledger backends, by name, chosen by config (`[ledger] backend`) or COSTATTR_LEDGER."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costattr.ledger.base import Ledger
from costattr.ledger.store import LocalStore

__all__ = ["Ledger", "LocalStore", "open_configured"]


def open_configured(cfg: Any, workdir: Path | None = None, override: str | None = None) -> Ledger:
    """The ledger reports and comments read: --ledger, else COSTATTR_LEDGER, else the config."""
    from costattr.ledger.select import backend_name, open_backend, shared_settings
    from costattr.record import local_store

    name = override or backend_name(cfg.ledger.backend)
    if name == "json":
        return local_store(cfg, workdir)
    return open_backend(name, workdir, shared_settings(cfg))
