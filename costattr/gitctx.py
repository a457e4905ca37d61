"""Where we are in git: work tree, branch, HEAD commit, origin, and every work tree of the repo.

Read with pygit2, which ignores GIT_DIR, GIT_INDEX_FILE, GIT_WORK_TREE... unless opened with
RepositoryOpenFlag.FROM_ENV; a post-commit hook inherits those variables (with paths relative to
the hook's cwd), so we never pass that flag. The `git()` wrapper strips them for the same reason.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import pygit2

from costattr import secrets
from costattr.errors import CostattrError, NotAGitRepo

# Inherited by hooks; relative paths in them break any git run from another cwd (reference §3.4).
HOOK_ENV_VARS = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
    "GIT_PREFIX", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
)
GIT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class GitContext:
    workdir: Path
    git_dir: Path
    common_dir: Path
    worktrees: tuple[Path, ...]  # every work tree of this repo incl. the main one, resolved
    branch: str | None  # None when detached (outside a rebase) or HEAD names no branch
    detached: bool
    head_sha: str | None  # None in a repo with no commits
    head_message: str | None  # full message
    author_name: str | None
    author_email: str | None
    origin_url: str | None  # userinfo (tokens) removed
    repo_slug: str | None  # "owner/name"; GitLab subgroups "group/sub/name"
    forge_host: str | None  # e.g. "github.com"
    head_time: str | None = None  # HEAD's committer time, UTC ISO: requests up to it close into it
    rewritten_from: tuple[str, ...] = ()  # commits HEAD replaced: `commit --amend`, a rebase's pick or fixup

    @property
    def repo_id(self) -> str:
        """This repository's identity in the ledger, the same in every clone: `owner/name` from a
        hosted origin, else origin's URL (a path, a self-hosted server), else `path:<main work
        tree>` for a repository with no remote at all."""
        if self.repo_slug:
            return self.repo_slug
        if self.origin_url:
            return self.origin_url
        return f"path:{self.worktrees[0] if self.worktrees else self.workdir}"


# ---------------------------------------------------------------------------------------------
# discovery


def discover(cwd: Path | None = None) -> GitContext:
    """The git context of `cwd` (default: the process cwd). Raises NotAGitRepo outside a work tree."""
    start = Path(cwd) if cwd is not None else Path.cwd()
    repo = _open_repo(start)
    if repo.is_bare or repo.workdir is None:
        raise NotAGitRepo(
            f"{start} is inside a bare repository ({repo.path.rstrip('/')}); costattr needs a work tree",
            hint="run it from a clone or a `git worktree add` checkout of this repository",
        )
    git_dir = Path(repo.path).resolve()
    common_dir = _common_dir(git_dir)
    workdir = Path(repo.workdir).resolve()
    branch, detached = _branch(repo, git_dir)
    sha, message, author_name, author_email, head_time = _head_commit(repo)
    if author_name is None and author_email is None:
        author_name, author_email = _configured_identity(workdir)
    raw_url = _origin_url(repo)
    host, slug = parse_remote(strip_userinfo(raw_url)) if raw_url else (None, None)  # a password may hold `/`
    return GitContext(
        workdir=workdir,
        git_dir=git_dir,
        common_dir=common_dir,
        worktrees=_worktrees(repo, common_dir, workdir),
        branch=branch,
        detached=detached,
        head_sha=sha,
        head_message=message,
        author_name=author_name,
        author_email=author_email,
        origin_url=strip_userinfo(raw_url) if raw_url else None,
        repo_slug=slug,
        forge_host=host,
        head_time=head_time,
        rewritten_from=_rewritten_from(repo, git_dir, sha),
    )


def _open_repo(start: Path) -> pygit2.Repository:
    if not start.exists():
        raise NotAGitRepo(f"{start} does not exist", hint="run costattr from inside a git work tree")
    # GIT_CEILING_DIRECTORIES is the user's own setting (not hook-inherited state): honour it like git.
    ceiling = os.environ.get("GIT_CEILING_DIRECTORIES", "")
    try:
        found = pygit2.discover_repository(str(start), False, ceiling)
    except pygit2.GitError as e:
        raise NotAGitRepo(f"cannot look for a git repository from {start}: {e}") from e
    if found is None:
        raise NotAGitRepo(
            f"{start} is not inside a git repository",
            hint="cd into your project's work tree (or `git init` one) and run the command again",
        )
    try:
        return pygit2.Repository(found)
    except pygit2.GitError as e:
        # libgit2 refuses repositories owned by another user, like git's safe.directory check.
        raise NotAGitRepo(
            f"cannot open the git repository at {found}: {e}",
            hint="if it is owned by another user: git config --global --add safe.directory <path>",
        ) from e


def _common_dir(git_dir: Path) -> Path:
    """The shared .git of a linked worktree (its `commondir` file), else git_dir itself."""
    try:
        rel = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except OSError:
        return git_dir
    return (git_dir / rel).resolve() if rel else git_dir


def _branch(repo: pygit2.Repository, git_dir: Path) -> tuple[str | None, bool]:
    """(branch, detached). Unborn: the branch HEAD names. During a rebase: the branch being rebased."""
    if repo.head_is_unborn:
        try:
            target = repo.lookup_reference("HEAD").target
        except (pygit2.GitError, KeyError, ValueError):
            return None, False
        return (_short_branch(target) if isinstance(target, str) else None), False
    if repo.head_is_detached:
        return _rebase_head_name(git_dir), True
    return _short_branch(repo.head.name), False


def _short_branch(refname: str) -> str | None:
    # Strip refs/heads/ exactly; Reference.shorthand would also shorten refs/remotes/... ambiguously.
    if refname.startswith("refs/heads/"):
        # A ref name that is not UTF-8 comes back with lone surrogates; they must not reach a
        # ledger, a report or a PR comment, so the bad bytes become U+FFFD.
        name = refname[len("refs/heads/"):].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return name or None
    return None


def _rebase_head_name(git_dir: Path) -> str | None:
    """The branch a rebase (merge or apply backend) in this work tree is rewriting, if any."""
    for sub in ("rebase-merge", "rebase-apply"):
        try:
            name = (git_dir / sub / "head-name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            continue
        # A rebase of a detached HEAD writes "detached HEAD" here: no branch to report.
        return _short_branch(name)
    return None


def _head_commit(repo: pygit2.Repository) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    if repo.head_is_unborn:
        return None, None, None, None, None
    try:
        commit = repo.head.peel(pygit2.Commit)
    except (pygit2.GitError, KeyError, ValueError):
        return None, None, None, None, None
    encoding = commit.message_encoding or "utf-8"
    # Decode ourselves with replacement: a commit in a mislabelled encoding must not crash the hook.
    message = _decode(commit.raw_message, encoding)
    author = commit.author
    when = datetime.fromtimestamp(commit.commit_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(commit.id), message, _decode(author.raw_name, encoding), _decode(author.raw_email, encoding), when


_REBASE_STEPS = ("rebase (pick)", "rebase (reword)", "rebase (edit)", "rebase (fixup)", "rebase (squash)",
                 "rebase -i (pick)", "rebase -i (reword)", "rebase -i (edit)", "rebase -i (fixup)",
                 "rebase -i (squash)")


def _rewritten_from(repo: pygit2.Repository, git_dir: Path, sha: str | None) -> tuple[str, ...]:
    """The commits HEAD replaced, from HEAD's reflog (newest entry first): the post-commit hook
    fires on `commit --amend` and on each step of a rebase with no word of it, and setups that run
    only post-commit (pre-commit, husky) must still see the spend follow the commit.

    - `commit (amend)`: the entry's old id;
    - a rebase step: the commit being picked (the last line of rebase-merge/done), plus, for a
      fixup or squash, the previous HEAD it folded into.
    """
    if sha is None:
        return ()
    try:
        entry = next(iter(repo.references["HEAD"].log()), None)
        # pygit2 decodes the reflog message as UTF-8 and raises on a subject in another encoding
        message = entry.message if entry is not None else ""
    except (pygit2.GitError, KeyError, ValueError, OSError):  # UnicodeDecodeError is a ValueError
        return ()
    if entry is None or str(entry.oid_new) != sha:
        return ()
    old = str(entry.oid_old) if str(entry.oid_old).strip("0") else None
    if message.startswith("commit (amend)"):
        return (old,) if old else ()
    if not message.startswith(_REBASE_STEPS):
        return ()
    out: list[str] = []
    picked = _last_picked(repo, git_dir)
    if picked and picked != sha:
        out.append(picked)
    if old and ("(fixup)" in message or "(squash)" in message):
        out.append(old)
    return tuple(dict.fromkeys(out))


def _last_picked(repo: pygit2.Repository, git_dir: Path) -> str | None:
    try:
        lines = (git_dir / "rebase-merge" / "done").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        words = line.split()
        if len(words) >= 2 and words[0] in ("pick", "p", "reword", "r", "edit", "e", "fixup", "f", "squash", "s"):
            try:
                return str(repo.revparse_single(words[1]).peel(pygit2.Commit).id)
            except (KeyError, ValueError, pygit2.GitError):
                return None
    return None


def _decode(raw: bytes, encoding: str) -> str:
    try:
        return raw.decode(encoding, errors="replace")
    except LookupError:  # an encoding name Python does not know
        return raw.decode("utf-8", errors="replace")


def _configured_identity(workdir: Path) -> tuple[str | None, str | None]:
    """Who git would record as author, for a repo with no commit yet to read one from.

    Asked of the git binary, not pygit2: libgit2 ignores GIT_CONFIG_GLOBAL and GIT_AUTHOR_* and
    fixes its global-config path from HOME when first loaded, so it can disagree with git itself.
    """
    try:
        ident = git(["var", "GIT_AUTHOR_IDENT"], workdir, timeout=10)
    except CostattrError:  # no identity configured
        return None, None
    m = _IDENT_RE.match(ident)
    if m is None:
        return None, None
    return (m["name"].strip() or None), (m["email"].strip() or None)


_IDENT_RE = re.compile(r"^(?P<name>.*?)\s*<(?P<email>[^>]*)>")


def config_value(key: str, cwd: Path) -> str | None:
    """A git config value as git itself resolves it (GIT_CONFIG_GLOBAL, includes, worktree config),
    or None when unset. Prefer this to pygit2's Repository.config for user-level settings."""
    try:
        out = git(["config", "--get", key], cwd, timeout=10)
    except CostattrError:  # exit 1: unset
        return None
    return out or None


def _origin_url(repo: pygit2.Repository) -> str | None:
    """origin's URL; a repo whose only remote has another name counts that one as origin."""
    try:
        names = [n for n in repo.remotes.names() if n]
        if "origin" in names:
            return repo.remotes["origin"].url
        if len(names) == 1:
            return repo.remotes[names[0]].url
    except (pygit2.GitError, KeyError, ValueError):
        pass
    return None


def _worktrees(repo: pygit2.Repository, common_dir: Path, workdir: Path) -> tuple[Path, ...]:
    """Main work tree first (absent for a bare main repo), then the linked ones, deduplicated."""
    found: list[Path] = []
    main = _main_workdir(common_dir)
    if main is not None:
        found.append(main)
    try:
        names = repo.list_worktrees()
    except pygit2.GitError:
        names = []
    for name in names:
        try:
            # A pruned (deleted) worktree is still listed until `git worktree prune`: keep it, since
            # transcripts recorded there are still spend of this repository.
            found.append(Path(repo.lookup_worktree(name).path).resolve())
        except (pygit2.GitError, KeyError, ValueError, OSError):
            continue
    found.append(workdir)
    return tuple(dict.fromkeys(found))


def _main_workdir(common_dir: Path) -> Path | None:
    try:
        main = pygit2.Repository(str(common_dir))
    except pygit2.GitError:
        return None
    return Path(main.workdir).resolve() if main.workdir else None


# ---------------------------------------------------------------------------------------------
# remote URLs

_SCP_RE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:]+):(?P<path>(?!//).+)$")
# ssh hosts that are aliases of the web host a user knows (SSH over 443, Azure's ssh endpoints).
_HOST_ALIASES = {
    "ssh.github.com": "github.com",
    "altssh.gitlab.com": "gitlab.com",
    "ssh.dev.azure.com": "dev.azure.com",
    "vs-ssh.visualstudio.com": "dev.azure.com",
}


def parse_remote(url: str) -> tuple[str | None, str | None]:
    """(host, slug) of a remote URL: https, ssh://, scp-style, with port, token or subgroups.

    Local paths and file:// URLs have no forge: (None, None).
    """
    host, path = _split_remote(url.strip())
    if host is None:
        return None, None
    host = _HOST_ALIASES.get(host, host)
    return host, _slug(host, path)


def _split_remote(url: str) -> tuple[str | None, str]:
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme.lower() == "file":
            return None, ""
        authority, path = _split_authority(rest)
        host = _strip_port(authority.rpartition("@")[2])
        return (host.lower() or None), path
    m = _SCP_RE.match(url)
    # "C:/x" (a Windows path) looks scp-like; git itself treats one-letter hosts as drives.
    if m is None or len(m["host"]) == 1:
        return None, ""
    return m["host"].lower(), m["path"]


def _split_authority(rest: str) -> tuple[str, str]:
    """`user:pw@host:port` and what follows it (path, query or fragment), for the part after ://."""
    cut = min((i for i in (rest.find(ch) for ch in "/?#") if i != -1), default=len(rest))
    return rest[:cut], rest[cut:]


def _strip_port(hostport: str) -> str:
    if hostport.startswith("["):  # [ipv6]:port
        return hostport[1:].partition("]")[0]
    return hostport.partition(":")[0]


def _slug(host: str, path: str) -> str | None:
    path = path.split("?", 1)[0].split("#", 1)[0].strip("/")
    path = path.removesuffix(".git").rstrip("/")
    parts = [p for p in path.split("/") if p]
    if host == "dev.azure.com":
        # https: org/project/_git/repo; ssh: v3/org/project/repo -> org/project/repo
        parts = [p for p in parts if p != "_git"]
        if parts and parts[0] == "v3":
            parts = parts[1:]
    if parts and parts[0].startswith("~"):  # ssh://host/~user/repo (home-relative path)
        parts[0] = parts[0][1:]
    if len(parts) < 2:
        return None
    return "/".join(parts)


def strip_userinfo(url: str) -> str:
    """The URL without `user[:password]@`: remotes like https://x-access-token:TOKEN@github.com/...
    carry secrets, and the SSH user (git@) says nothing about the repository."""
    return secrets.strip_userinfo(url)


# ---------------------------------------------------------------------------------------------
# the git binary


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HOOK_ENV_VARS}
    # A hook must never sit waiting for a password nobody will type.
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def git(args: list[str], cwd: Path, *, timeout: float | None = GIT_TIMEOUT_S) -> str:
    """Run the git binary in `cwd` with hook-inherited GIT_* variables removed.

    Returns stdout with its final newline removed; raises CostattrError with git's stderr on failure.
    """
    cmd = ["git", *args]
    try:
        proc = subprocess.run(
            cmd, cwd=str(cwd), env=_clean_env(), capture_output=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise CostattrError(
            "the git binary was not found", hint="install git and make sure it is on PATH"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise CostattrError(
            f"`git {' '.join(args)}` did not finish within {timeout:g}s",
            hint="check the network and credentials (git must not need to prompt), then retry",
        ) from e
    except OSError as e:  # cwd missing or not a directory
        raise CostattrError(f"cannot run `git {' '.join(args)}` in {cwd}: {e}") from e
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", errors="replace").strip()
        raise CostattrError(
            f"`git {' '.join(args)}` failed (exit {proc.returncode}) in {cwd}: {stderr or 'no message'}",
            hint=_advice(stderr),
        )
    return proc.stdout.decode("utf-8", errors="replace").removesuffix("\n")


def _advice(stderr: str) -> str:
    low = stderr.lower()
    if "not a git repository" in low:
        return "run costattr from inside the repository's work tree"
    if "could not read username" in low or "authentication" in low or "permission denied" in low:
        return "git needs credentials here: check `git remote -v` and your credential helper or SSH key"
    if "dubious ownership" in low:
        return "git config --global --add safe.directory <repo path>"
    return "run the same git command yourself to see what it needs"


# ---------------------------------------------------------------------------------------------
# is a transcript's cwd inside this repository?


@lru_cache(maxsize=256)
def _root_strings(roots: tuple[str, ...]) -> tuple[str, ...]:
    """Each root as given (normalised) and resolved: transcripts record the path the assistant
    saw, which may be a symlinked spelling of the resolved work tree, or vice versa."""
    out: list[str] = []
    for r in roots:
        for form in (os.path.normpath(os.path.abspath(r)), os.path.realpath(r)):
            if form not in out:
                out.append(form)
    return tuple(out)


@lru_cache(maxsize=4096)
def _event_path(path: str) -> tuple[str, ...]:
    """Normalised absolute forms of an event cwd. Cached: every event of a session repeats its cwd.
    Resolved only when it exists: a deleted worktree's path must still compare as written."""
    norm = os.path.normpath(os.path.abspath(path))
    if os.path.exists(norm):
        real = os.path.realpath(norm)
        if real != norm:
            return (norm, real)
    return (norm,)


def _under(path: str, root: str) -> bool:
    if path == root:
        return True
    prefix = root if root.endswith(os.sep) else root + os.sep  # component-wise: /a/repo2 is not in /a/repo
    return path.startswith(prefix)


def is_inside(path: str | Path, roots: Iterable[Path]) -> bool:
    """Whether `path` (a transcript's cwd) lies in one of `roots` (work trees), component-wise."""
    if not path:
        return False
    key = tuple(str(r) for r in roots)
    if not key:
        return False
    root_forms = _root_strings(key)
    return any(_under(p, r) for p in _event_path(str(path)) for r in root_forms)


# ---------------------------------------------------------------------------------------------
# history: which commits were made on which branch (for `costattr backfill`)


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    time: str  # committer time, UTC ISO: the moment the work was committed
    message: str


@dataclass
class BranchHistory:
    """The commits made on each branch, by branch name, sorted by committer time, and where the
    evidence came from (`live`: a branch ref's first-parent history; `reflog`; `merged`)."""

    commits: dict[str, list[CommitInfo]]
    evidence: dict[str, str]


_MERGE_RE = re.compile(r"^Merge (?:branch '(?P<b>[^']+)'|pull request #\d+ from [^/\s]+/(?P<pr>\S+))")


def branch_history(workdir: Path) -> BranchHistory:
    """Every branch's commits as git still knows them:

    - a live branch: its first-parent history, plus the commits its reflog and the work trees'
      HEAD reflogs say were made on it (a rebased branch's originals, each replaced by its copy on
      the branch when one has the same author, author time and message);
    - a deleted branch: the commits the HEAD reflogs say were made while it was checked out
      (`checkout: moving from X to Y`, then `commit:` lines), else the side of a `Merge branch 'X'`
      (or GitHub's `Merge pull request #N from owner/X`) merge down to where it forked.
    """
    repo = _open_repo(Path(workdir))
    made: dict[str, dict[str, str]] = {}  # branch -> sha -> evidence
    copies: dict[tuple[str, int, str], str] = {}  # (author email, author time, message) -> live sha
    live_chain: dict[str, set[str]] = {}
    for name in list(repo.branches.local):
        short = _short_branch(f"refs/heads/{name}") or name
        try:
            tip = repo.branches.local[name].peel(pygit2.Commit)
        except (pygit2.GitError, KeyError, ValueError):
            continue
        chain = live_chain.setdefault(short, set())
        for c in _first_parent(repo, tip.id):
            chain.add(str(c.id))
            made.setdefault(short, {})[str(c.id)] = "live"
            copies.setdefault(_identity(c), str(c.id))
        _reflog_commits(repo, f"refs/heads/{name}", short, made)
    for head_repo in _worktree_repos(repo):
        _head_reflog(head_repo, made)
    _merged(repo, made)
    out: dict[str, list[CommitInfo]] = {}
    for branch, shas in made.items():
        infos: dict[str, CommitInfo] = {}
        for sha in shas:
            try:
                c = repo[sha].peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError):
                continue  # collected by gc: nothing to attribute to
            target = sha
            if branch in live_chain and sha not in live_chain[branch]:
                # A rebased or amended original: the work was committed then; it is shown on its copy.
                target = copies.get(_identity(c), sha)
            when = datetime.fromtimestamp(c.commit_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            enc = c.message_encoding or "utf-8"
            info = CommitInfo(target, when, _decode(c.raw_message, enc))
            known = infos.get(target)
            if known is None or info.time < known.time:
                infos[target] = info  # the earliest moment a version of this commit existed
        out[branch] = sorted(infos.values(), key=lambda i: (i.time, i.sha))
    evidence = {b: "live" if b in live_chain else "reflog" if "reflog" in s.values() else "merged"
                for b, s in made.items()}
    return BranchHistory(out, evidence)


def _identity(c: pygit2.Commit) -> tuple[str, int, str]:
    return (c.author.email, c.author.time, c.message)


def _first_parent(repo: pygit2.Repository, tip: pygit2.Oid, stop: set[str] | None = None) -> Iterator[pygit2.Commit]:
    walker = repo.walk(tip, pygit2.enums.SortMode.TOPOLOGICAL)
    walker.simplify_first_parent()
    for c in walker:
        if stop is not None and str(c.id) in stop:
            return
        yield c


def _log(repo: pygit2.Repository, refname: str) -> list[tuple[str, str, str]]:
    """(old, new, message) of a reflog, oldest first; empty when it cannot be read."""
    try:
        entries = [(str(e.oid_old), str(e.oid_new), e.message or "") for e in repo.references[refname].log()]
    except (pygit2.GitError, KeyError, ValueError, OSError):
        return []
    return entries[::-1]


def _reflog_commits(repo: pygit2.Repository, refname: str, branch: str, made: dict[str, dict[str, str]]) -> None:
    for _old, new, message in _log(repo, refname):
        if message.startswith("commit"):
            made.setdefault(branch, {}).setdefault(new, "reflog")


def _head_reflog(repo: pygit2.Repository, made: dict[str, dict[str, str]]) -> None:
    try:
        current = None if repo.head_is_unborn or repo.head_is_detached else _short_branch(repo.head.name)
    except (pygit2.GitError, KeyError, ValueError):  # a HEAD naming nothing readable
        current = None
    entries = _log(repo, "HEAD")
    # The branch checked out before the first entry is the one the first checkout moves from.
    first_move = next((m for _o, _n, m in entries if m.startswith("checkout: moving from ")), None)
    current = first_move[len("checkout: moving from "):].split(" to ", 1)[0] if first_move else current
    for _old, new, message in entries:
        if message.startswith("checkout: moving from "):
            target = message.rsplit(" to ", 1)[-1].strip()
            current = None if new.startswith(target) else target  # a sha: detached
        elif message.startswith("rebase") and "(finish): returning to refs/heads/" in message:
            current = message.rsplit("refs/heads/", 1)[-1].strip()
        elif message.startswith("rebase") and "(start)" in message:
            current = None  # the picks are copies; the finished branch is walked as a live ref
        elif message.startswith("commit") and current is not None:
            made.setdefault(current, {}).setdefault(new, "reflog")


def _worktree_repos(repo: pygit2.Repository) -> list[pygit2.Repository]:
    """A repository object per work tree, for its own HEAD reflog."""
    out = [repo]
    try:
        names = repo.list_worktrees()
    except pygit2.GitError:
        names = []
    for name in names:
        try:
            out.append(pygit2.Repository(repo.lookup_worktree(name).path))
        except (pygit2.GitError, KeyError, ValueError, OSError):
            continue
    return out


def _merged(repo: pygit2.Repository, made: dict[str, dict[str, str]]) -> None:
    """Branches known only from the merges that brought them in (deleted after merging)."""
    seen: set[str] = set()
    known = set(made)  # a live ref or the reflog knows these better
    for name in list(repo.branches.local):
        try:
            tip = repo.branches.local[name].peel(pygit2.Commit)
        except (pygit2.GitError, KeyError, ValueError):
            continue
        for c in _first_parent(repo, tip.id, seen):
            seen.add(str(c.id))
            m = _MERGE_RE.match(c.message or "")
            if m is None or len(c.parents) < 2:
                continue
            branch = m["b"] or m["pr"]
            if branch in known:
                continue
            base = str(repo.merge_base(c.parents[0].id, c.parents[1].id) or "")
            side = made.setdefault(branch, {})
            for s in _first_parent(repo, c.parents[1].id, {base}):
                side[str(s.id)] = "merged"
