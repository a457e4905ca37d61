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
- Local writes go through pygit2 and a compare-and-swap ref update (libgit2 refuses when the
  ref moved since we read it), retried, under a lock file shared by all worktrees.
- Network (fetch / push) and merging shell out to git, so credential helpers, SSH agents and
  `actions/checkout`'s auth just work. The remote notes are fetched into a scratch ref
  (`refs/notes/remotes/<remote>/costattr`), merged with cat_sort_uniq, then pushed without force;
  a non-fast-forward rejection repeats fetch→merge→push. A forced fetch straight into
  refs/notes/costattr is never used: it would throw away notes not yet pushed.
- The hook only writes locally (no network on commit); `costattr sync` exchanges with the remote.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pygit2
from filelock import FileLock, Timeout

from costattr.errors import CostattrError, NotAGitRepo, RemoteError
from costattr.ledger.memory_api import RemoteUnavailable
from costattr.ledger.records import AnyRecord, RecordError, SetAside, SpendRecord, cap, from_json, union
from costattr.ledger.store import ReadResult

DEFAULT_REF = "refs/notes/costattr"
MERGE_STRATEGY = "cat_sort_uniq"
LOCK_TIMEOUT_S = 5.0
WRITE_TRIES = 8  # compare-and-swap retries when someone else moves the notes ref
SYNC_TRIES = 5  # fetch→merge→push rounds before giving up on a busy remote
GIT_NETWORK_TIMEOUT_S = 120.0
GIT_LOCAL_TIMEOUT_S = 60.0
NOTES_MESSAGE = "Notes added by costattr"

# Variables a calling git (hooks run with them set) would use to point our git at its repository.
_GIT_ENV_TO_DROP = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_PREFIX", "GIT_NAMESPACE", "GIT_QUARANTINE_PATH",
)
_URL_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)

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
# Trees (a notes ref is a commit whose tree maps commit ids to blobs, flat or fanned out "ab/cdef…")


def _find_note_path(tree: pygit2.Tree | None, hexsha: str) -> list[str] | None:
    if tree is None:
        return None
    if hexsha in tree:
        return [hexsha]
    head, rest = hexsha[:2], hexsha[2:]
    if len(hexsha) > 2 and head in tree:
        sub = tree[head]
        if isinstance(sub, pygit2.Tree):
            found = _find_note_path(sub, rest)
            return [head, *found] if found else None
    return None


def _blob_text(tree: pygit2.Tree, parts: list[str]) -> str:
    obj: pygit2.Object = tree
    for part in parts:
        obj = obj[part]  # type: ignore[index]
    return obj.data.decode("utf-8", "replace")  # type: ignore[attr-defined]


def _with_blob(repo: pygit2.Repository, tree: pygit2.Tree | None, parts: list[str], blob: pygit2.Oid) -> pygit2.Oid:
    builder = repo.TreeBuilder(tree) if tree is not None else repo.TreeBuilder()
    if len(parts) == 1:
        builder.insert(parts[0], blob, pygit2.enums.FileMode.BLOB)
    else:
        sub = tree[parts[0]] if tree is not None and parts[0] in tree else None
        sub_tree = sub if isinstance(sub, pygit2.Tree) else None
        builder.insert(parts[0], _with_blob(repo, sub_tree, parts[1:], blob), pygit2.enums.FileMode.TREE)
    return builder.write()


# ----------------------------------------------------------------------------------------------
# git binary


def git_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_TO_DROP}
    if not sys.stdin.isatty():
        env["GIT_TERMINAL_PROMPT"] = "0"  # never wait for a password nobody can type
    env.update(extra or {})
    return env


