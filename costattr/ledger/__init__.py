"""Ledger backends, by name, chosen by config (`[ledger] backend`) or COSTATTR_LEDGER."""

from __future__ import annotations

from costattr.ledger.base import Ledger, merge_entries
from costattr.ledger.jsonfile import JsonLedger

__all__ = ["JsonLedger", "Ledger", "merge_entries", "local_ledger"]


def local_ledger() -> JsonLedger:
    """This machine's own ledger: the hook's state, always written, whatever backend is shared."""
    return JsonLedger()


def open_configured(cfg: object, workdir: object = None, override: str | None = None) -> Ledger:
    """The ledger reports and comments read: --ledger, else COSTATTR_LEDGER, else the config."""
    from pathlib import Path

    from costattr.ledger.select import backend_name, open_backend

    ledger_cfg = getattr(cfg, "ledger", None)
    name = override or backend_name(getattr(ledger_cfg, "backend", None))
    if name == "json":
        return local_ledger()
    settings = {
        "api_url": getattr(ledger_cfg, "api_url", None),
        "api_user": getattr(ledger_cfg, "api_user", None),
        "api_path": getattr(ledger_cfg, "api_path", "agent-costs"),
        "notes_ref": getattr(ledger_cfg, "notes_ref", "refs/notes/costattr"),
    }
    return open_backend(name, Path(str(workdir)) if workdir else None, settings)
