"""Datasette-style meta-tests: every hook is documented from its spec and exercised by a
test; the kernel stays the contract only; plugins use the public API; docs stand alone."""

from __future__ import annotations

import ast
import inspect
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from sa_frame.core import hookspecs
from sa_frame.core.registry import KIND_HOOKS

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sa_frame"
HOOKS = sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
               if name.startswith("register_"))
ROOMS = ("sa_frame.engine", "sa_frame.results", "sa_frame.cli", "sa_frame.plugins", "sa_frame.testing")


def imports(path: Path) -> list[str]:
    """Every module a file imports (at any depth: lazy imports inside functions count)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_hooks_are_the_documented_set():
    assert HOOKS == sorted([*KIND_HOOKS.values(), "register_commands"])


def test_hook_reference_is_generated_from_the_specs():
    render = runpy.run_path(str(ROOT / "scripts" / "hooks_reference.py"))["render"]
    assert (ROOT / "docs" / "plugins" / "hooks.md").read_text() == render(), \
        "docs/plugins/hooks.md is out of date: run python scripts/hooks_reference.py"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_signature_in_the_reference(hook):
    fn = getattr(hookspecs, hook)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in inspect.signature(fn).parameters.values())
    page = (ROOT / "docs" / "plugins" / "hooks.md").read_text()
    assert f"## `{hook}`" in page and f"def {hook}({params})" in page
    assert fn.__doc__.strip(), f"{hook} has no docstring"
    assert f"`{hook}" in (ROOT / "docs" / "plugins" / "tutorial.md").read_text(), f"{hook} missing from the tutorial"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test_with_a_full_contract_plugin(hook):
    tests = (ROOT / "tests" / "core" / "test_hooks.py").read_text()
    assert f"def test_{hook.replace('register_', 'hook_register_')}(" in tests, f"no test_hook_{hook}"
    assert f"def {hook}(" in (ROOT / "tests" / "plugins" / "full_contract.py").read_text()


def test_core_is_the_contract_only():
    core = sorted((PACKAGE / "core").glob("*.py"))
    lines = sum(len(p.read_text().splitlines()) for p in core)
    assert lines <= 1500, f"sa_frame/core has {lines} lines"
    for path in core:
        bad = [m for m in imports(path) if m.startswith(ROOMS) or m in ("sa_frame",)]
        assert not bad, f"{path.name} imports {bad}"


def test_plugins_and_examples_use_the_public_api():
    files = [*(PACKAGE / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
    for path in files:
        internal = [m for m in imports(path) if m.startswith(("sa_frame.core", "sa_frame.engine", "sa_frame.results",
                                                                "sa_frame.cli"))]
        assert not internal, f"{path.relative_to(ROOT)} imports internals {internal}"
        family = path.relative_to(PACKAGE / "plugins").parts[0] if PACKAGE / "plugins" in path.parents else None
        others = [m for m in imports(path) if m.startswith("sa_frame.plugins.")
                  and m.split(".")[2] != family]
        assert not others, f"{path.relative_to(ROOT)} reaches into another plugin family: {others}"


def test_no_import_cycles_between_modules():
    """Top-level imports between sa_frame modules form no cycle (lazy imports inside functions excepted)."""
    graph: dict[str, set[str]] = {}
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in files.items():
        top = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        targets = set()
        for node in top:
            mods = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in getattr(node, "names", [])]
            if isinstance(node, ast.ImportFrom) and node.module:
                mods += [f"{node.module}.{a.name}" for a in node.names]
            targets |= {m for m in mods if m in files and m != name and m != "sa_frame"}
        graph[name] = targets
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(trail + [node, nxt])}")
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_docs_and_comments_stand_alone():
    """No doc or code comment points to files outside the repository."""
    paths = [*PACKAGE.rglob("*.py"), *(ROOT / "docs").rglob("*.md"), ROOT / "README.md",
             *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "examples").rglob("*")]
    for path in paths:
        if path.is_file() and path.suffix in (".py", ".md", ".toml"):
            text = path.read_text()
            for marker in ("../shared", "SPEC ", "SPEC.md", "DESIGN.md", "DESIGN §"):
                assert marker not in text, f"{path.relative_to(ROOT)} refers to {marker!r} outside the repository"


def test_every_folder_is_described_in_the_architecture_page():
    page = (ROOT / "docs" / "architecture.md").read_text()
    folders = sorted({p.parent.relative_to(ROOT).as_posix() for p in PACKAGE.rglob("*.py")})
    missing = [f for f in folders if f"`{f}/`" not in page]
    assert not missing, f"docs/architecture.md does not describe {missing}"


def test_help_imports_no_heavy_library():
    """`sa-frame --help` builds every plugin's commands without importing torch (it stays fast)."""
    code = ("import sys\nfrom sa_frame.cli.app import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'h5py', 'matplotlib', 'scipy') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={"SA_FRAME_LOAD_PLUGINS": "", "PATH": "/usr/bin:/bin"})
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
