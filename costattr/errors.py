"""The one expected error type, mapped to an exit code at the CLI edge (pre-commit style)."""

from __future__ import annotations

# Exit codes that mean something to scripts and CI.
EXIT_OK = 0
EXIT_ERROR = 1  # an expected, explained failure (bad config, corrupt ledger, ...)
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_BUG = 3  # an unexpected exception: a bug, logged with a traceback


class CostattrError(Exception):
    """A failure the user can act on: `message` says what happened, `hint` what to do next."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(CostattrError):
    pass


class LedgerCorrupt(CostattrError):
    """A ledger file that could not be read: moved to `kept` (never overwritten)."""

    def __init__(self, message: str, hint: str | None = None, *, path: object = None, kept: object = None) -> None:
        super().__init__(message, hint)
        self.path = path
        self.kept = kept


class NotAGitRepo(CostattrError):
    pass


class RemoteError(CostattrError):
    """A shared ledger or API could not be reached or refused us."""