def mask_secrets(text: str) -> str:
    """git's stderr may quote a remote URL with a token in it."""
    return _URL_USERINFO.sub(r"\1****@", text)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return mask_secrets(lines[-1]) if lines else ""


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
        out = ReadResult()
        if self.repo.references.get(self.ref) is None:
            return out
        found: list[AnyRecord] = []
        v1: list[tuple[dict[str, Any], str]] = []
        for note in self.repo.notes(self.ref):  # type: ignore[call-arg]  # stubs lag: ref is accepted
            found += parse_note(note.message, out.set_aside, f"{self.ref} note on {note.annotated_id}", v1)
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
            groups = self._group_by_commit(batch)
            for attempt in range(WRITE_TRIES):
                if self._write_once(groups):
                    return
                time.sleep(0.01 * (2**attempt) * (0.5 + random.random()))
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
        """One read-modify-write of the notes ref; False when it moved under us (retry)."""
        ref = self.repo.references.get(self.ref)
        parent = self.repo[ref.target].peel(pygit2.Commit) if ref is not None else None
        tree = parent.tree if parent is not None else None
        for sha, records in groups.items():
            path = _find_note_path(tree, sha)
            existing = _blob_text(tree, path) if tree is not None and path else ""
            text = merge_note(existing, records)
            if text == existing:
                continue
            blob = self.repo.create_blob(text.encode())
            tree = self.repo[_with_blob(self.repo, tree, path or [sha], blob)].peel(pygit2.Tree)
        if tree is None or (parent is not None and tree.id == parent.tree.id):
            return True  # nothing changed
        sig = self._signature()
        commit = self.repo.create_commit(None, sig, sig, NOTES_MESSAGE, tree.id, [parent.id] if parent else [])
        try:
            if ref is None:
                self.repo.references.create(self.ref, commit, force=False)
            else:
                ref.set_target(commit, "costattr: notes add")  # fails if the ref moved since we read it
        except (pygit2.GitError, pygit2.AlreadyExistsError):
            return False
        return True

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

    def sync(self, remote: str = "origin", *, max_tries: int = SYNC_TRIES,
             progress: Progress | None = None) -> list[str]:
        """Exchange notes with `remote`: fetch into the scratch ref, merge, push; returns what it did."""
        done: list[str] = []

        def say(message: str) -> None:
            done.append(message)
            if progress is not None:
                progress(message)

        if remote not in self.repo.remotes.names():
            raise CostattrError(
                f"{self.cwd} has no remote named {remote!r}",
                hint="pass --remote NAME (see `git remote -v`)",
            )
        env = self._identity_env()
        scratch = scratch_ref(self.ref, remote)
        for attempt in range(1, max_tries + 1):
            fetched = self._fetch(remote, scratch, env)
            if fetched:
                say(f"fetched {self.ref} from {remote}")
                self._merge(scratch, env, say)
            else:
                say(f"{remote} has no {self.ref} yet")
            local = self._target(self.ref)
            if local is None:
                say("no local notes to push")
                return done
            # The scratch ref says what the remote holds only when this round fetched it: after the
            # remote lost its notes (deleted, reset) it still names what an earlier fetch found.
            if fetched and local == self._target(scratch):
                say(f"{remote} is up to date")
                return done
            if self._push(remote, env):
                say(f"pushed {self.ref} to {remote}")
                return done
            say(f"push rejected: {remote} moved meanwhile; fetching again ({attempt}/{max_tries})")
            time.sleep(0.05 * attempt * (0.5 + random.random()))
        raise RemoteUnavailable(
            f"could not push {self.ref} to {remote}: it kept moving ({max_tries} tries)",
            hint="others are pushing notes right now; run `costattr sync` again",
        )

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

    def _push(self, remote: str, env: dict[str, str]) -> bool:
        """Push without force; False on a non-fast-forward rejection (the caller fetches again)."""
        result = self._git(
            ["push", "--porcelain", "--no-verify", remote, f"{self.ref}:{self.ref}"],
            timeout=GIT_NETWORK_TIMEOUT_S, env=env,
        )
        if result.returncode == 0:
            return True
        status = [ln for ln in result.stdout.splitlines() if ln.startswith("!")]
        if status and "[rejected]" in status[0]:
            return False
        reason = status[0].split("\t")[-1] if status else _last_line(result.stderr)
        if status and "[remote rejected]" in status[0]:
            raise RemoteError(
                f"{remote} refused {self.ref}: {mask_secrets(reason)}",
                hint="the server may block notes refs (push rules, branch protection); ask for refs/notes/* access",
            )
        raise RemoteUnavailable(
            f"cannot push {self.ref} to {remote}: {mask_secrets(reason) or 'git push failed'}",
            hint=f"check that `git push {remote}` works here (network, credentials)",
        )


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
