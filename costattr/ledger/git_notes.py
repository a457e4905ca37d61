"""The git-notes backend: the ledger travels with the repository (`refs/notes/costattr`).

Format: one note per commit, holding records, one compact JSON object per line with sorted keys,
lines sorted. Records never change, so a record is the same line in every clone, and the note
`git notes merge -s cat_sort_uniq` makes of two clones' notes is exactly their union: the merge
rule of every backend, with no custom code. Lines costattr 0.1 wrote are read through the v1
conversion and left in place; any other line is kept untouched. 0.1 wrote one cumulative snapshot
of a session per commit it saw, so only the newest snapshot of each session is converted (0.1's
own reading, `newer_entry`): converting every snapshot would count an open segment once per commit
it was seen at, and again once closed.

Decisions:
- A closed record goes on its commit when this clone knows it; every other record (open,
  unattributed, links, rewrites, and closed ones whose commit this clone lacks) goes on HEAD, so
  nothing is dropped: read() is the union of every note, the commit is only where the line is filed.
  An unborn HEAD raises: the records wait in the local ledger until there is a commit.
- The notes are this repository's: only records whose repository is this one are written here
  (see `scope`; `add` refuses any other, whoever the caller), so pushing them never carries
  another repository's branch names or messages.
- Notes trees are handled by git's own notes code, never by ours: `git notes merge`, `git gc` and
  other tools fan a big tree out (`ab/cdef…`, deeper past 65,536 notes), and costattr 0.1, which
  edited the tree itself, filed a new note flat beside the fan-out subtrees, where libgit2's lookup
  no longer finds it. Reading is one pass: `git notes list` (git's own walk, any fan-out, non-note
  entries ignored, duplicate notes of one commit concatenated) then each blob read once; never a
  lookup per note (0.1: 23 s for 5,000 notes). Writing is libgit2's `create_note`, which files a
  note inside the fan-out subtree its name falls in.
- Writes are compare-and-swap: `create_note` runs on a private ref started at the tip we read,
  and the notes ref is then moved from that tip to the result in one checked update (libgit2
  refuses when the ref moved since we read it; we start again). `git notes add` has no such check
  and can silently drop a concurrent writer's note; a lock file shared by all worktrees also
  serialises costattr's own writers.
- Network (fetch / push) and merging shell out to git, so credential helpers, SSH agents and
  `actions/checkout`'s auth just work. The remote notes are fetched into a scratch ref
  (`refs/notes/remotes/<remote>/costattr`), merged with cat_sort_uniq, then pushed without force.
  A push that loses a race (non-fast-forward, or the remote's ref locked by another push: "failed
  to update ref" with git's "cannot lock ref …", "incorrect old value provided") is retried from
  the fetch with jittered exponential backoff, and if it keeps losing, the message names that
  cause. Only a refusal (a pre-receive hook, push rules) is reported as "remote rejected", and
  never retried.
  A forced fetch straight into refs/notes/costattr is never used: it would throw away notes not
  yet pushed.
- The hook only writes locally (no network on commit); `costattr sync` exchanges with the remote,
  and `read_remote` lets it check what the remote holds afterwards.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pygit2
from filelock import FileLock, Timeout

from costattr.errors import CostattrError, NotAGitRepo, RemoteError
from costattr.ledger.memory_api import RemoteUnavailable
from costattr.ledger.records import AnyRecord, RecordError, SetAside, SpendRecord, cap, from_json, union
from costattr.ledger.store import ReadResult
from costattr.secrets import redact

DEFAULT_REF = "refs/notes/costattr"
MERGE_STRATEGY = "cat_sort_uniq"
LOCK_TIMEOUT_S = 5.0
WRITE_TRIES = 8  # compare-and-swap retries when someone else moves the notes ref
# fetch→merge→push rounds before giving up on a busy remote. Every round lets at least one of the
# competing pushes through, so N clones syncing at once need at most N rounds; jitter makes it far
# fewer. The pauses between rounds grow to BACKOFF_CAP_S (about 12 s in all, at worst).
SYNC_TRIES = 10
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
WORK_REF_PREFIX = "refs/costattr/writing/"  # private refs of writes in progress (never pushed)
GIT_NETWORK_TIMEOUT_S = 120.0
GIT_LOCAL_TIMEOUT_S = 60.0
NOTES_MESSAGE = "Notes added by costattr"

# Variables a calling git (hooks run with them set) would use to point our git at its repository.
_GIT_ENV_TO_DROP = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_NAMESPACE", "GIT_QUARANTINE_PATH",
)
# What git (local or remote) says when a ref update lost a race with another update: worth a retry.
_CONTENTION = re.compile(
    r"cannot lock ref|unable to lock|failed to lock|could not lock|incorrect old value"
    r"|is at [0-9a-f]+ but expected|\.lock'?: File exists|unable to create '[^']*\.lock'",
    re.IGNORECASE,
)
_T = TypeVar("_T")

Progress = Callable[[str], None]


# ----------------------------------------------------------------------------------------------
# Note text


def normalize_ref(ref: str) -> str:
    """`costattr` -> `refs/notes/costattr`; full refs pass through."""
    ref = ref.strip()
    return ref if ref.startswith("refs/") else f"refs/notes/{ref}"


def scratch_ref(ref: str, remote: str) -> str:
    """Where the remote's notes land before merging: refs/notes/remotes/<remote>/<name>."""
    ref = normalize_ref(ref)
    name = ref.removeprefix("refs/notes/") if ref.startswith("refs/notes/") else ref.removeprefix("refs/")
    return f"refs/notes/remotes/{remote}/{name}"


