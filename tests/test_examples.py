"""Every file in examples/ is loaded, and where it can be, run for real: an example that does not
work is worse than none."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from helpers_reliability import read_records

from costattr import issue_keys
from costattr.config import load_config
from costattr.ledger.migrate import MIGRATED_SUFFIX
from costattr.ledger.store import STORE_NAME, V1_NAME
from costattr.ledger.view import visible
from costattr.pr_comment import MARKER
from costattr.testing.gitrepo import commit, git, make_repo
from costattr.testing.transcripts import ClaudeSessionWriter

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BRANCH = "feature/SHOP-7-login"

# Each example and the test that exercises it; test_every_example_is_exercised keeps this honest.
EXERCISED = {
    ".costattr.toml": "test_costattr_toml",
    ".pre-commit-config.yaml": "test_pre_commit_config_records_spend",
    "husky/post-commit": "test_husky_hook_records_spend",
    "lefthook.yml": "test_lefthook_command_records_spend",
    "github-actions-costattr.yml": "test_github_actions_workflow",
    "ledger.sample.json": "test_sample_ledger_and_its_report",
    "report-by-issue.md": "test_sample_ledger_and_its_report",
}


def test_every_example_is_exercised() -> None:
    present = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*") if p.is_file()}
    assert present == set(EXERCISED), "add a test for each new example (and list it in EXERCISED)"
    for test in set(EXERCISED.values()):
        assert test in globals(), test


@pytest.fixture
def path_with_costattr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hooks call `costattr` from PATH, as they would for a pip/pipx/uv-tool install."""
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "costattr").exists() or shutil.which("costattr"), "costattr is not installed"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = make_repo(tmp_path / "shop", origin="https://github.com/acme/shop.git").resolve()
    commit(path, "initial", {"README.md": "shop\n"})
    git(path, "checkout", "-q", "-b", BRANCH)
    return path


def plant_session(env_dirs: dict[str, Path], repo: Path) -> str:
    writer = ClaudeSessionWriter(env_dirs["claude"] / "projects", cwd=str(repo), branch=BRANCH)
    writer.user_prompt()
    writer.response(cache_read=4000)
    writer.close()
    return writer.session_id


def recorded(env_dirs: dict[str, Path], session_id: str, repo: Path) -> None:
    """The session's spend reached the local store, attributed to HEAD and the branch's issue."""
    spends = [s for s in visible(read_records(env_dirs["costattr_home"])) if s.session_id == session_id]
    assert [(s.record.state, s.branch, s.commit, s.issue) for s in spends] == [
        ("closed", BRANCH, git(repo, "rev-parse", "HEAD"), "SHOP-7")]


# ---------------------------------------------------------------------------------------------


def test_costattr_toml(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / ".costattr.toml", tmp_path / ".costattr.toml")
    cfg = load_config(tmp_path)
    assert cfg.source == tmp_path / ".costattr.toml"
    assert cfg.issues.project_keys == ["SHOP", "ENG"]
    extracted = {b: issue_keys.extract(b, None, cfg.issues).primary
                 for b in ("feature/SHOP-101-checkout", "alice/eng-42-cache", "123-fix-typo", "release/1.2")}
    assert extracted == {"feature/SHOP-101-checkout": "SHOP-101", "alice/eng-42-cache": "ENG-42",
                         "123-fix-typo": "#123", "release/1.2": None}
    assert cfg.issue_url("SHOP-101", "acme/shop") == "https://acme.atlassian.net/browse/SHOP-101"
    assert cfg.budgets.issue == {"SHOP-101": Decimal(50)}


def test_pre_commit_config_records_spend(env_dirs: dict[str, Path], repo: Path, tmp_path: Path,
                                         path_with_costattr: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from pre_commit.clientlib import load_config as load_pre_commit_config

    example = load_pre_commit_config(str(EXAMPLES / ".pre-commit-config.yaml"))
    hook = example["repos"][0]["hooks"][0]
    # The local hook mirrors the published one, so both record the same way.
    published = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    for key in ("id", "entry", "stages", "always_run", "pass_filenames"):
        assert hook[key] == published[key], key
    assert "post-commit" in example["default_install_hook_types"]

    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    shutil.copy(EXAMPLES / ".pre-commit-config.yaml", repo / ".pre-commit-config.yaml")
    subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=repo, check=True, capture_output=True)
    assert (repo / ".git" / "hooks" / "post-commit").is_file()
    session = plant_session(env_dirs, repo)
    commit(repo, "login", {".pre-commit-config.yaml": (EXAMPLES / ".pre-commit-config.yaml").read_text()})
    recorded(env_dirs, session, repo)


