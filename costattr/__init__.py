"""costattr: what each issue and pull request cost in AI-assistant spend."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Looked up lazily: importlib.metadata costs the hook's fast path ~20 ms on every commit.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("costattr")
        except PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0+unknown"
    raise AttributeError(name)
