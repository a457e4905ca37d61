"""Per-repository configuration: `.costattr.toml` at the work tree root, else `[tool.costattr]` in
pyproject.toml there, else defaults. Every table is strict (unknown keys are errors) so a typo is
reported with its file and key instead of being silently ignored.

Secrets never live here: the memory API key comes from COSTATTR_API_KEY or the OS keyring, because
this file is committed. For the same reason a URL here may not carry a `user:password@` part,
and where a URL here sends the user's records and key is the user's decision: the user's own
trust file (`costattr trust`, below) says which repositories may choose a shared backend.
"""

from __future__ import annotations

import os
import time
import tomllib
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from costattr import paths, secrets
from costattr.errors import ConfigError

CONFIG_FILE = ".costattr.toml"
PYPROJECT = "pyproject.toml"
LEDGER_ENV = "COSTATTR_LEDGER"

LedgerBackend = Literal["json", "memory-api", "git-notes"]
PricingMode = Literal["auto", "calculate", "display"]

# Key names that smell of a secret: refusing them keeps tokens out of committed files.
_SECRET_KEY_NAMES = frozenset({"apikey", "apitoken", "token", "secret", "password", "accesstoken", "githubtoken"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueConfig(_Strict):
    project_keys: list[str] = Field(default_factory=list)  # allow-list, e.g. ["PROJ", "ENG"]
    extra_patterns: list[str] = Field(default_factory=list)  # regexes; group 1 (or the match) is a key
    ignore_branches: list[str] = Field(default_factory=list)  # fnmatch globs yielding no branch key

    @field_validator("project_keys")
    @classmethod
    def _upper_keys(cls, v: list[str]) -> list[str]:
        out = [k.strip().upper() for k in v]
        bad = [k for k in out if not k or not k[0].isalpha() or not k.isalnum() or not k.isascii()]
        if bad:
            raise ValueError(f"project keys are letters then letters/digits (like PROJ or ENG), not {bad[0]!r}")
        return list(dict.fromkeys(out))

    @field_validator("extra_patterns")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        import re

        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"{p!r} is not a valid regular expression: {e}") from e
        return v


def _http_url(v: str | None) -> str | None:
    if v is None:
        return None
    v = v.strip().rstrip("/")
    problem = secrets.url_problem(v, allow_userinfo=False)
    if problem:
        # Never the value itself: a malformed URL may hold a password, and this message is printed.
        raise ValueError(f"expected an http(s) URL, but {problem}")
    return v


# Bounds for the memory API's settings: a typo (a timeout in milliseconds, a size in KiB) must be
# an error, not a hook that waits ten minutes or refuses every answer.
API_TIMEOUT_MAX_S = 300.0
API_MAX_BYTES_MIN = 1024
API_MAX_BYTES_MAX = 1 << 30  # 1 GiB


def check_api_timeout(value: Any) -> float:
    """Seconds for one whole memory-API operation: a number above 0, at most API_TIMEOUT_MAX_S."""
    try:
        if isinstance(value, bool):  # TOML `true` is not a number of seconds
            raise ValueError
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, not {value!r}") from None
    if not 0 < seconds <= API_TIMEOUT_MAX_S:  # also refuses nan and inf
        raise ValueError(f"expected seconds above 0 and at most {API_TIMEOUT_MAX_S:g}, not {value!r}")
    return seconds


def check_api_max_bytes(value: Any) -> int:
    """The largest memory-API answer accepted, in bytes."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a whole number of bytes, not {value!r}")
    try:
        size = int(value)
    except ValueError:
        raise ValueError(f"expected a whole number of bytes, not {value!r}") from None
    if not API_MAX_BYTES_MIN <= size <= API_MAX_BYTES_MAX:
        raise ValueError(f"expected bytes from {API_MAX_BYTES_MIN} to {API_MAX_BYTES_MAX} (1 GiB), not {value!r}")
    return size


class TrackerConfig(_Strict):
    jira: str | None = None  # https://acme.atlassian.net
    linear: str | None = None  # https://linear.app/acme
    github: str | None = None  # https://github.com (or GHES base, or a repo URL)
    gitlab: str | None = None  # https://gitlab.com
    azure: str | None = None  # https://dev.azure.com/org/project
    # With both Jira and Linear in use, the keys of these Linear teams link to Linear, the rest to Jira.
    linear_teams: list[str] = Field(default_factory=list)

    _urls = field_validator("jira", "linear", "github", "gitlab", "azure")(_http_url)

    @field_validator("linear_teams")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [team.strip().upper() for team in v if team.strip()]


class LedgerConfig(_Strict):
    backend: LedgerBackend = "json"
    path: str | None = None
    api_url: str | None = None
    api_user: str | None = None
    api_path: str = "agent-costs"
    api_timeout: float | None = None  # seconds for one whole publish or read (COSTATTR_API_TIMEOUT)
    api_max_bytes: int | None = None  # largest answer accepted (COSTATTR_API_MAX_BYTES)
    notes_ref: str = "refs/notes/costattr"

    _api_url = field_validator("api_url")(_http_url)

    @field_validator("api_timeout", mode="before")
    @classmethod
    def _timeout(cls, v: Any) -> float | None:
        return None if v is None else check_api_timeout(v)

    @field_validator("api_max_bytes", mode="before")
    @classmethod
    def _max_bytes(cls, v: Any) -> int | None:
        return None if v is None else check_api_max_bytes(v)

    @field_validator("notes_ref")
    @classmethod
    def _notes_ref(cls, v: str) -> str:
        if not v.startswith("refs/notes/") or len(v) <= len("refs/notes/"):
            raise ValueError(f"a notes ref starts with refs/notes/ (like refs/notes/costattr), not {v!r}")
        return v


class PricingConfig(_Strict):
    mode: PricingMode = "auto"
    discount: Decimal = Field(default=Decimal(0), ge=0, le=1)  # 0.1 = 10% off list prices


def _money(v: Decimal | None, what: str) -> Decimal | None:
    if v is not None and (not v.is_finite() or v < 0):
        raise ValueError(f"{what} budget must be a non-negative amount in USD, not {v}")
    return v


class BudgetConfig(_Strict):
    issue: dict[str, Decimal] = Field(default_factory=dict)  # "PROJ-123" = 50
    branch: dict[str, Decimal] = Field(default_factory=dict)
    day: Decimal | None = None
    week: Decimal | None = None
    month: Decimal | None = None

    @field_validator("issue")
    @classmethod
    def _issue_keys(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        # Keys are reported upper-case, so budgets written `proj-1` must still match.
        return {k.strip().upper(): _money(a, f"issue {k}") for k, a in v.items()}  # type: ignore[misc]

    @field_validator("branch")
    @classmethod
    def _branch_amounts(cls, v: dict[str, Decimal]) -> dict[str, Decimal]:
        return {k: _money(a, f"branch {k}") for k, a in v.items()}  # type: ignore[misc]

    @field_validator("day", "week", "month")
    @classmethod
    def _period(cls, v: Decimal | None) -> Decimal | None:
        return _money(v, "period")


class HookConfig(_Strict):
    quiet: bool = False


class Config(_Strict):
    issues: IssueConfig = Field(default_factory=IssueConfig)
    trackers: TrackerConfig = Field(default_factory=TrackerConfig)
    ledger: LedgerConfig = Field(default_factory=LedgerConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    budgets: BudgetConfig = Field(default_factory=BudgetConfig)
    hook: HookConfig = Field(default_factory=HookConfig)

    _source: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> Path | None:
        """The file this configuration came from (None: defaults)."""
        return self._source

    def issue_url(self, key: str, repo_slug: str | None) -> str | None:
        """A browser link for an issue key, or None when no tracker for its kind is known."""
        key = key.strip()
        t = self.trackers
        if key.upper().startswith("AB#"):
            num = key[3:]
            return f"{t.azure}/_workitems/edit/{num}" if t.azure and num.isdigit() else None
        if key.startswith("#"):
            num = key[1:]
            return _forge_issue_url(t, num, repo_slug) if num.isdigit() else None
        if "-" in key:
            safe = quote(key.upper(), safe="-")
            team = key.upper().split("-", 1)[0]
            if t.linear and (team in t.linear_teams or not t.jira):
                return f"{t.linear}/issue/{safe}"
            if t.jira:
                return f"{t.jira}/browse/{safe}"
        return None


def _forge_issue_url(t: TrackerConfig, num: str, slug: str | None) -> str | None:
    # GitLab only when it is the configured forge; GitHub is the default for `#N` with a known repo.
    if t.gitlab and not t.github:
        return f"{t.gitlab}/{slug}/-/issues/{num}" if slug else None
    if t.github and _url_path_parts(t.github) >= 2:
        return f"{t.github}/issues/{num}"  # github = a repository URL: it already names the repo
    if slug:
        return f"{t.github or 'https://github.com'}/{slug}/issues/{num}"
    return None


def _url_path_parts(url: str) -> int:
    rest = url.split("://", 1)[-1]
    return len([p for p in rest.split("/")[1:] if p])


# ---------------------------------------------------------------------------------------------
# loading


def load_config(workdir: Path | None) -> Config:
    """The repository's configuration (defaults when there is none), with COSTATTR_LEDGER applied."""
    data, source = _read_raw(workdir)
    if source is not None:
        _refuse_secrets(data, source, prefix="")
    cfg = _validate(data, source)
    cfg._source = source
    return _apply_env(cfg)


def _read_raw(workdir: Path | None) -> tuple[dict[str, Any], Path | None]:
    if workdir is None:
        return {}, None
    own = Path(workdir) / CONFIG_FILE
    if own.is_file():
        return _parse_toml(own), own
    pyproject = Path(workdir) / PYPROJECT
    if pyproject.is_file():
        doc = _parse_toml(pyproject)
        tool = doc.get("tool")
        section = tool.get("costattr") if isinstance(tool, dict) else None
        if section is None:
            return {}, None
        if not isinstance(section, dict):
            raise ConfigError(f"{pyproject}: [tool.costattr] must be a table", hint="write it as [tool.costattr]")
        return section, pyproject
    return {}, None


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text", hint="save it as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"{path} is not valid TOML: {e}",
            hint="fix the TOML syntax at the line and column shown (or rewrite it: `costattr init --force`)",
        ) from e


