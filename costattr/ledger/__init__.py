"""Ledger backends, by name, chosen by config (`[ledger] backend`) or COSTATTR_LEDGER."""

from __future__ import annotations

from costattr.ledger.base import Ledger, merge_entries
from costattr.ledger.jsonfile import JsonLedger

__all__ = ["JsonLedger", "Ledger", "merge_entries", "local_ledger"]


def local_ledger() -> JsonLedger:
    """This machine's own ledger: the hook's state, always written, whatever backend is shared."""
    return JsonLedger()
