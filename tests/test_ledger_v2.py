"""Ledger v2, case by case: every defect issue 12 reproduced on 0.1, as a real user meets it.

Real repositories, real commits firing the installed hook, transcripts written as Claude Code
writes them. Each expected figure is computed from the lines the test wrote (their list price),
never read back from costattr.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from builders import cli
from helpers_claude import append_claude, claude_line

from costattr.testing.gitrepo import commit, git, make_repo

# claude-sonnet-4-5 list prices per million: input 3, output 15, 5m cache write 3.75, cache read 0.30
PRICE = {"in": Decimal(3), "out": Decimal(15), "cw": Decimal("3.75"), "cr": Decimal("0.30")}


def cost(out: int = 100) -> Decimal:
    return (10 * PRICE["in"] + out * PRICE["out"] + 1000 * PRICE["cw"] + 5000 * PRICE["cr"]) / 1_000_000


def report(cwd: Path, *args: str) -> dict:
    return json.loads(cli("report", "--format", "json", *args, cwd=cwd).stdout)


def rows(cwd: Path, by: str, *args: str) -> dict[str, Decimal]:
    doc = report(cwd, "--by", by, *args)
    out = {r["key"]: Decimal(str(r["cost_usd"])) for r in doc["rows"]}
    if doc["unattributed"]["requests"]:
        out["(unattributed)"] = Decimal(str(doc["unattributed"]["cost_usd"]))
    return out


def hook_commit(repo: Path, message: str) -> str:
    """A real `git commit` (the installed hook fires); returns what the hook printed."""
    proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo, capture_output=True,
                          text=True, check=True)
    return proc.stdout + proc.stderr


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "app", origin="git@github.com:acme/app.git")
    commit(path, "initial")
    cli("install", cwd=path)
    return path


@pytest.fixture
def projects(env_dirs: dict[str, Path]) -> Path:
    return env_dirs["claude"] / "projects"


def say(projects: Path, session: str, cwd: Path | str, branch: str | None, ts: str, out: int = 100) -> None:
    line = claude_line(session, str(cwd), branch or "", ts, out=out)
    if branch is None:
        doc = json.loads(line)
        del doc["gitBranch"]
        line = json.dumps(doc) + "\n"
    append_claude(projects, session, [line])


# ---------------------------------------------------------------------------------------------
# --base, PR links, the hook's line


def test_base_sets_aside_only_the_checked_out_branch_and_keeps_every_other_figure(repo: Path, projects: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/PROJ-12-login")
    say(projects, "s1", repo, "feature/PROJ-12-login", "2026-11-20T09:00:00.000Z")
    hook_commit(repo, "login")
    git(repo, "checkout", "-q", "-b", "eng-7-cache")
    say(projects, "s2", repo, "eng-7-cache", "2026-11-20T09:10:00.000Z", out=200)
    hook_commit(repo, "cache")
    cli("upload", "--pr", "101", cwd=repo)
    git(repo, "checkout", "-q", "main")
    say(projects, "s3", repo, "main", "2026-11-20T09:20:00.000Z", out=300)
    hook_commit(repo, "main work")
    before = {by: rows(repo, by) for by in ("issue", "branch", "pr")}

    base = cli("base", cwd=repo).stdout.strip()
    git(repo, "checkout", "-q", "-b", "feature/ABC-2-y")
    say(projects, "s4", repo, "feature/ABC-2-y", "2026-11-20T10:00:00.000Z", out=400)
    cli("upload", "--base", base, cwd=repo)
    after = {by: rows(repo, by) for by in ("issue", "branch", "pr")}
    for by in before:  # nothing recorded before moved
        named = {k: v for k, v in before[by].items() if k != "(unattributed)"}
        assert {k: v for k, v in after[by].items() if k in named} == named, by
    assert after["branch"]["feature/PROJ-12-login"] == cost()
    assert after["pr"] == {"#101": cost(200), "(unattributed)": cost() + cost(300) + cost(400)}
    # the new branch's spend after the base is charged to it, with its issue
    assert after["issue"]["ABC-2"] == cost(400)


def test_a_prs_total_does_not_move_after_commits_on_other_branches(repo: Path, projects: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/ABC-1-a")
    say(projects, "s", repo, "feature/ABC-1-a", "2026-11-20T09:00:00.000Z", out=500)
    hook_commit(repo, "a")
    cli("upload", "--pr", "7", cwd=repo)
    pr7 = rows(repo, "pr")["#7"]
    git(repo, "checkout", "-q", "-b", "feature/ABC-2-b")
    say(projects, "s", repo, "feature/ABC-2-b", "2026-11-20T09:30:00.000Z", out=900)
    hook_commit(repo, "b")
    assert rows(repo, "pr")["#7"] == pr7 == cost(500)
    git(repo, "checkout", "-q", "feature/ABC-1-a")  # the PR's head, as CI checks it out
    comment = cli("comment", "--pr", "7", "--dry-run", cwd=repo).stdout
    assert f"**$0.01** · cache hit rate **{83.2}%** · 1 session · 1 commit" in comment
    assert "feature/ABC-2-b" not in comment


def test_later_sessions_on_a_linked_branch_join_its_pr(repo: Path, projects: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/ABC-3-c")
    say(projects, "s1", repo, "feature/ABC-3-c", "2026-11-20T09:00:00.000Z")
    out = cli("upload", "--pr", "9", cwd=repo).stdout
    assert "linked PR #9" in out
    say(projects, "s2", repo, "feature/ABC-3-c", "2026-11-20T09:40:00.000Z", out=300)
    hook_commit(repo, "c")
    assert rows(repo, "pr") == {"#9": cost() + cost(300)}


def test_the_hook_line_says_what_this_commit_recorded(repo: Path, projects: Path) -> None:
    say(projects, "s", repo, "main", "2026-11-20T09:00:00.000Z", out=500)
    say(projects, "s", repo, "feature/ABC-9-z", "2026-11-20T09:05:00.000Z", out=900)
    say(projects, "s", repo, None, "2026-11-20T09:06:00.000Z")
    line = hook_commit(repo, "on main")
    assert f"costattr: {cost(500):.4f} (" in line and " on main" in line
    assert f"; {cost(900):.4f} left open on feature/ABC-9-z; {cost():.4f} unattributed" in line
    git(repo, "checkout", "-q", "-b", "feature/ABC-9-z")
    line = hook_commit(repo, "z")
    assert f"costattr: {cost(900):.4f} (" in line and " on ABC-9" in line  # the open spend, closed here
    assert rows(repo, "branch") == {"main": cost(500), "feature/ABC-9-z": cost(900), "(unattributed)": cost()}


# ---------------------------------------------------------------------------------------------
# Days


@pytest.mark.parametrize("tz, days", [
    ("UTC", {"2026-10-17": [0, 1], "2026-10-18": [2, 3]}),
    ("Asia/Kolkata", {"2026-10-17": [0], "2026-10-18": [1, 2, 3]}),  # +05:30: 23:40Z is 05:10 the next day
    ("America/Los_Angeles", {"2026-10-17": [0, 1, 2, 3]}),  # -07:00: all of it on the 17th
    ("Asia/Kathmandu", {"2026-10-18": [0, 1, 2, 3]}),  # +05:45: 18:20Z is 00:05 the next day
])
def test_a_session_across_midnight_splits_by_day_in_any_time_zone(repo: Path, projects: Path, tz: str,
                                                                   days: dict[str, list[int]]) -> None:
    stamps = ["2026-10-17T18:20:00.000Z", "2026-10-17T23:40:00.000Z", "2026-10-18T00:10:00.000Z",
              "2026-10-18T06:00:00.000Z"]
    outs = [100, 200, 300, 400]
    for ts, out in zip(stamps, outs, strict=True):
        say(projects, "night", repo, "main", ts, out=out)
    hook_commit(repo, "night work")
    want = {day: sum((cost(outs[i]) for i in idx), Decimal(0)) for day, idx in days.items()}
    assert rows(repo, "day", "--tz", tz) == want
    first = min(want)
    assert rows(repo, "issue", "--tz", tz, "--since", first, "--until", first).get("(unattributed)") == want[first]


def test_kolkata_split_at_its_own_midnight(repo: Path, projects: Path) -> None:
    # 18:29Z is 23:59 in Kolkata, 18:31Z is 00:01 the next day: the 15-minute buckets fall on each side.
    say(projects, "k", repo, "main", "2026-10-17T18:29:00.000Z", out=100)
    say(projects, "k", repo, "main", "2026-10-17T18:31:00.000Z", out=200)
    hook_commit(repo, "k")
    assert rows(repo, "day", "--tz", "Asia/Kolkata") == {"2026-10-17": cost(100), "2026-10-18": cost(200)}


def test_a_day_budget_sees_the_day_exactly(repo: Path, projects: Path) -> None:
    (repo / ".costattr.toml").write_text(f"[budgets]\nday = {cost(300) + cost(100) / 2}\n")
    say(projects, "b", repo, "main", "2026-10-17T23:50:00.000Z", out=100)
    say(projects, "b", repo, "main", "2026-10-17T22:00:00.000Z", out=300)
    say(projects, "b", repo, "main", "2026-10-18T00:20:00.000Z", out=900)
    hook_commit(repo, "b")
    doc = report(repo, "--by", "day", "--tz", "UTC")
    by_day = {r["key"]: r for r in doc["rows"]}
    assert Decimal(str(by_day["2026-10-17"]["cost_usd"])) == cost(100) + cost(300)
    assert by_day["2026-10-17"]["over_budget"] is True
    assert by_day["2026-10-18"]["over_budget"] is True


# ---------------------------------------------------------------------------------------------
# Spend never shrinks


def test_a_session_in_a_superproject_and_its_submodule_keeps_all_its_spend(tmp_path: Path, projects: Path) -> None:
    sub_origin = make_repo(tmp_path / "lib-origin", origin=None)
    commit(sub_origin, "lib")
    sup = make_repo(tmp_path / "super", origin="git@github.com:acme/super.git")
    commit(sup, "super")
    git(sup, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub_origin), "lib")
    git(sup, "commit", "-q", "-m", "add lib")
    sub = sup / "lib"
    git(sub, "remote", "set-url", "origin", "git@github.com:acme/lib.git")
    git(sub, "checkout", "-q", "-B", "main")
    cli("install", cwd=sup)
    cli("install", cwd=sub)
    say(projects, "both", sup, "main", "2026-11-20T09:00:00.000Z", out=100)
    say(projects, "both", sub, "main", "2026-11-20T09:01:00.000Z", out=200)
    say(projects, "both", sup, "main", "2026-11-20T09:02:00.000Z", out=300)
    say(projects, "both", sub, "main", "2026-11-20T09:03:00.000Z", out=400)
    say(projects, "both", sup, "main", "2026-11-20T09:04:00.000Z", out=500)
    hook_commit(sub, "in lib")
    hook_commit(sup, "in super")
    hook_commit(sub, "lib again")
    assert rows(sup, "repo", "--all-repos") == {"acme/super": cost(100) + cost(300) + cost(500),
                                                "acme/lib": cost(200) + cost(400)}
    assert report(sup, "--by", "session", "--all-repos")["totals"]["requests"] == 5
    # inside each repository, its own spend only
    assert rows(sup, "repo") == {"acme/super": cost(100) + cost(300) + cost(500)}
    assert rows(sub, "repo") == {"acme/lib": cost(200) + cost(400)}


def test_deleting_a_subagent_file_never_lowers_a_figure(repo: Path, env_dirs: dict[str, Path]) -> None:
    from costattr.testing.transcripts import ClaudeSessionWriter

    git(repo, "checkout", "-q", "-b", "feature/PROJ-1-x")
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch="feature/PROJ-1-x")
    w.response(input=5, output=300, cache_write_5m=2000, cache_read=10000)
    sub = w.subagent()
    sub.response(input=5, output=900, cache_write_5m=4000, cache_read=30000)
    sub.close()
    w.close()
    hook_commit(repo, "x")
    before = rows(repo, "issue")["PROJ-1"]
    sub.path.unlink()
    line = hook_commit(repo, "x again")
    assert rows(repo, "issue")["PROJ-1"] == before
    assert "-0." not in line


def test_a_line_dated_2099_captures_nothing(repo: Path, projects: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/PROJ-5-y")
    say(projects, "f", repo, "feature/PROJ-5-y", "2099-01-01T00:00:00.000Z", out=700)
    line = hook_commit(repo, "first")
    assert "in the future" in line
    say(projects, "f", repo, "feature/PROJ-5-y", "2026-11-20T09:00:00.000Z", out=200)
    hook_commit(repo, "second")
    doc = report(repo, "--by", "commit")
    second = git(repo, "rev-parse", "HEAD")
    assert {r["key"]: Decimal(str(r["cost_usd"])) for r in doc["rows"]} == {second: cost(200)}
    assert Decimal(str(doc["unattributed"]["cost_usd"])) == cost(700)  # open, never closed, never lost


def test_one_bad_record_is_set_aside_alone(repo: Path, projects: Path, env_dirs: dict[str, Path]) -> None:
    for i, branch in enumerate(("feature/PROJ-1-a", "feature/PROJ-2-b", "feature/PROJ-3-c")):
        git(repo, "checkout", "-q", "-b", branch)
        say(projects, f"s{i}", repo, branch, f"2026-11-20T09:0{i}:00.000Z", out=100 * (i + 1))
        hook_commit(repo, branch)
    db = sqlite3.connect(env_dirs["costattr_home"] / "ledger.sqlite")
    doc = json.loads(db.execute("SELECT doc FROM records WHERE issue = 'PROJ-2'").fetchone()[0])
    doc["parts"][0][2] = "three"  # one wrong-typed field, as a hand edit leaves it
    db.execute("UPDATE records SET doc = ? WHERE issue = 'PROJ-2'", (json.dumps(doc),))
    db.commit()
    db.close()
    git(repo, "checkout", "-q", "-b", "feature/PROJ-4-d")
    say(projects, "s4", repo, "feature/PROJ-4-d", "2026-11-20T09:30:00.000Z", out=400)
    hook_commit(repo, "d")
    proc = cli("report", "--by", "issue", "--format", "json", cwd=repo)
    got = {r["key"]: Decimal(str(r["cost_usd"])) for r in json.loads(proc.stdout)["rows"]}
    assert got == {"PROJ-1": cost(100), "PROJ-3": cost(300), "PROJ-4": cost(400)}
    assert "1 record set aside as invalid" in proc.stderr


def test_a_clock_a_day_ahead_loses_nothing_in_a_shared_ledger(tmp_path: Path, memory_api) -> None:  # type: ignore[no-untyped-def]
    """Two machines publish one session's records; one machine's clock is a day ahead. 0.1 froze
    the shared copy ("newest updated_at wins"); records are merged by id, whatever they say."""
    from builders import part, spend
    from fake_memory_api import API_KEY

    from costattr.ledger.memory_api import MemoryApiLedger

    api = MemoryApiLedger(memory_api.url, memory_api.user, API_KEY, timeout=5)
    ahead = [spend("s", first_ts=f"2026-11-21T0{i}:00:00.000Z", parts=[part(f"2026-11-21T0{i}:00:00.000Z")])
             for i in range(2)]
    api.add(ahead)
    later = [spend("s", first_ts=f"2026-11-20T1{i}:00:00.000Z", parts=[part(f"2026-11-20T1{i}:00:00.000Z")])
             for i in range(6)]
    for rec in later:
        api.add([rec])
    held = api.read().records
    assert set(held) == {r.id for r in ahead + later}
    assert sum(r.requests for r in held.values()) == 8


# ---------------------------------------------------------------------------------------------
# Amend, rebase


def test_amend_leaves_no_old_sha_and_no_old_issue(repo: Path, projects: Path) -> None:
    git(repo, "checkout", "-q", "-b", "wip")
    say(projects, "a", repo, "wip", "2026-11-20T09:00:00.000Z")
    hook_commit(repo, "PROJ-1 first try")
    old = git(repo, "rev-parse", "HEAD")
    say(projects, "a", repo, "wip", "2026-11-20T09:05:00.000Z", out=300)
    subprocess.run(["git", "commit", "-q", "--amend", "--allow-empty", "-m", "PROJ-2 the real thing"], cwd=repo, check=True,
                   capture_output=True)
    new = git(repo, "rev-parse", "HEAD")
    assert rows(repo, "commit") == {new: cost() + cost(300)}
    assert rows(repo, "issue") == {"PROJ-2": cost() + cost(300)}
    assert old not in cli("report", "--by", "commit", "--tree", cwd=repo).stdout


def test_rebase_moves_the_spend_to_the_new_commits(repo: Path, projects: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/PROJ-8-r")
    say(projects, "r", repo, "feature/PROJ-8-r", "2026-11-20T09:00:00.000Z")
    hook_commit(repo, "r1")
    say(projects, "r", repo, "feature/PROJ-8-r", "2026-11-20T09:10:00.000Z", out=300)
    hook_commit(repo, "r2")
    git(repo, "checkout", "-q", "main")
    commit(repo, "meanwhile on main", {"m.txt": "m\n"})
    git(repo, "checkout", "-q", "feature/PROJ-8-r")
    subprocess.run(["git", "rebase", "-q", "main"], cwd=repo, check=True, capture_output=True)
    shas = git(repo, "log", "--format=%H", "-2").split()
    got = rows(repo, "commit")
    assert set(got) == set(shas) and sum(got.values()) == cost() + cost(300)


# ---------------------------------------------------------------------------------------------
# Storage


def test_strings_from_transcripts_are_capped(repo: Path, projects: Path, env_dirs: dict[str, Path]) -> None:
    branch = "feature/PROJ-6-" + "x" * 100_000
    say(projects, "long", repo, branch, "2026-11-20T09:00:00.000Z")
    hook_commit(repo, "long")
    db = sqlite3.connect(env_dirs["costattr_home"] / "ledger.sqlite")
    sizes = [len(d) for (d,) in db.execute("SELECT doc FROM records")]
    db.close()
    assert sizes and max(sizes) < 4000
    assert rows(repo, "issue") == {"PROJ-6": cost()}


def test_ledger_path_is_used(repo: Path, projects: Path, tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    target = tmp_path / "elsewhere" / "team-ledger.sqlite"
    (repo / ".costattr.toml").write_text(f'[ledger]\npath = "{target}"\n')
    say(projects, "p", repo, "main", "2026-11-20T09:00:00.000Z")
    hook_commit(repo, "p")
    assert target.is_file()
    assert not (env_dirs["costattr_home"] / "ledger.sqlite").exists()
    assert rows(repo, "branch") == {"main": cost()}


def test_a_newer_schema_is_refused_and_left_untouched(repo: Path, projects: Path, env_dirs: dict[str, Path]) -> None:
    say(projects, "n", repo, "main", "2026-11-20T09:00:00.000Z")
    hook_commit(repo, "n")
    path = env_dirs["costattr_home"] / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    before = path.read_bytes()
    proc = cli("report", cwd=repo, ok=False)
    assert proc.returncode == 1 and "schema version 3" in proc.stderr and "upgrade costattr" in proc.stderr
    line = hook_commit(repo, "again")
    assert "not recorded" in line
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# From 0.1


FIXTURE = Path(__file__).parent / "fixtures" / "v1"


def _legacy_world(tmp_path: Path, env_dirs: dict[str, Path]) -> Path:
    """The repository and transcripts the fixture was recorded against (same SHAs: fixed dates)."""
    sys.path.insert(0, str(FIXTURE))
    import scenario  # type: ignore[import-not-found]

    repo = tmp_path / "legacy"
    repo.mkdir()
    ident = {"GIT_AUTHOR_NAME": "Legacy Dev", "GIT_AUTHOR_EMAIL": "legacy@example.com",
             "GIT_COMMITTER_NAME": "Legacy Dev", "GIT_COMMITTER_EMAIL": "legacy@example.com"}
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", scenario.ORIGIN)
    dated = {"GIT_AUTHOR_DATE": "2026-10-17T20:00:00+00:00", "GIT_COMMITTER_DATE": "2026-10-17T20:00:00+00:00"}
    git(repo, "commit", "-q", "--allow-empty", "-m", "initial", env=ident | dated)
    git(repo, "branch", "feature/PROJ-12-login")
    for step, branch, message, date in scenario.COMMITS:
        git(repo, "checkout", "-q", branch)
        git(repo, "commit", "-q", "--allow-empty", "-m", message,
            env=ident | {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})
        last_step = step
    scenario.write_transcripts(env_dirs["claude"] / "projects", str(repo), last_step)
    home = env_dirs["costattr_home"]
    home.mkdir(parents=True, exist_ok=True)
    (home / "ledger.json").write_bytes((FIXTURE / "ledger-v1.json").read_bytes())
    return repo


def test_a_v1_ledger_is_converted_once_with_nothing_lost_or_doubled(tmp_path: Path, env_dirs: dict[str, Path]) -> None:
    repo = _legacy_world(tmp_path, env_dirs)
    v1 = json.loads((FIXTURE / "ledger-v1.json").read_text())["data"]
    v1_total = sum(Decimal(repr(e["cost_usd"])) for e in v1.values())
    got = report(repo, "--by", "issue")
    assert Decimal(str(got["totals"]["cost_usd"])) == v1_total
    assert {r["key"] for r in got["rows"]} == {"PROJ-12", "ENG-7"}
    assert [r["prs"] for r in got["rows"] if r["key"] == "PROJ-12"] == [[101]]
    home = env_dirs["costattr_home"]
    assert not (home / "ledger.json").exists() and (home / "ledger.json.migrated-v1").is_file()
    # The first v2 hook finds everything 0.1 recorded covered: nothing new, nothing doubled.
    cli("install", cwd=repo)
    line = hook_commit(repo, "after the upgrade")
    assert line.startswith("costattr: 0.0000 (0.0%)")
    assert Decimal(str(report(repo, "--by", "issue")["totals"]["cost_usd"])) == v1_total
    # New spend is recorded, only it.
    say(env_dirs["claude"] / "projects", "sess-main", repo, "main", "2026-10-18T02:00:00.000Z", out=300)
    line = hook_commit(repo, "new spend")
    assert line.startswith(f"costattr: {cost(300):.4f} (")
    assert Decimal(str(report(repo, "--by", "issue")["totals"]["cost_usd"])) == v1_total + cost(300)


# ---------------------------------------------------------------------------------------------
# What Claude Code itself records about PRs and cost (issue 14)


def test_a_pr_link_record_links_the_sessions_branch_without_anyone_typing_pr(repo: Path, env_dirs: dict[str, Path]
                                                                              ) -> None:
    from costattr.testing.transcripts import ClaudeSessionWriter

    git(repo, "checkout", "-q", "-b", "feature/PROJ-4-pr")
    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch="feature/PROJ-4-pr", seed=3)
    w.response(output=300)
    w.pr_link(42, "acme/app")
    w.pr_link(43, "someone/else")  # another repository's PR: not this one's to link
    w.response(output=500)
    w.close()
    hook_commit(repo, "work")
    doc = report(repo, "--by", "pr")
    assert [r["key"] for r in doc["rows"]] == ["#42"]
    assert doc["rows"][0]["requests"] == 2
    # re-emitted on resume: the same link, nothing doubles
    w2 = w.resume_copy()
    w2.pr_link(42, "acme/app")
    w2.close()
    hook_commit(repo, "again")
    assert report(repo, "--by", "pr")["rows"][0]["cost_usd"] == doc["rows"][0]["cost_usd"]


def test_cost_state_adds_the_sessions_residual_once_on_its_last_record(repo: Path, env_dirs: dict[str, Path]) -> None:
    from costattr.testing.transcripts import ClaudeSessionWriter

    w = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch="main", seed=4)
    w.response(input=10, output=100, cache_write_5m=1000, cache_read=5000)
    w.cost_state(0.0100)  # Claude Code's own total: above the line (auxiliary calls), 0.00322 more
    hook_commit(repo, "one")
    by_model = rows(repo, "model")
    residual = "(within session, not attributable to a line)"
    assert by_model[residual] == Decimal("0.0100") - cost()
    w.response(input=10, output=100, cache_write_5m=1000, cache_read=5000)
    w.cost_state(0.0200)
    w.close()
    hook_commit(repo, "two")
    by_model = rows(repo, "model")
    assert by_model[residual] == Decimal("0.0200") - 2 * cost()
    assert sum(by_model.values()) == Decimal("0.0200")
    doc = report(repo, "--by", "session")
    assert Decimal(str(doc["totals"]["cost_usd"])) == Decimal("0.0200")
    hook_commit(repo, "nothing new")
    assert rows(repo, "model") == by_model  # recorded once