# Tables whose keys are user data (issue keys, branch names), not setting names.
_DATA_TABLES = frozenset({"budgets.issue", "budgets.branch"})


def _refuse_secrets(data: Any, source: Path, prefix: str) -> None:
    if not isinstance(data, dict) or prefix.rstrip(".") in _DATA_TABLES:
        return
    for k, v in data.items():
        dotted = f"{prefix}{k}"
        if k.replace("_", "").replace("-", "").lower() in _SECRET_KEY_NAMES:
            # Never echo the value: it is the secret.
            raise ConfigError(
                f"{source}: `{dotted}` looks like a secret, and this file is committed with the repository",
                hint="remove it and export COSTATTR_API_KEY=... (or store it in the OS keyring) instead",
            )
        _refuse_secrets(v, source, dotted + ".")


def _validate(data: dict[str, Any], source: Path | None) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = source if source is not None else "configuration"
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{where}: unknown key `{loc}`", hint=_known_keys_hint(err["loc"])) from e
        if err["type"] == "missing":
            raise ConfigError(f"{where}: `{loc}` is required") from e
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: invalid value for `{loc}`: {msg}", hint=_hint_for(err["loc"])) from e


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return model if part == loc[-1] else None
        model = field.annotation
    return model


def _known_keys_hint(loc: tuple[Any, ...]) -> str:
    model = _model_at(loc)
    if model is None:
        return "see the comments `costattr init` writes for the valid keys"
    return "valid keys here: " + ", ".join(model.model_fields)


