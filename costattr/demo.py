"""The demo scenario: a throw-away repository and realistic transcripts, run through the real flow.

Everything lives under one directory the caller owns (a temporary one): the repository, the
assistants' transcript homes, costattr's own state, a home directory and a git config. Every git
and costattr process the demo starts gets an environment that points there and nowhere else, so
the user's own transcripts, ledger, shared backends, tokens and git settings are never read or
written. The costattr processes are real (`python -m costattr`, the hook fired by `git commit`),
so what the demo shows is what a user's repository would do.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from costattr.errors import CostattrError
from costattr.testing.transcripts import ClaudeSessionWriter, CodexRolloutWriter

ORIGIN_URL = "https://github.com/acme/shop.git"
REPO_NAME = "shop"
PR_NUMBER = 7
JIRA_BRANCH = "feature/SHOP-101-checkout"
LINEAR_BRANCH = "alice/eng-42-cache"
GITHUB_BRANCH = "123-fix-typo"
HISTORY_BRANCH = "feature/SHOP-90-search"  # worked on, merged and deleted before costattr was installed
ISSUE_KEYS = ("SHOP-101", "ENG-42", "#123", "SHOP-90")
SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
CODEX = "gpt-5.1-codex"
AUTHOR_NAME = "Alice Example"
AUTHOR_EMAIL = "alice@example.com"
SUBPROCESS_TIMEOUT_S = 120

# Variables that could point a child process at the user's own data, repositories, tokens or
# shared ledgers (COSTATTR_API_KEY, GITHUB_TOKEN, GIT_DIR from an outer hook, CLAUDE_CONFIG_DIR...).
_PRIVATE_PREFIXES = ("GIT_", "COSTATTR_", "GITHUB_", "GH_", "CLAUDE_", "CODEX_", "XDG_")
# What the hook prints on success: CloudClawer's `cost (cache hit %)`.
_HOOK_SUMMARY = re.compile(r"^costattr: (\d+\.\d{4} \(\d+(?:\.\d+)?%\).*)$", re.MULTILINE)

_GITCONFIG = f"""\
[user]
\tname = {AUTHOR_NAME}
\temail = {AUTHOR_EMAIL}
[init]
\tdefaultBranch = main
[commit]
\tgpgsign = false
"""

_COSTATTR_TOML = """\
# costattr settings for this repository (`costattr init` writes a commented one).
[trackers]
jira = "https://acme.atlassian.net"
"""

_INITIAL_FILES = {
    "README.md": "# shop\n\nA small web shop.\n",
    ".costattr.toml": _COSTATTR_TOML,
    "shop/checkout.py": "def checkout(cart):\n    raise NotImplementedError\n",
    "shop/catalog.py": "def product(db, sku):\n    return db.fetch_product(sku)\n",
    "shop/templates/footer.html": "<footer>Thank you for shoping with us</footer>\n",
}


class DemoError(CostattrError):
    """A step of the demo failed; the message carries the output of the step."""


@dataclass(frozen=True)
class DemoDirs:
    """Where each part of the demo lives, all under `root`."""

    root: Path

    @property
    def repo(self) -> Path:
        return self.root / REPO_NAME

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def claude(self) -> Path:
        return self.root / "claude"

    @property
    def codex(self) -> Path:
        return self.root / "codex"

    @property
    def state(self) -> Path:
        """The demo's COSTATTR_HOME: ledger, parse cache, logs."""
        return self.root / "costattr-home"

    @property
    def gitconfig(self) -> Path:
        return self.root / "gitconfig"

    @property
    def git_templates(self) -> Path:
        # Empty: a system or user template could otherwise bring hooks into the demo repository.
        return self.root / "git-templates"


def _import_root() -> str | None:
    """The directory to put on PYTHONPATH so child processes import this very costattr, or None
    when it is installed in site-packages (putting that on PYTHONPATH would shadow the stdlib)."""
    root = Path(__file__).resolve().parent.parent
    return None if root.name in ("site-packages", "dist-packages") else str(root)