def encode_line(record: AnyRecord) -> str:
    # Compact + sorted keys: identical records are identical lines, so cat_sort_uniq dedups them.
    return orjson.dumps(record.to_json(), option=orjson.OPT_SORT_KEYS).decode()


def parse_note(text: str, set_aside: SetAside | None = None, where: str = "",
               v1: list[tuple[dict[str, Any], str]] | None = None) -> list[AnyRecord]:
    """Records of one note; lines that are neither records nor 0.1 entries are counted in `set_aside`.

    0.1 entries are converted here, unless `v1` is given: then they are appended to it (with
    `where`), for the caller to keep each session's newest across notes (`newest_v1`).
    """
    records: list[AnyRecord] = []
    found_v1: list[tuple[dict[str, Any], str]] = [] if v1 is None else v1
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            if set_aside is not None:
                set_aside.add("a note line that is not JSON (kept as it is)", where)
            continue
        if isinstance(doc, dict) and "v" not in doc and "segments" in doc:
            found_v1.append((doc, where))
            continue
        try:
            records.append(from_json(doc))
        except RecordError as e:
            if set_aside is not None:
                set_aside.add(str(e), where)
    if v1 is None:
        records += v1_records_of(newest_v1(found_v1), set_aside)
    return records


def _v1_rank(doc: dict[str, Any]) -> tuple[float, float, float, bytes]:
    """0.1's `newer_entry` order (updated_at, requests, cost_usd), then the line itself, so every
    clone picks the same snapshot whatever order the notes are read in."""

    def number(key: str) -> float:
        value = doc.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    return number("updated_at"), number("requests"), number("cost_usd"), orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def newest_v1(docs: Iterable[tuple[dict[str, Any], str]]) -> list[tuple[dict[str, Any], str]]:
    """Each session's newest 0.1 snapshot (entries without a usable session id are kept, to be set aside)."""
    newest: dict[object, tuple[dict[str, Any], str]] = {}
    for n, (doc, where) in enumerate(docs):
        sid = doc.get("session_id")
        key: object = sid if isinstance(sid, str) and sid else ("unnamed", n)
        held = newest.get(key)
        if held is None or _v1_rank(doc) > _v1_rank(held[0]):
            newest[key] = (doc, where)
    return list(newest.values())