def _hint_for(loc: tuple[Any, ...]) -> str | None:
    if loc[:2] == ("ledger", "backend"):
        return "one of: " + ", ".join(get_args(LedgerBackend))
    if loc[:2] == ("pricing", "mode"):
        return "one of: " + ", ".join(get_args(PricingMode))
    return None


def _apply_env(cfg: Config) -> Config:
    backend = os.environ.get(LEDGER_ENV, "").strip()
    if not backend:
        return cfg
    allowed = get_args(LedgerBackend)
    if backend not in allowed:
        raise ConfigError(f"{LEDGER_ENV}={backend!r} is not a ledger backend", hint="one of: " + ", ".join(allowed))
    out = cfg.model_copy(update={"ledger": cfg.ledger.model_copy(update={"backend": backend})})
    out._source = cfg._source
    return out


# ---------------------------------------------------------------------------------------------
# trust: which repositories may choose where the user's records and key go
#
# Like git's safe.directory: the user's own file, never a repository's. An entry names a work
# tree and a digest of what its config chose (URL without userinfo, user, file path), so a
# config changed after the user trusted it (another URL, another user) is untrusted again.

TRUST_FILE = "trust.toml"
_TRUST_HEADER = (
    "# costattr: repositories whose committed config may choose the memory API that receives this\n"
    "# user's records and API key. Written by `costattr trust`; `costattr trust --revoke` removes one.\n"
)


