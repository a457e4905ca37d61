"""The git-notes backend with real repositories: a bare origin and clones, the git binary."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pygit2
import pytest

from costattr.cli import main
from costattr.errors import CostattrError, RemoteError
from costattr.ledger import outbox
from costattr.ledger.git_notes import (
    DEFAULT_REF,
    GitNotesLedger,
    add_fetch_refspec,
    encode_line,
    parse_note,
    scratch_ref,
)
from costattr.models import LedgerEntry


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def entry(sid: str, updated_at: float, cost: float, commit: str | None = None) -> LedgerEntry:
    return LedgerEntry(session_id=sid, updated_at=updated_at, cost_usd=cost, commit=commit, cost_str=f"{cost:.4f}")


@pytest.fixture
def origin_and_clones(tmp_path: Path) -> dict[str, Path]:
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    a = tmp_path / "a"
    git(tmp_path, "clone", "-q", str(origin), str(a))
    commit(a, "init")
    git(a, "push", "-q", "origin", "HEAD:main")
    repos = {"origin": origin, "a": a}
    for name in ("b", "c"):
        git(tmp_path, "clone", "-q", str(origin), str(tmp_path / name))
        repos[name] = tmp_path / name
    return repos


def test_three_clones_converge_and_newest_wins(origin_and_clones: dict[str, Path]) -> None:
    a, b, c = (origin_and_clones[k] for k in "abc")
    base = git(a, "rev-parse", "HEAD")
    led_a = GitNotesLedger(a)
    led_a.upsert([entry("s1", 100, 1.0, base), entry("s2", 100, 2.0, base)])
    assert "pushed refs/notes/costattr to origin" in led_a.sync()

    b_commit = commit(b, "b's work")
    led_b = GitNotesLedger(b)
    led_b.upsert([entry("s1", 200, 5.0, b_commit), entry("s3", 100, 3.0, b_commit)])

    a_commit = commit(a, "a's work")
    raced = []

    def a_pushes_first(message: str) -> None:
        # Between B's fetch and B's push, A pushes: B's first push is rejected (non-fast-forward).
        if message.startswith("fetched") and not raced:
            raced.append(message)
            led_a.upsert([entry("s4", 100, 4.0, a_commit)])
            led_a.sync()

    done = led_b.sync(progress=a_pushes_first)
    assert any(line.startswith("push rejected") for line in done), done
    assert done[-1] == "pushed refs/notes/costattr to origin"

    led_c = GitNotesLedger(c)
    assert led_c.read() == {}
    led_c.sync()
    got = led_c.read()
    assert set(got) == {"s1", "s2", "s3", "s4"}
    assert got["s1"].cost_usd == 5.0 and got["s1"].updated_at == 200  # the newer copy wins
    led_a.sync()
    assert {k: v.cost_usd for k, v in led_a.read().items()} == {k: v.cost_usd for k, v in got.items()}
    # B's entry for a commit C never fetched is still readable there: notes are keyed by id only.
    assert git(c, "notes", "--ref", "costattr", "list", base)


def test_same_note_edited_in_two_clones_merges_line_by_line(origin_and_clones: dict[str, Path]) -> None:
    a, b = origin_and_clones["a"], origin_and_clones["b"]
    base = git(a, "rev-parse", "HEAD")
    led_a, led_b = GitNotesLedger(a), GitNotesLedger(b)
    led_a.upsert([entry("s1", 100, 1.0, base), entry("only-a", 100, 1.0, base)])
    led_a.sync()
    led_b.upsert([entry("s1", 300, 3.0, base), entry("only-b", 100, 1.0, base)])
    led_b.sync()  # fetch, cat_sort_uniq merge of the same note, push
    note = git(b, "notes", "--ref", "costattr", "show", base)
    assert len(note.splitlines()) == 4  # both copies of s1 survive the merge ...
    assert led_b.read()["s1"].cost_usd == 3.0  # ... and reading keeps the newer
    led_b.upsert([entry("s1", 250, 2.5, base)])  # older than what is there: no change
    led_b.upsert([entry("only-b", 400, 4.0, base)])  # rewriting the note compacts s1 too
    lines = git(b, "notes", "--ref", "costattr", "show", base).splitlines()
    assert len(lines) == 3
    assert sorted(e.session_id for e in parse_note("\n".join(lines))[0]) == ["only-a", "only-b", "s1"]


def test_note_format_is_sorted_compact_jsonl(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "r")
    repo = tmp_path / "r"
    sha = commit(repo, "one")
    GitNotesLedger(repo).upsert([entry("zz", 1, 1.0, sha), entry("aa", 1, 2.0, sha)])
    raw = subprocess.run(["git", "notes", "--ref", "costattr", "show", sha], cwd=repo, check=True,
                         capture_output=True).stdout.decode()
    lines = raw.splitlines()
    assert lines == sorted(lines) and len(lines) == 2
    assert set(lines) == {encode_line(entry("aa", 1, 2.0, sha)), encode_line(entry("zz", 1, 1.0, sha))}
    assert lines[0].startswith('{"author":null,')  # keys sorted, compact separators
    assert all('": ' not in line and '", "' not in line for line in lines)


def test_entries_without_a_known_commit_go_on_head(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "r")
    repo = tmp_path / "r"
    with pytest.raises(CostattrError, match="no commit yet"):
        GitNotesLedger(repo).upsert([entry("s0", 1, 1.0)])
    first = commit(repo, "one")
    head = commit(repo, "two")
    led = GitNotesLedger(repo)
    led.upsert([entry("s1", 1, 1.0), entry("s2", 1, 1.0, "f" * 40), entry("s3", 1, 1.0, first[:7])])
    notes = dict(line.split()[::-1] for line in git(repo, "notes", "--ref", "costattr", "list").splitlines())
    assert set(notes) == {head, first}  # abbreviated ids resolve; unknown or missing ones use HEAD
    on_head = {e.session_id for e in parse_note(git(repo, "notes", "--ref", "costattr", "show", head))[0]}
    assert on_head == {"s1", "s2"}
    assert set(led.read()) == {"s1", "s2", "s3"}


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "r")
    repo = tmp_path / "r"
    one = commit(repo, "one")
    two = commit(repo, "two")
    errors: list[BaseException] = []

    def locked_writer(name: str) -> None:
        led = GitNotesLedger(repo)  # its own Repository object and lock handle, like another process
        try:
            for i in range(10):
                led.upsert([entry(f"{name}-{i}", i, 1.0, two)])
        except BaseException as e:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(e)

    def cas_only_writer() -> None:
        # A peer that ignores our lock file (say, another costattr version): the compare-and-swap
        # ref update alone must keep both sides' notes.
        led = GitNotesLedger(repo)
        for i in range(10):
            groups = {one: [entry(f"z-{i}", i, 1.0, one)]}
            while not led._write_once(groups):
                pass

    threads = [threading.Thread(target=locked_writer, args=(n,)) for n in ("x", "y")]
    threads.append(threading.Thread(target=cas_only_writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    want = {f"{n}-{i}" for n in ("x", "y", "z") for i in range(10)}
    assert set(GitNotesLedger(repo).read()) == want
    # Note: plain `git notes add` updates the ref without compare-and-swap, so it alone can
    # clobber a concurrent writer; costattr's writes never clobber anyone.


def test_fanned_out_notes_tree_is_updated_in_place(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "r")
    repo_dir = tmp_path / "r"
    sha = commit(repo_dir, "one")
    repo = pygit2.Repository(str(repo_dir))
    # git fans a big notes tree out as ab/cdef...; build one by hand with an existing note.
    blob = repo.create_blob(encode_line(entry("old", 1, 1.0, sha)).encode() + b"\n")
    sub = repo.TreeBuilder()
    sub.insert(sha[2:], blob, pygit2.enums.FileMode.BLOB)
    top = repo.TreeBuilder()
    top.insert(sha[:2], sub.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("t", "t@example.com")
    repo.references.create(DEFAULT_REF, repo.create_commit(None, sig, sig, "notes", top.write(), []))

    GitNotesLedger(repo_dir).upsert([entry("new", 1, 2.0, sha)])
    tree = repo.references.get(DEFAULT_REF).peel(pygit2.Commit).tree
    assert [e.name for e in tree] == [sha[:2]]  # no flat duplicate next to the fanned-out note
    shown = git(repo_dir, "notes", "--ref", "costattr", "show", sha)
    assert sorted(e.session_id for e in parse_note(shown)[0]) == ["new", "old"]


def test_fetch_refspec_goes_to_the_scratch_ref_and_keeps_local_notes(origin_and_clones: dict[str, Path]) -> None:
    a, b = origin_and_clones["a"], origin_and_clones["b"]
    base = git(a, "rev-parse", "HEAD")
    GitNotesLedger(a).upsert([entry("from-a", 1, 1.0, base)])
    GitNotesLedger(a).sync()
    led_b = GitNotesLedger(b)
    led_b.upsert([entry("unpushed-b", 1, 1.0, base)])
    assert add_fetch_refspec(b) is True
    assert add_fetch_refspec(b) is False  # idempotent
    git(b, "fetch", "-q", "origin")  # the user's ordinary fetch
    assert git(b, "rev-parse", "--verify", scratch_ref(DEFAULT_REF, "origin"))
    assert set(led_b.read()) == {"unpushed-b"}  # the local notes ref was not overwritten
    led_b.sync()
    assert set(led_b.read()) == {"from-a", "unpushed-b"}


def test_sync_edge_cases(origin_and_clones: dict[str, Path]) -> None:
    a, c = origin_and_clones["a"], origin_and_clones["c"]
    assert GitNotesLedger(c).sync() == ["origin has no refs/notes/costattr yet", "no local notes to push"]
    with pytest.raises(CostattrError, match="no remote named 'upstream'"):
        GitNotesLedger(c).sync("upstream")
    GitNotesLedger(a).upsert([entry("s1", 1, 1.0)])
    GitNotesLedger(a).sync()
    assert GitNotesLedger(a).sync()[-1] == "origin is up to date"


def test_remote_refusing_notes_is_reported_not_retried(origin_and_clones: dict[str, Path]) -> None:
    origin, a = origin_and_clones["origin"], origin_and_clones["a"]
    hook = origin / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'notes are not allowed here' >&2\nexit 1\n")
    hook.chmod(0o755)
    led = GitNotesLedger(a)
    led.upsert([entry("s1", 1, 1.0)])
    with pytest.raises(RemoteError, match="refused refs/notes/costattr"):
        led.sync()


def test_sync_ignores_a_hooks_git_environment(origin_and_clones: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    a = origin_and_clones["a"]
    git(tmp_path, "init", "-q", "other")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "other" / ".git"))  # as inside another repo's hook
    monkeypatch.setenv("GIT_INDEX_FILE", str(tmp_path / "other" / ".git" / "index"))
    led = GitNotesLedger(a)
    led.upsert([entry("s1", 1, 1.0)])
    assert led.sync()[-1] == "pushed refs/notes/costattr to origin"
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert git(origin_and_clones["origin"], "rev-parse", "--verify", DEFAULT_REF)


def test_cli_sync_with_git_notes(origin_and_clones: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = origin_and_clones["a"], origin_and_clones["b"]
    monkeypatch.chdir(a)
    led = GitNotesLedger(a)
    outbox.store([entry("waiting", 1, 1.0)], led)  # e.g. the hook ran before the first commit
    assert main(["sync", "--ledger", "git-notes"]) == 0
    out = capsys.readouterr().out
    assert "outbox: sent 1, 0 still waiting" in out
    assert "pushed refs/notes/costattr to origin" in out
    monkeypatch.chdir(b)
    monkeypatch.setenv("COSTATTR_LEDGER", "git-notes")
    assert main(["sync"]) == 0
    assert set(GitNotesLedger(b).read()) == {"waiting"}
    assert main(["sync", "--remote", "nowhere"]) == 1
    assert "no remote named 'nowhere'" in capsys.readouterr().err


def test_linked_worktree_shares_the_notes_and_the_lock(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "r")
    repo = tmp_path / "r"
    commit(repo, "one")
    git(repo, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "wt"))
    wt_head = commit(tmp_path / "wt", "on feature")
    led_wt = GitNotesLedger(tmp_path / "wt")
    led_wt.upsert([entry("s1", 1, 1.0)])  # no commit: HEAD of the worktree
    assert Path(led_wt._lock.lock_file).parent == (repo / ".git").resolve()
    assert set(GitNotesLedger(repo).read()) == {"s1"}
    assert git(repo, "notes", "--ref", "costattr", "list", wt_head)
