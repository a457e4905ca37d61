"""The git-notes backend with real repositories: bare origins and clones, the git binary, real notes.

A note holds records, one sorted compact JSON line each; records never change, so the same record
is the same line in every clone and `git notes merge -s cat_sort_uniq` of two clones' notes is
their union. The notes are one repository's: they never receive another repository's records.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pygit2
import pytest
from builders import link, part, rewrite, store_with
from helpers_claude import append_claude, claude_line
from helpers_notes import rec, repo_id

from costattr.cli import main
from costattr.errors import CostattrError
from costattr.ledger.git_notes import (
    DEFAULT_REF,
    WORK_REF_PREFIX,
    GitNotesLedger,
    add_fetch_refspec,
    encode_line,
    parse_note,
    scratch_ref,
)
from costattr.ledger.migrate import v1_records
from costattr.ledger.publish import plural, publish, waiting
from costattr.ledger.records import AnyRecord, SpendRecord, union
from costattr.ledger.store import LocalStore
from costattr.testing.gitrepo import commit, git, make_repo

V1_FIXTURE = Path(__file__).parent / "fixtures" / "v1" / "ledger-v1.json"


def note_lines(repo: Path, sha: str) -> list[str]:
    return git(repo, "notes", "--ref", "costattr", "show", sha).splitlines()


def annotated(repo: Path) -> set[str]:
    """The commits that carry a costattr note (`git notes list`: note blob, annotated object)."""
    return {line.split()[1] for line in git(repo, "notes", "--ref", "costattr", "list").splitlines()}


def every_note(repo: Path) -> str:
    return "\n".join(git(repo, "notes", "--ref", "costattr", "show", sha) for sha in sorted(annotated(repo)))


def requests(records: Iterable[AnyRecord]) -> int:
    return sum(r.requests for r in records if isinstance(r, SpendRecord))


@pytest.fixture
def origin_and_clones(tmp_path: Path) -> dict[str, Path]:
    origin = make_repo(tmp_path / "origin.git", bare=True)
    a = tmp_path / "a"
    git(tmp_path, "clone", "-q", str(origin), str(a))
    commit(a, "init")
    git(a, "push", "-q", "origin", "HEAD:main")
    repos = {"origin": origin, "a": a}
    for name in ("b", "c"):
        git(tmp_path, "clone", "-q", str(origin), str(tmp_path / name))
        repos[name] = tmp_path / name
    return repos


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "r")


# ----------------------------------------------------------------------------------------------
# Clones and origin


def test_three_clones_converge_after_a_rejected_push(origin_and_clones: dict[str, Path]) -> None:
    a, b, c = (origin_and_clones[k] for k in "abc")
    base = git(a, "rev-parse", "HEAD")
    led_a, led_b, led_c = GitNotesLedger(a), GitNotesLedger(b), GitNotesLedger(c)
    from_a = [rec(a, "s1", commit=base), rec(a, "s2", commit=base)]
    led_a.add(from_a)
    assert "pushed refs/notes/costattr to origin" in led_a.sync()

    b_commit = commit(b, "b's work")  # never pushed: only B has this commit
    from_b = [rec(b, "s1", commit=b_commit), rec(b, "s3", state="open", branch="feature/ENG-1")]
    led_b.add(from_b)

    a_commit = commit(a, "a's work")
    raced: list[AnyRecord] = []

    def a_pushes_first(message: str) -> None:
        # Between B's fetch and B's push, A pushes: B's first push is rejected (non-fast-forward).
        if message.startswith("fetched") and not raced:
            raced.append(rec(a, "s4", commit=a_commit))
            led_a.add(raced)
            led_a.sync()

    done = led_b.sync(progress=a_pushes_first)
    assert any(line.startswith("push rejected") for line in done), done
    assert done[-1] == "pushed refs/notes/costattr to origin"

    assert led_c.read().records == {}
    led_c.sync()
    everything = union(from_a, from_b, raced)
    got = led_c.read()
    assert got.records == everything and got.set_aside.count == 0
    assert requests(got.records.values()) == 5
    led_a.sync()
    assert led_a.read().records == everything
    # B's closed record sits on B's commit, which C never fetched: still read there, and filed
    # where B filed it (a note is found by the commit's id, not by the commit).
    assert subprocess.run(["git", "-C", str(c), "cat-file", "-e", b_commit], capture_output=True).returncode != 0
    assert b_commit in annotated(c)
    assert encode_line(from_b[0]) in note_lines(b, b_commit)


def test_the_same_note_edited_in_two_clones_merges_to_the_union_of_records(
    origin_and_clones: dict[str, Path],
) -> None:
    a, b = origin_and_clones["a"], origin_and_clones["b"]
    base = git(a, "rev-parse", "HEAD")
    led_a, led_b = GitNotesLedger(a), GitNotesLedger(b)
    shared = [rec(a, "s1", commit=base), rec(a, "s2", commit=base)]
    led_a.add(shared)
    led_a.sync()
    led_b.sync()  # B now holds the same lines
    only_a, only_b = rec(a, "s3", commit=base), rec(b, "s4", commit=base)
    led_a.add([only_a])
    led_b.add([only_b])
    led_a.sync()
    led_b.sync()  # fetch, cat_sort_uniq merge of one note edited on both sides, push
    led_a.sync()
    want = union(shared, [only_a, only_b])
    lines = note_lines(b, base)
    assert lines == sorted({encode_line(r) for r in want.values()})  # one line per record, sorted
    assert note_lines(a, base) == lines
    assert {r.id: r for r in parse_note("\n".join(lines))} == want == led_a.read().records == led_b.read().records

    ref_before = git(b, "rev-parse", DEFAULT_REF)
    led_b.add([only_b, shared[0]])  # already there, from either clone: nothing to write
    assert git(b, "rev-parse", DEFAULT_REF) == ref_before


def test_two_copies_of_one_record_read_the_same_in_every_clone(origin_and_clones: dict[str, Path]) -> None:
    """A hand edit leaves two different lines with one id; both survive the merge (nothing is
    dropped) and every clone reads the same one, whatever order it met them in."""
    a, b = origin_and_clones["a"], origin_and_clones["b"]
    base = git(a, "rev-parse", "HEAD")
    original = rec(a, "s1", commit=base)
    GitNotesLedger(a).add([original])
    GitNotesLedger(a).sync()
    GitNotesLedger(b).sync()
    edited = json.loads(encode_line(original))
    edited["host"] = "edited-by-hand"
    git(b, "notes", "--ref", "costattr", "add", "-f", "-m", orjson.dumps(edited, option=orjson.OPT_SORT_KEYS).decode(),
        base)
    # A adds to the same note meanwhile: B's sync merges both versions of it (cat_sort_uniq).
    GitNotesLedger(a).add([rec(a, "s2", commit=base)])
    GitNotesLedger(a).sync()
    GitNotesLedger(b).sync()
    GitNotesLedger(a).sync()
    assert len(note_lines(b, base)) == 3 and note_lines(a, base) == note_lines(b, base)
    read_a, read_b = GitNotesLedger(a).read().records, GitNotesLedger(b).read().records
    assert read_a == read_b and read_a[original.id].host in ("laptop", "edited-by-hand")


def test_note_format_is_sorted_compact_jsonl(repo: Path) -> None:
    sha = commit(repo, "one")
    records = [rec(repo, "zz", commit=sha), rec(repo, "aa", commit=sha, branch="feature/PROJ-1-x")]
    GitNotesLedger(repo).add(records)
    raw = subprocess.run(["git", "notes", "--ref", "costattr", "show", sha], cwd=repo, check=True,
                         capture_output=True).stdout.decode()
    lines = raw.splitlines()
    assert lines == sorted(lines) and len(lines) == 2
    assert set(lines) == {encode_line(r) for r in records}
    assert lines[0].startswith('{"author":"Dev","branch":')  # keys sorted, compact separators
    assert all('": ' not in line and '", "' not in line for line in lines)
    assert [json.loads(line)["v"] for line in lines] == [2, 2]


def test_records_without_a_known_commit_go_on_head(repo: Path) -> None:
    with pytest.raises(CostattrError, match="no commit yet"):
        GitNotesLedger(repo).add([rec(repo, "s0", state="open")])
    first = commit(repo, "one")
    head = commit(repo, "two")
    led = GitNotesLedger(repo)
    on_first = rec(repo, "s3", commit=first[:7])  # an abbreviated id resolves
    elsewhere = [
        rec(repo, "s1", state="open", branch="feature/x"),
        rec(repo, "s2", commit="f" * 40),  # a commit this clone does not have
        rec(repo, "s4", state="unattributed", branch=None),
        link("s1", "feature/x", 7, repo=repo_id(repo)),
        rewrite("s3", first, head, repo=repo_id(repo)),
    ]
    led.add([on_first, *elsewhere])
    assert annotated(repo) == {head, first}
    assert {r.id for r in parse_note(git(repo, "notes", "--ref", "costattr", "show", head))} == {r.id for r in elsewhere}
    assert [r.id for r in parse_note(git(repo, "notes", "--ref", "costattr", "show", first))] == [on_first.id]
    assert led.read().records == union([on_first, *elsewhere])


def test_records_wait_in_the_local_ledger_until_the_first_commit(repo: Path) -> None:
    store = store_with([rec(repo, "early", state="open")])
    led = GitNotesLedger(repo)
    result = publish(store, led, repo_id(repo))
    assert not result.ok and "no commit yet" in result.message and "1 record wait in the local ledger" in result.message
    assert waiting(store, led, repo_id(repo)) == 1
    commit(repo, "first")
    assert publish(store, led, repo_id(repo)).sent == 1
    assert set(led.read().records) == set(store.read().records)


def test_concurrent_writers_lose_nothing(repo: Path) -> None:
    one = commit(repo, "one")
    two = commit(repo, "two")
    errors: list[BaseException] = []
    batches = {n: [rec(repo, f"{n}-{i}", commit=two) for i in range(10)] for n in ("x", "y")}
    unlocked = [rec(repo, f"z-{i}", commit=one) for i in range(10)]

    def locked_writer(name: str) -> None:
        led = GitNotesLedger(repo)  # its own Repository object and lock handle, like another process
        try:
            for r in batches[name]:
                led.add([r])
        except BaseException as e:  # noqa: BLE001  # pragma: no cover - reported below
            errors.append(e)

    def cas_only_writer() -> None:
        # A peer that ignores our lock file (say, another costattr version): the compare-and-swap
        # ref update alone must keep both sides' notes.
        led = GitNotesLedger(repo)
        for r in unlocked:
            while not led._write_once({one: [r]}):
                pass

    threads = [threading.Thread(target=locked_writer, args=(n,)) for n in batches]
    threads.append(threading.Thread(target=cas_only_writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert GitNotesLedger(repo).read().records == union(*batches.values(), unlocked)
    # Note: plain `git notes add` updates the ref without compare-and-swap, so it alone can
    # clobber a concurrent writer; costattr's writes never clobber anyone.


def test_fanned_out_notes_tree_is_updated_in_place(repo: Path) -> None:
    sha = commit(repo, "one")
    r = pygit2.Repository(str(repo))
    old, new = rec(repo, "old", commit=sha), rec(repo, "new", commit=sha)
    # git fans a big notes tree out as ab/cdef...; build one by hand with an existing note.
    blob = r.create_blob(encode_line(old).encode() + b"\n")
    sub = r.TreeBuilder()
    sub.insert(sha[2:], blob, pygit2.enums.FileMode.BLOB)
    top = r.TreeBuilder()
    top.insert(sha[:2], sub.write(), pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("t", "t@example.com")
    r.references.create(DEFAULT_REF, r.create_commit(None, sig, sig, "notes", top.write(), []))

    GitNotesLedger(repo).add([new])
    tree = r.references.get(DEFAULT_REF).peel(pygit2.Commit).tree
    assert [e.name for e in tree] == [sha[:2]]  # no flat duplicate next to the fanned-out note
    assert {x.id for x in parse_note(git(repo, "notes", "--ref", "costattr", "show", sha))} == {old.id, new.id}


def test_fetch_refspec_goes_to_the_scratch_ref_and_keeps_local_notes(origin_and_clones: dict[str, Path]) -> None:
    a, b = origin_and_clones["a"], origin_and_clones["b"]
    base = git(a, "rev-parse", "HEAD")
    from_a, unpushed = rec(a, "from-a", commit=base), rec(b, "unpushed-b", commit=base)
    GitNotesLedger(a).add([from_a])
    GitNotesLedger(a).sync()
    led_b = GitNotesLedger(b)
    led_b.add([unpushed])
    assert add_fetch_refspec(b) is True
    assert add_fetch_refspec(b) is False  # idempotent
    git(b, "fetch", "-q", "origin")  # the user's ordinary fetch
    assert git(b, "rev-parse", "--verify", scratch_ref(DEFAULT_REF, "origin"))
    assert set(led_b.read().records) == {unpushed.id}  # the local notes ref was not overwritten
    led_b.sync()
    assert set(led_b.read().records) == {from_a.id, unpushed.id}


def test_sync_edge_cases(origin_and_clones: dict[str, Path]) -> None:
    a, c = origin_and_clones["a"], origin_and_clones["c"]
    assert GitNotesLedger(c).sync() == ["origin has no refs/notes/costattr yet", "no local notes to push"]
    with pytest.raises(CostattrError, match="no remote named 'upstream'"):
        GitNotesLedger(c).sync("upstream")
    GitNotesLedger(a).add([rec(a, "s1")])
    GitNotesLedger(a).sync()
    assert GitNotesLedger(a).sync()[-1] == "origin is up to date"


def test_sync_ignores_a_hooks_git_environment(origin_and_clones: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    a = origin_and_clones["a"]
    led = GitNotesLedger(a)
    led.add([rec(a, "s1")])
    other = make_repo(tmp_path / "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))  # as inside another repo's hook
    monkeypatch.setenv("GIT_INDEX_FILE", str(other / ".git" / "index"))
    assert led.sync()[-1] == "pushed refs/notes/costattr to origin"
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    assert git(origin_and_clones["origin"], "rev-parse", "--verify", DEFAULT_REF)


def test_cli_sync_with_git_notes(origin_and_clones: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    a, b = origin_and_clones["a"], origin_and_clones["b"]
    recorded = rec(a, "waiting", state="open", branch="feature/x")
    store_with([recorded])  # recorded by a hook whose notes write failed: it waits in the local ledger
    monkeypatch.chdir(a)
    assert main(["sync", "--ledger", "git-notes"]) == 0
    out = capsys.readouterr().out
    assert "git notes: published 1 record" in out
    assert "pushed refs/notes/costattr to origin" in out
    assert main(["sync", "--ledger", "git-notes"]) == 0
    assert "git notes: up to date" in capsys.readouterr().out
    monkeypatch.chdir(b)
    monkeypatch.setenv("COSTATTR_LEDGER", "git-notes")
    assert main(["sync"]) == 0
    assert GitNotesLedger(b).read().records == {recorded.id: recorded}
    assert main(["sync", "--remote", "nowhere"]) == 1
    assert "no remote named 'nowhere'" in capsys.readouterr().err

    # The notes are gone here and on origin (a reset, a force-push); the mark says delivered, and
    # only reading origin back shows they are missing: sync re-sends them.
    monkeypatch.chdir(a)
    git(a, "update-ref", "-d", DEFAULT_REF)
    git(origin_and_clones["origin"], "update-ref", "-d", DEFAULT_REF)
    assert main(["sync"]) == 0
    out = capsys.readouterr().out
    assert "git notes: up to date" in out and "no local notes to push" in out
    assert f"origin's {DEFAULT_REF} lacks 1 record of this repository: sending them again" in out
    assert out.rstrip().endswith("pushed refs/notes/costattr to origin\n"
                                 f"origin's {DEFAULT_REF} holds all 1 record of this repository")
    assert GitNotesLedger(origin_and_clones["origin"]).read().records == {recorded.id: recorded}
    assert GitNotesLedger(a).read().records == {recorded.id: recorded}
    assert main(["sync", "--all"]) == 0  # kept for scripts: the same as a plain sync
    assert f"origin's {DEFAULT_REF} holds all 1 record" in capsys.readouterr().out


def test_linked_worktree_shares_the_notes_and_the_lock(repo: Path, tmp_path: Path) -> None:
    commit(repo, "one")
    git(repo, "worktree", "add", "-q", "-b", "feature", str(tmp_path / "wt"))
    wt_head = commit(tmp_path / "wt", "on feature")
    led_wt = GitNotesLedger(tmp_path / "wt")
    assert led_wt.repo_id == repo_id(repo)  # one repository, whichever work tree the hook ran in
    recorded = rec(repo, "s1", state="open", branch="feature")
    led_wt.add([recorded])  # no commit: HEAD of the worktree
    assert Path(led_wt._lock.lock_file).parent == (repo / ".git").resolve()
    assert GitNotesLedger(repo).read().records == {recorded.id: recorded}
    assert wt_head in annotated(repo)


# ----------------------------------------------------------------------------------------------
# Notes written by costattr 0.1


def _v1_line(entry: dict[str, Any]) -> str:
    # 0.1's encode_line: the entry's JSON, compact, keys sorted.
    return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS).decode()


def test_v1_notes_are_read_once_per_session_and_left_in_place(repo: Path) -> None:
    """0.1 filed one cumulative snapshot of a session on every commit it was recorded at. Reading
    every snapshot as records would count a segment seen open at one commit and closed at the
    next twice; only each session's newest snapshot (0.1's own rule) is converted."""
    entries = json.loads(V1_FIXTURE.read_text())["data"]
    newest = entries["sess-login"]
    # The snapshot 0.1 wrote one commit earlier: its first two requests, not yet committed.
    closed = newest["segments"][0]
    older = {**newest, "updated_at": newest["updated_at"] - 600, "commit": None, "cost_usd": closed["cost_usd"],
             "requests": closed["requests"], "last_ts": closed["last_ts"],
             "segments": [{**closed, "commit": None, "commit_message": None, "until_ts": None}]}
    first, second = commit(repo, "PROJ-12 login form"), commit(repo, "Merge tooling")
    git(repo, "notes", "--ref", "costattr", "add", "-m", _v1_line(older), first)
    git(repo, "notes", "--ref", "costattr", "add", "-m", "\n".join(_v1_line(e) for e in entries.values()), second)

    led = GitNotesLedger(repo)
    got = led.read()
    want = union(*(v1_records(e) for e in entries.values()))  # the ids the local migration gives
    assert got.records == want and got.set_aside.count == 0
    truth = sum((Decimal(repr(e["cost_usd"])) for e in entries.values()), Decimal(0))
    assert sum((r.cost for r in got.records.values() if isinstance(r, SpendRecord)), Decimal(0)) == truth
    assert requests(got.records.values()) == sum(e["requests"] for e in entries.values())

    before = git(repo, "notes", "--ref", "costattr", "show", second)
    new = rec(repo, "sess-new", commit=second, parts=[part(cost="0.5")])
    led.add([new])
    after = note_lines(repo, second)
    assert set(before.splitlines()) <= set(after) and encode_line(new) in after  # 0.1's lines stay as they were
    assert led.read().records == union(want.values(), [new])


# ----------------------------------------------------------------------------------------------
# A repository's notes hold that repository's records only (issue 12)


def _hook_commit(repo: Path, message: str) -> str:
    proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo, capture_output=True,
                          text=True, check=True)
    return proc.stdout + proc.stderr


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "costattr", *args], cwd=cwd, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_sync_all_in_repo_b_never_carries_repo_a_records(tmp_path: Path, env_dirs: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """One session works in repository A on a confidential branch, then moves to repository B.
    Both hooks record (each its own repository's spend); `costattr sync --all` in B sends B's
    records to B's notes and origin, and nothing of A (branch, path, message) ever gets there."""
    monkeypatch.setenv("COSTATTR_LEDGER", "git-notes")
    repos: dict[str, Path] = {}
    for name in ("a", "b"):
        origin = make_repo(tmp_path / f"origin-{name}.git", bare=True)
        repos[name] = tmp_path / name
        git(tmp_path, "clone", "-q", str(origin), str(repos[name]))
        commit(repos[name], "initial")
        git(repos[name], "push", "-q", "origin", "HEAD:main")
        _cli("install", "--no-notes-refspec", cwd=repos[name])
    a, b = repos["a"], repos["b"]
    secret = "secret/ACME-9-acquisition"
    git(a, "checkout", "-q", "-b", secret)
    projects = env_dirs["claude"] / "projects"
    append_claude(projects, "mover", [
        claude_line("mover", str(a), secret, "2026-11-20T09:00:00.000Z", out=100),
        claude_line("mover", str(a), secret, "2026-11-20T09:01:00.000Z", out=200),
        claude_line("mover", str(b), "main", "2026-11-20T09:02:00.000Z", out=300),
        claude_line("mover", str(b), "main", "2026-11-20T09:03:00.000Z", out=400),
    ])
    _hook_commit(a, "ACME-9 term sheet")
    _hook_commit(b, "B's fix")

    with LocalStore() as store:
        local = store.read().records
    by_repo = {rid: {i for i, r in local.items() if r.repo == rid} for rid in (repo_id(a), repo_id(b))}
    assert by_repo[repo_id(a)] and by_repo[repo_id(b)]  # the local ledger holds both repositories' spend
    assert set(local) == by_repo[repo_id(a)] | by_repo[repo_id(b)]

    out = _cli("sync", cwd=b).stdout
    assert f"origin's {DEFAULT_REF} holds all {plural(len(by_repo[repo_id(b)]), 'record')} of this repository" in out
    assert "pushed refs/notes/costattr to origin" in out
    b_notes = GitNotesLedger(b).read().records
    assert set(b_notes) == by_repo[repo_id(b)]
    assert requests(b_notes.values()) == 2
    text = every_note(b)
    for leak in (secret, "ACME-9", str(a), repo_id(a)):
        assert leak not in text

    # What B's origin received: a fresh clone of it sees B's records and nothing else.
    b2 = tmp_path / "b2"
    git(tmp_path, "clone", "-q", str(tmp_path / "origin-b.git"), str(b2))
    GitNotesLedger(b2).sync()
    assert set(GitNotesLedger(b2).read().records) == by_repo[repo_id(b)]
    assert secret not in every_note(b2)

    _cli("sync", cwd=a)
    assert set(GitNotesLedger(a).read().records) == by_repo[repo_id(a)]


def test_add_refuses_another_repositorys_records(tmp_path: Path) -> None:
    a, b = make_repo(tmp_path / "a"), make_repo(tmp_path / "b")
    commit(a, "one")
    head = commit(b, "one")
    led = GitNotesLedger(b)
    with pytest.raises(CostattrError, match="refusing to write records of another repository"):
        led.add([rec(b, "mine", commit=head), rec(a, "theirs", branch="secret/ACME-9-acquisition")])
    assert led.read().records == {}  # not even this repository's half was written
    assert git(b, "notes", "--ref", "costattr", "list", check=False) == ""


# ----------------------------------------------------------------------------------------------
# Writes through libgit2's notes code, compare-and-swap


def _work_refs(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname)", WORK_REF_PREFIX).splitlines()


def test_writes_leave_no_private_ref_and_sweep_those_of_dead_writers(repo: Path) -> None:
    """Each write runs libgit2's `create_note` on a private ref, then moves the notes ref once;
    a writer SIGKILLed mid-write leaves its private ref, which the next write removes."""
    head = commit(repo, "one")
    led = GitNotesLedger(repo)
    led.add([rec(repo, "s1", commit=head)])
    assert _work_refs(repo) == []
    assert git(repo, "rev-list", "--count", DEFAULT_REF) == "1"  # one notes commit per write
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    stale, live = f"{WORK_REF_PREFIX}{dead}-0a1b2c", f"{WORK_REF_PREFIX}{os.getpid()}-3d4e5f"
    for name in (stale, live):
        git(repo, "update-ref", name, DEFAULT_REF)
    led.add([rec(repo, "s2", commit=head), rec(repo, "s3", state="open", branch="feature/x")])
    assert _work_refs(repo) == [live]  # a running writer's ref is left alone
    assert git(repo, "rev-list", "--count", DEFAULT_REF) == "2"
    assert {r.session_id for r in led.read().records.values()} == {"s1", "s2", "s3"}


_WRITER = """
import sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from helpers_notes import rec
from costattr.ledger.git_notes import GitNotesLedger
worktree, shared, name = Path(sys.argv[2]), sys.argv[3], sys.argv[4]
led = GitNotesLedger(worktree)  # this process's own repository handle and lock
head = str(led.repo.head.target)
for i in range(4):
    # one note per worktree's own commit, and one note every writer edits
    led.add([rec(worktree, f"{name}-{i}", commit=head if i % 2 else shared)])
"""


def test_hooks_in_worktrees_writing_into_a_fanned_out_tree_at_once_lose_nothing(repo: Path, tmp_path: Path) -> None:
    from helpers_notes import import_commits, import_notes, tree_paths

    shared = commit(repo, "shared")
    # Another tool's notes on 600 other commits: enough for git to fan the tree out.
    import_notes(repo, {sha: f"from another tool {n}\n" for n, sha in enumerate(import_commits(repo, 600, "other"))})
    assert all(p[2] == "/" for p in tree_paths(repo))
    names = [f"wt{n}" for n in range(3)]
    for name in names:
        git(repo, "worktree", "add", "-q", "-b", name, str(tmp_path / name))
        commit(tmp_path / name, f"work in {name}")
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(Path(__file__).parent), str(tmp_path / name), shared,
                                 name]) for name in names]
    assert [w.wait(timeout=120) for w in writers] == [0] * len(names)
    got = GitNotesLedger(repo).read()
    assert sorted(r.session_id for r in got.records.values()) == sorted(f"{n}-{i}" for n in names for i in range(4))
    assert got.set_aside.count == 600  # the other tool's lines: kept, counted, never read as spend
    paths = tree_paths(repo)
    assert len(paths) == 600 + 1 + len(names)
    # Every new note sits inside the fan-out subtree of its prefix when one exists. libgit2 files a
    # note whose prefix has no subtree yet at the top (git and libgit2 both read such mixed trees);
    # the broken layout is a flat note beside a subtree of its own prefix, which lookups miss.
    subtrees = {p[:2] for p in paths if p[2] == "/"}
    flat = [p for p in paths if "/" not in p]
    assert not [p for p in flat if p[:2] in subtrees], flat
    assert _work_refs(repo) == []