def test_husky_hook_records_spend(env_dirs: dict[str, Path], repo: Path, path_with_costattr: None) -> None:
    hooks = repo / ".husky"
    hooks.mkdir()
    shutil.copy(EXAMPLES / "husky" / "post-commit", hooks / "post-commit")
    assert os.access(hooks / "post-commit", os.X_OK), "the example must be executable, as husky writes it"
    git(repo, "config", "core.hooksPath", ".husky")
    session = plant_session(env_dirs, repo)
    commit(repo, "login")
    recorded(env_dirs, session, repo)


def test_lefthook_command_records_spend(env_dirs: dict[str, Path], repo: Path, path_with_costattr: None) -> None:
    config = yaml.safe_load((EXAMPLES / "lefthook.yml").read_text())
    command = config["post-commit"]["commands"]["costattr"]["run"]
    session = plant_session(env_dirs, repo)
    commit(repo, "login")
    # What lefthook does after the commit: run the command with sh in the repository.
    subprocess.run(["sh", "-c", command], cwd=repo, check=True, capture_output=True)
    recorded(env_dirs, session, repo)


def _sample_state(env_dirs: dict[str, Path]) -> None:
    """The sample is a 0.1 `ledger.json`, as a user upgrading has one: the first command converts it."""
    env_dirs["costattr_home"].mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLES / "ledger.sample.json", env_dirs["costattr_home"] / V1_NAME)


def costattr(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "costattr", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_github_actions_workflow(env_dirs: dict[str, Path], tmp_path: Path) -> None:
    workflow = yaml.safe_load((EXAMPLES / "github-actions-costattr.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in triggers
    assert workflow["permissions"]["pull-requests"] == "write"
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    step = next(s for s in steps if "costattr comment" in s.get("run", ""))
    assert step["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    # Run the step's command as written (the PR number filled in), as a dry run on the sample
    # ledger: every option it uses must exist.
    argv = shlex.split(step["run"].replace("${{ github.event.pull_request.number }}", "7"))
    assert argv[:2] == ["costattr", "comment"]
    _sample_state(env_dirs)
    env = {**os.environ, "GITHUB_HEAD_REF": "feature/SHOP-101-checkout", "GITHUB_REPOSITORY": "acme/shop"}
    out = costattr(*argv[1:], "--dry-run", cwd=tmp_path, env=env)
    assert out.startswith(MARKER) and "SHOP-101" in out


def test_sample_ledger_and_its_report(env_dirs: dict[str, Path], tmp_path: Path) -> None:
    sample = json.loads((EXAMPLES / "ledger.sample.json").read_text())
    entries = sample["data"]
    assert {e["tool"] for e in entries.values()} == {"claude", "codex"}
    _sample_state(env_dirs)
    report = json.loads(costattr("report", "--by", "issue", "--format", "json", cwd=tmp_path))
    home = env_dirs["costattr_home"]
    # Converted once into the store; the 0.1 file is kept beside it, byte for byte.
    assert (home / STORE_NAME).is_file() and not (home / V1_NAME).exists()
    assert (home / (V1_NAME + MIGRATED_SUFFIX)).read_bytes() == (EXAMPLES / "ledger.sample.json").read_bytes()
    assert {s.session_id for s in visible(read_records(home))} == set(entries)
    rows = {r["key"]: Decimal(str(r["cost_usd"])) for r in report["rows"]}
    assert set(rows) == {"SHOP-101", "ENG-42", "#123"}
    total = Decimal(str(report["totals"]["cost_usd"]))
    assert total == sum(rows.values()) + Decimal(str(report["unattributed"]["cost_usd"]))
    assert total == sum(Decimal(str(e["cost_usd"])) for e in entries.values())
    # A second reading command reads the store: the same figures, nothing converted twice.
    assert json.loads(costattr("report", "--by", "issue", "--format", "json", cwd=tmp_path)) == report
    # The checked-in report is the one this ledger gives (the exact text: tests/test_docs.py).
    shown = (EXAMPLES / "report-by-issue.md").read_text()
    assert all(key.lstrip("#") in shown for key in rows)
