"""Issue-key extraction: positives, the pitfalls table of the reference, configuration, and
never-raises / idempotence under hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from costattr.config import IssueConfig
from costattr.issue_keys import IssueRefs, _extract, _rules, branch_keys, extract

# branch -> primary key found in it
BRANCH_POSITIVES = [
    ("PROJ-123", "PROJ-123"),
    ("feature/PROJ-7-login", "PROJ-7"),
    ("JRA-123-fix-the-thing", "JRA-123"),
    ("bugfix/ABC-42", "ABC-42"),
    ("J42-123", "J42-123"),
    ("feature/J3-123-my-feature", "J3-123"),
    ("MY_PROJ-1", "PROJ-1"),  # underscore separates, as GitHub for Jira does
    ("alice/eng-42-fix", "ENG-42"),  # Linear's default lowercase format
    ("eng-42-add-login", "ENG-42"),
    ("eng-42/add-login", "ENG-42"),
    ("alice/Eng-42-mixed", "ENG-42"),
    ("123-title", "#123"),  # GitHub "Create a branch" / GitLab %{id}-%{title}
    ("3-fix-this-issue", "#3"),
    ("feat/123-slug", "#123"),
    ("issue-123", "#123"),
    ("issues/123", "#123"),
    ("issue_15-Fix_nasty_bug", "#15"),
    ("gh-123", "#123"),
    ("GH-77", "#77"),
    ("fix/#123", "#123"),
    ("fix/gh-9-crash", "#9"),
    ("feature/AB#77-azure", "AB#77"),
]

# Not issues (reference §2.7 pitfalls table, plus the brief's list).
NON_ISSUES = [
    "main",
    "master",
    "develop",
    "release-1.2",
    "release/1.2",
    "release-2",
    "fix/utf-8-decoding",
    "fix/utf-8-…",
    "utf-16-support",
    "sha-256-migration",
    "sha-1",
    "py-311-upgrade",
    "python-3",
    "node-18",
    "hotfix-2",
    "covid-19-dashboard",
    "dependabot/npm_and_yarn/lodash-4.17.21",
    "dependabot/pip/django-4.2.1",
    "renovate/python-3.x",
    "renovate/major-react-monorepo",
    "lodash-4.17.21",
    "bump-lodash-4.17.21",
    "tls-1.3",
    "v-2",
    "iso-8601-dates",
    "rfc-3339",
    "cve-2024-1234-patch",
    "http-2-support",
    "ABC-0",  # number 0
    "ABC-01",  # leading zero
    "F-67-my-feature",  # 1-letter project key
    "2PAC-123",  # key glued to a digit
    "42-123",
    "JIRA-123abcd",  # number glued to letters
    "JRA 123",
    "ÄBC-12",  # non-ASCII letter before: not BC-12
    "PROJ-١٢٣",  # Arabic-Indic digits
    "PROJ-12٣",
    "2024-01-15-cleanup",  # a date, not issue 2024
    "20240115-cleanup",
    "feat/add-2-buttons",  # slug words in lowercase
    "top-10-list",
    "step-3",
    "gpt-4-support",
    "claude-3-5-sonnet",
    "x86-64-build",
    "pr-12-followup",
    "",
]


@pytest.mark.parametrize(("branch", "key"), BRANCH_POSITIVES)
def test_branch_positives(branch: str, key: str) -> None:
    refs = extract(branch, None)
    assert refs.primary == key, branch


@pytest.mark.parametrize("branch", NON_ISSUES)
def test_not_issues_in_branch(branch: str) -> None:
    assert extract(branch, None) == IssueRefs(None, ())


@pytest.mark.parametrize(
    ("message", "keys"),
    [
        ("Fixes #123", ["#123"]),
        ("fix: crash (closes #12, refs #13)", ["#12", "#13"]),
        ("Resolves acme/app#45", ["#45"]),
        ("see acme.io/app-2#45 too", ["#45"]),
        ("AB#123 wire the queue", ["AB#123"]),
        ("Fixes AB#7 and ab#8", ["AB#7", "AB#8"]),
        ("PROJ-1: add login\n\nRefs: ENG-9", ["PROJ-1", "ENG-9"]),
        ("[PROJ-12] bracketed", ["PROJ-12"]),
        ("#JRA-5 smart commit", ["JRA-5"]),
        ("See https://acme.atlassian.net/browse/PROJ-77", ["PROJ-77"]),
        ("See https://github.com/acme/app/issues/45", ["#45"]),
        ("Merge branch 'feature/PROJ-7-login'", ["PROJ-7"]),
        ("Close gh-9", ["#9"]),
        # not issues in prose
        ("Fix UTF-8 decoding and SHA-256 sums", []),
        ("Support ISO-8601, RFC-3339 and HTTP-2", []),
        ("Patch CVE-2024-12345", []),
        ("Bump lodash from 4.17.20 to 4.17.21", []),
        ("Upgrade to python-3.12 and node-18", []),
        ("Use GPT-4 and claude-3-5-sonnet", []),
        ("release-1.2 notes", []),
        ("top-10 fixes, add-2 buttons", []),  # lowercase words in prose are never keys
        ("eng-42 lowercase in a message", []),
        ("HTML entity &#123; is not an issue", []),
        ("Version PROJ-1.2 is version-like", []),
        ("issue #0 and #01 are not numbers", []),
        ("", []),
    ],
)
def test_message_keys(message: str, keys: list[str]) -> None:
    refs = extract(None, message)
    assert list(refs.all) == keys


def test_primary_from_branch_then_message_related() -> None:
    refs = extract("feature/PROJ-7-login", "PROJ-7: login\n\nAlso fixes #12 and ENG-3; PROJ-7 again")
    assert refs == IssueRefs("PROJ-7", ("#12", "ENG-3"))


def test_primary_from_message_when_branch_has_none() -> None:
    assert extract("main", "ENG-3 then PROJ-1") == IssueRefs("ENG-3", ("PROJ-1",))
    assert extract(None, "Fixes #5") == IssueRefs("#5", ())


def test_multiple_keys_in_branch_first_is_primary() -> None:
    assert extract("PROJ-1-PROJ-2-both", "PROJ-3") == IssueRefs("PROJ-1", ("PROJ-2", "PROJ-3"))
    assert extract("123-PROJ-9-mixed", None) == IssueRefs("#123", ("PROJ-9",))


def test_primary_never_repeated_in_related() -> None:
    refs = extract("alice/eng-42-fix", "ENG-42 eng ENG-42 #1 #1")
    assert refs == IssueRefs("ENG-42", ("#1",))


def test_bot_branches_yield_no_branch_key_but_message_still_counts() -> None:
    assert extract("dependabot/npm_and_yarn/lodash-4.17.21", "Bump lodash (PROJ-4)") == IssueRefs("PROJ-4", ())


# --------------------------------------------------------------------------------------------
# configuration


def test_allow_list_only_those_projects() -> None:
    cfg = IssueConfig(project_keys=["proj"])
    assert extract("feature/PROJ-1-x", "ENG-2 and PROJ-3", cfg) == IssueRefs("PROJ-1", ("PROJ-3",))
    assert extract("ENG-2-other", None, cfg).primary is None
    # numbers are not projects: the allow-list does not filter them
    assert extract("123-title", "AB#4", cfg) == IssueRefs("#123", ("AB#4",))


def test_allow_list_trusts_lowercase_anywhere_and_overrides_deny_list() -> None:
    cfg = IssueConfig(project_keys=["ENG", "SHA", "GH"])
    assert extract("feat/fix-eng-42", "refs eng-7", cfg) == IssueRefs("ENG-42", ("ENG-7",))
    assert extract("sha-256-migration", None, cfg).primary == "SHA-256"
    assert extract("gh-12", None, cfg).primary == "GH-12"  # a real GH project, not GitHub's #12
    assert extract("release-1.2", None, IssueConfig(project_keys=["RELEASE"])).primary is None  # version-like


def test_extra_patterns() -> None:
    cfg = IssueConfig(extra_patterns=[r"TICKET(\d+)", r"sr-\d+", r"\bcase/([a-z]+-\d+)", r"\b(INC\d{7})\b"])
    assert extract("feature/TICKET42-x", None, cfg).primary == "#42"  # bare digits: a forge number
    assert extract("main", "see sr-19", cfg).primary == "SR-19"  # key-shaped: upper-cased like any key
    assert extract("case/abc-5", None, cfg).primary == "ABC-5"
    assert extract("main", "Fixes INC0012345", cfg).primary == "INC0012345"  # other shapes kept as written


def test_extra_patterns_that_do_not_compile_are_skipped() -> None:
    cfg = IssueConfig.model_construct(project_keys=[], extra_patterns=["(unclosed", r"X(\d+)"], ignore_branches=[])
    assert extract("X9", None, cfg).primary == "#9"


def test_ignore_branches() -> None:
    cfg = IssueConfig(ignore_branches=["release/*", "hotfix-*"])
    assert extract("release/PROJ-1", "PROJ-2", cfg) == IssueRefs("PROJ-2", ())
    assert extract("hotfix-ENG-3", None, cfg).primary is None
    assert extract("feature/PROJ-1", None, cfg).primary == "PROJ-1"


def test_branch_keys_helper() -> None:
    assert branch_keys("feature/PROJ-7-and-ENG-8") == ["PROJ-7", "ENG-8"]
    assert branch_keys(None) == []


def test_odd_inputs_do_not_raise() -> None:
    assert extract(b"PROJ-1".decode(), None).primary == "PROJ-1"
    assert extract(b"feature/PROJ-2", None).primary == "PROJ-2"  # type: ignore[arg-type]
    assert extract(123, 456) == IssueRefs(None, ())  # type: ignore[arg-type]
    assert extract("\x00PROJ-1\x00", "\ud800") .primary == "PROJ-1"


# --------------------------------------------------------------------------------------------
# properties

# Fragments that make keys likely, so the interesting paths are exercised, plus arbitrary text.
_FRAGMENTS = list("ABCEJPROabcejgh-_/#.0123456789 \n&") + ["PROJ-", "eng-", "AB#", "gh-", "issue-", "Ä", "٣", "utf-"]
_texts = st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join) | st.text(max_size=80)


@settings(max_examples=400, deadline=None)
@given(branch=st.none() | _texts, message=st.none() | _texts)
def test_never_raises_and_is_well_formed(branch: str | None, message: str | None) -> None:
    # _extract, not extract: the public function's safety net would hide a bug from this test.
    refs = _extract(branch or "", message or "", _rules(None))
    assert refs.primary not in refs.related
    assert len(set(refs.related)) == len(refs.related)
    if refs.primary is None:
        assert refs.related == ()
    for key in refs.all:
        assert key == key.upper()
        assert key.startswith(("#", "AB#")) or "-" in key
    assert extract(branch, message) == refs  # deterministic


@settings(max_examples=300, deadline=None)
@given(branch=st.none() | _texts, message=st.none() | _texts)
def test_idempotent(branch: str | None, message: str | None) -> None:
    """The keys found, written out as a message, are found again, unchanged and in order."""
    refs = extract(branch, message)
    again = extract(None, " ".join(refs.all))
    assert again == refs


@settings(max_examples=200, deadline=None)
@given(pattern=st.text(max_size=12), text=_texts)
def test_never_raises_with_arbitrary_config(pattern: str, text: str) -> None:
    cfg = IssueConfig.model_construct(project_keys=[pattern], extra_patterns=[pattern], ignore_branches=[pattern])
    refs = extract(text, text, cfg)
    assert isinstance(refs, IssueRefs)
