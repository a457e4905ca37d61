"""The README's install table, run: pip (and pipx, uv when present) from a git URL of a local
clone, pinned to a tag, in a fresh virtual environment; then the installed command runs.

The clone is made from this checkout's committed HEAD, tagged as the README's tag, so the test
proves the line a user types works, not only that the package builds. The fresh venv sees this
environment's site-packages (`--system-site-packages`), so pip resolves the dependencies from
there instead of the network, and only costattr itself is built and installed from git.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from costattr.testing.gitrepo import git

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
TAG = re.search(r"@(v\d+\.\d+\.\d+)\"`", README).group(1)  # type: ignore[union-attr]


def test_the_readme_tag_is_the_packages_version() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{TAG[1:]}"' in pyproject


@pytest.fixture(scope="module")
def clone_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A clone of this checkout's working tree as committed, tagged like a release."""
    base = tmp_path_factory.mktemp("costattr-git")
    src = base / "costattr"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "build", ".ci-venv", ".venv"))
    git(src, "init", "-q", "-b", "main")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "release")
    git(src, "tag", TAG)
    return f"git+file://{src}@{TAG}"


def _fresh_venv(path: Path) -> Path:
    """A new venv whose own site-packages is empty, which also sees this environment's packages
    (after its own): pip, setuptools >= 77 (a test dependency) and costattr's dependencies come
    from here, so nothing is downloaded, and only costattr is installed into the new venv."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(path), "platbase": str(path)}))
    # Plain path lines: the directories are appended, their own .pth files (this checkout's
    # editable install among them) are not run.
    (purelib / "parent-env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return path / "bin"


def test_pip_install_from_a_git_url_pinned_to_the_tag(clone_url: str, tmp_path: Path) -> None:
    bin_dir = _fresh_venv(tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--no-build-isolation",
                           "--no-deps", "--ignore-installed", clone_url], env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(bin_dir / "costattr"), "--version"], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert TAG[1:] in out
    # the installed package, not this checkout, answers: its files live in the new venv
    where = subprocess.run([str(bin_dir / "python"), "-c", "import costattr.cli; print(costattr.cli.__file__)"],
                           env=env, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert str(tmp_path / "venv") in where


def test_uv_tool_install_from_a_git_url_pinned_to_the_tag(clone_url: str, tmp_path: Path) -> None:
    # uv is a test dependency (a wheel on PyPI); it fetches costattr's dependencies itself.
    exe = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    env = {**os.environ, "UV_TOOL_DIR": str(tmp_path / "uv-tools"), "UV_TOOL_BIN_DIR": str(tmp_path / "bin"),
           "UV_CACHE_DIR": str(Path(os.environ.get("XDG_CACHE_HOME", tmp_path)) / "uv")}
    proc = subprocess.run([exe, "tool", "install", clone_url], env=env, capture_output=True, text=True, check=False,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = subprocess.run([str(tmp_path / "bin" / "costattr"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert TAG[1:] in out
