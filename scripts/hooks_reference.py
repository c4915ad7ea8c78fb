"""Write docs/plugins/hooks.md from the hook specifications, the single contract text.

    python scripts/hooks_reference.py          # rewrite the page
    python scripts/hooks_reference.py --check  # exit 1 if the page is out of date (the tests do this)
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "plugins" / "hooks.md"


def signature(fn: object) -> str:
    """`(name: annotation, ...) -> annotation` as written in the source (annotations are strings)."""
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"({params}) -> {sig.return_annotation}"


def render() -> str:
    """The reference page: one heading, signature and docstring per hook, in file order."""
    from sa_frame.core import hookspecs

    hooks = [fn for name, fn in vars(hookspecs).items() if name.startswith("register_") and inspect.isfunction(fn)]
    lines = ["# Hook reference", "",
             "Generated from `sa_frame/core/hookspecs.py` by `python scripts/hooks_reference.py`; do not edit by",
             "hand. Implement a hook with `@sa_frame.hookimpl` on a function (or method) of the same name; see",
             "[the tutorial](tutorial.md) for a complete plugin and [testing.md](testing.md) for the checks.", ""]
    for fn in hooks:
        lines += [f"## `{fn.__name__}`", "", "```python", f"def {fn.__name__}{signature(fn)}", "```", "",
                  inspect.cleandoc(fn.__doc__ or ""), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if PAGE.read_text() == text else 1)
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
