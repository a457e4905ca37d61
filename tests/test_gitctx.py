"""gitctx against real repositories built with the git binary: worktrees, detached HEAD, unborn
branches, bare repos, rebases in progress, hook-inherited GIT_* variables, remote URL shapes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from costattr import gitctx
from costattr.errors import CostattrError, NotAGitRepo
from costattr.gitctx import discover, git, is_inside, parse_remote, strip_userinfo
from costattr.testing.gitrepo import commit, make_repo
from costattr.testing.gitrepo import git as tgit


@pytest.fixture(autouse=True)
def _ceiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Discovery must never climb out of the test's tmp dir into some enclosing repository.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.resolve()))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = make_repo(tmp_path / "repo", origin="git@github.com:acme/app.git")
    commit(r, "initial", {"a.txt": "1\n"})
    return r.resolve()


# --------------------------------------------------------------------------------------------
# discover


def test_plain_repo(repo: Path) -> None:
    sha = commit(repo, "PROJ-7 add login\n\nbody line\n", {"b.txt": "x"})
    ctx = discover(repo)
    assert ctx.workdir == repo
    assert ctx.git_dir == repo / ".git"
    assert ctx.common_dir == repo / ".git"
    assert ctx.worktrees == (repo,)
    assert ctx.branch == "main" and ctx.detached is False
    assert ctx.head_sha == sha
    assert ctx.head_message == "PROJ-7 add login\n\nbody line\n"
    assert (ctx.author_name, ctx.author_email) == ("Test Dev", "dev@example.com")
    assert ctx.origin_url == "github.com:acme/app.git"
    assert (ctx.forge_host, ctx.repo_slug) == ("github.com", "acme/app")


def test_discover_from_subdirectory_and_default_cwd(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = repo / "src" / "deep"
    sub.mkdir(parents=True)
    assert discover(sub).workdir == repo
    monkeypatch.chdir(sub)
    assert discover().workdir == repo


def test_branch_with_slashes(repo: Path) -> None:
    tgit(repo, "checkout", "-q", "-b", "alice/eng-42-fix")
    assert discover(repo).branch == "alice/eng-42-fix"


def test_outside_a_repo(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(NotAGitRepo) as e:
        discover(plain)
    assert "not inside a git repository" in e.value.message
    assert e.value.hint


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(NotAGitRepo):
        discover(tmp_path / "nope")


def test_bare_repo_needs_a_work_tree(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "bare.git", bare=True)
    for where in (bare, bare / "objects"):
        with pytest.raises(NotAGitRepo) as e:
            discover(where)
        assert "work tree" in e.value.message


def test_unborn_repo(tmp_path: Path) -> None:
    r = make_repo(tmp_path / "empty", branch="trunk")
    ctx = discover(r)
    assert ctx.branch == "trunk"
    assert ctx.detached is False
    assert ctx.head_sha is None and ctx.head_message is None
    # No commit to read an author from: the configured identity (conftest's global gitconfig).
    assert (ctx.author_name, ctx.author_email) == ("Test Dev", "dev@example.com")
    assert ctx.origin_url is None and ctx.repo_slug is None and ctx.forge_host is None


def test_orphan_branch_in_repo_with_commits(repo: Path) -> None:
    tgit(repo, "checkout", "-q", "--orphan", "feature/PROJ-9-docs")
    ctx = discover(repo)
    assert ctx.branch == "feature/PROJ-9-docs"
    assert ctx.head_sha is None and not ctx.detached


def test_detached_head(repo: Path) -> None:
    sha = commit(repo, "second")
    tgit(repo, "checkout", "-q", "--detach", "HEAD~1")
    ctx = discover(repo)
    assert ctx.detached is True
    assert ctx.branch is None
    assert ctx.head_sha is not None and ctx.head_sha != sha
    assert ctx.head_message == "initial\n"


def test_linked_worktrees(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "wt-feature"
    tgit(repo, "worktree", "add", "-q", "-b", "feature/PROJ-3-x", str(wt))
    wt = wt.resolve()
    commit(wt, "work in the worktree")

    linked = discover(wt / ".")
    assert linked.workdir == wt
    assert linked.git_dir == repo / ".git" / "worktrees" / "wt-feature"
    assert linked.common_dir == repo / ".git"
    assert linked.branch == "feature/PROJ-3-x"
    assert set(linked.worktrees) == {repo, wt}
    assert linked.worktrees[0] == repo  # the main work tree first

    main = discover(repo)
    assert main.branch == "main"
    assert set(main.worktrees) == {repo, wt}
    assert main.head_sha != linked.head_sha


def test_removed_worktree_still_listed_until_pruned(repo: Path, tmp_path: Path) -> None:
    wt = tmp_path / "gone"
    tgit(repo, "worktree", "add", "-q", "--detach", str(wt))
    wt = wt.resolve()
    subprocess.run(["rm", "-rf", str(wt)], check=True)
    # Transcripts recorded in the deleted worktree are still this repository's spend.
    assert wt in discover(repo).worktrees


def test_worktree_of_a_bare_repo(tmp_path: Path) -> None:
    bare = make_repo(tmp_path / "origin.git", bare=True)
    seed = make_repo(tmp_path / "seed")
    commit(seed, "seed")
    tgit(seed, "push", "-q", str(bare), "main")
    wt = tmp_path / "checkout"
    tgit(bare, "worktree", "add", "-q", str(wt), "main")
    ctx = discover(wt)
    assert ctx.workdir == wt.resolve()
    assert ctx.common_dir == bare.resolve()
    assert ctx.worktrees == (wt.resolve(),)  # the bare main repository has no work tree
    assert ctx.branch == "main"


def _conflicting_branches(repo: Path) -> None:
    tgit(repo, "checkout", "-q", "-b", "feature/PROJ-5-rebase")
    commit(repo, "feature change", {"a.txt": "feature\n"})
    tgit(repo, "checkout", "-q", "main")
    commit(repo, "main change", {"a.txt": "main\n"})
    tgit(repo, "checkout", "-q", "feature/PROJ-5-rebase")


@pytest.mark.parametrize(("backend", "state_dir"), [("--merge", "rebase-merge"), ("--apply", "rebase-apply")])
def test_rebase_in_progress_reports_the_branch(repo: Path, backend: str, state_dir: str) -> None:
    _conflicting_branches(repo)
    proc = subprocess.run(["git", "-C", str(repo), "rebase", backend, "main"], capture_output=True, check=False)
    assert proc.returncode != 0, "the rebase should stop on the conflict"
    assert (repo / ".git" / state_dir).is_dir()
    ctx = discover(repo)
    assert ctx.detached is True
    assert ctx.branch == "feature/PROJ-5-rebase"
    tgit(repo, "rebase", "--abort")
    assert discover(repo).detached is False


def test_rebase_in_a_linked_worktree_reads_its_own_state(repo: Path, tmp_path: Path) -> None:
    _conflicting_branches(repo)
    tgit(repo, "checkout", "-q", "main")
    wt = tmp_path / "wt"
    tgit(repo, "worktree", "add", "-q", str(wt), "feature/PROJ-5-rebase")
    subprocess.run(["git", "-C", str(wt), "rebase", "main"], capture_output=True, check=False)
    assert discover(wt).branch == "feature/PROJ-5-rebase"
    assert discover(repo).branch == "main" and not discover(repo).detached


def test_rebase_of_a_detached_head_has_no_branch(repo: Path) -> None:
    _conflicting_branches(repo)
    tgit(repo, "checkout", "-q", "--detach")
    subprocess.run(["git", "-C", str(repo), "rebase", "main"], capture_output=True, check=False)
    ctx = discover(repo)
    assert ctx.detached and ctx.branch is None


def test_non_utf8_commit_message(repo: Path) -> None:
    msg = repo / "msg.txt"
    msg.write_bytes("café PROJ-1\n".encode("latin-1"))
    tgit(repo, "-c", "i18n.commitEncoding=ISO-8859-1", "commit", "-q", "--allow-empty", "-F", str(msg))
    assert discover(repo).head_message == "café PROJ-1\n"


def test_invalid_bytes_in_message_do_not_crash(repo: Path) -> None:
    msg = repo / "msg.txt"
    msg.write_bytes(b"bad \xff\xfe bytes\n")
    tgit(repo, "commit", "-q", "--allow-empty", "--cleanup=verbatim", "-F", str(msg))
    assert discover(repo).head_message is not None


# --------------------------------------------------------------------------------------------
# remotes


@pytest.mark.parametrize(
    ("url", "origin_url", "host", "slug"),
    [
        ("https://github.com/acme/app.git", "https://github.com/acme/app.git", "github.com", "acme/app"),
        ("https://github.com/acme/app", "https://github.com/acme/app", "github.com", "acme/app"),
        ("https://github.com/acme/app/", "https://github.com/acme/app/", "github.com", "acme/app"),
        ("https://github.com/acme/app.git/", "https://github.com/acme/app.git/", "github.com", "acme/app"),
        ("git@github.com:acme/app.git", "github.com:acme/app.git", "github.com", "acme/app"),
        ("git@github.com:acme/app", "github.com:acme/app", "github.com", "acme/app"),
        ("ssh://git@github.com/acme/app.git", "ssh://github.com/acme/app.git", "github.com", "acme/app"),
        ("ssh://git@gitlab.acme.io:2222/team/app.git", "ssh://gitlab.acme.io:2222/team/app.git", "gitlab.acme.io", "team/app"),
        ("ssh://git@ssh.github.com:443/acme/app.git", "ssh://ssh.github.com:443/acme/app.git", "github.com", "acme/app"),
        ("https://x-access-token:ghp_SECRET123@github.com/acme/app.git", "https://github.com/acme/app.git", "github.com", "acme/app"),
        ("https://oauth2:glpat-SECRET@gitlab.com/group/sub/app.git", "https://gitlab.com/group/sub/app.git", "gitlab.com", "group/sub/app"),
        ("https://gitlab.com/group/sub/deeper/app", "https://gitlab.com/group/sub/deeper/app", "gitlab.com", "group/sub/deeper/app"),
        ("git@gitlab.com:group/sub/app.git", "gitlab.com:group/sub/app.git", "gitlab.com", "group/sub/app"),
        ("https://GitHub.COM/Acme/App.git", "https://GitHub.COM/Acme/App.git", "github.com", "Acme/App"),
        ("https://ghe.acme.com:8443/org/svc.git", "https://ghe.acme.com:8443/org/svc.git", "ghe.acme.com", "org/svc"),
        ("https://acme@dev.azure.com/acme/Proj/_git/svc", "https://dev.azure.com/acme/Proj/_git/svc", "dev.azure.com", "acme/Proj/svc"),
        ("git@ssh.dev.azure.com:v3/acme/Proj/svc", "ssh.dev.azure.com:v3/acme/Proj/svc", "dev.azure.com", "acme/Proj/svc"),
        ("https://bitbucket.org/acme/app.git", "https://bitbucket.org/acme/app.git", "bitbucket.org", "acme/app"),
        ("https://github.com/app", "https://github.com/app", "github.com", None),
        ("/srv/git/app.git", "/srv/git/app.git", None, None),
        ("../app.git", "../app.git", None, None),
        ("file:///srv/git/app.git", "file:///srv/git/app.git", None, None),
        ("C:/src/app.git", "C:/src/app.git", None, None),
    ],
)
def test_remote_shapes(url: str, origin_url: str, host: str | None, slug: str | None) -> None:
    assert parse_remote(url) == (host, slug)
    assert strip_userinfo(url) == origin_url


def test_strip_userinfo_never_keeps_a_token() -> None:
    for url in (
        "https://user:p%40ss@github.com/a/b.git",
        "https://TOKEN@github.com/a/b",
        "https://u:TOKEN@github.com?x=1",
        "http://u:TOKEN@host:8080/a/b",
    ):
        assert "TOKEN" not in strip_userinfo(url) and "p%40ss" not in strip_userinfo(url)


def test_origin_url_in_context_has_no_token(tmp_path: Path) -> None:
    r = make_repo(tmp_path / "r", origin="https://x-access-token:ghs_SECRET@github.com/acme/app.git")
    ctx = discover(r)
    assert ctx.origin_url == "https://github.com/acme/app.git"
    assert "SECRET" not in repr(ctx)
    assert ctx.repo_slug == "acme/app"


def test_single_non_origin_remote_is_used(tmp_path: Path) -> None:
    r = make_repo(tmp_path / "r")
    tgit(r, "remote", "add", "upstream", "https://gitlab.com/g/app.git")
    assert discover(r).repo_slug == "g/app"
    tgit(r, "remote", "add", "fork", "https://gitlab.com/me/app.git")
    assert discover(r).repo_slug is None  # ambiguous without an origin


# --------------------------------------------------------------------------------------------
# the git binary and hook-inherited environment

_HOSTILE = {
    "GIT_DIR": "/nonexistent/.git",
    "GIT_WORK_TREE": "/nonexistent",
    "GIT_INDEX_FILE": ".git/next-index-1234.lock",
    "GIT_OBJECT_DIRECTORY": "/nonexistent/objects",
    "GIT_COMMON_DIR": "/nonexistent",
    "GIT_PREFIX": "sub/",
}


def test_git_wrapper_output_and_error(repo: Path) -> None:
    assert git(["rev-parse", "--abbrev-ref", "HEAD"], repo) == "main"
    with pytest.raises(CostattrError) as e:
        git(["rev-parse", "--verify", "no-such-ref"], repo)
    assert "no-such-ref" in e.value.message or "fatal" in e.value.message
    assert e.value.hint


def test_git_wrapper_outside_repo_gives_advice(tmp_path: Path) -> None:
    with pytest.raises(CostattrError) as e:
        git(["status"], tmp_path)
    assert "work tree" in (e.value.hint or "")


def test_inherited_git_variables_are_ignored(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = make_repo(tmp_path / "other")
    commit(other, "other repo")
    for k, v in _HOSTILE.items():
        monkeypatch.setenv(k, v)
    assert discover(repo).workdir == repo
    assert git(["rev-parse", "--show-toplevel"], repo) == str(repo)
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    assert discover(repo).head_message == "initial\n"
    assert git(["log", "-1", "--format=%s"], repo) == "initial"


def test_inside_a_real_post_commit_hook(repo: Path, tmp_path: Path) -> None:
    """git exports GIT_INDEX_FILE (a temp index for `git commit <path>`) and, with --git-dir, GIT_DIR
    to hooks; discover() and git() in the hook must still see the right repository."""
    out = tmp_path / "hook-out.txt"
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c \""
        "import sys; from pathlib import Path; from costattr.gitctx import discover, git; "
        "c = discover(); "
        f"Path({str(out)!r}).write_text(f'{{c.workdir}}|{{c.branch}}|{{c.head_sha}}|'"
        " + git(['rev-parse', 'HEAD'], c.workdir))\"\n"
    )
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    (repo / "a.txt").write_text("changed\n")
    (repo / "c.txt").write_text("untracked, not committed\n")
    tgit(repo, "add", "c.txt")
    keep = ("GIT_CONFIG", "GIT_AUTHOR", "GIT_COMMITTER", "GIT_CEILING")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k.startswith(keep)}
    env.update(GIT_DIR=str(repo / ".git"), GIT_WORK_TREE=str(repo))
    subprocess.run(["git", "commit", "-q", "-m", "partial", "a.txt"], cwd=repo, env=env, check=True)
    sha = tgit(repo, "rev-parse", "HEAD")
    assert out.read_text() == f"{repo}|main|{sha}|{sha}"


# --------------------------------------------------------------------------------------------
# is_inside


def test_is_inside_component_wise(tmp_path: Path) -> None:
    root = tmp_path / "a" / "repo"
    (root / "src").mkdir(parents=True)
    (tmp_path / "a" / "repo2").mkdir()
    roots = (root.resolve(),)
    assert is_inside(root, roots)
    assert is_inside(str(root / "src"), roots)
    assert is_inside(root / "src" / "deleted" / "dir", roots)  # need not exist
    assert not is_inside(tmp_path / "a" / "repo2", roots)
    assert not is_inside(tmp_path / "a", roots)
    assert not is_inside(str(root) + "/../repo2", roots)
    assert is_inside(str(root) + "/src/..", roots)
    assert not is_inside("", roots)
    assert not is_inside(root, ())


def test_is_inside_several_roots_and_slash(tmp_path: Path) -> None:
    a, b = tmp_path / "main", tmp_path / "wt"
    assert is_inside(b / "x", [a, b])
    assert is_inside(a / "x", iter([a, b]))  # any iterable, consumed once
    assert is_inside("/anything", [Path("/")])


def test_is_inside_through_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real" / "repo"
    (real / "src").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    # Transcript recorded the symlinked spelling; roots are resolved.
    assert is_inside(link / "repo" / "src", [real.resolve()])
    # Roots given through the link; the transcript recorded the real path.
    assert is_inside(real / "src", [link / "repo"])
    # A deleted directory under a symlinked root still matches the root as written.
    assert is_inside(link / "repo" / "gone", [link / "repo"])


def test_is_inside_caches_path_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gitctx._event_path.cache_clear()
    gitctx._root_strings.cache_clear()
    calls = {"exists": 0}
    real_exists = os.path.exists

    def counting_exists(p: str) -> bool:
        calls["exists"] += 1
        return real_exists(p)

    monkeypatch.setattr(gitctx.os.path, "exists", counting_exists)
    roots = [tmp_path / "repo"]
    for _ in range(10_000):
        assert is_inside(str(tmp_path / "repo" / "src"), roots)
        assert not is_inside("/elsewhere/project", roots)
    assert calls["exists"] == 2  # once per distinct event path, not per event
