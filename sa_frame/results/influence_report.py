"""What an influence results file says, as tables (`sa-frame influence` and `sa-frame show`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sa_frame.results.store import ResultsFile


def same_class_share(tree: dict[str, Any]) -> np.ndarray:
    """(conditions, layers + 1): share of test images whose top proponent has the test image's class."""
    test, train = tree["test"], tree["train"]
    index = np.asarray(tree["proponents"]["index"])  # (L + 1, T, k)
    if index.shape[-1] == 0:
        return np.full((int(np.max(test["condition"], initial=0)) + 1, index.shape[0]), np.nan)
    top_class = np.asarray(train["classes"])[index[..., 0]]  # (L + 1, T)
    same = top_class == np.asarray(test["classes"])[None, :]
    conditions = np.asarray(test["condition"])
    return np.stack([same[:, conditions == c].mean(1) for c in range(int(conditions.max()) + 1)])


def print_influence_summary(console: Any, results: ResultsFile) -> None:
    """Run, solver diagnostics per layer, and where the top proponents come from per condition."""
    from rich.table import Table

    attrs = results.attrs()
    tree = results.read("influence")
    run = Table(title=str(results.path), show_header=False)
    for key in ("status", "model", "solver", "layer_mode", "curvature", "l2", "n_train", "n_test"):
        run.add_row(key, str(attrs.get(key)))
    run.add_row("conditions", ", ".join(attrs.get("conditions", [])))
    run.add_row("sign", str(attrs.get("sign_convention")))
    console.print(run)
    diag, layers = tree["diagnostics"], tree["layers"]
    table = Table(title="inverse-Hessian solves per layer (residual: ||(H + λI)s - g|| / ||g||, worst test image)")
    table.add_column("layer", no_wrap=True)
    for column in ("params", "λ", "λ_min", "λ_max", "iters", "residual", "ok"):
        table.add_column(column, justify="right", no_wrap=True)
    for i, name in enumerate(layers["names"]):
        table.add_row(str(name), f"{int(layers['parameters'][i]):,}", f"{diag['damping'][i]:.3g}",
                      f"{diag['lambda_min'][i]:.3g}", f"{diag['lambda_max'][i]:.3g}", f"{int(diag['iterations'][i])}",
                      f"{diag['residual'][i]:.2e}", "yes" if diag["converged"][i] else "no")
    console.print(table)
    if attrs.get("status") != "complete":
        return
    share = same_class_share(tree)
    rows = [*map(str, layers["names"]), "total"]
    view = Table(title="test images whose top proponent (most negative I_up,loss) is of their own class")
    view.add_column("condition", no_wrap=True)
    for r in rows:
        view.add_column(r, justify="right")
    for c, label in enumerate(attrs.get("conditions", [])):
        view.add_row(str(label), *(f"{100 * v:.0f}%" for v in share[c]))
    console.print(view)
