"""Figures fit for a paper: on demo runs no two pieces of text of an analysis figure overlap,
lines beyond a palette get distinct colours, and every drawn panel holds data."""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pytest

from sa_frame import ResultsFile, lookup
from tests.cli_runner import cli


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts whose drawn boxes intersect by more than a pixel."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn_ticks, all_ticks = set(), set()  # an axis keeps labels of ticks outside its limits, undrawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                all_ticks.update((id(tick.label1), id(tick.label2)))
            for tick in axis._update_ticks():  # the ticks the axis draws
                drawn_ticks.update((id(tick.label1), id(tick.label2)))
    boxes = []
    for text in fig.findobj(matplotlib.text.Text):
        if not text.get_visible() or not text.get_text().strip() or (text.axes is not None
                                                                      and not text.axes.get_visible()):
            continue
        if id(text) in all_ticks and id(text) not in drawn_ticks:
            continue
        boxes.append((text.get_text(), text.get_window_extent(renderer).padded(-1)))
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("figures")
    sobol, shapley = folder / "sobol.h5", folder / "shapley.h5"
    assert cli("run", "--n", "8", "--out", sobol, "--quiet")[0] == 0
    assert cli("run", "--estimator", "shapley", "--n", "8", "--n-outer", "2", "--n-inner", "2", "--out", shapley,
               "--quiet")[0] == 0
    for args in (["correlation", "-o", f"other={shapley}"], ["lda", "-o", "n_repeats=1", "-o", "checkpoints=features.8,features.10"], ["cov-correlation"]):
        code, _, err = cli("analyze", sobol, *args, "--no-figures")
        assert code == 0, err
    return sobol


@pytest.mark.parametrize("name", ["correlation", "lda", "cov-correlation"])
def test_no_text_of_an_analysis_figure_overlaps_another(analysed, name, monkeypatch, tmp_path):
    import sa_frame.results.report as report

    drawn = []
    real = report.save_figure

    def checked(fig, out):
        drawn.append((out, overlapping_texts(fig), fig))
        return real(fig, out)

    for module in ("correlation", "lda"):
        monkeypatch.setattr(f"sa_frame.plugins.analyses.{module}.save", checked)
    monkeypatch.setattr("sa_frame.plugins.analyses._display.save", checked)
    outputs = ResultsFile(analysed).read("analyses")[name]
    written = lookup("analysis", name).figures(outputs, tmp_path / "fig")
    assert len(drawn) == len(written) >= 1
    for out, overlaps, _ in drawn:
        assert not overlaps, f"{out.name}: {overlaps[:5]}"
    if name == "cov-correlation":  # the per-position maps say what they show (they had no title)
        fig = next(fig for out, _, fig in drawn if out.name.endswith("maps.png"))
        assert fig._suptitle.get_text().startswith("Spearman(S1, CoV) across the units")
        assert fig.axes[-1].get_ylabel() == "Spearman(S1, CoV) across units"  # the colour bar


def test_no_text_of_the_run_summary_figure_overlaps_another(analysed, monkeypatch, tmp_path):
    import sa_frame.results.report as report

    found = []
    monkeypatch.setattr(report, "save_figure", lambda fig, out: found.append(overlapping_texts(fig)) or out)
    results = ResultsFile(analysed)
    report.summary_figure(results, report.estimator_of(results), tmp_path / "summary.png")
    assert found == [[]]


def test_the_correlation_figure_gives_every_partner_its_own_colour(analysed, monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr("sa_frame.plugins.analyses.correlation.save", lambda fig, out: figures.append(fig) or out)
    outputs = ResultsFile(analysed).read("analyses")["correlation"]
    lookup("analysis", "correlation").figures(outputs, tmp_path / "fig")
    variables = [str(v) for v in outputs["variables"]]
    fig = figures[0]
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == variables  # one panel per variable
    for a, ax in enumerate(panels):
        lines = [line for line in ax.get_lines() if line.get_label() in variables]
        assert [line.get_label() for line in lines] == [v for b, v in enumerate(variables) if b != a]
        colours = {matplotlib.colors.to_hex(line.get_color()) for line in lines}
        assert len(colours) == len(variables) - 1  # distinct within a panel
        evolution = outputs["evolution"]["S1"]
        first = next(k for k, (i, j) in enumerate((i, j) for i in range(8) for j in range(i + 1, 8))
                     if (i, j) == (min(a, (a + 1) % 8), max(a, (a + 1) % 8)))
        partner = next(line for line in lines if line.get_label() == variables[(a + 1) % 8])
        np.testing.assert_allclose(partner.get_ydata(), evolution[first])  # the stored numbers are drawn
    partner_colour = {v: set() for v in variables}
    for ax in panels:
        for line in ax.get_lines():
            if line.get_label() in variables:
                partner_colour[line.get_label()].add(matplotlib.colors.to_hex(line.get_color()))
    assert all(len(c) == 1 for c in partner_colour.values())  # a variable keeps its colour across panels
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_printed_matrices_never_split_a_number():
    """On a console narrower than the matrix, headers fold but every number stays whole (rich had
    printed '0.19' over '4'); the table is printed wider than the console instead of cropped."""
    import io

    from rich.console import Console

    from sa_frame import print_matrix

    values = np.array([[-0.0625, 0.1944, np.nan, 1.0, -1.0, 0.5, 0.25, -0.125, 0.333],
                       [0.0, 0.001, -0.001, 0.999, 0.75, np.nan, 0.2, 0.3, 0.4]])
    columns = [f"blocks.{k}" if k % 2 else f"global_pool_{k}" for k in range(values.shape[1])]
    console = Console(width=60, file=io.StringIO(), color_system=None)
    print_matrix(console, "a wide matrix", ["gaussian_blur", "class"], columns, values)
    lines = console.file.getvalue().splitlines()
    for label, row in zip(["gaussian_blur", "class"], values):
        line = next(text for text in lines if f" {label} " in text)
        cells = [cell.strip() for cell in line.split("│")[2:-1]]
        assert cells == ["nan" if np.isnan(v) else f"{v:.3f}" for v in row], line
    assert max(len(text) for text in lines) > 60
