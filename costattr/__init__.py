"""costattr: what each issue and pull request cost in AI-assistant spend."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("costattr")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
