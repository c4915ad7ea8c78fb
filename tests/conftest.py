"""Test isolation: no third-party plugins a developer happens to have installed, and a
fresh plugin registry for every test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ["SA_FRAME_LOAD_PLUGINS"] = ""

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    from sa_frame.core.registry import reset_registry

    monkeypatch.setenv("SA_FRAME_LOAD_PLUGINS", "")
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def analytic() -> dict:
    """Exact indices of test functions: ../shared/reference when present, else the vendored copy."""
    shared = ROOT.parent / "shared" / "reference" / "analytic.json"
    path = shared if shared.exists() else ROOT / "tests" / "data" / "analytic.json"
    return json.loads(path.read_text())
