"""A table's mean row (or column): the mean over its other rows with a t interval over them (``mean_row``)."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats
from support import rbench

from rbench.assemble import mean_cells
from rbench.errors import SuiteError
from rbench.results import Cell
from rbench.suite import load_suite

SUITE = """
[suite]
name = "seeds"

[datasets.mnist]
plugin = "mnist"

[models.a]
plugin = "mlp"
params = { widths = [8] }
dataset = "mnist"
n_train = 200
trainer = { params = { epochs = 1 } }

[models.b]
plugin = "mlp"
params = { widths = [8] }
dataset = "mnist"
n_train = 200
seed = 1
trainer = { params = { epochs = 1 } }

[models.c]
plugin = "mlp"
params = { widths = [8] }
dataset = "mnist"
n_train = 200
seed = 2
trainer = { params = { epochs = 1 } }

[attacks.fgsm]
plugin = "fgsm"
grid = { eps = [0.05, 0.1] }

[evaluations.ev]
dataset = "mnist"
n = 40
sources = ["a", "b", "c"]
attacks = ["fgsm"]

[tables.t]
evaluation = "ev"
rows = "model"
columns = "attack"
metric = "accuracy"
mean_row = "mean of three seeds"
figure = "lines"
"""


def test_the_mean_row_is_the_mean_of_the_rows_with_a_t_interval_in_every_report(tmp_path):
    suite = tmp_path / "seeds.toml"
    suite.write_text(SUITE)
    run = tmp_path / "run"
    out = rbench("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(run), "-q")
    assert out.returncode == 0, out.stderr
    table = json.loads((run / "results.json").read_text())["tables"][0]
    assert table["rows"] == ["a", "b", "c", "mean of three seeds"] and table["mean_row"] == "mean of three seeds"
    cells = {(c["row"], c["column"]): c for c in table["cells"]}
    for column in table["columns"]:
        values = [cells[(row, column)]["value"] for row in "abc"]
        mean = cells[("mean of three seeds", column)]
        assert mean["value"] == pytest.approx(sum(values) / 3) and mean["n"] == 3
        if len(set(values)) > 1:  # a t interval over the three values, clipped to [0, 100]
            half = stats.t.ppf(0.975, 2) * stats.tstd(values) / math.sqrt(3)
            assert mean["low"] == pytest.approx(max(0.0, sum(values) / 3 - half))
            assert mean["high"] == pytest.approx(min(100.0, sum(values) / 3 + half))
            assert mean["interval"] == "t over rows"
        assert set(mean["jobs"]) == {k for row in "abc" for k in cells[(row, column)]["jobs"]}
    markdown = (run / "tables.md").read_text()
    assert "| mean of three seeds |" in markdown and "'mean of three seeds': the mean of the 3 rows" in markdown
    for shown in ("tables.tex", "report.html", "cells.csv"):
        assert "mean of three seeds" in (run / shown).read_text(), shown
    tex = (run / "tables.tex").read_text().splitlines()
    mean_line = next(i for i, line in enumerate(tex) if line.strip().startswith("mean of three seeds &"))
    assert tex[mean_line - 1].strip() == r"\midrule"  # set apart from the rows it averages, as in the HTML
    assert (run / "lines_t.png").is_file()
    again = rbench("report", str(run))  # read back from results.json: the same table
    assert again.returncode == 0 and again.stdout.strip() == markdown.strip(), again.stderr
    _mean_row_in_a_browser(run / "report.html")


def _mean_row_in_a_browser(page) -> None:
    """The HTML audit: the mean row looked like a model's, and sorting a column put it among them; printed, a wide
    table lost its right-hand columns (it scrolled, and paper does not)."""
    from selenium.webdriver.common.by import By
    from test_html_report import _driver

    browser = _driver()
    try:
        browser.get(page.as_uri())
        table = browser.find_element(By.CSS_SELECTOR, "table.results")
        labels = lambda: [th.text for th in table.find_elements(By.CSS_SELECTOR, "tbody th")]  # noqa: E731
        assert table.find_element(By.CSS_SELECTOR, "tbody tr:last-child").get_attribute("class") == "mean"
        heading = table.find_elements(By.CSS_SELECTOR, "thead th")[2]
        for _ in range(3):  # ascending, descending, the suite's order: the mean row last each time
            heading.click()
            assert labels()[-1] == "mean of three seeds", labels()
        provenance = browser.find_element(By.ID, "provenance")
        assert provenance.get_attribute("open") is None
        browser.execute_script("window.dispatchEvent(new Event('beforeprint'))")  # printed: the record unfolded
        assert provenance.get_attribute("open") is not None
        browser.execute_script("window.dispatchEvent(new Event('afterprint'))")
        assert provenance.get_attribute("open") is None
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        scroll = browser.find_element(By.CSS_SELECTOR, ".scroll")
        assert browser.execute_script("return getComputedStyle(arguments[0]).overflowX", scroll) == "visible"
    finally:
        browser.quit()


def test_a_long_tick_label_is_cut_with_an_ellipsis_not_dropped():
    """textwrap.shorten drops whole words: the Uličný Fig. 8 lines figure's ticks read "[...]"."""
    from rbench.report.lines import TICK_CHARS, _tick

    assert _tick("fig8_gauss(sigma=0.09)") == "fig8_gauss(sigma=0.09)"
    long = "Square (gradient-free, 300 queries)"
    assert _tick(long) == long[:TICK_CHARS - 1] + "…" and len(_tick(long)) == TICK_CHARS


