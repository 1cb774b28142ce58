"""Reports a researcher reuses: cells with n and 95% intervals, three-way verdicts, McNemar tests a suite asks
for, tidy cells.csv / cells.parquet / samples.parquet with ``rbench.load_results``, and the figures derived from
a table's axes (robustness curves, transfer heatmaps, distributions)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import sys
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from support import rbench, rbench_imports

import rbench as rb
from rbench.compare import Tolerance, judge
from rbench.errors import RbenchError
from rbench.report.figures import sweeps, transfer_matrix
from rbench.results import Cell, ResultTable, RunResults
from rbench.store import Store

PAIRED = 'metric = "error"\npaired = [["mlp", "cnn"]]\n'


@pytest.fixture(scope="module")
def paired_run(tiny_reference, tmp_path_factory):
    """The tiny suite again with a McNemar pair on its error table, from a copy of its store (all cached)."""
    suite, store, _, _ = tiny_reference
    root = tmp_path_factory.mktemp("paired")
    shutil.copytree(store, root / "store")
    text = suite.read_text()
    assert text.count('metric = "error"\n') >= 1
    (root / "tiny.toml").write_text(text.replace('metric = "error"\n', PAIRED, 1))
    out = rbench("run", str(root / "tiny.toml"), "--store", str(root / "store"), "--run-dir", str(root / "run"),
                 "-q", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    return root, out


def test_rate_cells_carry_n_and_the_wilson_interval(tiny_reference):
    _, _, run, _ = tiny_reference
    results = RunResults.read(run)
    errors = next(t for t in results.tables if t.name == "errors")
    for cell in errors.cells:
        assert cell.n == 64 and cell.interval == "wilson"
        k = round(cell.value * 64 / 100)
        ci = binomtest(k, 64).proportion_ci(method="wilson")
        assert cell.low == pytest.approx(100 * ci.low) and cell.high == pytest.approx(100 * ci.high)
        assert (cell.evaluation, cell.target) == ("wb", cell.column) and cell.attack in errors.attack_calls | {
            "clean": 1}
    md = (run / "tables.md").read_text()
    clean = errors.cell("clean", "mlp")
    assert f"| {errors.format(clean, spread=True)} |" in md and "95% interval" in md
    # the step pgd took (its step_size unset: 2.5 eps / steps), not step_size=null; the key keeps the None
    step = 2.5 * 0.2 / 3
    assert errors.attack_calls["pgd"]["resolved"] == {"step_size": step}
    assert errors.attack_calls["pgd"]["params"]["step_size"] is None and all(
        "resolved" not in call for call in errors.attack_calls.values() if call["plugin"] != "pgd")
    assert f"step_size={json.dumps(step)} (default)" in md and "step_size=null" not in md
    pgd_rows = [r for r in csv.DictReader((run / "cells.csv").open()) if r["attack_plugin"] == "pgd"]
    assert pgd_rows and all(float(r["step_size"]) == step for r in pgd_rows)  # the tidy column: the step it took
    assert {r["attack_resolved"] for r in pgd_rows} == {"step_size"}  # computed, not written in the suite


def test_distortion_cells_have_a_t_interval_and_keep_their_samples(tiny_reference):
    _, store, run, _ = tiny_reference
    results = RunResults.read(run)
    summary = next(t for t in results.tables if t.name == "summary")
    noise = next(c for c in summary.cells if c.row == "noise" and summary.metric(c).startswith("distortion"))
    values = summary.samples[(noise.row, noise.column)]  # read back from samples.parquet
    advset = next(k for k in noise.jobs if Store(store).entry(k).kind == "advset")
    stored = Store(store).load_advset(advset)
    assert np.allclose(values, stored.distortion["linf"][stored.success])
    assert noise.value == pytest.approx(values.mean()) and noise.interval == "t" and noise.n == values.size
    assert noise.low < noise.value < noise.high


def test_paired_rows_get_mcnemar_and_bad_pairs_are_refused(paired_run, tmp_path):
    root, out = paired_run
    errors = next(t for t in RunResults.read(root / "run").tables if t.name == "errors")
    assert [p["along"] for p in errors.paired] == errors.rows  # one test per row (the pair is two columns)
    for test in errors.paired:
        assert test["a_only"] + test["b_only"] <= test["n"] == 64 and 0 < test["p_value"] <= 1
    assert "McNemar exact p" in out.stdout and "McNemar exact p" in (root / "run" / "tables.md").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text((root / "tiny.toml").read_text().replace('paired = [["mlp", "cnn"]]', 'paired = [["mlp", "pgd"]]'))
    proc = rbench("validate", str(bad))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tables.errors.paired[0]" in proc.stderr and "are not two rows or two columns" in proc.stderr


def test_three_verdicts_and_the_samples_that_would_tell():
    tol = Tolerance(abs=2.0)
    cell = Cell("r", "c", 64.0, n=50, low=50.14, high=75.86)
    assert judge("t", "r", "c", cell, 65.0, tol, "T1", "").verdict == "within"
    unsure = judge("t", "r", "c", cell, 70.0, tol, "T1", "")
    assert unsure.verdict == "inconclusive" and not unsure.within_tolerance
    assert unsure.samples_needed == int(np.ceil(50 * (11.86 / 6.0) ** 2))
    assert judge("t", "r", "c", cell, 80.0, tol, "T1", "").verdict == "outside"
    bare = Cell("r", "c", 64.0)  # a metric that gives no interval: outside is outside
    assert judge("t", "r", "c", bare, 70.0, tol, "T1", "").verdict == "outside"
    assert judge("t", "r", "c", None, 70.0, tol, "T1", "").verdict == "missing"


def test_cells_csv_and_parquet_hold_one_row_per_cell_with_attack_params_as_columns(tiny_reference):
    _, _, run, values = tiny_reference
    with open(run / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(values)
    table = pq.read_table(run / "cells.parquet").to_pylist()
    assert [(r["table"], r["row"], r["column"]) for r in table] == [(r["table"], r["row"], r["column"]) for r in rows]
    by_cell = {(r["table"], r["row"], r["column"]): r for r in table}
    for key, value in values.items():
        assert by_cell[key]["value"] == (None if value is None else pytest.approx(value))
    fgsm = by_cell[("errors", "fgsm(eps=0.3)", "mlp")]
    assert (fgsm["attack_plugin"], fgsm["eps"], fgsm["n"]) == ("fgsm", 0.3, 64)
    pgd = by_cell[("errors", "pgd", "cnn")]
    assert (pgd["eps"], pgd["steps"], pgd["norm"]) == (0.2, 3, "linf")
    assert by_cell[("summary", "noise", "distortion (norm=linf)")]["metric_norm"] == "linf"
    assert by_cell[("transfer", "mlp", "cnn")]["source"] == "mlp" and by_cell[("transfer", "mlp", "cnn")]["model"] \
        == "cnn"
    assert all(r["store_keys"] for r in table if r["value"] is not None)
    assert {(r["dataset"], r["split"]) for r in table} == {("mnist", "test")}  # the images each cell is computed on


def test_the_tidy_files_are_written_and_read_bit_identical_without_pandas(tiny_reference, tmp_path):
    """pyarrow imports pandas wherever it is installed as soon as an array is built or read into numpy (0.4 s of a
    warm run): rbench's tidy files are built from their buffers and read from them (rbench.report.arrow_arrays).
    A warm run writes the three files again, bit-identical; ``rbench report`` reads the samples and outcomes back
    (checking the cells against them) and writes the cells and samples again."""
    suite, store, run, _ = tiny_reference
    files = ("cells.parquet", "samples.parquet", "outcomes.parquet")

    def imports(*args: str) -> set[str]:
        out, imported = rbench_imports(*args)
        assert out.returncode == 0, out.stderr
        return imported

    shutil.copytree(store, tmp_path / "store")
    warm = tmp_path / "warm"
    imported = imports("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(warm), "-q",
                       "--device", "cpu")
    assert "pyarrow.parquet" in imported and "pandas" not in imported
    # its figures copied (keyed by the rc files, not by matplotlib's rcParams), its t quantiles kept
    assert "matplotlib" not in imported and "scipy.special" not in imported
    for name in files:
        assert (warm / name).read_bytes() == (run / name).read_bytes(), name
    before = {name: (warm / name).stat().st_ino for name in files}
    imported = imports("report", str(warm), "-f", "tidy")
    assert "pyarrow.parquet" in imported and "pandas" not in imported
    for name in files[:2]:  # written anew (atomically: a new file), the same bytes
        assert (warm / name).stat().st_ino != before[name] and (warm / name).read_bytes() == (run / name).read_bytes()


@settings(max_examples=200, deadline=None)
@given(st.one_of(*(st.lists(st.one_of(st.none(), values), max_size=12) for values in (
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False), st.booleans(), st.text(max_size=5)))))
def test_arrow_columns_are_what_pyarrow_infers(values):
    import pyarrow as pa

    from rbench.report import arrow_arrays

    built, inferred = arrow_arrays.column(values), pa.array(values)
    built.validate(full=True)
    assert built.type == inferred.type and built.equals(inferred) and built.to_pylist() == values
    files = []
    for table in (arrow_arrays.table({"c": built}), pa.table({"c": values})):
        files.append(io.BytesIO())
        pq.write_table(table, files[-1])
    assert files[0].getvalue() == files[1].getvalue()  # the parquet files written, byte for byte
    present = [v for v in values if v is not None]
    if present and not isinstance(present[0], str):
        assert arrow_arrays.to_numpy(pa.array(present)).tolist() == present


def test_arrow_lists_and_reads_of_sliced_arrays():
    import pyarrow as pa

    from rbench.report import arrow_arrays

    parts = [np.array([3, 1], dtype=np.int64), np.array([], dtype=np.int64), np.array([7], dtype=np.int64)]
    assert arrow_arrays.lists(parts).equals(pa.array([[3, 1], [], [7]]))
    flags = pa.array([True, False, True, True, False, False, True, True, True, False])
    assert arrow_arrays.to_numpy(flags.slice(3, 6)).tolist() == flags.slice(3, 6).to_pylist()
    assert arrow_arrays.to_numpy(pa.array([[1, 2], [3], [4, 5, 6]]).slice(1, 2).offsets).tolist() == [2, 3, 6]
    for kind in (pa.float16(), pa.float32(), pa.float64(), pa.uint8(), pa.int16()):
        values = pa.array(np.arange(6).astype(kind.to_pandas_dtype())).slice(2, 3)
        read = arrow_arrays.to_numpy(values)
        assert read.dtype == kind.to_pandas_dtype() and read.tolist() == [2, 3, 4], kind
    for bad in (pa.array(["a"]), pa.array([1, None])):
        with pytest.raises(ValueError):
            arrow_arrays.to_numpy(bad)
    with pytest.raises(TypeError):
        arrow_arrays.column([1, "a"])


def test_load_results_gives_a_dataframe_or_dicts(tiny_reference, monkeypatch):
    _, _, run, values = tiny_reference
    frame = rb.load_results(run)
    assert len(frame) == len(values) and {"eps", "ci_low", "ci_high", "verdict"} <= set(frame.columns)
    errors = frame[frame.table == "errors"]  # README's example: the table in its own order
    pivot = errors.pivot(index="row", columns="column", values="value").loc[errors.row.unique(),
                                                                           errors.column.unique()]
    assert pivot.loc["clean", "mlp"] == pytest.approx(values[("errors", "clean", "mlp")])
    table = RunResults.read(run).tables[0]
    assert (list(pivot.index), list(pivot.columns)) == (table.rows, table.columns)
    monkeypatch.setitem(sys.modules, "pandas", None)  # pandas not installed
    rows = rb.load_results(run / "results.json")
    assert isinstance(rows, list) and len(rows) == len(values) and rows[0]["table"] == "errors"


def test_a_tampered_samples_file_is_refused(tiny_reference, tmp_path):
    import pyarrow as pa

    _, _, run, _ = tiny_reference
    shutil.copytree(run, tmp_path / "run")
    path = tmp_path / "run" / "samples.parquet"
    good = pq.read_table(path).to_pydict()
    bad = dict(good, value=[float("nan")] + good["value"][1:])
    pq.write_table(pa.table(bad), path)
    with pytest.raises(RbenchError, match="non-finite"):
        RunResults.read(tmp_path / "run")
    pq.write_table(pa.table(dict(good, table=["nope"] + good["table"][1:])), path)
    with pytest.raises(RbenchError, match="which results.json lacks"):
        RunResults.read(tmp_path / "run")
    path.write_bytes(b"not parquet")
    proc = rbench("report", str(tmp_path / "run"), "-f", "md")
    assert proc.returncode == 2 and "samples.parquet: not a samples file" in proc.stderr


def test_figures_follow_the_axes_and_redraw_without_the_store(tiny_reference, tmp_path):
    _, _, run, _ = tiny_reference
    for name in ("robustness_errors.png", "heatmap_transfer.png", "distribution_summary.png"):
        assert (run / name).stat().st_size > 5000, name
    assert not (run / "heatmap_errors.png").exists() and not (run / "robustness_transfer.png").exists()
    shutil.copytree(run, tmp_path / "run")
    for png in (tmp_path / "run").glob("*.png"):
        png.unlink()
    proc = rbench("report", str(tmp_path / "run"), "-f", "figures", "--store", str(tmp_path / "empty"))
    assert proc.returncode == 0, proc.stderr
    drawn = sorted(p.name for p in (tmp_path / "run").glob("*.png"))
    assert drawn == [
        "distribution_summary.png", "heatmap_transfer.png", "robustness_errors.png", "robustness_summary.png"]
    linked = re.findall(r"\[([a-z_]+\.png)\]\(\1\)", (run / "tables.md").read_text())
    assert sorted(linked) == drawn  # tables.md links every figure drawn, under its table


def test_a_warm_run_copies_its_figures_and_draws_a_tampered_one_again(tiny_reference, tmp_path):
    """The cold run kept every figure it drew in the store's figure cache; a warm run copies them (the cache
    holds the same files, each marked used), so its PNGs are the cold run's, byte for byte; a cached figure whose
    bytes no longer match its checksum is drawn again, not copied; ``rbench report`` finds them too."""
    suite, store, run, _ = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    cache = tmp_path / "store" / "library-cache" / "figures"
    before = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.png")}
    assert len(before) == len(list(run.glob("*.png"))) == 4
    tampered, planted, *_ = sorted(cache.glob("*.png"))
    tampered.write_bytes(tampered.read_bytes()[:-16] + bytes(16))
    # another figure's bytes under a figure's key, with their checksum: a copy shows them, a drawing would not
    other = tampered.read_bytes()[:-16] + b"another figure.."
    planted.write_bytes(other)
    planted.with_suffix(".sha256").write_text(hashlib.sha256(other).hexdigest())
    for path in cache.glob("*.png"):
        os.utime(path, ns=(1, 1))
    out = rbench("run", str(suite), "--store", str(tmp_path / "store"), "--run-dir", str(tmp_path / "warm"), "-q",
                 "--device", "cpu")
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in cache.glob("*.png")) == sorted(before)
    assert all(p.stat().st_mtime_ns > 1 for p in cache.glob("*.png"))  # each one used (or drawn again)
    copies = {png.name: (tmp_path / "warm" / png.name).read_bytes() for png in run.glob("*.png")}
    (planted_name,) = [name for name, copy in copies.items() if copy == other]  # copied, not drawn
    assert sum(copy == (run / name).read_bytes() for name, copy in copies.items()) == 3
    assert hashlib.sha256(tampered.read_bytes()).hexdigest() == tampered.with_suffix(".sha256").read_text()
    # re-drawn from the run folder (no per-sample outcomes read back): the same keys, nothing drawn anew
    out = rbench("report", str(tmp_path / "warm"), "-f", "figures", "--store", str(tmp_path / "store"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in cache.glob("*.png")) == sorted(before)
    assert (tmp_path / "warm" / planted_name).read_bytes() == other


def _table(cells, calls, rows, columns):
    return ResultTable("t", "T", rows, columns, "attack", "model", {"error": "%"}, {"error": ".1f"}, cells,
                       metric_of={f"{c.row}|{c.column}": "error" for c in cells}, attack_calls=calls)


def test_a_sweep_needs_one_varying_numeric_parameter():
    calls = {f"pgd{e}": {"plugin": "pgd", "params": {"eps": e, "steps": 10}} for e in (0.1, 0.2, 0.3)}
    rows = ["clean", "pgd0.3", "pgd0.1", "pgd0.2"]
    cells = [Cell(r, m, 10.0 * i + j, source=m, attack=r.replace("clean", "clean"), target=m)
             for i, r in enumerate(rows) for j, m in enumerate(["a", "b"])]
    lines = sweeps(_table(cells, calls, rows, ["a", "b"]), {("pgd0.2", "a"): 25.0})
    assert [s.label for s in lines] == ["a", "b"] and lines[0].parameter == "eps"
    assert lines[0].x == [0.0, 0.1, 0.2, 0.3] and [c.row for c in lines[0].cells] == rows[:1] + ["pgd0.1", "pgd0.2",
                                                                                                  "pgd0.3"]
    assert lines[0].published == [(0.2, 25.0)] and lines[1].published == []
    calls["pgd0.3"]["params"]["steps"] = 40  # two parameters vary: no sweep along eps
    assert sweeps(_table(cells, calls, rows, ["a", "b"]), {}) == []
    assert transfer_matrix(_table(cells, calls, rows, ["a", "b"])) is None  # rows are attacks, not sources


def test_the_same_attack_in_two_evaluations_makes_two_lines_and_a_failed_cell_is_marked():
    """Ulicny's table 2 has transfer and adaptive columns of the same attack labels: one line per model joined the
    two threat models at each x; a failed cell was dropped from its line without a trace."""
    calls = {f"n{e}": {"plugin": "gsn", "params": {"mean_abs": e}} for e in (0.1, 0.2)}
    columns = ["transfer 0.1", "transfer 0.2", "adaptive 0.1", "adaptive 0.2"]
    cells = [Cell("dae", column, value, evaluation=column.split()[0], source="dae", target="dae",
                  attack=f"n{column.split()[1]}") for column, value in zip(columns, (59.0, 57.0, 81.0, None),
                                                                           strict=True)]
    cells[3] = Cell("dae", "adaptive 0.2", None, error="job failed", evaluation="adaptive", source="dae",
                    target="dae", attack="n0.2")
    table = ResultTable("t", "T", ["dae"], columns, "model", "columns", {"error": "%"}, {"error": ".1f"}, cells,
                        metric_of={f"dae|{c}": "error" for c in columns}, attack_calls=calls)
    lines = sweeps(table, {})
    assert [(s.label, s.x, [c.value for c in s.cells], s.failed) for s in lines] == [
        ("dae (transfer)", [0.1, 0.2], [59.0, 57.0], []),
        ("dae (adaptive)", [0.1], [81.0], [0.2])]  # one point and its failure's mark, not joined to transfer
    whole = replace(cells[2], column="adaptive 0.2", value=70.0, attack="n0.2")
    lines = sweeps(replace(table, cells=[*cells[:3], whole]), {})
    assert [(s.label, s.x) for s in lines] == [("dae (transfer)", [0.1, 0.2]), ("dae (adaptive)", [0.1, 0.2])]
    three = {**calls, "n0.3": {"plugin": "gsn", "params": {"mean_abs": 0.3}}}
    more = [*cells, Cell("dae", "adaptive 0.3", 60.0, evaluation="adaptive", source="dae", target="dae",
                         attack="n0.3")]
    lines = sweeps(replace(table, columns=[*columns, "adaptive 0.3"], cells=more, attack_calls=three), {})
    adaptive = next(s for s in lines if s.label == "dae (adaptive)")
    assert adaptive.x == [0.1, 0.3] and adaptive.failed == [0.2]


def test_a_transfer_matrix_is_sources_by_targets():
    cells = [Cell(s, t, float(i), source=s, attack="pgd", target=t) for i, (s, t) in
             enumerate([("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")])]
    table = _table(cells, {}, ["a", "b"], ["a", "b"])
    assert transfer_matrix(table).tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_results_json_keeps_samples_out(tiny_reference):
    _, _, run, _ = tiny_reference
    raw = json.loads((run / "results.json").read_text())
    assert all("samples" not in t for t in raw["tables"])


@pytest.mark.parametrize(("field", "bad", "fragment"), [
    ("value", float("nan"), "it holds NaN"), ("high", float("inf"), "it holds Infinity"),
    ("value", "1.1", "value is '1.1', not a finite number"), ("low", True, "low is True"),
    ("n", -3, "n is -3, not a count")])
def test_a_results_file_with_a_non_finite_or_mistyped_cell_is_refused(tiny_reference, tmp_path, field, bad,
                                                                      fragment):
    """results.json is read back by report, compare and load_results: a cell edited to NaN, infinity or a
    non-number is one clear error naming the cell, never rendered as 'nan ±nan'."""
    _, _, run, _ = tiny_reference
    raw = json.loads((run / "results.json").read_text())
    cell = raw["tables"][0]["cells"][1]
    cell[field] = bad
    path = tmp_path / "results.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(RbenchError, match=fragment) as refused:
        RunResults.read(path)
    if not fragment.startswith("it holds"):
        assert f"cell ({cell['row']}, {cell['column']})" in str(refused.value)
    if field == "value" and bad != bad:  # NaN: the same through the CLI
        out = rbench("report", str(path), "-f", "md")
        assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert str(path) in out.stderr and "NaN" in out.stderr


@pytest.mark.parametrize("title", [
    "Fig. 8, machine side: accuracy (%) of six LeNets under gradient sign noise (no published numbers; no human side)",
    "WIDE " * 40, "M" * 150])
def test_a_long_title_stays_inside_its_figure(title):
    """Titles were wrapped at a fixed count of characters (90 in a 6-inch figure): the first line of the Uličný
    suite's Fig. 8 tables ran off the right edge, where the PNG cut it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from rbench.report.lines import draw
    from rbench.report.style import fit_title

    cells = [Cell(m, c, 10.0 * i, source=m, attack=c, target=m) for i, c in enumerate(["clean", "a"]) for m in "xy"]
    table = ResultTable("t", title, ["x", "y"], ["clean", "a"], "model", "attack", {"error": "%"}, {"error": ".1f"},
                        cells, metric_of={f"{c.row}|{c.column}": "error" for c in cells})
    fig = draw(table, {"x": ([0, 1], [0.0, 10.0]), "y": ([0, 1], [0.0, 20.0])})
    FigureCanvasAgg(fig).draw()
    drawn, whole = fig.axes[0].title.get_window_extent(), fig.bbox
    assert whole.x0 <= drawn.x0 and drawn.x1 <= whole.x1 and drawn.y1 <= whole.y1, (drawn, whole)
    assert fig.axes[0].get_title().replace("\n", " ").replace(" ", "") == title.replace(" ", "")  # nothing dropped
    assert fit_title("short", 6.0) == "short"
