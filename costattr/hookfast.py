"""The hook's fast path, in the standard library only (no pydantic, pygit2 or click imports).

Most commits come with nothing new for costattr to record. When no transcript file, ledger or
config changed since this work tree's last upload, no record waits for a shared backend, and the
same branch is checked out, an upload cannot change anything, so the hook can answer without
loading the rest of costattr. Anything unexpected answers "not sure" and the full upload runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from costattr import paths

STATE_NAME = "hook-state.json"
WAITING_NAME = "publish-waiting"  # present while records wait for a shared backend
QUIET = [False]  # the work tree's `[hook] quiet`, as the last full upload read it
NOTHING_NEW = "costattr: 0.0000 (0.0%), nothing new"


def _stat_line(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}:-"
    return f"{path}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _walk_jsonl(root: Path, out: list[str]) -> None:
    stack = [str(root)]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.name.endswith(".jsonl"):
                        st = entry.stat()
                        out.append(f"{entry.path}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            continue


def transcripts_fingerprint() -> str:
    """A digest of every transcript file's identity, size and mtime."""
    lines: list[str] = []
    for root in paths.claude_project_dirs() + paths.codex_session_dirs():
        _walk_jsonl(root, lines)
    lines.sort()
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _git_dir(workdir: Path) -> Path | None:
    dotgit = workdir / ".git"
    if dotgit.is_dir():
        return dotgit
    try:
        text = dotgit.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text.startswith("gitdir:"):
        return None
    gitdir = Path(text[len("gitdir:"):].strip())
    return gitdir if gitdir.is_absolute() else (workdir / gitdir)


def head_ref(workdir: Path) -> str | None:
    gitdir = _git_dir(workdir)
    if gitdir is None:
        return None
    try:
        return (gitdir / "HEAD").read_bytes().decode("utf-8", "surrogateescape").strip()
    except OSError:
        return None


def _state_path() -> Path:
    return paths.costattr_home() / STATE_NAME


def _side_files(workdir: Path, ledger: str) -> str:
    home = paths.costattr_home()
    files = [ledger, ledger + "-wal", str(home / "prices.json"), str(home / "ledger.json"),
             str(workdir / ".costattr.toml"), str(workdir / "pyproject.toml")]
    return "|".join(_stat_line(p) for p in files)


def _waiting_path() -> Path:
    return paths.costattr_home() / WAITING_NAME


def set_waiting(waiting: bool) -> None:
    """Mark (or clear) that records wait for a shared backend: every hook then retries them."""
    path = _waiting_path()
    try:
        if waiting:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def snapshot(workdir: Path, transcripts: str, ledger: str) -> dict[str, str]:
    head = head_ref(workdir) or ""
    # A detached HEAD names a commit, which changes every commit; only a branch ref is stable.
    return {"transcripts": transcripts, "head": head if head.startswith("ref:") else "detached",
            "ledger": ledger, "side": _side_files(workdir, ledger), "env": _env_key()}


def _env_key() -> str:
    keys = ("CLAUDE_CONFIG_DIR", "CODEX_HOME", "COSTATTR_LEDGER", "COSTATTR_API_URL", "COSTATTR_API_USER",
            "COSTATTR_HOME")
    # Hashed: COSTATTR_API_URL may carry a password, and this file is not a place for one.
    return hashlib.sha256("|".join(os.environ.get(k, "") for k in keys).encode("utf-8", "surrogateescape")).hexdigest()


def nothing_new(workdir: Path) -> bool:
    """True only when an upload here is certain to change nothing."""
    if os.environ.get("COSTATTR_NO_FAST_PATH"):
        return False
    try:
        state = json.loads(_state_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    last = state.get(str(workdir)) if isinstance(state, dict) else None
    if not isinstance(last, dict) or last.get("head") == "detached":
        return False
    QUIET[0] = bool(last.pop("quiet", False))
    if _waiting_path().exists():
        return False  # records waiting for a shared ledger: every hook retries them
    ledger = last.get("ledger")
    return isinstance(ledger, str) and last == snapshot(workdir, transcripts_fingerprint(), ledger)


def remember(workdir: Path, transcripts: str, ledger: Path, quiet: bool = False) -> None:
    """Record what this upload saw (call after the ledger write); best effort."""
    path = _state_path()
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            state = {}
    except (OSError, ValueError):
        state = {}
    state[str(workdir)] = snapshot(workdir, transcripts, str(ledger)) | {"quiet": quiet}
    try:
        from costattr.fsutil import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(state, indent=1, sort_keys=True).encode())
    except OSError:
        pass


def run_from_main(argv: list[str]) -> bool:
    """For `python -m costattr upload --hook`: answer without the full upload when possible."""
    if argv[:1] != ["upload"] or "--hook" not in argv or not set(argv[1:]) <= {"--hook", "-q", "--quiet"}:
        return False
    try:
        workdir = Path(os.path.realpath(Path.cwd()))
        if not nothing_new(workdir):
            return False
    except Exception:  # any doubt: take the full path
        return False
    if not QUIET[0] and "-q" not in argv and "--quiet" not in argv:
        print(NOTHING_NEW)
    return True
