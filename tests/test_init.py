"""`costattr init` in real repositories: detection, the commented file and its round trip through
load_config, refusing to overwrite, and the hook offer (with a stand-in installer)."""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from costattr.cli import cli
from costattr.commands import init as init_cmd
from costattr.commands.init import Detected, forge_tracker, guess_projects, render
from costattr.config import load_config
from costattr.errors import CostattrError, NotAGitRepo
from costattr.gitctx import GitContext
from costattr.testing.gitrepo import commit, git, make_repo

INSTALL = "costattr.commands.install"


@pytest.fixture(autouse=True)
def _ceiling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.resolve()))


@pytest.fixture
def installs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[GitContext, bool]]:
    """A stand-in costattr.commands.install recording its calls (the real one has its own tests)."""
    calls: list[tuple[GitContext, bool]] = []
    fake = types.ModuleType(INSTALL)

    def install_hook(ctx: GitContext, force: bool = False) -> str:
        calls.append((ctx, force))
        return f"installed {ctx.common_dir / 'hooks' / 'post-commit'}"

    fake.install_hook = install_hook  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, INSTALL, fake)
    return calls


def run(repo: Path, monkeypatch: pytest.MonkeyPatch, *args: str, input: str | None = None) -> Result:
    monkeypatch.chdir(repo)
    return CliRunner().invoke(cli, ["init", *args], input=input)


@pytest.fixture
def gh_repo(tmp_path: Path) -> Path:
    r = make_repo(tmp_path / "app", origin="https://x-access-token:ghs_SECRET@github.com/acme/app.git")
    commit(r, "initial")
    for b in ("feature/PROJ-7-login", "bugfix/PROJ-9-crash", "alice/OPS-3-deploy", "release-1.2", "fix/utf-8-x"):
        git(r, "branch", b)
    return r