def v1_records_of(docs: Iterable[tuple[dict[str, Any], str]], set_aside: SetAside | None) -> list[AnyRecord]:
    from costattr.ledger.migrate import v1_records

    out: list[AnyRecord] = []
    for doc, where in docs:
        try:
            out += v1_records(doc)
        except RecordError as e:
            if set_aside is not None:
                set_aside.add(str(e), where)
    return out


def merge_note(existing: str, incoming: Iterable[AnyRecord]) -> str:
    """The note with `incoming` added: the union of lines (every existing line kept as it is)."""
    lines = {line.strip() for line in existing.splitlines() if line.strip()}
    lines.update(encode_line(r) for r in incoming)
    return "".join(f"{line}\n" for line in sorted(lines))


# ----------------------------------------------------------------------------------------------
# git binary, retries


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_TO_DROP}
    if not sys.stdin.isatty():
        env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password nobody can type
    env.update(extra or {})
    return env


def mask_secrets(text: str) -> str:
    """git's stderr may quote a remote URL with a token in it."""
    return redact(text)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return mask_secrets(lines[-1]) if lines else ""


def _git_says(stderr: str, pattern: re.Pattern[str] | None = None) -> str:
    """The line of git's stderr worth quoting (the first matching `pattern`, else the last), without
    the `remote:` / `error:` prefixes the server and git add."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    picked = next((ln for ln in lines if pattern is not None and pattern.search(ln)), lines[-1] if lines else "")
    for prefix in ("remote:", "error:", "fatal:"):
        picked = picked.removeprefix(prefix).strip()
    return mask_secrets(picked)


def _pause(attempt: int, *, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S) -> None:
    """Exponential backoff with full jitter: competing writers that collided once spread out
    instead of colliding again in step."""
    time.sleep(random.uniform(base, min(cap, base * 2**attempt)))


class _Busy(Exception):
    """A ref update lost a race (another push or fetch held or moved the ref): try the round again."""

    def __init__(self, what: str, cause: str, retry_hint: str) -> None:
        super().__init__(cause)
        self.what = what  # "push rejected", "fetch not done"...
        self.cause = cause  # for people: why, in git's words
        self.retry_hint = retry_hint


class GitNotesLedger:
    name = "git-notes"
    label = "git notes"
    scope = "repository"  # only this repository's records are written here

    def __init__(self, repo_path: Path | str, ref: str = DEFAULT_REF) -> None:
        gitdir = pygit2.discover_repository(str(repo_path))
        if gitdir is None:
            raise NotAGitRepo(
                f"{repo_path} is not inside a git repository",
                hint="the git-notes ledger lives in a repository: run costattr from its working tree",
            )
        self.repo = pygit2.Repository(gitdir)
        self.ref = normalize_ref(ref)
        self.gitdir = Path(self.repo.path)
        self.cwd = Path(self.repo.workdir or self.repo.path)
        self._lock = FileLock(str(self._common_dir() / "costattr-notes.lock"), timeout=LOCK_TIMEOUT_S)
        self._repo_id: str | None = None

    def _common_dir(self) -> Path:
        # Linked worktrees have their own gitdir; the notes ref (and our lock) live in the common one.
        pointer = self.gitdir / "commondir"
        if pointer.is_file():
            return (self.gitdir / pointer.read_text().strip()).resolve()
        return self.gitdir

    @property
    def repo_id(self) -> str:
        """This repository's identity, as the hook writes it in records' `repo`."""
        if self._repo_id is None:
            from costattr import gitctx
            from costattr.record import text

            found = gitctx.discover(self.cwd).repo_id
            self._repo_id = cap(text(found), "repo") or found
        return self._repo_id

    def describe(self) -> str:
        return f"{self.ref} in {self.cwd}"

    def __repr__(self) -> str:
        return f"GitNotesLedger({str(self.cwd)!r}, ref={self.ref!r})"

    # -- read -------------------------------------------------------------------------------------

    def read(self) -> ReadResult:
        return self._read_ref(self.ref)

    def read_remote(self, remote: str = "origin", *, max_tries: int = SYNC_TRIES) -> ReadResult:
        """What `remote` holds now: its notes fetched (into the scratch ref only) and read."""
        self._check_remote(remote)
        scratch = scratch_ref(self.ref, remote)
        env = git_env()
        fetched = _retrying(lambda: self._fetch(remote, scratch, env), max_tries, None,
                            f"could not fetch {self.ref} from {remote}")
        return self._read_ref(scratch) if fetched else ReadResult()

    def _read_ref(self, ref: str) -> ReadResult:
        """Every record under the notes ref `ref`, in one pass over its tree."""
        out = ReadResult()
        if self.repo.references.get(ref) is None:
            return out
        result = self._git(["notes", "--ref", ref, "list"], timeout=GIT_LOCAL_TIMEOUT_S, env=git_env())
        if result.returncode != 0:
            raise CostattrError(f"cannot read the notes {ref} in {self.cwd}: {_last_line(result.stderr)}",
                                hint=f"check `git notes --ref {ref} list` here")
        found: list[AnyRecord] = []
        v1: list[tuple[dict[str, Any], str]] = []
        for line in result.stdout.splitlines():
            blob, _, annotated = line.partition(" ")
            try:
                data = self.repo[blob].data  # type: ignore[attr-defined]
            except (KeyError, ValueError):
                out.set_aside.add("a note whose blob is missing", f"{ref} note on {annotated}")
                continue
            found += parse_note(data.decode("utf-8", "replace"), out.set_aside, f"{ref} note on {annotated}", v1)
        found += v1_records_of(newest_v1(v1), out.set_aside)
        out.records = union(found)
        return out

    # -- write ------------------------------------------------------------------------------------

    def add(self, records: Sequence[AnyRecord]) -> None:
        batch = list(records)
        if not batch:
            return
        own = self.repo_id
        foreign = sorted({r.repo for r in batch if r.repo != own})
        if foreign:
            # Written into these notes, they would be pushed to this repository's origin: another
            # repository's branch names, paths and messages must never get there.
            others = "another repository" if len(foreign) == 1 else f"{len(foreign)} other repositories"
            raise CostattrError(
                f"refusing to write records of {others} into {self.ref} of {own}",
                hint="a per-repository ledger holds only its own repository's records (this is a costattr bug)",
            )
        with self._locked():
            self._sweep_work_refs()
            groups = self._group_by_commit(batch)
            for attempt in range(WRITE_TRIES):
                if self._write_once(groups):
                    return
                _pause(attempt, base=0.01)
        raise CostattrError(
            f"{self.ref} kept changing while costattr wrote to it ({WRITE_TRIES} tries)",
            hint="another program is writing notes right now; `costattr sync` will try again",
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise our own read-modify-writes of the ref (all worktrees share the lock file)."""
        try:
            self._lock.acquire()
        except Timeout:
            raise CostattrError(
                f"the notes of {self.cwd} are locked by another costattr process",
                hint=f"wait for it to finish; if none is running, delete {self._lock.lock_file}",
            ) from None
        try:
            yield
        finally:
            self._lock.release()

    def _group_by_commit(self, batch: list[AnyRecord]) -> dict[str, list[AnyRecord]]:
        groups: dict[str, list[AnyRecord]] = {}
        head: str | None = None
        for record in batch:
            sha = self._resolve(record.commit) if isinstance(record, SpendRecord) else None
            if sha is None:
                head = head or self._head()
                sha = head
            groups.setdefault(sha, []).append(record)
        return groups

    def _resolve(self, commit: str | None) -> str | None:
        if not commit:
            return None
        try:
            return str(self.repo.revparse_single(commit).peel(pygit2.Commit).id)
        except (KeyError, ValueError, pygit2.GitError):
            return None

    def _head(self) -> str:
        if self.repo.head_is_unborn:
            raise CostattrError(
                f"{self.cwd} has no commit yet to attach cost notes to",
                hint="the records wait in the local ledger; `costattr sync` sends them after the first commit",
            )
        return str(self.repo.head.peel(pygit2.Commit).id)

    def _signature(self) -> pygit2.Signature:
        try:
            return self.repo.default_signature
        except (KeyError, pygit2.GitError):
            return pygit2.Signature("costattr", "costattr@localhost")

    def _write_once(self, groups: dict[str, list[AnyRecord]]) -> bool:
        """One compare-and-swap write of the notes ref; False when it moved under us (retry).

        libgit2's `create_note` places each note (inside the fan-out subtree its name falls in),
        but it builds on whatever the ref holds when it runs: so it runs on a private ref that
        starts at the tip we read, and only the final move of the notes ref, checked against that
        tip, makes the change visible. One notes commit per write, whatever the number of notes.
        """
        ref = self.repo.references.get(self.ref)
        base = ref.target if ref is not None else None
        work = f"{WORK_REF_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"
        if base is not None:
            self.repo.references.create(work, base)
        sig = self._signature()
        try:
            for sha, records in groups.items():
                existing = self._note_text(work, sha) if base is not None else ""
                text = merge_note(existing, records)
                if text != existing:
                    self.repo.create_note(text, sig, sig, sha, work, True)
            done = self.repo.references.get(work)
            if done is None or done.target == base:
                return True  # every line was there already
            tree = done.peel(pygit2.Commit).tree_id
            commit = self.repo.create_commit(None, sig, sig, NOTES_MESSAGE, tree, [base] if base is not None else [])
            try:
                if ref is None:
                    self.repo.references.create(self.ref, commit, force=False)
                else:
                    ref.set_target(commit, "costattr: notes add")  # refused if the ref moved since we read it
            except (pygit2.GitError, pygit2.AlreadyExistsError):
                return False
            return True
        finally:
            with suppress(KeyError, pygit2.GitError):
                self.repo.references.delete(work)

    def _note_text(self, ref: str, sha: str) -> str:
        try:
            return self.repo.lookup_note(sha, ref).message
        except KeyError:  # NotFoundError: no note on that commit yet
            return ""

    def _sweep_work_refs(self) -> None:
        """Drop the private refs of writers that died mid-write (a SIGKILLed hook): they only pin
        unreachable notes commits. A live writer's ref (its pid runs) is left alone."""
        folder = self._common_dir() / WORK_REF_PREFIX
        try:
            names = os.listdir(folder)
        except OSError:
            return
        for name in names:
            pid = name.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                with suppress(KeyError, pygit2.GitError):
                    self.repo.references.delete(f"{WORK_REF_PREFIX}{name}")

    # -- sync -------------------------------------------------------------------------------------

    def _git(self, args: list[str], *, timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["git", *args], cwd=self.cwd, env=env, capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL, check=False,
            )
        except subprocess.TimeoutExpired:
            raise RemoteUnavailable(f"`git {args[0]}` did not finish within {timeout:g} s") from None
        except FileNotFoundError:
            raise CostattrError("the git program was not found", hint="install git and put it on PATH") from None

    def _identity_env(self) -> dict[str, str]:
        # `git notes merge` commits: a CI runner without user.name must not make sync fail.
        env = git_env()
        probe = self._git(["var", "GIT_COMMITTER_IDENT"], timeout=GIT_LOCAL_TIMEOUT_S, env=env)
        if probe.returncode != 0:
            for role in ("AUTHOR", "COMMITTER"):
                env.setdefault(f"GIT_{role}_NAME", "costattr")
                env.setdefault(f"GIT_{role}_EMAIL", "costattr@localhost")
        return env

    def _target(self, name: str) -> str | None:
        ref = self.repo.references.get(name)
        return str(ref.target) if ref is not None else None

    def _check_remote(self, remote: str) -> None:
        if remote not in self.repo.remotes.names():
            raise CostattrError(
                f"{self.cwd} has no remote named {remote!r}",
                hint="pass --remote NAME (see `git remote -v`)",
            )

    def sync(self, remote: str = "origin", *, max_tries: int = SYNC_TRIES,
             progress: Progress | None = None) -> list[str]:
        """Exchange notes with `remote`: fetch into the scratch ref, merge, push; returns what it did."""
        done: list[str] = []

        def say(message: str) -> None:
            done.append(message)
            if progress is not None:
                progress(message)

        self._check_remote(remote)
        env = self._identity_env()
        scratch = scratch_ref(self.ref, remote)

        def one_round() -> None:
            fetched = self._fetch(remote, scratch, env)
            if fetched:
                say(f"fetched {self.ref} from {remote}")
                self._merge(scratch, env, say)
            else:
                say(f"{remote} has no {self.ref} yet")
            local = self._target(self.ref)
            if local is None:
                say("no local notes to push")
                return
            # The scratch ref says what the remote holds only when this round fetched it: after the
            # remote lost its notes (deleted, reset) it still names what an earlier fetch found.
            if fetched and local == self._target(scratch):
                say(f"{remote} is up to date")
                return
            self._push(remote, env)
            say(f"pushed {self.ref} to {remote}")

        _retrying(one_round, max_tries, say, f"could not push {self.ref} to {remote}")
        return done

    def _fetch(self, remote: str, scratch: str, env: dict[str, str]) -> bool:
        """Fetch the remote's notes into the scratch ref; False when the remote has none."""
        spec = f"+{self.ref}:{scratch}"  # forced, but only the scratch ref: nothing local is lost
        result = self._git(
            ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", remote, spec],
            timeout=GIT_NETWORK_TIMEOUT_S, env=env,
        )
        if result.returncode == 0:
            return True
        if "couldn't find remote ref" in result.stderr:
            return False
        if _CONTENTION.search(result.stderr):  # another sync in a worktree of this repository is fetching
            raise _Busy("fetch not done",
                        f"{scratch} is being updated by another fetch here ({_git_says(result.stderr, _CONTENTION)})",
                        "another `costattr sync` or `git fetch` in this repository is running; try again")
        raise RemoteUnavailable(
            f"cannot fetch {self.ref} from {remote}: {_last_line(result.stderr) or 'git fetch failed'}",
            hint=f"check that `git fetch {remote}` works here (network, credentials)",
        )

    def _merge(self, scratch: str, env: dict[str, str], say: Progress) -> None:
        before = self._target(self.ref)
        with self._locked():
            result = self._git(
                ["notes", "--ref", self.ref, "merge", "--quiet", "-s", MERGE_STRATEGY, scratch],
                timeout=GIT_LOCAL_TIMEOUT_S, env=env,
            )
        if result.returncode != 0:
            raise CostattrError(
                f"`git notes merge` of {scratch} into {self.ref} failed: {_last_line(result.stderr)}",
                hint=f"if a notes merge is in progress, finish it with `git notes --ref {self.ref} merge --abort`",
            )
        if self._target(self.ref) != before:
            say(f"merged into {self.ref} ({MERGE_STRATEGY})")

    def _push(self, remote: str, env: dict[str, str]) -> None:
        """Push without force. A lost race raises _Busy (the caller fetches, merges, pushes again);
        a refusal raises RemoteError, anything else RemoteUnavailable."""
        result = self._git(
            ["push", "--porcelain", "--no-verify", remote, f"{self.ref}:{self.ref}"],
            timeout=GIT_NETWORK_TIMEOUT_S, env=env,
        )
        if result.returncode == 0:
            return
        status = next((ln for ln in result.stdout.splitlines() if ln.startswith("!")), "")
        reason = status.split("\t")[-1] if status else ""
        if "[rejected]" in status:  # (fetch first) / (non-fast-forward): someone pushed since our fetch
            raise _Busy("push rejected", f"{remote} moved meanwhile ({reason.removeprefix('[rejected] ').strip('()')})",
                        "others are pushing notes right now; run `costattr sync` again")
        rejected = "[remote rejected]" in status
        if rejected and "declined" not in reason and (_CONTENTION.search(reason) or _CONTENTION.search(result.stderr)):
            # The server's ref lock was held by a concurrent push: git answers "failed to update
            # ref" (or, on some hosts, "cannot lock ref" / "incorrect old value provided") and its
            # stderr says which lock, or which old value no longer matched.
            cause = _git_says(result.stderr, _CONTENTION) if _CONTENTION.search(result.stderr) else reason
            raise _Busy(
                "push not accepted", f"ref-lock contention on {remote} ({cause})",
                f"other pushes kept {self.ref} locked on {remote}; run `costattr sync` again (if nobody else is "
                f"pushing, a lock left by a crashed push on the server, `{self.ref}.lock`, must be removed there)",
            )
        # What the server said (a pre-receive hook's own words) is the useful part of stderr.
        said = _git_says("\n".join(ln for ln in result.stderr.splitlines() if ln.startswith("remote:")))
        detail = f": {said}" if said and said not in reason else ""
        if rejected and "failed to update ref" in reason:  # not a lock: the server could not write it
            raise RemoteUnavailable(f"{remote} could not update {self.ref} ({mask_secrets(reason)}){detail}",
                                    hint="the server failed while writing the ref (disk, permissions); "
                                         f"try again, or ask {remote}'s admins")
        if rejected:
            raise RemoteError(
                f"{remote} refused {self.ref} ({mask_secrets(reason)}){detail}",
                hint="the server refuses notes refs (a pre-receive hook, push rules, branch protection); "
                     "ask for push access to refs/notes/*",
            )
        if not status and _CONTENTION.search(result.stderr):
            raise _Busy("push not accepted", f"ref-lock contention ({_git_says(result.stderr, _CONTENTION)})",
                        "others are pushing notes right now; run `costattr sync` again")
        why = mask_secrets(reason) or _last_line(result.stderr) or "git push failed"
        raise RemoteUnavailable(f"cannot push {self.ref} to {remote}: {why}",
                                hint=f"check that `git push {remote}` works here (network, credentials)")


