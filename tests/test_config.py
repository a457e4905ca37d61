"""Configuration: where it is read from, what is rejected (and how the error names file and key),
environment override, secrets refused, issue links."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from costattr.config import Config, TrackerConfig, load_config
from costattr.errors import ConfigError


def write(root: Path, text: str, name: str = ".costattr.toml") -> Path:
    p = root / name
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_without_workdir_or_file(tmp_path: Path) -> None:
    for cfg in (load_config(None), load_config(tmp_path)):
        assert cfg.source is None
        assert cfg.ledger.backend == "json"
        assert cfg.ledger.api_path == "agent-costs"
        assert cfg.ledger.notes_ref == "refs/notes/costattr"
        assert cfg.pricing.mode == "auto" and cfg.pricing.discount == Decimal(0)
        assert cfg.issues.project_keys == [] and cfg.budgets.issue == {}
        assert cfg.hook.quiet is False
        assert cfg.trackers == TrackerConfig()


def test_full_file(tmp_path: Path) -> None:
    src = write(tmp_path, """
[issues]
project_keys = ["proj", "Eng"]
extra_patterns = ['TICKET(\\d+)']
ignore_branches = ["release/*"]

[trackers]
jira = "https://acme.atlassian.net/"
github = "https://github.com"

[ledger]
backend = "memory-api"
api_url = "https://memory.example.com"
api_user = "alice"

[pricing]
mode = "calculate"
discount = 0.1

[budgets]
month = 400
day = "12.50"

[budgets.issue]
"proj-123" = 50
"#42" = 5.25

[budgets.branch]
"feature/big" = 200

