"""Secrets: with a memory-API key and a GitHub token in the environment (and a token inside the
origin URL), run every command, through success and failure (server down, refused key, bad token,
verbose tracebacks), then search every file under COSTATTR_HOME (the SQLite ledger and its WAL,
where records wait for the shared backend; cache, logs, state), HOME, the hooks and config written
into the repository, an export, the git notes, and every byte of output for them. None may appear
anywhere.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_github import FakeGitHub
from fake_memory_api import FakeMemoryApi
from helpers_reliability import HOOK, build_world, env_with, ledger_file, run_cli

from costattr.cli import COMMANDS, cli
from costattr.ledger.store import LocalStore
from costattr.testing.gitrepo import git

API_KEY = "sk-costattr-SECRET-xyz"
GH_TOKEN = "ghp_SECRETSECRET"
# Fragments too: a secret cut, quoted or masked badly still shows one of them.
NEEDLES = [API_KEY, GH_TOKEN, "SECRET-xyz", "SECRETSECRET"]


def _leaks(blob: bytes | str) -> list[str]:
    data = blob if isinstance(blob, bytes) else blob.encode("utf-8", "surrogateescape")
    return [n for n in NEEDLES if n.encode() in data]


def test_the_scan_finds_a_planted_secret() -> None:
    assert _leaks(f"x{API_KEY}y") and _leaks(b"token=ghp_SECRETSECRET") and _leaks("...SECRET-xyz")
    assert not _leaks("sk-c\u2026xyz ghp_\u2026 masked")


def test_no_command_ever_writes_or_prints_a_secret(tmp_path: Path, env_dirs: dict[str, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    world = build_world(tmp_path, env_dirs)
    repo = world.repo
    git(repo, "remote", "add", "origin", f"https://x-access-token:{GH_TOKEN}@github.com/acme/app.git")
    api = FakeMemoryApi(key=API_KEY).start()
    wrong_api = FakeMemoryApi(key="sk-some-other-key").start()  # refuses our key: 401
    outputs: list[tuple[str, str, str]] = []
    ran: set[str] = set()
    try:
        with FakeGitHub(token=GH_TOKEN, viewer="costattr-bot", viewer_type="User") as gh:
            head = git(repo, "rev-parse", "HEAD")
            gh.add_pull("acme/app", 5, head_ref="feature/PROJ-7-login", commits=[head])
            base_env = env_with(
                COSTATTR_API_KEY=API_KEY, GITHUB_TOKEN=GH_TOKEN, GH_TOKEN=GH_TOKEN,
                COSTATTR_LEDGER="memory-api", COSTATTR_API_URL=api.url, COSTATTR_API_USER=api.user,
                GITHUB_API_URL=gh.url, GITHUB_REPOSITORY="acme/app", COSTATTR_NO_FAST_PATH="1",
            )

            def run(*args: str, cwd: Path = repo, **env: str | None) -> subprocess.CompletedProcess[str]:
                e = dict(base_env)
                for k, v in env.items():
                    if v is None:
                        e.pop(k, None)
                    else:
                        e[k] = v
                proc = run_cli(*args, cwd=cwd, env=e, timeout=180)
                outputs.append((" ".join(args), proc.stdout, proc.stderr))
                if args and not args[0].startswith("-"):
                    ran.add(args[0])
                assert "Traceback" not in proc.stderr or "-v" in args, (args, proc.stderr)
                return proc

            # Help everywhere (in this process: help text cannot depend on a subprocess's state).
            for k in ("COSTATTR_API_KEY", "GITHUB_TOKEN", "GH_TOKEN"):
                monkeypatch.setenv(k, base_env[k])
            runner = CliRunner()
            for args in (["--help"], ["--version"], *([name, "--help"] for name in COMMANDS),
                         ["pricing", "show", "--help"], ["pricing", "update", "--help"]):
                result = runner.invoke(cli, args)
                assert result.exit_code == 0, (args, result.output)
                outputs.append((" ".join(args), result.output, ""))

            # The real work, with everything reachable.
            assert run("install").returncode == 0
            assert run("init", "--no-install").returncode == 0
            assert run("trust").returncode == 0 and run("trust", "--list").returncode == 0
            assert run("sessions", "--format", "json").returncode == 0
            assert run("base").returncode == 0
            assert run("backfill", "--dry-run").returncode == 0
            assert run("backfill").returncode == 0  # with the token: asks the fake GitHub for PRs
            assert run(*HOOK).returncode == 0
            assert run("upload", "--pr", "5").returncode == 0
            assert run("upload", "--dry-run").returncode == 0
            assert run("sync").returncode == 0
            assert run("sync", "--all").returncode == 0
            assert api.data(), "the memory API got the entries"
            for fmt in ("json", "markdown"):
                assert run("report", "--by", "issue", "--format", fmt).returncode == 0
            assert run("report", "--ledger", "json", "--by", "session").returncode == 0
            assert run("comment", "--pr", "5").returncode == 0
            assert gh.comments("acme/app", 5), "the comment was posted"
            assert run("comment", "--dry-run", "--pr", "5").returncode == 0
            assert run("pricing", "show", "--format", "json").returncode == 0
            exported = tmp_path / "export" / "agent-costs.json"
            assert run("export", "-o", str(exported)).returncode == 0 and exported.is_file()
            assert run("export", "--format", "jsonl").returncode == 0
            assert run("export", "--ledger", "memory-api").returncode == 0
            # An amend through git itself: the installed post-commit and post-rewrite hooks run.
            amend = subprocess.run(["git", "commit", "-q", "--amend", "--allow-empty", "-m", "login: amended"],
                                   cwd=repo, env=base_env, capture_output=True, text=True, check=False)
            assert amend.returncode == 0, amend.stderr
            outputs.append(("git commit --amend (hooks)", amend.stdout, amend.stderr))
            run("pricing", "update", "--url", f"{api.url}/u/{api.user}/memory/file?path=prices", "--timeout", "2")
            run("doctor")
            run("doctor", "--format", "json")
            run("demo")

            # Failures: a refused key, a bad token, a server that is down, verbose tracebacks.
            world.grow(2)
            run(*HOOK, COSTATTR_API_URL=wrong_api.url)  # 401: the records wait in the local ledger
            run("sync", COSTATTR_API_URL=wrong_api.url)
            run("-v", "report", "--ledger", "memory-api", COSTATTR_API_URL=wrong_api.url)
            run("comment", "--pr", "5", GITHUB_TOKEN="ghp_wrongwrongwrong", GH_TOKEN=None)
            run("-v", "comment", "--pr", "5", "--strict", GITHUB_TOKEN="ghp_wrongwrongwrong", GH_TOKEN=None)
            run("comment", "--pr", "999", "--strict")  # no such PR: 404
            api.stop()
            world.grow(2)
            run(*HOOK)  # the memory API is down: the records wait
            run("-v", "sync")
            run("doctor")
            run("upload", "--pr", "5", COSTATTR_DEBUG="1")
            run("comment", "--pr", "5", GITHUB_API_URL="http://127.0.0.1:9", COSTATTR_DEBUG="1")
            run(*HOOK, COSTATTR_LEDGER="git-notes")
            run("sync", "--ledger", "git-notes")
            run("report", "--ledger", "git-notes")
    finally:
        api.stop()
        wrong_api.stop()

    assert ran >= set(COMMANDS), f"not run for real: {set(COMMANDS) - ran}"
    home = env_dirs["costattr_home"]
    with LocalStore(ledger_file(home)) as store:
        waiting = {label: n for _target, label, n in store.targets()}
    # The records the refused key and the dead server kept back wait in the store, for the memory API.
    assert any(n for label, n in waiting.items() if label.startswith("memory API")), waiting
    assert (home / "costattr.log").exists(), "the log was exercised"

    found: list[str] = []
    for label, out, err in outputs:
        found += [f"output of `{label}`: {n}" for n in _leaks(out) + _leaks(err)]
    scanned = 0
    for root in (home, env_dirs["home"], repo / ".git" / "hooks", tmp_path / "ref-home", tmp_path / "export"):
        if not root.exists():
            continue
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                found += [f"{path}: {n}" for n in _leaks(path.read_bytes())]
    for name in (".costattr.toml",):
        if (repo / name).exists():
            found += [f"{name}: {n}" for n in _leaks((repo / name).read_bytes())]
    notes = subprocess.run(["git", "-C", str(repo), "log", "--all", "--notes=*", "--format=%H%n%N"],
                           capture_output=True, check=False, env=env_with())
    found += [f"git notes: {n}" for n in _leaks(notes.stdout)]
    assert scanned > 10
    assert found == [], "\n".join(found)
    print(f"\nsecrets suite: {len(outputs)} command runs, {scanned} files scanned, no secret found")