@dataclass(frozen=True, slots=True)
class Trust:
    repo: str  # the work tree's real path
    url: str  # without userinfo
    user: str
    path: str  # the memory file
    fingerprint: str
    since: str = ""


def trust_path() -> Path:
    return paths.user_config_dir() / TRUST_FILE


def trust_fingerprint(repo: Path, url: str, user: str, api_path: str) -> str:
    return secrets.fingerprint("trust-v1", os.path.realpath(repo), secrets.strip_userinfo(url), user, api_path)


def trusted() -> list[Trust]:
    """The user's trust entries; an unreadable file trusts nothing (and says why)."""
    path = trust_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}", hint=f"fix or remove {path}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
        entries = doc.get("trusted", [])
        names = [f.name for f in fields(Trust)]
        return [Trust(**{k: str(e.get(k, "")) for k in names}) for e in entries]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError, TypeError) as e:
        raise ConfigError(f"{path} is not a trust file costattr can read ({type(e).__name__})",
                          hint="fix it, or remove it and run `costattr trust` again where needed") from None


def is_trusted(fingerprint: str) -> bool:
    return any(t.fingerprint == fingerprint for t in trusted())


def _write_trusted(entries: list[Trust]) -> None:
    import tomli_w

    from costattr.fsutil import atomic_write_bytes, private_dir

    private_dir(trust_path().parent)
    body = tomli_w.dumps({"trusted": [asdict(t) for t in entries]}) if entries else ""
    atomic_write_bytes(trust_path(), (_TRUST_HEADER + body).encode("utf-8"))


def add_trust(repo: Path, url: str, user: str, api_path: str) -> Trust:
    entry = Trust(repo=os.path.realpath(repo), url=secrets.strip_userinfo(url), user=user, path=api_path,
                  fingerprint=trust_fingerprint(repo, url, user, api_path),
                  since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    kept = [t for t in trusted() if t.fingerprint != entry.fingerprint]
    _write_trusted([*kept, entry])
    return entry


def revoke_trust(repo: Path) -> list[Trust]:
    """Forget every entry of `repo`; the entries removed."""
    where = os.path.realpath(repo)
    entries = trusted()
    gone = [t for t in entries if t.repo == where]
    if gone:
        _write_trusted([t for t in entries if t.repo != where])
    return gone