[hook]
quiet = true
""")
    cfg = load_config(tmp_path)
    assert cfg.source == src
    assert cfg.issues.project_keys == ["PROJ", "ENG"]
    assert cfg.issues.extra_patterns == [r"TICKET(\d+)"]
    assert cfg.trackers.jira == "https://acme.atlassian.net"  # trailing slash dropped
    assert cfg.ledger.backend == "memory-api" and cfg.ledger.api_user == "alice"
    assert cfg.pricing.discount == Decimal("0.1")  # exact, not 0.1000000000000000055...
    assert cfg.budgets.month == Decimal(400) and cfg.budgets.day == Decimal("12.50")
    assert cfg.budgets.issue == {"PROJ-123": Decimal(50), "#42": Decimal("5.25")}
    assert cfg.budgets.branch == {"feature/big": Decimal(200)}
    assert cfg.hook.quiet is True


def test_pyproject_section(tmp_path: Path) -> None:
    src = write(tmp_path, '[project]\nname = "x"\n\n[tool.costattr.ledger]\nbackend = "git-notes"\n', "pyproject.toml")
    cfg = load_config(tmp_path)
    assert cfg.source == src and cfg.ledger.backend == "git-notes"


def test_pyproject_without_section_means_defaults(tmp_path: Path) -> None:
    write(tmp_path, '[project]\nname = "x"\n[tool.ruff]\nline-length = 100\n', "pyproject.toml")
    cfg = load_config(tmp_path)
    assert cfg.source is None and cfg.ledger.backend == "json"


def test_costattr_toml_wins_over_pyproject(tmp_path: Path) -> None:
    write(tmp_path, '[tool.costattr.ledger]\nbackend = "git-notes"\n', "pyproject.toml")
    src = write(tmp_path, '[ledger]\nbackend = "memory-api"\n')
    cfg = load_config(tmp_path)
    assert cfg.source == src and cfg.ledger.backend == "memory-api"


@pytest.mark.parametrize(
    ("text", "in_message"),
    [
        ("[ledger\nbackend = 'json'\n", "not valid TOML"),
        ("a = \n", "not valid TOML"),
        ("[ledger]\nbakend = 'json'\n", "unknown key `ledger.bakend`"),
        ("colour = 1\n", "unknown key `colour`"),
        ("[ledger]\nbackend = 's3'\n", "`ledger.backend`"),
        ("[ledger]\nnotes_ref = 'costattr'\n", "`ledger.notes_ref`"),
        ("[ledger]\napi_url = 'memory.example.com'\n", "`ledger.api_url`"),
        ("[pricing]\nmode = 'cheap'\n", "`pricing.mode`"),
        ("[pricing]\ndiscount = 1.5\n", "`pricing.discount`"),
        ("[pricing]\ndiscount = -0.1\n", "`pricing.discount`"),
        ("[budgets]\nmonth = -5\n", "`budgets.month`"),
        ("[budgets]\nweek = 'lots'\n", "`budgets.week`"),
        ("[budgets]\nday = 'nan'\n", "`budgets.day`"),
        ("[budgets.issue]\n'PROJ-1' = -1\n", "`budgets.issue"),
        ("[issues]\nproject_keys = ['PROJ-1']\n", "`issues.project_keys`"),
        ("[issues]\nextra_patterns = ['(unclosed']\n", "`issues.extra_patterns`"),
        ("[trackers]\njira = 'acme.atlassian.net'\n", "`trackers.jira`"),
        ("[hook]\nquiet = 'sometimes'\n", "`hook.quiet`"),
        ("ledger = 'json'\n", "`ledger`"),
    ],
)
def test_invalid_files_name_file_and_key(tmp_path: Path, text: str, in_message: str) -> None:
    src = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert str(src) in e.value.message
    assert in_message in e.value.message


def test_unknown_key_hint_lists_valid_keys(tmp_path: Path) -> None:
    write(tmp_path, "[ledger]\nbakend = 'json'\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert "backend" in (e.value.hint or "")


def test_bad_backend_hint_lists_choices(tmp_path: Path) -> None:
    write(tmp_path, "[ledger]\nbackend = 's3'\n")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert "git-notes" in (e.value.hint or "")


def test_malformed_pyproject_names_it(tmp_path: Path) -> None:
    src = write(tmp_path, "[tool.costattr\n", "pyproject.toml")
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert str(src) in e.value.message


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / ".costattr.toml").write_bytes(b"[hook]\nquiet = false # \xff\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[ledger]\napi_key = 'sk-SECRET-VALUE'\n", "ledger.api_key"),
        ("api-key = 'sk-SECRET-VALUE'\n", "api-key"),
        ("[ledger]\napiKey = 'sk-SECRET-VALUE'\n", "ledger.apiKey"),
        ("[trackers]\ntoken = 'ghp_SECRET-VALUE'\n", "trackers.token"),
    ],
)
def test_secrets_are_refused_without_echoing_them(tmp_path: Path, text: str, key: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path)
    assert f"`{key}`" in e.value.message
    assert "COSTATTR_API_KEY" in (e.value.hint or "")
    assert "SECRET-VALUE" not in str(e.value)


def test_secret_check_skips_user_data_tables(tmp_path: Path) -> None:
    # A branch literally named "token" is data, not a credential.
    write(tmp_path, "[budgets.branch]\ntoken = 10\n")
    assert load_config(tmp_path).budgets.branch == {"token": Decimal(10)}


def test_secret_in_pyproject_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "[tool.costattr.ledger]\napi_key = 'x'\n", "pyproject.toml")
    with pytest.raises(ConfigError, match=r"pyproject\.toml"):
        load_config(tmp_path)


def test_env_overrides_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write(tmp_path, "[ledger]\nbackend = 'json'\napi_user = 'bob'\n")
    monkeypatch.setenv("COSTATTR_LEDGER", "git-notes")
    cfg = load_config(tmp_path)
    assert cfg.ledger.backend == "git-notes"
    assert cfg.ledger.api_user == "bob"  # the rest of the section is kept
    assert cfg.source == src
    assert load_config(None).ledger.backend == "git-notes"


def test_env_with_bad_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTATTR_LEDGER", "dropbox")
    with pytest.raises(ConfigError, match="COSTATTR_LEDGER"):
        load_config(None)


def test_empty_env_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSTATTR_LEDGER", "")
    assert load_config(None).ledger.backend == "json"


def test_api_key_is_not_a_field() -> None:
    assert "api_key" not in Config.model_fields["ledger"].annotation.model_fields  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# issue links


def cfg_with(**trackers: str) -> Config:
    return Config.model_validate({"trackers": trackers})


@pytest.mark.parametrize(
    ("trackers", "key", "slug", "url"),
    [
        ({"jira": "https://acme.atlassian.net"}, "PROJ-123", None, "https://acme.atlassian.net/browse/PROJ-123"),
        ({"jira": "https://acme.atlassian.net/"}, "proj-1", "a/b", "https://acme.atlassian.net/browse/PROJ-1"),
        ({"linear": "https://linear.app/acme"}, "ENG-42", None, "https://linear.app/acme/issue/ENG-42"),
        ({"jira": "https://j.example", "linear": "https://linear.app/acme"}, "ENG-4", None, "https://j.example/browse/ENG-4"),
        ({}, "PROJ-1", "acme/app", None),
        ({}, "#123", "acme/app", "https://github.com/acme/app/issues/123"),
        ({}, "#123", None, None),
        ({"github": "https://github.com"}, "#7", "acme/app", "https://github.com/acme/app/issues/7"),
        ({"github": "https://ghe.acme.com"}, "#7", "org/svc", "https://ghe.acme.com/org/svc/issues/7"),
        ({"github": "https://github.com/acme/app"}, "#7", None, "https://github.com/acme/app/issues/7"),
        ({"gitlab": "https://gitlab.com"}, "#9", "g/sub/app", "https://gitlab.com/g/sub/app/-/issues/9"),
        ({"gitlab": "https://gitlab.com"}, "#9", None, None),
        ({"azure": "https://dev.azure.com/acme/Proj"}, "AB#55", None, "https://dev.azure.com/acme/Proj/_workitems/edit/55"),
        ({}, "AB#55", "acme/app", None),
        ({"jira": "https://acme.atlassian.net"}, "INC0012345", None, None),
        ({}, "#abc", "acme/app", None),
    ],
)
def test_issue_url(trackers: dict[str, str], key: str, slug: str | None, url: str | None) -> None:
    assert cfg_with(**trackers).issue_url(key, slug) == url


def test_linear_teams_link_to_linear_when_jira_is_also_used() -> None:
    from costattr.config import Config

    cfg = Config.model_validate({"trackers": {"jira": "https://acme.atlassian.net", "linear": "https://linear.app/acme",
                                              "linear_teams": ["eng"]}})
    assert cfg.issue_url("ENG-42", None) == "https://linear.app/acme/issue/ENG-42"
    assert cfg.issue_url("PROJ-7", None) == "https://acme.atlassian.net/browse/PROJ-7"