def _fails(tmp_path, old: str, new: str, message: str) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.replace(old, new))
    with pytest.raises(SuiteError, match=message):
        load_suite(suite, None)


@pytest.mark.parametrize("old, new, message", [
    ('mean_row = "mean of three seeds"', 'mean_row = "b"',
     r"tables\.t\.mean_row: 'b' is already one of the table's rows"),
    ('mean_row = "mean of three seeds"', 'mean_row = "m"\nmean_column = "n"',
     r"tables\.t\.mean_column: give 'mean_row' or 'mean_column', not both"),
    ('sources = ["a", "b", "c"]', 'sources = ["a"]', r"tables\.t\.mean_row: the table has 1 row: a mean needs two"),
    ('rows = "model"\ncolumns = "attack"\nmetric = "accuracy"', 'rows = "metric"\ncolumns = "attack"\nwhere = { model '
     '= "a" }\nmetrics = ["accuracy", "distortion"]', r"tables\.t\.mean_row: the rows hold different metrics at "
     r"'clean' \('accuracy', 'distortion"),
])
def test_a_mean_that_cannot_be_taken_is_refused_with_the_suite(tmp_path, old, new, message):
    _fails(tmp_path, old, new, message)


def test_a_mean_column_averages_the_columns_and_a_line_without_a_value_fails_its_mean(tmp_path):
    from rbench.suite_types import Table

    table = Table("t", "T", "attack", "model", ("clean", "fgsm"), ("a", "b"), {}, "", mean_column="mean")
    cells = {(r, c): Cell(r, c, v, [f"{r}{c}"], n=10, low=0.0, high=100.0, interval="wilson", evaluation="ev",
                          source=c, attack=r, target=c, metric="accuracy", call="accuracy")
             for (r, c), v in {("clean", "a"): 90.0, ("clean", "b"): 80.0, ("fgsm", "a"): 10.0,
                               ("fgsm", "b"): None}.items()}
    cells[("fgsm", "b")].error = "job failed: fgsm on b"
    clean, fgsm = mean_cells(table, cells, {"accuracy": "%"})
    assert (clean.row, clean.column, clean.value, clean.n) == ("clean", "mean", 85.0, 2)
    assert clean.interval == "t over columns"
    half = stats.t.ppf(0.975, 1) * stats.tstd([90.0, 80.0]) / math.sqrt(2)
    assert clean.low == pytest.approx(max(0.0, 85 - half)) and clean.high == pytest.approx(min(100.0, 85 + half))
    assert (clean.attack, clean.evaluation, clean.source) == ("clean", "ev", "")  # what the averaged cells share
    assert fgsm.value is None and fgsm.error == "the mean over the columns lacks 'b': job failed: fgsm on b"


def test_lowest_of_the_rows_is_judged_among_the_rows_not_their_mean():
    """The mean of the rows lies between them: "a is the lowest row" was never held against it."""
    from rbench.compare import Claim, check_one_claim
    from rbench.results import ResultTable

    cells = [Cell("a", "e", 10.0), Cell("b", "e", 30.0), Cell("mean", "e", 20.0)]
    table = ResultTable("t", "T", ["a", "b", "mean"], ["e"], "model", "columns", {}, {}, cells, mean_row="mean")
    claim = Claim(text="c", table="t", kind="lowest", a={"row": "a", "column": "e"})
    assert check_one_claim(claim, table).held is True
    cells[2] = Cell("mean", "e", 5.0)  # a mean below every row is no row a claim compares with
    assert check_one_claim(claim, table).held is True


