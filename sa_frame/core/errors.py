"""Errors a user can act on.

Every mistake a user can make (an unknown name, a bad option, a bad file) raises a `UsageError`; the CLI prints
its one-line message and exits with status 2. Anything else is a bug and exits with status 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(Exception):
    """A user mistake: the message says what was wrong and what is allowed."""


class PluginError(UsageError):
    """Plugins registered something inconsistent (e.g. the same name twice)."""


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The registered names most similar to `name` (difflib ratio), best first."""
    return difflib.get_close_matches(str(name), sorted(set(candidates)), n=n, cutoff=0.4)


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """`` (did you mean 'a' or 'b'?)`` for the closest candidates, or an empty string."""
    near = closest(name, candidates, n)
    return f" (did you mean {' or '.join(repr(c) for c in near)}?)" if near else ""


def unknown_name(what: str, name: str, candidates: Iterable[str]) -> UsageError:
    """The standard error for an unknown name: what was asked, what exists, the closest."""
    candidates = sorted(set(candidates))
    listed = ", ".join(candidates) if candidates else "(none registered)"
    return UsageError(f"unknown {what} {name!r}{did_you_mean(name, candidates)}; registered: {listed}")


def yaml_error(path: object, exc: Exception) -> UsageError:
    """A YAML syntax error as one line naming the file, line and column."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return UsageError(f"{path}:{where} YAML syntax error: {problem}")
