"""The union property, end to end: two machines, each with a clone of one repository, spending on
several branches, committing, amending, switching branches, publishing to the memory API and
exchanging git notes, in any order hypothesis picks. However the steps interleave, the records
every copy ends with are the same set, and the totals per issue equal the truth: the sum of the
list prices of the lines the test wrote.

The hook's work runs in-process (`record.upload` on the real repository, with the real scan),
because hypothesis runs many examples; tests/test_ledger_v2.py fires the installed hook for real.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from fake_memory_api import API_KEY, FakeMemoryApi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from costattr import gitctx
from costattr.commands.hook_impl import post_rewrite
from costattr.config import load_config
from costattr.ledger.git_notes import GitNotesLedger
from costattr.ledger.memory_api import MemoryApiLedger
from costattr.ledger.publish import publish
from costattr.ledger.records import union
from costattr.ledger.store import LocalStore
from costattr.ledger.view import visible
from costattr.record import upload
from costattr.report.rollup import rollup
from costattr.testing.gitrepo import git, make_repo

BRANCHES = ("main", "feature/PROJ-1-a", "feature/PROJ-2-b", "eng-3-c")
ISSUE = {"main": None, "feature/PROJ-1-a": "PROJ-1", "feature/PROJ-2-b": "PROJ-2", "eng-3-c": "ENG-3"}
PRICE = {"in": Decimal(3), "out": Decimal(15), "cw": Decimal("3.75"), "cr": Decimal("0.30")}


def line_cost(out: int) -> Decimal:
    return (10 * PRICE["in"] + out * PRICE["out"] + 1000 * PRICE["cw"] + 5000 * PRICE["cr"]) / 1_000_000


@dataclass
class Machine:
    name: str
    clone: Path
    home: Path
    claude: Path
    lines: int = 0
    truth: dict[str | None, Decimal] = field(default_factory=dict)

    @contextmanager
    def active(self) -> Iterator[None]:
        """This machine's environment: its own COSTATTR_HOME and transcripts."""
        saved = {k: os.environ.get(k) for k in ("COSTATTR_HOME", "CLAUDE_CONFIG_DIR")}
        os.environ["COSTATTR_HOME"] = str(self.home)
        os.environ["CLAUDE_CONFIG_DIR"] = str(self.claude)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def store(self) -> LocalStore:
        return LocalStore(self.home / "ledger.sqlite")


class World:
    def __init__(self, base: Path, api: FakeMemoryApi) -> None:
        self.origin = make_repo(base / "origin.git", bare=True)
        seed = make_repo(base / "seed", origin=str(self.origin))
        git(seed, "commit", "-q", "--allow-empty", "-m", "initial")
        git(seed, "push", "-q", "origin", "main")
        self.machines = []
        for name in ("a", "b"):
            clone = base / f"clone-{name}"
            git(base, "clone", "-q", str(self.origin), str(clone))
            git(clone, "remote", "set-url", "origin", str(self.origin))
            self.machines.append(Machine(name, clone, base / f"home-{name}", base / f"claude-{name}"))
        self.api = api
        self.seconds = 0

    def ts(self) -> str:
        # Every line is stamped before "now" and after the previous one: a clock that only moves on.
        self.seconds += 61
        return f"2026-11-20T{8 + self.seconds // 3600:02d}:{self.seconds // 60 % 60:02d}:{self.seconds % 60:02d}.000Z"

    # -- steps ------------------------------------------------------------------------------------

    def spend(self, m: Machine, branch: str, out: int) -> None:
        m.lines += 1
        n = m.lines
        line = {
            "type": "assistant", "sessionId": f"{m.name}-sess-{n % 2}", "cwd": str(m.clone), "gitBranch": branch,
            "timestamp": self.ts(), "uuid": f"{m.name}-u{n}", "requestId": f"req_{m.name}_{n}",
            "message": {"id": f"msg_{m.name}_{n}", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
                        "usage": {"input_tokens": 10, "output_tokens": out, "cache_creation_input_tokens": 1000,
                                  "cache_read_input_tokens": 5000}},
        }
        folder = m.claude / "projects" / "-clone"
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{line['sessionId']}.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")
        m.truth[ISSUE[branch]] = m.truth.get(ISSUE[branch], Decimal(0)) + line_cost(out)

    def checkout(self, m: Machine, branch: str) -> None:
        exists = git(m.clone, "rev-parse", "--verify", "-q", f"refs/heads/{branch}", check=False)
        git(m.clone, "checkout", "-q", *(() if exists else ("-b",)), branch)

    def hook(self, m: Machine) -> None:
        with m.active():
            ctx = gitctx.discover(m.clone)
            upload(ctx, load_config(ctx.workdir), store=m.store())

    def commit(self, m: Machine, message: str) -> None:
        git(m.clone, "commit", "-q", "--allow-empty", "-m", message)
        self.hook(m)

    def amend(self, m: Machine, message: str) -> None:
        old = git(m.clone, "rev-parse", "HEAD")
        git(m.clone, "commit", "-q", "--amend", "--allow-empty", "-m", message)
        self.hook(m)  # git runs post-commit on an amend, then post-rewrite
        with m.active():
            cwd = os.getcwd()
            os.chdir(m.clone)
            try:
                post_rewrite(f"{old} {git(m.clone, 'rev-parse', 'HEAD')}\n")
            finally:
                os.chdir(cwd)

    def publish_api(self, m: Machine) -> None:
        with m.active():
            publish(m.store(), MemoryApiLedger(self.api.url, self.api.user, API_KEY, timeout=10), None)

    def publish_notes(self, m: Machine) -> None:
        with m.active():
            ctx = gitctx.discover(m.clone)
            notes = GitNotesLedger(m.clone)
            publish(m.store(), notes, ctx.repo_id)
            notes.sync("origin")