def _retrying(action: Callable[[], _T], max_tries: int, say: Progress | None, failure: str) -> _T:
    """Run `action`, again after a jittered pause each time it lost a race (_Busy), at most
    `max_tries` times; then RemoteUnavailable naming the last cause."""
    attempt = 1
    while True:
        try:
            return action()
        except _Busy as busy:
            if attempt >= max_tries:
                raise RemoteUnavailable(f"{failure} in {max_tries} tries: {busy.cause}", hint=busy.retry_hint,
                                        reason=busy.cause) from None
            if say is not None:
                say(f"{busy.what}: {busy.cause}; fetching again ({attempt}/{max_tries})")
            _pause(attempt)
            attempt += 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, owned by someone else
    return True


def add_fetch_refspec(repo_path: Path | str, remote: str = "origin", ref: str = DEFAULT_REF) -> bool:
    """Make every `git fetch <remote>` also bring the remote's notes into the scratch ref.

    Deliberately `+<ref>:refs/notes/remotes/<remote>/...`, not `+<ref>:<ref>`: a forced fetch
    straight into the notes ref would overwrite notes not pushed yet. `costattr sync` merges
    the scratch ref. Returns False when the refspec was already there.
    """
    gitdir = pygit2.discover_repository(str(repo_path))
    if gitdir is None:
        raise NotAGitRepo(f"{repo_path} is not inside a git repository")
    repo = pygit2.Repository(gitdir)
    ref = normalize_ref(ref)
    spec = f"+{ref}:{scratch_ref(ref, remote)}"
    try:
        existing = repo.remotes[remote].fetch_refspecs
    except KeyError:
        raise CostattrError(f"no remote named {remote!r}",
                            hint="pass the remote's name (see `git remote -v`)") from None
    if spec in existing:
        return False
    repo.remotes.add_fetch(remote, spec)
    return True
