"""The docs cannot drift: docs/cli.md, the README's PR-bot section and the sample report are
regenerated and compared; every command has help with an example; the README starts with the
two commands a new user needs; shell completion, --version and -v work as documented."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from costattr import __version__

ROOT = Path(__file__).resolve().parent.parent
README_COMMANDS = """\
pip install . && costattr demo          # install, then see it work on built-in demo data
pip install '.[test]' && python -m pytest   # run the tests
"""


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def costattr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "costattr", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False, timeout=120)


def test_generated_docs_are_current() -> None:
    """What CI checks: `python scripts/gen_cli_docs.py --check` (run it without --check to fix)."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", [(), ("report",), ("pricing", "show")], ids=["root", "report", "pricing show"])
def test_cli_md_is_what_help_prints(path: tuple[str, ...]) -> None:
    """The generator renders help in-process; a real `--help` in a wide terminal prints the same."""
    title = " ".join(("costattr", *path))
    block = re.search(rf"^\$ {re.escape(title)} --help\n(.*?)^```$", (ROOT / "docs" / "cli.md").read_text(),
                      re.MULTILINE | re.DOTALL)
    assert block, f"no help for {title} in docs/cli.md"
    proc = costattr(*path, "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0
    assert proc.stdout == block[1]


def test_every_command_has_help_with_an_example() -> None:
    import click

    from costattr.cli import cli

    paths = gen.command_paths(cli, click.Context(cli, info_name="costattr"))
    assert ("demo",) in paths and ("doctor",) in paths and ("pricing", "show") in paths
    cli_md = (ROOT / "docs" / "cli.md").read_text()
    for path in paths:
        title = " ".join(("costattr", *path))
        assert "Example" in gen.help_text(path), f"`{title} --help` has no example"
        assert f"\n## {title}\n" in cli_md, f"{title} is missing from docs/cli.md"


def test_readme_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"^```[a-z]*\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)
    assert first_block and first_block[1] == README_COMMANDS
    assert readme.index(README_COMMANDS) < 1200, "the two commands must be near the top"


def test_readme_carries_the_pr_bot_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    pr_bot = (ROOT / "docs" / "pr-bot.md").read_text().strip().replace("](../", "](")
    assert pr_bot in readme


@pytest.mark.parametrize("doc", ["README.md", "docs/cli.md"])
def test_relative_links_resolve(doc: str) -> None:
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{doc} links to missing {target}"


def test_readme_sections_the_issue_asks_for() -> None:
    readme = (ROOT / "README.md").read_text()
    for needle in ('pip install "git+', 'uv tool install "git+', "pre-commit install",
                   "costattr install", "costattr report --by issue", "costattr comment",
                   "COSTATTR_API_URL", "COSTATTR_API_USER", "COSTATTR_API_KEY", "COSTATTR_LEDGER",
                   "costattr sync", "No prompt text is ever read into the ledger",
                   "_COSTATTR_COMPLETE=bash_source costattr", "NO_COLOR", "costattr doctor"):
        assert needle in readme, needle


def test_shell_completion_is_clicks() -> None:
    script = costattr(env={"_COSTATTR_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "_costattr_completion()" in script.stdout
    words = costattr(env={"_COSTATTR_COMPLETE": "bash_complete", "COMP_WORDS": "costattr rep", "COMP_CWORD": "1"})
    assert words.stdout.split() == ["plain,report"]


def test_version_and_verbose() -> None:
    version = costattr("--version")
    assert version.returncode == 0 and __version__ in version.stdout
    assert costattr("-v", "pricing", "--help").returncode == 0
