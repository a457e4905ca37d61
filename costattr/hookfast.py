"""The hook's fast path, in the standard library only (no pydantic, pygit2 or click imports).

Most commits come with nothing new for costattr to record. When no transcript file, ledger or
config changed since this work tree's last upload and the same branch is checked out, an upload
cannot change anything, so the hook can answer without loading the rest of costattr. Anything
unexpected answers "not sure" and the full upload runs.

No hook ever waits on the network. Records bound for a shared backend over the network (the
memory API) are sent by the background publisher (costattr/ledger/publisher.py), which this
module starts, detached, when the hook says records wait for this work tree's backend. Starting
it is cheap (one lock attempt, one fork), so the fast path starts it too: a server that was down
receives what waits at the next commit, whatever that commit brings.

One publisher runs at a time per COSTATTR_HOME: whoever starts it takes `publisher.lock` (an
flock) first and hands the locked descriptor to the child, which holds it until it is done. A
hook that finds the lock taken starts nothing: the running publisher looks for new records
before it lets the lock go, and once more after (see publisher.run).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from costattr import fsutil, paths

STATE_NAME = "hook-state.json"
# One empty-ish file per work tree whose records wait for a shared backend over the network: the
# next hook there starts the background publisher. Files, not one list, so that concurrent hooks
# and the publisher never rewrite each other's marks. (costattr 0.1 kept a single file of this
# name, which made every hook retry the network in the foreground: it is removed when seen.)
WAITING_NAME = "publish-waiting"
LOCK_NAME = "publisher.lock"
PUBLISH_COMMAND = "publish-background"  # the hidden command the publisher runs as
QUIET = [False]  # the work tree's `[hook] quiet`, as the last full upload read it
NOTHING_NEW = "costattr: 0.0000 (0.0%), nothing new"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


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


# ----------------------------------------------------------------------------------------------
# Records waiting for the background publisher


def _waiting_file(workdir: Path) -> Path:
    name = hashlib.sha256(os.fsencode(os.path.realpath(workdir))).hexdigest()[:16]
    return paths.costattr_home() / WAITING_NAME / name


def is_waiting(workdir: Path) -> bool:
    return _waiting_file(workdir).is_file()


def set_waiting(workdir: Path, waiting: bool) -> None:
    """Mark (or clear) that records wait for this work tree's shared backend; best effort (a lost
    mark delays them to the next hook that records something, or `costattr sync`)."""
    path = _waiting_file(workdir)
    try:
        if not waiting:
            path.unlink(missing_ok=True)
            return
        if path.parent.is_file():  # costattr 0.1's single marker
            path.parent.unlink()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
        try:
            os.write(fd, os.fsencode(os.path.realpath(workdir)))  # for a person looking: which work tree
        finally:
            os.close(fd)
    except OSError:
        pass


def _lock_path() -> Path:
    return paths.costattr_home() / LOCK_NAME


def try_lock() -> int | None:
    """The publisher lock, taken without waiting: its descriptor, or None when a publisher holds
    it. OSError when it cannot be taken at all (a symlink planted there is never followed).

    fcntl.flock rather than filelock: the lock must pass to a child process with the descriptor,
    and stay held when the hook that took it exits; filelock keeps it in its own object.
    """
    import fcntl  # POSIX only, like the hook scripts that run costattr

    path = _lock_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def publisher_running() -> bool:
    try:
        fd = try_lock()
    except OSError:
        return False  # no usable lock: no publisher can be running either
    if fd is None:
        return True
    os.close(fd)
    return False


def wait_for_publisher(timeout: float) -> bool:
    """Wait until no publisher runs (its lock is free); False if one still runs after `timeout`
    seconds. For tests, benchmarks and anything that must see what the publisher did."""
    import time

    end = time.monotonic() + timeout
    while publisher_running():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


def start_publisher(workdir: Path) -> bool:
    """Start the background publisher for `workdir`'s backend, detached, unless one runs already
    (then that one picks up what was added). Never raises; True when one was started."""
    try:
        fd = try_lock()
    except OSError as e:  # the records wait; the log says why nothing sends them
        _log(f"background publisher not started: {_lock_path()} is unusable ({e.strerror or e})")
        return False
    if fd is None:
        return False
    import subprocess

    out = _log_descriptor()
    try:
        subprocess.Popen(
            [sys.executable, "-m", "costattr", PUBLISH_COMMAND, "--lock-fd", str(fd)],
            cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=out, pass_fds=(fd,),
            # Its own session: no terminal signal (^C in the shell that committed) reaches it, and
            # nothing of git's (the pipes git or a test reads the hook's output from) is kept open.
            start_new_session=True,
        )
        return True
    except OSError as e:
        _log(f"background publisher not started: {e.strerror or e}")
        return False
    finally:
        os.close(fd)  # the child holds the lock now, through its own copy of the descriptor
        if out != subprocess.DEVNULL:
            os.close(out)


def _log(message: str) -> None:
    from costattr import logs

    logs.log(message)


def _log_descriptor() -> int:
    """Where the publisher's stray output (a crash's traceback) goes: costattr's log."""
    import subprocess

    try:
        from costattr import fsutil, logs

        return fsutil.open_append(logs.log_path())
    except (OSError, ImportError):  # a log that cannot be written (its one-line cause is logs' business)
        return subprocess.DEVNULL


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
        state = json.loads(fsutil.read_private(_state_path()))  # never through a symlink
    except (OSError, ValueError):
        return False
    last = state.get(str(workdir)) if isinstance(state, dict) else None
    if not isinstance(last, dict) or last.get("head") == "detached":
        return False
    QUIET[0] = bool(last.pop("quiet", False))
    ledger = last.get("ledger")
    return isinstance(ledger, str) and last == snapshot(workdir, transcripts_fingerprint(), ledger)


def remember(workdir: Path, transcripts: str, ledger: Path, quiet: bool = False) -> None:
    """Record what this upload saw (call after the ledger write); best effort."""
    path = _state_path()
    try:
        state = json.loads(fsutil.read_private(path))
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
    """For `python -m costattr upload --hook` (and pre-commit's `hook-impl post-commit`): answer
    without the full upload when possible."""
    is_upload = argv[:1] == ["upload"] and "--hook" in argv and set(argv[1:]) <= {"--hook", "-q", "--quiet"}
    is_hook_impl = argv[:2] == ["hook-impl", "post-commit"] and set(argv[2:]) <= {"--visible-failure"} or \
        argv[:3] == ["hook-impl", "--visible-failure", "post-commit"] and len(argv) == 3
    if not (is_upload or is_hook_impl):
        return False
    try:
        workdir = Path(os.path.realpath(Path.cwd()))
        if not nothing_new(workdir):
            return False
    except Exception:  # any doubt: take the full path
        return False
    if is_waiting(workdir):
        start_publisher(workdir)  # what waits goes out in the background; this commit never waits
    if not QUIET[0] and "-q" not in argv and "--quiet" not in argv:
        print(NOTHING_NEW)
    return True
