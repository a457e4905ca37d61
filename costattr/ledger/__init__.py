"""Ledger backends, by name, chosen by config (`[ledger] backend`) or COSTATTR_LEDGER."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from costattr.ledger.base import Ledger, merge_entries
from costattr.ledger.jsonfile import JsonLedger

__all__ = ["JsonLedger", "Ledger", "merge_entries", "local_ledger"]


def local_ledger() -> JsonLedger:
    """This machine's own ledger: the hook's state, always written, whatever backend is shared."""
    return JsonLedger()


def open_configured(cfg: Any, workdir: Path | None = None, override: str | None = None) -> Ledger:
    """The ledger reports and comments read: --ledger, else COSTATTR_LEDGER, else the config."""
    from costattr.ledger.select import backend_name, open_backend, shared_settings

    name = override or backend_name(cfg.ledger.backend)
    if name == "json":
        return local_ledger()
    return open_backend(name, workdir, shared_settings(cfg))
