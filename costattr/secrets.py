"""Keeping secrets out of output, logs and files: the one place that knows how.

- `strip_userinfo(url)`: a URL without its `user:password@` part, whatever characters the
  password holds (`/ # ? @ :` included: the userinfo ends at the *last* `@`, which over-strips a
  URL with an `@` in its path rather than ever keeping a password).
- `redact(text, *values)`: free text (an error message, git's stderr, a traceback) with every
  URL's userinfo and every given secret value masked.
- `describe_secret(value)`: how doctor shows a key: `set (24 chars)`, never any of its characters.
- `fingerprint(*parts)`: what must be compared or stored to be recognised later (trust, targets)
  is hashed, never kept in clear.
- `url_problem(url)`: why a URL setting is unusable, in words that never quote the URL: httpx's
  own `InvalidURL: Invalid port: 'Pw'` carried part of a password.

Standard library only: the hook's fast path and the log import it.
"""

from __future__ import annotations

import hashlib
import os
import re
from urllib.parse import unquote

MASK = "****"
MIN_SECRET_CHARS = 4  # shorter "secrets" would mask every `a` in a message and protect nothing
SECRET_ENV = ("COSTATTR_API_KEY", "GITHUB_TOKEN", "GH_TOKEN")
URL_ENV = ("COSTATTR_API_URL", "GITHUB_API_URL")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# git's scp-like form, user@host:path ("C:/x" is a Windows drive: one-letter hosts are excluded).
_SCP = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:]+):(?P<path>(?!//).+)$")
# A URL inside free text runs to the next whitespace: a password may hold quotes and brackets.
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://)(\S*)")
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+(?:%25[A-Za-z0-9._~-]+)?\]")


def _split_scheme(url: str) -> tuple[str, str] | None:
    scheme, sep, rest = url.partition("://")
    return (scheme, rest) if sep and _SCHEME.fullmatch(scheme) else None


def userinfo(url: str) -> str | None:
    """The `user[:password]` part of a URL (None when it has none), by the same rule as
    strip_userinfo: everything up to the last `@`."""
    split = _split_scheme(url.strip())
    if split is None:
        return None
    info, at, _rest = split[1].rpartition("@")
    return info if at else None


def strip_userinfo(url: str, placeholder: str = "") -> str:
    """`url` without `user[:password]@` (replaced by `placeholder@` when one is given).

    Remotes like https://x-access-token:TOKEN@github.com/... carry secrets, and an SSH user
    (git@) says nothing about where the URL points. Never raises.
    """
    url = url.strip()
    shown = f"{placeholder}@" if placeholder else ""
    split = _split_scheme(url)
    if split is not None:
        scheme, rest = split
        _info, at, after = rest.rpartition("@")
        return f"{scheme}://{shown}{after}" if at else url
    m = _SCP.match(url)
    if m is not None and m["user"] is not None and len(m["host"]) > 1:
        return f"{shown}{m['host']}:{m['path']}"
    return url


def mask_url(url: str) -> str:
    """A URL for messages: its userinfo, if any, shown as `****@`."""
    return strip_userinfo(url, MASK)


def _mask_url_match(m: re.Match[str], mask: str) -> str:
    _info, at, after = m.group(2).rpartition("@")
    return f"{m.group(1)}{mask}@{after}" if at else m.group(0)


def redact(text: str, *values: str | None, mask: str = MASK) -> str:
    """`text` with every URL's userinfo masked and every one of `values` replaced by `mask`.

    Values shorter than MIN_SECRET_CHARS are ignored (they are not secrets worth the noise).
    Longest first, so a secret containing another one is masked whole.
    """
    if not text:
        return text
    out = _URL_IN_TEXT.sub(lambda m: _mask_url_match(m, mask), text) if "://" in text else text
    for value in sorted({v for v in values if v and len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        out = out.replace(value, mask)
    return out


def env_secrets(environ: dict[str, str] | None = None) -> list[str]:
    """The secret values the environment holds: API keys and tokens, and the userinfo (whole,
    its password alone, percent-encoded and decoded) of URL settings."""
    env = os.environ if environ is None else environ
    found = [value for name in SECRET_ENV if (value := env.get(name, "").strip())]
    for name in URL_ENV:
        info = userinfo(env.get(name, ""))
        if info:
            password = info.partition(":")[2]
            found += [v for raw in (info, password) if raw for v in (raw, unquote(raw))]
    return found


def describe_secret(value: str | None) -> str:
    """How a secret is shown: whether it is set and its length, none of its characters."""
    return f"set ({len(value)} chars)" if value else "not set"


def fingerprint(*parts: str | None) -> str:
    """A stable digest of `parts`, to compare or store what may not be kept in clear."""
    joined = "\0".join(p or "" for p in parts)
    return hashlib.sha256(joined.encode("utf-8", "surrogateescape")).hexdigest()


def url_problem(url: str, *, allow_userinfo: bool = True) -> str | None:
    """Why `url` cannot be used as an http(s) base URL, or None when it can.

    The answer never quotes the URL (a password would be in it). Stricter than httpx, so a URL
    accepted here never makes httpx raise later with the URL in its message: a `user:password`
    part with `/ # ? @` in it must be percent-encoded (%2F %23 %3F %40), else where it ends is
    ambiguous (and httpx reads the password as a port).
    """
    if not url:
        return "it is empty"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "it contains spaces or control characters"
    split = _split_scheme(url)
    if split is None or split[0].lower() not in ("http", "https"):
        return "it must start with http:// or https://"
    rest = split[1]
    cut = min((i for i in (rest.find(ch) for ch in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" in tail:
        return ("it has an `@` after the host; in a user:password part, write / # ? @ as "
                "%2F %23 %3F %40")
    info, at, hostport = authority.rpartition("@")
    if at and not allow_userinfo:
        return "it contains a user:password part, and this file is committed with the repository"
    if at and re.search(r"%(?![0-9A-Fa-f]{2})", info):
        return "its user:password part has a `%` that is not a %XX escape"
    return _host_problem(hostport)


def _host_problem(hostport: str) -> str | None:
    if hostport.startswith("["):
        host, close, after = hostport.partition("]")
        host += close
        if not _IPV6.fullmatch(host):
            return "its IPv6 host is not valid"
        port = after.removeprefix(":") if after.startswith(":") else None
        if after and port is None:
            return "its host is not valid"
    else:
        host, colon, port_text = hostport.partition(":")
        port = port_text if colon else None
        if not host:
            return "it has no host"
        if not _HOST_NAME.fullmatch(host):
            try:
                ascii_host = host.encode("idna").decode("ascii")
            except UnicodeError:
                return "its host name is not valid"
            if not _HOST_NAME.fullmatch(ascii_host):
                return "its host name is not valid"
    if port is not None and port != "" and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return "its port is not a number from 1 to 65535"
    return None
