"""Datasette-style meta-test: every hook is documented and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from sa_frame.core import hookspecs
from sa_frame.core.registry import KIND_HOOKS

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("register_"))


def test_hooks_are_the_documented_set():
    assert HOOKS == sorted([*KIND_HOOKS.values(), "register_commands"])


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_in_docs(hook):
    assert f"`{hook}" in (ROOT / "docs" / "plugins.md").read_text(), f"{hook} missing from docs/plugins.md"
    assert getattr(hookspecs, hook).__doc__.strip(), f"{hook} has no docstring"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_exercised_by_a_test_plugin(hook):
    sources = "".join(p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != "test_meta.py")
    assert f"def {hook}(" in sources, f"no test plugin implements {hook}"
