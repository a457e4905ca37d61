"""Pushing notes to a real bare origin: contention is retried, refusals are not, and `sync` only
says "done" once the origin holds every record of this repository.

costattr 0.1 failed 5-7 of 8 concurrent syncs with "the server may block notes refs (push rules,
branch protection)": the origin's ref lock was held by another push ("failed to update ref",
"cannot lock ref", "incorrect old value provided"), mis-read as a refusal and never retried.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from builders import store_with
from helpers_notes import rec

from costattr.cli import main
from costattr.errors import RemoteError
from costattr.ledger.git_notes import DEFAULT_REF, GitNotesLedger
from costattr.ledger.memory_api import RemoteUnavailable
from costattr.ledger.records import AnyRecord, union
from costattr.testing.gitrepo import clean_env, commit, git, make_repo

CLONES = 8


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    origin = make_repo(tmp_path / "origin.git", bare=True)
    first = tmp_path / "first"
    git(tmp_path, "clone", "-q", str(origin), str(first))
    commit(first, "init")
    git(first, "push", "-q", "origin", "HEAD:main")
    return origin


def _clone(origin: Path, where: Path) -> Path:
    git(where.parent, "clone", "-q", str(origin), str(where))
    return where


def _server_hook(origin: Path, name: str, body: str) -> Path:
    """A hook in the origin that also logs each run (to count pushes); returns the log."""
    log = origin / f"{name}.log"
    hook = origin / "hooks" / name
    hook.write_text(f"#!/bin/sh\necho run >> '{log}'\n{body}")
    hook.chmod(0o755)
    return log


def test_eight_concurrent_syncs_all_succeed_and_the_origin_ends_with_every_record(origin: Path,
                                                                                  tmp_path: Path) -> None:
    # The origin holds its ref lock a little while for each update, like a busy server: pushes
    # that arrive meanwhile find the ref locked ("cannot lock ref ...: File exists").
    _server_hook(origin, "reference-transaction", 'cat >/dev/null\n[ "$1" = prepared ] && sleep 0.1\nexit 0\n')
    jobs: list[tuple[Path, dict[str, str]]] = []
    recorded: list[AnyRecord] = []
    for n in range(CLONES):
        clone = _clone(origin, tmp_path / f"clone-{n}")
        mine = commit(clone, f"work of clone {n}")  # never pushed: its note names a commit origin lacks
        records = [rec(clone, f"m{n}", commit=mine), rec(clone, f"m{n}-b", commit=mine),
                   rec(clone, f"m{n}-open", state="open", branch=f"feature/{n}")]
        home = tmp_path / f"home-{n}"
        store_with(records, home / "ledger.sqlite")  # each machine's own local ledger
        recorded += records
        jobs.append((clone, {"COSTATTR_HOME": str(home), "COSTATTR_LEDGER": "git-notes"}))

    procs = [subprocess.Popen([sys.executable, "-m", "costattr", "sync"], cwd=clone, env=clean_env(env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for clone, env in jobs]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    failed = [(code, err) for code, _out, err in results if code != 0]
    assert not failed, failed
    for _code, out, _err in results:
        assert f"origin's {DEFAULT_REF} holds all 3 records of this repository" in out
    assert GitNotesLedger(origin).read().records == union(recorded)
    # The races were real: some pushes lost one and went round again (named, not "refused").
    retried = [out for _code, out, _err in results if "fetching again" in out]
    assert all("refused" not in out and "remote rejected" not in out for _code, out, _err in results)
    assert retried, "no push lost a race: the test did not exercise contention"


def test_a_lock_held_on_the_server_is_retried_and_named(origin: Path, tmp_path: Path) -> None:
    clone = _clone(origin, tmp_path / "clone")
    led = GitNotesLedger(clone)
    led.add([rec(clone, "s1")])
    lock = origin / "refs" / "notes" / "costattr.lock"  # another push holds the ref (or died holding it)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    with pytest.raises(RemoteUnavailable) as info:
        led.sync(max_tries=3)
    message = str(info.value)
    assert "could not push refs/notes/costattr to origin in 3 tries: ref-lock contention on origin" in message
    assert "costattr.lock': File exists" in message and "refs/notes/costattr.lock" in info.value.hint
    assert "refused" not in message and "push rules" not in message
    assert git(origin, "rev-parse", "--verify", "-q", DEFAULT_REF, check=False) == ""

    def the_other_push_finishes(line: str) -> None:
        if line.startswith("push not accepted: ref-lock contention"):
            lock.unlink()

    done = led.sync(max_tries=3, progress=the_other_push_finishes)
    assert done[-1] == "pushed refs/notes/costattr to origin"
    assert set(GitNotesLedger(origin).read().records) == set(led.read().records)


def test_a_refusal_is_remote_rejected_never_retried_and_sync_says_what_is_missing(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    clone = _clone(origin, tmp_path / "clone")
    runs = _server_hook(origin, "pre-receive", "echo 'refs/notes/* are not allowed here' >&2\nexit 1\n")
    led = GitNotesLedger(clone)
    led.add([rec(clone, "s1")])
    with pytest.raises(RemoteError) as info:
        led.sync()
    assert not isinstance(info.value, RemoteUnavailable)
    assert "origin refused refs/notes/costattr ([remote rejected] (pre-receive hook declined))" in info.value.message
    assert "refs/notes/* are not allowed here" in info.value.message and "pre-receive hook" in (info.value.hint or "")
    assert runs.read_text().count("run") == 1  # not retried

    store_with([rec(clone, "s2"), rec(clone, "s3")])
    monkeypatch.chdir(clone)
    assert main(["sync", "--ledger", "git-notes"]) == 1
    err = capsys.readouterr().err
    # The count is read from origin (fetching still works): s1 (never pushed) is not in the local
    # ledger, so the two records of this machine are what origin lacks.
    assert f"sync incomplete: origin's {DEFAULT_REF} lacks 2 records of this repository: origin refused" in err
    assert "refs/notes/* are not allowed here" in err and "ref-lock" not in err


def test_an_origin_that_accepts_notes_but_does_not_keep_them_fails_sync(
    origin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """A mirror job or server hook that resets the notes after each push: every push succeeds,
    and only reading the origin back shows the records are not there."""
    clone = _clone(origin, tmp_path / "clone")
    _server_hook(origin, "post-receive", f"git update-ref -d {DEFAULT_REF}\n")
    store_with([rec(clone, "s1")])
    monkeypatch.chdir(clone)
    assert main(["sync", "--ledger", "git-notes"]) == 1
    captured = capsys.readouterr()
    assert "pushed refs/notes/costattr to origin" in captured.out
    assert f"origin's {DEFAULT_REF} lacks 1 record of this repository: sending them again" in captured.out
    assert (f"sync incomplete: origin's {DEFAULT_REF} still lacks 1 record of this repository after they were sent "
            "again") in captured.err


def test_a_fetch_racing_another_sync_in_this_repository_is_retried(origin: Path, tmp_path: Path) -> None:
    """Two worktrees of one repository share the scratch ref: a sync that finds it locked by the
    other's fetch tries again rather than failing."""
    seed = _clone(origin, tmp_path / "seed")
    GitNotesLedger(seed).add([rec(seed, "s1")])
    GitNotesLedger(seed).sync()
    clone = _clone(origin, tmp_path / "clone")
    lock = clone / ".git" / "refs" / "notes" / "remotes" / "origin" / "costattr.lock"
    lock.parent.mkdir(parents=True)
    lock.touch()

    def the_other_fetch_finishes(line: str) -> None:
        if line.startswith("fetch not done:"):
            lock.unlink()

    done = GitNotesLedger(clone).sync(progress=the_other_fetch_finishes)
    assert done[0].startswith("fetch not done: refs/notes/remotes/origin/costattr is being updated by another fetch")
    assert done[-1] == "origin is up to date"
    assert set(GitNotesLedger(clone).read().records) == set(GitNotesLedger(origin).read().records)