def test_a_mean_is_clipped_where_the_averaged_quantity_lies_and_a_transfer_matrix_keeps_its_heatmap():
    """The review: a mean of three distortions (each clipped at 0 by its metric) reached below 0; a mean row took
    the heatmap away from a transfer table (its cells average several sources)."""
    import math

    from rbench.estimate import mean
    from rbench.report.figures import transfer_matrix
    from rbench.results import ResultTable
    from rbench.suite_types import Table

    table = Table("t", "T", "source", "attack", ("a", "b", "c"), ("pgd",), {}, "", mean_row="mean")
    values = {"a": 0.01, "b": 0.6, "c": 0.02}
    cells = {(r, "pgd"): Cell(r, "pgd", v, [r], n=5, low=0.0, high=1.0, interval="t", metric="distortion",
                              call="distortion") for r, v in values.items()}
    estimates = {(r, "pgd"): mean([v, v + 0.01], bounds=(0.0, math.inf)) for r, v in values.items()}
    (clipped,) = mean_cells(table, cells, {"distortion": ""}, estimates)
    assert clipped.value == pytest.approx(0.21) and clipped.low == 0.0 and clipped.high > 0.21
    (unclipped,) = mean_cells(table, cells, {"distortion": ""})  # no estimate says where it lies: nothing clips it
    assert unclipped.low < 0

    matrix = [Cell(s, t, 10.0 * i + j, source=s, target=t, metric="error") for i, s in enumerate("ab")
              for j, t in enumerate("xy")]
    matrix += [Cell("mean", t, 5.0 + j, source="", target=t, metric="error") for j, t in enumerate("xy")]
    result = ResultTable("m", "M", ["a", "b", "mean"], ["x", "y"], "source", "target", {"error": "%"},
                         {"error": ".1f"}, matrix, mean_row="mean")
    drawn = transfer_matrix(result)
    assert drawn is not None and drawn.shape == (3, 2) and drawn[2].tolist() == [5.0, 6.0]


def test_a_mean_column_over_attacks_is_no_point_of_a_sweep_or_a_line():
    """The second review: with a mean column over the attacks, the robustness figure vanished (the mean's cells name
    no attack) and the lines figure drew the mean as one more position along x."""
    from rbench.report.figures import sweeps
    from rbench.report.lines import lines
    from rbench.results import ResultTable

    calls = {f"pgd{e}": {"plugin": "pgd", "params": {"eps": e}} for e in (0.1, 0.2)}
    columns = ["clean", "pgd0.1", "pgd0.2", "mean"]
    cells = [Cell(m, a, 10.0 * j + i, source=m, target=m, attack=a, metric="error")
             for i, m in enumerate("xy") for j, a in enumerate(columns[:3])]
    cells += [Cell(m, "mean", 10.0 + i, source=m, target=m, attack="", metric="error") for i, m in enumerate("xy")]
    table = ResultTable("t", "T", ["x", "y"], columns, "model", "attack", {"error": "%"}, {"error": ".1f"}, cells,
                        attack_calls=calls, mean_column="mean")
    drawn = sweeps(table, {})
    assert [(s.label, s.x) for s in drawn] == [("x", [0.0, 0.1, 0.2]), ("y", [0.0, 0.1, 0.2])]
    assert lines(table) == {"x": ([0, 1, 2], [0.0, 10.0, 20.0]), "y": ([0, 1, 2], [1.0, 11.0, 21.0])}


@pytest.mark.parametrize("count", [3, 14])
def test_a_long_legend_goes_beside_the_plot_and_a_short_one_stays_inside(count):
    """A 14-entry legend in the axes' "best" corner hid a data point; more than six entries go to the right of the
    axes, the figure widened for them, and never overlap the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from rbench.report.curves import Curve, draw

    lines = [Curve(f"model {i} with a long name", [0.0, 0.1, 0.2], [90.0 - i, 50.0 - i, 10.0 + i])
             for i in range(count)]
    fig = draw("Error against distortion", lines, "error (%)")
    FigureCanvasAgg(fig).draw()
    (ax,) = fig.axes
    if count == 3:
        assert ax.get_legend() is not None and not fig.legends and fig.get_figwidth() == 7.0
        return
    (legend,) = fig.legends
    assert ax.get_legend() is None and len(legend.get_texts()) == count and fig.get_figwidth() > 7.0
    plot, box = ax.get_window_extent(), legend.get_window_extent()
    assert box.x0 >= plot.x1 and box.x1 <= fig.bbox.x1  # beside the axes, inside the figure
    assert plot.width >= 0.6 * fig.bbox.width * 7.0 / fig.get_figwidth()  # the axes kept most of their width
