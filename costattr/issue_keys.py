"""Issue keys in a branch name and a commit message (pure; never raises).

Recognised (reference: attribution-ecosystem.md §2):
- Jira / Linear keys `PROJ-123`; Linear's lowercase branches `alice/eng-42-fix` -> `ENG-42`.
- GitHub / GitLab numbers: `123-title`, `feat/123-title`, `issue-123`, `gh-123`, `fix/#123`,
  `Fixes #123`, `owner/repo#123` -> `#123`.
- Azure Boards `AB#123`.

Case-insensitive matching is what makes Linear work and what makes `utf-8`, `release-1.2`,
`sha-256`, `py-311` look like keys, so non-uppercase keys are trusted only where Linear puts them
(the start of a branch path component), never in free text, and always pass a deny-list of common
words. A configured allow-list of project keys overrides both heuristics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep the hook's import light; only the attributes are used
    from costattr.config import IssueConfig


@dataclass(frozen=True)
class IssueRefs:
    primary: str | None
    related: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return ((self.primary,) if self.primary else ()) + self.related


EMPTY = IssueRefs(None, ())

# Words that precede "-<number>" in branch names and prose without being project keys: encodings,
# hashes, standards, versions of languages and models, release words, GitHub-number prefixes.
DENY_WORDS = frozenset(
    """
    UTF UCS UTF8 SHA SHA1 SHA2 SHA3 MD ISO RFC CVE CWE GHSA HTTP HTTPS TLS SSL IPV ES ECMA X86 X64 AMD ARM
    WIN WIN32 AES RSA ECDSA ED BASE HMAC CRC
    V VER VERSION RELEASE REL HOTFIX PATCH BUMP UPGRADE UPDATE RC BETA ALPHA PRE POST BUILD SPRINT
    PY PYTHON NODE NODEJS JAVA JDK GO GOLANG RUBY RUST PHP PERL LUA DOTNET NET NPM YARN PNPM GCC CLANG
    LLVM DEBIAN UBUNTU ALPINE CENTOS FEDORA MACOS IOS ANDROID
    COVID SARS
    GPT CLAUDE SONNET OPUS HAIKU GEMINI LLAMA MISTRAL
    ISSUE ISSUES GH BUG BUGS PR MR PULL
    STEP PHASE PART STAGE ROUND DAY WEEK MONTH YEAR Q TOP TAKE TRY ATTEMPT WIP TODO TMP TEMP
    """.split()
)
# Everyday words of branch slugs (`feat/add-2-buttons`, `test-3`): rejected only when written in
# lowercase, since an upper-case TEST-1 or DOC-4 is a plausible real project.
LOWERCASE_DENY_WORDS = frozenset(
    """
    ADD FIX FIXES USE SET GET NEW OLD MAKE REMOVE DROP MOVE RENAME REFACTOR CLEANUP CLEAN TEST TESTS
    DOC DOCS CHORE FEAT FEATURE STYLE PERF CI CD REVERT SPIKE EXPERIMENT DEMO TRY LAYER LEVEL PAGE
    ITEM TASK USER USERS API APP WEB UI UX DB SQL ALL ONE TWO THREE
    """.split()
)

# Branches created by bots: their names hold package versions (lodash-4.17.21, python-3.x).
BOT_PREFIXES = (
    "dependabot/", "renovate/", "snyk-", "greenkeeper/", "pre-commit-ci", "imgbot", "whitesource/",
    "mend/", "depfu/", "pyup-", "pyup/",
)

# Letters/digits in any script count as "inside a word": ÄBC-12 is not BC-12, PROJ-12٣ is not PROJ-12.
_NOT_AFTER_WORD = r"(?<![^\W_])"
_NOT_BEFORE_WORD = r"(?![^\W_])"
_NUM = r"[1-9][0-9]{0,8}"  # no 0, no leading zero; ASCII digits only (\d would take Arabic-Indic)

KEY_RE = re.compile(_NOT_AFTER_WORD + r"([A-Za-z][A-Za-z0-9]{1,29})-(" + _NUM + ")" + _NOT_BEFORE_WORD)
AZURE_RE = re.compile(_NOT_AFTER_WORD + r"AB#(" + _NUM + ")" + _NOT_BEFORE_WORD, re.IGNORECASE)
# owner/repo#12 (cross-repository reference) before the bare form, which it would otherwise hide.
CROSS_REPO_RE = re.compile(
    r"(?<![\w./-])[A-Za-z0-9_.-]+/(?![Aa][Bb]#)[A-Za-z0-9_.-]+#(" + _NUM + ")" + _NOT_BEFORE_WORD
)
# "#12" not glued to a word (AB#12 is Azure, &#123; is an HTML entity).
HASH_RE = re.compile(r"(?<![\w&#])#(" + _NUM + ")" + _NOT_BEFORE_WORD)
# issue-12, issues/12, gh-12, gh#12, bug_12 (GitHub conventions), anywhere a word starts.
PREFIXED_NUM_RE = re.compile(
    r"(?<![A-Za-z0-9])(issues?|gh|bug)[-_/]?#?(" + _NUM + r")(?![0-9A-Za-z]|\.[0-9])", re.IGNORECASE
)
# 123-title at the start of a branch path component (GitHub "Create a branch", GitLab %{id}-%{title}).
# The number must be followed by a word, not by "-01" (a date) or ".2" (a version).
LEADING_NUM_RE = re.compile(r"(?:^|(?<=/))(" + r"[1-9][0-9]{0,6}" + r")[-_](?=[A-Za-z])")


@dataclass(frozen=True)
class _Rules:
    allow: frozenset[str]  # upper-case project keys; empty = any
    extra: tuple[re.Pattern[str], ...]
    ignore_branches: tuple[str, ...]


def extract(branch: str | None, message: str | None, cfg: IssueConfig | None = None) -> IssueRefs:
    """Primary issue (first key in the branch, else in the message) and the other keys seen.

    Never raises: the hook calls it on whatever git hands over.
    """
    try:
        return _extract(_text(branch), _text(message), _rules(cfg))
    except Exception:  # defensive: attribution must never fail a commit over a key heuristic
        return EMPTY


def branch_keys(branch: str | None, cfg: IssueConfig | None = None) -> list[str]:
    """Keys in a branch name, in order (used by `costattr init` to guess project keys)."""
    try:
        return _branch_keys(_text(branch), _rules(cfg))
    except Exception:
        return []


def _extract(branch: str, message: str, rules: _Rules) -> IssueRefs:
    keys = _branch_keys(branch, rules) + _message_keys(message, rules)
    unique = list(dict.fromkeys(keys))
    if not unique:
        return EMPTY
    return IssueRefs(unique[0], tuple(unique[1:]))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


def _rules(cfg: IssueConfig | None) -> _Rules:
    if cfg is None:
        return _Rules(frozenset(), (), ())
    return _Rules(
        allow=frozenset(k.strip().upper() for k in (getattr(cfg, "project_keys", None) or ()) if k.strip()),
        extra=_compile(tuple(getattr(cfg, "extra_patterns", None) or ())),
        ignore_branches=tuple(getattr(cfg, "ignore_branches", None) or ()),
    )


@lru_cache(maxsize=64)
def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    out: list[re.Pattern[str]] = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except (re.error, TypeError):  # load_config rejects these; a hand-built config just skips them
            continue
    return tuple(out)


def _is_bot_or_ignored(branch: str, rules: _Rules) -> bool:
    low = branch.lower()
    if low.startswith(BOT_PREFIXES):
        return True
    return any(fnmatchcase(branch, pat) for pat in rules.ignore_branches)


def _branch_keys(branch: str, rules: _Rules) -> list[str]:
    if not branch or _is_bot_or_ignored(branch, rules):
        return []
    found = _numbers(branch, rules, leading=True) + _jira_keys(branch, rules, in_branch=True)
    found += _extra_keys(branch, rules)
    return _ordered(found)


def _message_keys(message: str, rules: _Rules) -> list[str]:
    if not message:
        return []
    found = _numbers(message, rules, leading=False) + _jira_keys(message, rules, in_branch=False)
    found += _extra_keys(message, rules)
    return _ordered(found)


def _ordered(found: Iterable[tuple[int, str]]) -> list[str]:
    # Position order, so "the first key" means the first one a human reads.
    return list(dict.fromkeys(k for _, k in sorted(found, key=lambda pk: pk[0])))


def _numbers(text: str, rules: _Rules, *, leading: bool) -> list[tuple[int, str]]:
    """GitHub/GitLab numbers and Azure work items, with their positions."""
    out = [(m.start(), f"AB#{int(m[1])}") for m in AZURE_RE.finditer(text)]
    out += [(m.start(), f"#{int(m[1])}") for m in CROSS_REPO_RE.finditer(text)]
    out += [(m.start(), f"#{int(m[1])}") for m in HASH_RE.finditer(text)]
    # gh-12 is GitHub's #12 unless the team really has a Jira project called GH (allow-listed).
    out += [
        (m.start(), f"#{int(m[2])}") for m in PREFIXED_NUM_RE.finditer(text) if m[1].upper() not in rules.allow
    ]
    if leading:
        out += [(m.start(), f"#{int(m[1])}") for m in LEADING_NUM_RE.finditer(text)]
    return out


def _jira_keys(text: str, rules: _Rules, *, in_branch: bool) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for m in KEY_RE.finditer(text):
        project = m[1]
        if _accept_key(text, m, project, rules, in_branch=in_branch):
            out.append((m.start(), f"{project.upper()}-{m[2]}"))
    return out


def _accept_key(text: str, m: re.Match[str], project: str, rules: _Rules, *, in_branch: bool) -> bool:
    upper = project.upper()
    if _version_like(text, m.end()):
        return False
    if rules.allow:
        # An explicit project list is the only reliable signal: trust it in any case, anywhere.
        return upper in rules.allow
    if upper in DENY_WORDS:
        return False
    if project.isupper():
        return True
    if upper in LOWERCASE_DENY_WORDS:
        return False
    # Lowercase/mixed: only where Linear's branch formats put the identifier (`eng-42-x`,
    # `alice/eng-42-x`); in prose "top-10" or "add-2-buttons" is just words.
    return in_branch and (m.start() == 0 or text[m.start() - 1] == "/")


def _version_like(text: str, end: int) -> bool:
    """release-1.2, lodash-4.17.21, python-3.x: the number goes on with `.digit`/`.x`."""
    return end + 1 < len(text) and text[end] == "." and (text[end + 1].isdigit() or text[end + 1] in "xX")


def _extra_keys(text: str, rules: _Rules) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for pat in rules.extra:
        for m in pat.finditer(text):
            raw = m.group(1) if pat.groups >= 1 and m.group(1) is not None else m.group(0)
            key = _normalise(raw)
            if key:
                out.append((m.start(), key))
    return out


def _normalise(raw: str) -> str | None:
    """A user pattern's match as a key: digits -> #N, KEY-N upper-cased, anything else as written."""
    raw = raw.strip()
    if not raw:
        return None
    if raw.isdigit():
        return f"#{int(raw)}" if int(raw) > 0 else None
    if KEY_RE.fullmatch(raw):
        return raw.upper()
    return raw