def test_writes_commented_config_that_round_trips(gh_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(gh_repo, monkeypatch, "--no-install")
    assert result.exit_code == 0, result.output
    target = gh_repo / ".costattr.toml"
    text = target.read_text()
    assert f"Wrote {target.resolve()}" in result.output
    assert "# [issues]" in text and "# [ledger]" in text and "# [budgets]" in text and "# [hook]" in text
    assert "SECRET" not in text
    cfg = load_config(gh_repo)
    assert cfg.source == target
    assert cfg.trackers.github == "https://github.com"
    assert cfg.issues.project_keys == ["PROJ", "OPS"]  # most used first; release-1.2 / utf-8 are not projects
    assert cfg.ledger.backend == "json"
    assert cfg.budgets.issue == {} and cfg.budgets.month is None
    # The data in the file is exactly what tomllib reads: comments carry no settings.
    assert tomllib.loads(text)["issues"]["project_keys"] == ["PROJ", "OPS"]


def test_every_table_has_a_comment_above_it(gh_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(gh_repo, monkeypatch, "--no-install")
    lines = (gh_repo / ".costattr.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("["):
            assert lines[i - 1].startswith("#"), f"no comment above {line}"


def test_refuses_to_overwrite_without_force(gh_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = gh_repo / ".costattr.toml"
    target.write_text("# mine\n[hook]\nquiet = true\n")
    result = run(gh_repo, monkeypatch, "--no-install")
    assert result.exit_code != 0
    assert isinstance(result.exception, CostattrError)
    assert "already exists" in result.exception.message and "--force" in (result.exception.hint or "")
    assert target.read_text() == "# mine\n[hook]\nquiet = true\n"
    result = run(gh_repo, monkeypatch, "--no-install", "--force")
    assert result.exit_code == 0, result.output
    assert "# mine" not in target.read_text()


def test_from_a_subdirectory_writes_at_the_root(gh_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sub = gh_repo / "src"
    sub.mkdir()
    assert run(sub, monkeypatch, "--no-install").exit_code == 0
    assert (gh_repo / ".costattr.toml").is_file() and not (sub / ".costattr.toml").exists()


def test_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(tmp_path, monkeypatch, "--no-install")
    assert isinstance(result.exception, NotAGitRepo)


@pytest.mark.parametrize(
    ("origin", "field", "value"),
    [
        ("git@gitlab.com:group/sub/app.git", "gitlab", "https://gitlab.com"),
        ("https://gitlab.acme.io/team/app.git", "gitlab", "https://gitlab.acme.io"),
        ("ssh://git@ghe.acme.com:2222/org/svc.git", "github", "https://ghe.acme.com"),
        ("https://github.acme.com/org/svc", "github", "https://github.acme.com"),
        ("git@ssh.dev.azure.com:v3/acme/Proj/svc", "azure", "https://dev.azure.com/acme/Proj"),
    ],
)
def test_tracker_from_origin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, origin: str, field: str, value: str) -> None:
    r = make_repo(tmp_path / "r", origin=origin)
    assert run(r, monkeypatch, "--no-install").exit_code == 0
    assert getattr(load_config(r).trackers, field) == value


def test_unborn_repo_without_origin_guesses_from_current_branch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = make_repo(tmp_path / "r", branch="alice/eng-3-setup")
    result = run(r, monkeypatch, "--no-install")
    assert result.exit_code == 0, result.output
    cfg = load_config(r)
    assert cfg.issues.project_keys == ["ENG"]
    assert cfg.trackers.github is None and cfg.trackers.gitlab is None
    text = (r / ".costattr.toml").read_text()
    # Lowercase user/eng-3 branches are Linear's format: its example is offered first.
    assert text.index('# linear = "https://linear.app/') < text.index('# jira = "https://')


def test_ledger_backend_from_environment_without_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTATTR_LEDGER", "memory-api")
    monkeypatch.setenv("COSTATTR_API_URL", "https://memory.example.com")
    monkeypatch.setenv("COSTATTR_API_USER", "alice")
    monkeypatch.setenv("COSTATTR_API_KEY", "sk-VERY-SECRET")
    r = make_repo(tmp_path / "r")
    assert run(r, monkeypatch, "--no-install").exit_code == 0
    text = (r / ".costattr.toml").read_text()
    assert "sk-VERY-SECRET" not in text
    monkeypatch.delenv("COSTATTR_LEDGER")
    cfg = load_config(r)
    assert cfg.ledger.backend == "memory-api"
    assert cfg.ledger.api_url == "https://memory.example.com" and cfg.ledger.api_user == "alice"


def test_pyproject_section_is_shadowed_with_a_note(gh_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (gh_repo / "pyproject.toml").write_text("[tool.costattr.hook]\nquiet = true\n")
    result = run(gh_repo, monkeypatch, "--no-install")
    assert "takes precedence" in result.output


# --------------------------------------------------------------------------------------------
# the hook offer


def test_yes_installs_without_asking(gh_repo: Path, monkeypatch: pytest.MonkeyPatch, installs: list) -> None:
    result = run(gh_repo, monkeypatch, "--yes")
    assert result.exit_code == 0, result.output
    assert len(installs) == 1
    ctx, force = installs[0]
    assert ctx.workdir == gh_repo.resolve() and force is False
    assert "installed" in result.output and "?" not in result.output


def test_force_is_not_passed_to_the_installer(gh_repo: Path, monkeypatch: pytest.MonkeyPatch, installs: list) -> None:
    assert run(gh_repo, monkeypatch, "--yes", "--force").exit_code == 0
    assert installs[0][1] is False  # --force replaces the config, never someone's hook


@pytest.mark.parametrize(("answer", "count"), [("y\n", 1), ("n\n", 0), ("\n", 1)])
def test_prompt(gh_repo: Path, monkeypatch: pytest.MonkeyPatch, installs: list, answer: str, count: int) -> None:
    result = run(gh_repo, monkeypatch, input=answer)
    assert result.exit_code == 0, result.output
    assert "Install the post-commit hook now?" in result.output
    assert len(installs) == count


def test_no_answer_available_skips_the_hook(gh_repo: Path, monkeypatch: pytest.MonkeyPatch, installs: list) -> None:
    result = run(gh_repo, monkeypatch, input="")
    assert result.exit_code == 0, result.output
    assert installs == [] and "costattr install" in result.output
    assert (gh_repo / ".costattr.toml").is_file()


def test_no_install_does_not_ask(gh_repo: Path, monkeypatch: pytest.MonkeyPatch, installs: list) -> None:
    result = run(gh_repo, monkeypatch, "--no-install")
    assert installs == [] and "?" not in result.output


def test_missing_installer_is_skipped_with_a_message(gh_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(init_cmd, "INSTALL_MODULE", "costattr.commands._no_such_installer")
    result = run(gh_repo, monkeypatch, "--yes")
    assert result.exit_code == 0, result.output
    assert "costattr install" in result.output


def test_installer_failure_says_the_config_was_written(gh_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType(INSTALL)

    def install_hook(ctx: GitContext, force: bool = False) -> str:
        raise CostattrError("core.hooksPath is set", hint="use husky")

    fake.install_hook = install_hook  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, INSTALL, fake)
    result = run(gh_repo, monkeypatch, "--yes")
    assert isinstance(result.exception, CostattrError)
    assert "was written" in result.exception.message and result.exception.hint == "use husky"
    assert (gh_repo / ".costattr.toml").is_file()


# --------------------------------------------------------------------------------------------
# pure parts


@pytest.mark.parametrize(
    ("host", "slug", "expected"),
    [
        ("github.com", "a/b", {"github": "https://github.com"}),
        ("github-work", "a/b", {"github": "https://github.com"}),  # ~/.ssh/config alias
        ("gitlab.com", "g/s/a", {"gitlab": "https://gitlab.com"}),
        ("dev.azure.com", "acme/Proj/svc", {"azure": "https://dev.azure.com/acme/Proj"}),
        ("bitbucket.org", "a/b", {}),
        (None, None, {}),
    ],
)
def test_forge_tracker(host: str | None, slug: str | None, expected: dict[str, str]) -> None:
    assert forge_tracker(host, slug) == expected


def test_guess_projects() -> None:
    assert guess_projects(["main", "feature/PROJ-1-a", "PROJ-2", "ENG-1", "123-title", "dependabot/x-1.2"]) == (
        ("PROJ", "ENG"),
        False,
    )
    assert guess_projects(["alice/eng-1-a", "bob/eng-2-b", "PROJ-3"]) == (("ENG", "PROJ"), True)
    assert guess_projects([]) == ((), False)


@pytest.mark.parametrize(
    "detected",
    [
        Detected(),
        Detected(trackers={"gitlab": "https://gitlab.com"}, project_keys=("A1", "ZZ"), linear_style=True),
        Detected(backend="git-notes"),
        Detected(backend="memory-api", ledger_extra={"api_url": "https://m.example", "api_user": "u \"q\""}),
    ],
)
def test_render_round_trips(tmp_path: Path, detected: Detected) -> None:
    (tmp_path / ".costattr.toml").write_text(render(detected), encoding="utf-8")
    cfg = load_config(tmp_path)
    assert cfg.ledger.backend == detected.backend
    assert tuple(cfg.issues.project_keys) == detected.project_keys
