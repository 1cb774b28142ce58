"""``rbench compare RUN --run OTHER``: two runs cell by cell, with the difference's 95% interval (MOVER)."""

from __future__ import annotations

import json
import shutil

import pytest
from support import cli_in_process, rbench

from rbench.estimate import wilson
from rbench.results import Cell, ResultTable, RunResults
from rbench.run_diff import diff_runs, difference_interval


def _rate(k: int, n: int) -> Cell:
    low, high = wilson(k, n)
    return Cell("r", "c", 100 * k / n, n=n, low=100 * low, high=100 * high, interval="wilson")


def test_two_wilson_rates_give_newcombe_s_interval_of_their_difference():
    """Newcombe (1998), Table II, example (a): 56/70 vs 48/80, method 10: 0.0524 to 0.3339."""
    low, high = difference_interval(_rate(56, 70), _rate(48, 80))
    assert (round(low / 100, 4), round(high / 100, 4)) == (0.0524, 0.3339)


def _results(cells: dict[tuple[str, str], Cell | None]) -> RunResults:
    rows = list(dict.fromkeys(r for r, _ in cells))
    columns = list(dict.fromkeys(c for _, c in cells))
    kept = [Cell(r, c, cell.value, error=cell.error, n=cell.n, low=cell.low, high=cell.high, interval=cell.interval)
            for (r, c), cell in cells.items() if cell is not None]
    table = ResultTable("t", "T", rows, columns, "rows", "columns", {"error": "%"}, {"error": ".1f"}, kept,
                        metric_of={f"{c.row}|{c.column}": "error" for c in kept})
    return RunResults("s", "", None, [], {}, [table])


def test_each_pair_of_cells_gets_one_verdict():
    a = _results({("big", "x"): _rate(56, 70), ("small", "x"): _rate(30, 70), ("same", "x"): _rate(10, 70),
                  ("bare", "x"): Cell("bare", "x", 5.0), ("broken", "x"): Cell("broken", "x", None, error="boom"),
                  ("mine", "x"): _rate(1, 2), ("na", "x"): Cell("na", "x", None)})
    b = _results({("big", "x"): _rate(48, 80), ("small", "x"): _rate(33, 70), ("same", "x"): _rate(10, 70),
                  ("bare", "x"): Cell("bare", "x", 6.0), ("broken", "x"): _rate(3, 10),
                  ("theirs", "x"): _rate(1, 3), ("na", "x"): _rate(1, 4)})
    verdicts = {(d.row, d.verdict) for d in diff_runs(a, b)}
    assert verdicts == {("big", "differs"), ("small", "no difference shown"), ("same", "equal"),
                        ("bare", "no interval"), ("broken", "failed"), ("mine", "only in one run"),
                        ("theirs", "only in one run"), ("na", "only in one run")}
    big = next(d for d in diff_runs(a, b) if d.row == "big")
    assert big.delta == pytest.approx(20.0) and big.low == pytest.approx(5.243, abs=1e-3)
    exact = _results({("d", "x"): Cell("d", "x", 0.1, n=9, low=0.1, high=0.1, interval="t")})
    noisy = _results({("d", "x"): Cell("d", "x", 0.1 + 1e-12, n=9, low=0.1 + 1e-12, high=0.1 + 1e-12, interval="t")})
    assert diff_runs(exact, noisy)[0].verdict == "equal"  # zero-width intervals: float noise is not "differs"
    na = next(d for d in diff_runs(a, b) if d.row == "na")
    assert na.note == "not applicable in the run" and na.b == 25.0
    b.tables[0].metric_of["big|x"] = "accuracy"  # the suite changed what the cell measures
    big = next(d for d in diff_runs(a, b) if d.row == "big")
    assert big.verdict == "not comparable" and big.note == "error (%) vs accuracy (no unit)" and big.delta is None


def test_the_command_puts_two_run_folders_side_by_side(tiny_reference, tmp_path, capsys):
    _, _, run, _ = tiny_reference
    other = tmp_path / "other"
    shutil.copytree(run, other)
    raw = json.loads((other / "results.json").read_text())
    errors = next(t for t in raw["tables"] if t["name"] == "errors")
    moved = next(c for c in errors["cells"] if c["low"] is not None and c["value"] > 50)
    moved.update(value=moved["value"] - 50, low=moved["low"] - 50, high=moved["high"] - 50)
    (other / "results.json").write_text(json.dumps(raw))
    proc = rbench("compare", str(run), "--run", str(other), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    [changed] = [d for d in out["cells"] if d["verdict"] != "equal"]
    assert (changed["table"], changed["row"], changed["column"], changed["verdict"]) == (
        "errors", moved["row"], moved["column"], "differs")
    assert changed["delta"] == pytest.approx(50.0) and out["summary"].startswith("1 differs, ")
    code, err = cli_in_process(capsys, "compare", str(run), "--run", str(other), "--published", str(other))
    assert code == 2 and "--run and --published: give one" in err
    for table in raw["tables"]:
        table["name"] = "renamed_" + table["name"]
    raw["suite"] = "another"
    (other / "results.json").write_text(json.dumps(raw))
    (other / "samples.parquet").unlink()  # its cells name the old tables (and it is checked against them)
    code, err = cli_in_process(capsys, "compare", str(run), "--run", str(other))
    assert code == 2 and "share no table cell (suites 'tiny' and 'another'): nothing to compare" in err, err
