"""`costattr export`: the ledger as a file other tools read."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("export")
@click.option("--format", "fmt", type=click.Choice(["cloudclawer", "jsonl"]), default="cloudclawer",
              show_default=True, help="cloudclawer: {path, data: {session: entry}}; jsonl: one record per line.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file (atomically) instead of standard output.")
@click.option("--ledger", type=click.Choice(["json", "memory-api", "git-notes"]),
              help="Export this backend instead of the configured one.")
def command(fmt: str, output: Path | None, ledger: str | None) -> None:
    """Write the ledger out: CloudClawer's `agent-costs` document (one entry per session,
    computed from its records, which ride along under `records`), or the records as JSON Lines.

    \b
    Example:
      costattr export -o agent-costs.json
      costattr export --format jsonl | jq -c 'select(.kind == "spend")'
    """
    import orjson

    from costattr.commands.report import _workdir, announce
    from costattr.config import load_config
    from costattr.fsutil import atomic_write_bytes
    from costattr.ledger import open_configured
    from costattr.ledger.base import LEDGER_PATH_NAME
    from costattr.ledger.view import ENTRY_SCHEMA_VERSION, session_entries
    from costattr.output import note

    workdir = _workdir()
    source = open_configured(load_config(workdir), workdir, ledger)
    read = source.read()
    announce(source, read, "the rest is exported")
    if fmt == "jsonl":
        records = sorted(read.records.values(), key=lambda r: (r.session_id, r.kind, r.id))
        data = b"".join(orjson.dumps(r.to_json(), option=orjson.OPT_SORT_KEYS) + b"\n" for r in records)
    else:
        doc = {"path": LEDGER_PATH_NAME, "schema_version": ENTRY_SCHEMA_VERSION, "data": session_entries(read.records)}
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        atomic_write_bytes(output, data)
        note(f"costattr: wrote {len(read.records)} records to {output}")