def demo_env(dirs: DemoDirs, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every process the demo starts: the user's, minus anything that could
    reach their data, plus homes, state and git config inside `dirs`."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(_PRIVATE_PREFIXES)}
    home = str(dirs.home)
    env.update(
        HOME=home,
        USERPROFILE=home,
        XDG_CONFIG_HOME=str(dirs.home / ".config"),
        XDG_DATA_HOME=str(dirs.home / ".local" / "share"),
        XDG_CACHE_HOME=str(dirs.home / ".cache"),
        XDG_STATE_HOME=str(dirs.home / ".local" / "state"),
        COSTATTR_HOME=str(dirs.state),
        CLAUDE_CONFIG_DIR=str(dirs.claude),
        CODEX_HOME=str(dirs.codex),
        GIT_CONFIG_GLOBAL=str(dirs.gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TEMPLATE_DIR=str(dirs.git_templates),
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
        GIT_TERMINAL_PROMPT="0",
    )
    root = _import_root()
    if root is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


# ---------------------------------------------------------------------------------------------
# Running git and costattr inside the demo


@dataclass(frozen=True)
class CommitRecord:
    """One commit of the demo and what its post-commit hook printed."""

    branch: str
    tool: str
    sha: str
    subject: str
    hook_summary: str  # `0.4213 (91.2%) on SHOP-101`: what the commit recorded, as the hook prints it


@dataclass
class Runner:
    """Runs git and costattr in the demo repository with the demo environment."""

    dirs: DemoDirs
    env: dict[str, str]

    def _run(self, argv: Sequence[str], shown: str) -> subprocess.CompletedProcess[str]:
        try:
            proc = subprocess.run(list(argv), cwd=self.dirs.repo, env=self.env, capture_output=True, text=True,
                                  check=False, timeout=SUBPROCESS_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DemoError(f"`{shown}` could not run: {e}") from e
        if proc.returncode != 0:
            raise DemoError(f"`{shown}` failed (exit {proc.returncode}):\n{proc.stderr}{proc.stdout}".rstrip())
        return proc

    def git(self, *args: str, when: datetime | None = None) -> str:
        """git in the demo repository; `when` dates the commits it makes (author and committer)."""
        runner = self
        if when is not None:
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
            runner = Runner(self.dirs, {**self.env, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
        return runner._run(["git", *args], "git " + " ".join(args)).stdout.strip()

    def costattr(self, *args: str, extra_env: Mapping[str, str] | None = None) -> str:
        runner = self if not extra_env else Runner(self.dirs, {**self.env, **extra_env})
        return runner._run([sys.executable, "-m", "costattr", *args], "costattr " + " ".join(args)).stdout

    def stage(self, files: Mapping[str, str]) -> None:
        for rel, text in files.items():
            target = self.dirs.repo / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        self.git("add", "-A")

    def commit(self, message: str, files: Mapping[str, str]) -> tuple[str, str]:
        """Write `files`, commit them with a real `git commit` (the hook fires); return the sha
        and the hook's summary line. A hook that printed no summary recorded nothing: that is
        a failure of the demo, reported with what the hook said."""
        self.stage(files)
        proc = self._run(["git", "commit", "-q", "-m", message], f"git commit -m {message!r}")
        output = proc.stdout + proc.stderr  # git sends a hook's stdout to stderr
        found = _HOOK_SUMMARY.search(output)
        if found is None:
            raise DemoError(f"the post-commit hook recorded nothing for {message!r}:\n{output.strip()}"
                            f"\n(costattr's log: {self.dirs.state / 'costattr.log'})")
        return self.git("rev-parse", "HEAD"), found.group(1)


# ---------------------------------------------------------------------------------------------
# Transcripts


@dataclass
class _Chat:
    """A Claude Code conversation whose cached context grows with every response, as real ones do."""

    writer: ClaudeSessionWriter
    rng: random.Random
    model: str = SONNET
    context: int = 0

    def turn(self, prompt: str, responses: int) -> None:
        self.writer.user_prompt(prompt)
        for _ in range(responses):
            # The first call writes the system prompt and tools to the cache; later ones read it back.
            written = self.rng.randint(11_000, 16_000) if self.context == 0 else self.rng.randint(1_500, 6_000)
            resp = self.writer.response(self.model, input=self.rng.randint(2, 9), output=self.rng.randint(120, 1_400),
                                        cache_write_5m=written, cache_read=self.context)
            self.context += written
            self.writer.user_tool_result(resp.tool_use_id)
            self.writer.clock.advance(self.rng.uniform(30, 150))  # reading files, running tests
        self.writer.bookkeeping()

    def pause(self, minutes: float) -> None:
        self.writer.clock.advance(minutes * 60)


def _codex_session(dirs: DemoDirs, start: datetime, rng: random.Random) -> None:
    """A Codex session on the Linear branch: cumulative token_count events, as Codex writes them."""
    rollout = CodexRolloutWriter(dirs.codex, cwd=str(dirs.repo), branch=LINEAR_BRANCH, start=start, seed=42)
    rollout.turn(CODEX, "Product lookups hit the database on every page view. Cache them (ENG-42).")
    context = rng.randint(9_000, 12_000)
    for _ in range(5):
        fresh = rng.randint(800, 4_000)
        rollout.token_count(input=context + fresh, cached=context, output=rng.randint(200, 1_800),
                            reasoning=rng.randint(60, 500))
        rollout.tool_call("12 passed in 0.52s\n", "pytest -q tests/test_catalog.py")
        rollout.clock.advance(rng.uniform(20, 80))
        context += fresh
    rollout.agent_message("Product lookups are now cached for five minutes; the cache is cleared on every write.")
    rollout.close()


# ---------------------------------------------------------------------------------------------
# The scenario


OnCommit = Callable[[CommitRecord], None]


@dataclass
class DemoResult:
    dirs: DemoDirs
    commits: list[CommitRecord] = field(default_factory=list)
    backfill: str = ""  # `costattr backfill`: the history made before the hook
    report: str = ""  # `costattr report --by issue`
    comment: str = ""  # `costattr comment --pr 7 --dry-run`


@dataclass
class _Scenario:
    run: Runner
    result: DemoResult
    on_commit: OnCommit
    rng: random.Random
    start: datetime

    def commit(self, branch: str, tool: str, message: str, files: Mapping[str, str]) -> None:
        sha, summary = self.run.commit(message, files)
        record = CommitRecord(branch, tool, sha, message.splitlines()[0], summary)
        self.result.commits.append(record)
        self.on_commit(record)

    def history(self) -> None:
        """Two days ago, before costattr: a Claude Code session on a Jira branch, two commits,
        merged into main and the branch deleted. Only the transcripts and git's reflog remember
        which commits it made; `costattr backfill` reads them."""
        then = self.start - timedelta(days=2)
        self.run.git("checkout", "-q", "-b", HISTORY_BRANCH)
        chat = self._chat(HISTORY_BRANCH, then, seed=4)
        chat.turn("Add a product search box to the catalog (SHOP-90).", 4)
        self.run.stage({"shop/search.py": "def search(db, text):\n    return db.find_products(text)\n"})
        self.run.git("commit", "-q", "-m", "Add product search", when=chat.writer.clock.now + timedelta(minutes=3))
        chat.pause(20)
        chat.turn("Search should ignore case.", 2)
        chat.writer.close()
        self.run.stage({"shop/search.py": "def search(db, text):\n    return db.find_products(text.lower())\n"})
        done = chat.writer.clock.now + timedelta(minutes=2)
        self.run.git("commit", "-q", "-m", "Case-insensitive search", when=done)
        self.run.git("checkout", "-q", "main")
        self.run.git("merge", "-q", "--no-ff", "--no-edit", HISTORY_BRANCH, when=done + timedelta(minutes=30))
        self.run.git("branch", "-q", "-D", HISTORY_BRANCH)

    def branch_off_main(self, branch: str) -> None:
        self.run.git("checkout", "-q", "main")
        self.run.git("checkout", "-q", "-b", branch)

    def checkout_feature(self) -> None:
        """Jira branch: a Claude Code session with a subagent, two commits, then PR #7."""
        self.run.git("checkout", "-q", "-b", JIRA_BRANCH)
        chat = self._chat(JIRA_BRANCH, self.start, seed=1)
        chat.turn("Add a checkout page that takes a card and an address (SHOP-101).", 6)
        helper = _Chat(chat.writer.subagent(), self.rng, HAIKU)
        helper.turn("Find every place that formats prices.", 4)
        chat.writer.user_tool_result(content="Prices are formatted in 3 places.", with_task_usage_summary=True,
                                     agent_id=helper.writer.agent_id)
        chat.turn("Use the shared price formatter in the summary.", 3)
        self.commit(JIRA_BRANCH, "Claude Code, with a subagent", "Add checkout page",
                    {"shop/checkout.py": "def checkout(cart, card, address):\n    return cart.total()\n"})
        chat.pause(12)
        chat.turn("Reject cards that expire before the end of the month.", 5)
        self.commit(JIRA_BRANCH, "Claude Code, with a subagent", "Validate card expiry (SHOP-101)",
                    {"shop/checkout.py": "def checkout(cart, card, address):\n    card.check_expiry()\n"
                                         "    return cart.total()\n"})
        chat.writer.close()
        helper.writer.close()
        # The pull request is opened: link the session to it, as `costattr upload --pr N` does.
        self.run.costattr("upload", "--pr", str(PR_NUMBER), "--quiet")

    def cache_feature(self) -> None:
        """Linear branch: a Codex session."""
        self.branch_off_main(LINEAR_BRANCH)
        _codex_session(self.run.dirs, self.start + timedelta(minutes=50), self.rng)
        self.commit(LINEAR_BRANCH, "Codex", "Cache product lookups",
                    {"shop/catalog.py": "from functools import lru_cache\n\n\n@lru_cache(maxsize=1024)\n"
                                        "def product(db, sku):\n    return db.fetch_product(sku)\n"})

    def typo_fix(self) -> None:
        """GitHub issue branch: a Claude Code session that starts on main (that part has no issue
        and shows as unattributed), then moves to the branch."""
        self.run.git("checkout", "-q", "main")
        chat = self._chat("main", self.start + timedelta(minutes=95), seed=3)
        chat.turn("Where does the footer text come from?", 2)
        chat.pause(2)
        self.branch_off_main(GITHUB_BRANCH)
        chat.writer.branch = GITHUB_BRANCH  # Claude Code records the branch on every line
        chat.turn("Fix the typo in the footer (issue #123).", 2)
        chat.writer.close()
        self.commit(GITHUB_BRANCH, "Claude Code", "Fix typo in the footer (fixes #123)",
                    {"shop/templates/footer.html": "<footer>Thank you for shopping with us</footer>\n"})

    def _chat(self, branch: str, start: datetime, seed: int) -> _Chat:
        dirs = self.run.dirs
        writer = ClaudeSessionWriter(dirs.claude / "projects", cwd=str(dirs.repo), branch=branch, start=start,
                                     seed=seed)
        return _Chat(writer, self.rng)


def prepare(dirs: DemoDirs) -> None:
    """Create the demo's directories and git config; refuse a machine without git."""
    if shutil.which("git") is None:
        raise DemoError("the demo needs git, which is not on PATH", hint="install git, then run `costattr demo` again")
    for d in (dirs.repo, dirs.home, dirs.claude, dirs.codex, dirs.git_templates):
        d.mkdir(parents=True, exist_ok=True)
    dirs.gitconfig.write_text(_GITCONFIG, encoding="utf-8")


def run_demo(root: Path, on_commit: OnCommit = lambda record: None, *, now: datetime | None = None,
             on_backfill: Callable[[str], None] = lambda text: None) -> DemoResult:
    """Build the repository and transcripts under `root`, run the flow, and return what it printed.

    The sessions ran in the three hours before `now` (so reports look current); token counts come
    from fixed seeds, so the figures are the same on every run.
    """
    dirs = DemoDirs(root.resolve())  # the transcripts' cwd must match the work tree git reports
    prepare(dirs)
    run = Runner(dirs, demo_env(dirs))
    result = DemoResult(dirs)
    start = (now or datetime.now(UTC)).replace(second=0, microsecond=0) - timedelta(hours=3)
    scenario = _Scenario(run, result, on_commit, random.Random(2026), start)

    run.git("init", "-q")
    run.git("symbolic-ref", "HEAD", "refs/heads/main")  # `init -b` needs git 2.28; this works everywhere
    run.git("remote", "add", "origin", ORIGIN_URL)
    _initial_commit(run)
    scenario.history()
    result.backfill = run.costattr("backfill", extra_env={"COLUMNS": "80"})
    on_backfill(result.backfill)
    run.costattr("install")
    scenario.checkout_feature()
    scenario.cache_feature()
    scenario.typo_fix()
    run.git("checkout", "-q", JIRA_BRANCH)  # the PR's head branch: what `comment` selects by

    width = {"COLUMNS": os.environ.get("COLUMNS") or str(shutil.get_terminal_size().columns)}
    # Both only read the ledger: run them side by side, which saves a Python start-up.
    with ThreadPoolExecutor(max_workers=2) as pool:
        report = pool.submit(run.costattr, "report", "--by", "issue", extra_env=width)
        comment = pool.submit(run.costattr, "comment", "--pr", str(PR_NUMBER), "--dry-run")
        result.report, result.comment = report.result(), comment.result()
    return result


def _initial_commit(run: Runner) -> None:
    """The project as it was before anyone used an assistant (committed before the hook exists)."""
    run.stage(_INITIAL_FILES)
    run.git("commit", "-q", "-m", "Initial commit", when=datetime.now(UTC) - timedelta(days=7))