STEP = st.one_of(
    st.tuples(st.just("spend"), st.integers(0, 1), st.sampled_from(BRANCHES), st.integers(1, 50).map(lambda n: n * 10)),
    st.tuples(st.just("checkout"), st.integers(0, 1), st.sampled_from(BRANCHES)),
    # Messages without issue keys: the truth per issue then follows from the branches alone (a key in
    # a message re-keys a commit; tests/test_ledger_v2.py covers that).
    st.tuples(st.just("commit"), st.integers(0, 1), st.sampled_from(["fix", "more work"])),
    st.tuples(st.just("amend"), st.integers(0, 1), st.sampled_from(["amended", "reworded"])),
    st.tuples(st.just("hook"), st.integers(0, 1)),
    st.tuples(st.just("publish_api"), st.integers(0, 1)),
    st.tuples(st.just("publish_notes"), st.integers(0, 1)),
)


@pytest.fixture(scope="module")
def api() -> Iterator[FakeMemoryApi]:
    server = FakeMemoryApi().start()
    yield server
    server.stop()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=4, max_size=14))
def test_any_interleaving_gives_the_same_records_and_the_truth(tmp_path_factory: pytest.TempPathFactory,
                                                                api: FakeMemoryApi, steps: list[tuple]) -> None:
    api.files.clear()
    world = World(tmp_path_factory.mktemp("world"), api)
    for step in steps:
        kind, who, *args = step
        getattr(world, kind)(world.machines[who], *args)
    # Everyone commits on every branch they spent on, then publishes everywhere, twice over: the
    # second round must change nothing.
    for m in world.machines:
        for branch in BRANCHES:
            world.checkout(m, branch)
            world.commit(m, f"close {branch}")
    for _round in range(2):
        for m in world.machines:
            world.publish_api(m)
            world.publish_notes(m)

    stores = [m.store().read().records for m in world.machines]
    local = union(*(s.values() for s in stores))
    remote = MemoryApiLedger(api.url, api.user, API_KEY, timeout=10).read()
    assert remote.set_aside.count == 0
    assert set(remote.records) == set(local)
    for m in world.machines:
        with m.active():
            notes = GitNotesLedger(m.clone).read()
        assert set(notes.records) == set(local), m.name

    truth: dict[str | None, Decimal] = {}
    for m in world.machines:
        for key, value in m.truth.items():
            truth[key] = truth.get(key, Decimal(0)) + value
    roll = rollup(visible(remote.records), "issue")
    got = {r.key: r.cost for r in roll.rows}
    if roll.unattributed.requests:
        got[None] = roll.unattributed.cost
    assert got == {k: v for k, v in truth.items() if v}
    assert roll.total.requests == sum(m.lines for m in world.machines)
