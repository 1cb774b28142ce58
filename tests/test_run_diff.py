"""``rbench compare RUN --run OTHER``: two runs cell by cell, with the difference's 95% interval (MOVER)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from support import cli_in_process, rbench

from rbench.errors import RbenchError
from rbench.estimate import wilson
from rbench.report.tidy import read_outcomes, write_outcomes
from rbench.results import Cell, ResultTable, RunResults, outcomes_digest
from rbench.run_diff import chance_note, diff_runs, difference_interval, paired_interval


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
    kept = [Cell(r, c, cell.value, error=cell.error, n=cell.n, low=cell.low, high=cell.high, interval=cell.interval,
                 samples_sha256=cell.samples_sha256) for (r, c), cell in cells.items() if cell is not None]
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
    assert chance_note(diff_runs(a, b)).startswith("1 of 2 cells judged by an interval differ; ")  # big; small
    assert chance_note(diff_runs(exact, noisy)) is None  # nothing judged by an interval
    na = next(d for d in diff_runs(a, b) if d.row == "na")
    assert na.note == "not applicable in the run" and na.b == 25.0
    b.tables[0].metric_of["big|x"] = "accuracy"  # the suite changed what the cell measures
    big = next(d for d in diff_runs(a, b) if d.row == "big")
    assert big.verdict == "not comparable" and big.note == "error (%) vs accuracy (no unit)" and big.delta is None
    b.tables[0].cell("big", "x").metric = "error"  # a cell's own metric wins over the old results' map
    assert next(d for d in diff_runs(a, b) if d.row == "big").verdict == "differs"


def test_the_same_value_from_other_samples_is_not_equal():
    """10 of 70 on one image subset and 10 of 70 on another are the same number, not the same measurement: "equal"
    is kept for cells whose recorded per-sample results (their outcomes' or values' digests) agree too."""
    a, b = _results({("r", "x"): _rate(10, 70)}), _results({("r", "x"): _rate(10, 70)})
    ca, cb = a.tables[0].cell("r", "x"), b.tables[0].cell("r", "x")
    ca.outcomes_sha256 = cb.outcomes_sha256 = "1" * 64
    assert diff_runs(a, b)[0].verdict == "equal"
    cb.outcomes_sha256 = "2" * 64
    diff = diff_runs(a, b)[0]
    assert diff.verdict == "no difference shown" and diff.note == "the same value from other per-sample results"
    ca.outcomes_sha256 = ""  # results written before the digests: nothing tells them apart
    assert diff_runs(a, b)[0].verdict == "equal"
    mean_a = _results({("d", "x"): Cell("d", "x", 0.5, n=9, low=0.4, high=0.6, interval="t", samples_sha256="a")})
    mean_b = _results({("d", "x"): Cell("d", "x", 0.5, n=9, low=0.4, high=0.6, interval="t", samples_sha256="b")})
    assert diff_runs(mean_a, mean_b)[0].verdict == "no difference shown"


def test_the_command_puts_two_run_folders_side_by_side(tiny_reference, tmp_path, capsys):
    _, _, run, _ = tiny_reference
    other = tmp_path / "other"
    shutil.copytree(run, other)
    same = rbench("compare", str(run), "--run", str(other), "-f", "json")
    assert same.returncode == 0, same.stderr
    kept = read_outcomes(run, RunResults.read(run))
    assert kept and json.loads(same.stdout)["summary"].endswith(f"({len(kept)} paired on their samples)")
    raw = json.loads((other / "results.json").read_text())
    errors = next(t for t in raw["tables"] if t["name"] == "errors")
    moved = next(c for c in errors["cells"] if c["low"] is not None and c["value"] > 50)
    fewer = round(moved["value"] * moved["n"] / 100) - moved["n"] // 2  # half the samples fewer hits: a whole rate
    moved.update(value=100 * fewer / moved["n"], low=100 * wilson(fewer, moved["n"])[0],
                 high=100 * wilson(fewer, moved["n"])[1])
    (other / "results.json").write_text(json.dumps(raw))
    # the edited cell no longer agrees with the outcomes its run kept: refused, never paired on wrong outcomes
    code, err = cli_in_process(capsys, "compare", str(run), "--run", str(other))
    assert code == 2 and "outcomes.parquet: cell (" in err and "its outcomes give" in err, err
    (other / "outcomes.parquet").unlink()  # a run without its outcomes: taken as independent, and said so
    proc = rbench("compare", str(run), "--run", str(other), "-f", "json")
    assert proc.returncode == 0, proc.stderr
    assert f"{other / 'outcomes.parquet'} is missing, though the run's results.json records the per-sample " \
        "outcomes of" in proc.stderr.replace("\n", " ")
    out = json.loads(proc.stdout)
    [changed] = [d for d in out["cells"] if d["verdict"] != "equal"]
    assert (changed["table"], changed["row"], changed["column"], changed["verdict"]) == (
        "errors", moved["row"], moved["column"], "differs")
    assert changed["delta"] == pytest.approx(100 * (moved["n"] // 2) / moved["n"])
    assert out["summary"].startswith("1 differs, ")
    assert out["by_chance"] is None  # one cell judged by an interval (the rest are equal): its own 95% says it
    raw["profile"] = "quick"  # another profile, and fewer samples behind one cell (a mean's: a rate's n is checked)
    next(c for t in raw["tables"] for c in t["cells"] if c["n"] and c["interval"] == "t")["n"] -= 1
    (other / "samples.parquet").unlink()  # whose values count the old n
    (other / "results.json").write_text(json.dumps(raw))
    code, err = cli_in_process(capsys, "compare", str(run), "--run", str(other))
    assert code is None or code == 0
    assert "the runs are of two profiles (none, quick)" in err and "1 cell of both runs rests on other numbers" in err
    code, err = cli_in_process(capsys, "compare", str(run), "--run", str(other), "--published", str(other))
    assert code == 2 and "--run and --published: give one" in err
    for table in raw["tables"]:
        table["name"] = "renamed_" + table["name"]
    raw["suite"] = "another"
    (other / "results.json").write_text(json.dumps(raw))
    code, err = cli_in_process(capsys, "compare", str(run), "--run", str(other))
    assert code == 2 and "share no table cell (suites 'tiny' and 'another'): nothing to compare" in err, err


def _outcomes(hits: np.ndarray, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(hits.size) if order is None else order
    return index, hits if order is None else hits[order]


def test_paired_outcomes_tell_a_small_consistent_change_from_noise():
    """1000 samples, 7 of them flipped one way: the independent interval cannot tell (it includes 0), the paired
    one (Newcombe 1998b, method 10) can; outcomes listed in another order pair by index; different sample sets
    do not pair; uncorrelated outcomes give the independent interval."""
    rng = np.random.default_rng(0)
    a = rng.random(1000) < 0.3
    b = a.copy()
    b[np.flatnonzero(~a)[:7]] = True
    low, high, n = paired_interval(_outcomes(a), _outcomes(b, rng.permutation(1000)))
    assert n == 1000 and low < -0.7 < high < 0  # a - b = -0.7 points
    independent = difference_interval(_rate(int(a.sum()), 1000), _rate(int(b.sum()), 1000))
    assert independent[0] < 0 < independent[1] and independent[1] - independent[0] > 5 * (high - low)
    assert paired_interval(_outcomes(a), (np.arange(1, 1001), b)) is None
    # phi = 0: a 2x2 table with independent margins (25 / 25 / 25 / 25) gives the independent MOVER interval
    x = np.repeat([True, True, False, False], 25)
    y = np.tile(np.repeat([True, False], 25), 2)
    paired = paired_interval(_outcomes(x), _outcomes(y))
    assert paired[:2] == pytest.approx(difference_interval(_rate(50, 100), _rate(50, 100)))


def test_outcomes_pair_only_on_the_same_images():
    """Indices pair two runs' outcomes only where they name the same images: an audit compared a cell computed on
    Fashion-MNIST with one on notMNIST ("paired on 30 samples", an image with an unrelated one), and one on notMNIST
    files relabelled since ("no difference shown" for 73.3 vs 90.0). Each evaluation's images are recorded in
    results.json (``data_calls``); results written before do not say which images they are: not paired."""
    rng = np.random.default_rng(1)
    a = rng.random(300) < 0.3
    b = a.copy()
    b[np.flatnonzero(~a)[:9]] = True
    cells = {("r", "c"): (_rate(int(a.sum()), 300), _rate(int(b.sum()), 300))}
    outcomes = ({("t", "r", "c"): _outcomes(a)}, {("t", "r", "c"): _outcomes(b)})

    def run(images: dict | None, which: int) -> RunResults:
        results = _results({key: pair[which] for key, pair in cells.items()})
        for cell in results.tables[0].cells:
            cell.evaluation = "ev"
        if images is not None:
            results.tables[0].data_calls = {"ev": images}
        return results

    letters = {"dataset": "nm", "plugin": "notmnist", "params": {}, "split": "test", "n": 300, "subset_seed": 1,
               "content": "66751d7f" * 8}
    # n, the subset seed and the suite's name for the dataset only choose among the same images: paired
    (same,) = diff_runs(run(letters, 0), run({**letters, "dataset": "other", "n": 500, "subset_seed": 2}, 1),
                        *outcomes)
    assert same.paired == 300 and same.verdict == "differs", same
    for first, second in ((None, None), (letters, None), (None, letters)):  # results written before: not paired
        (unknown,) = diff_runs(run(first, 0), run(second, 1), *outcomes)
        assert unknown.paired is None and unknown.verdict == "no difference shown", unknown
        assert unknown.note.startswith("not paired: the") and unknown.note.endswith("does not record its images")
    (relabelled,) = diff_runs(run(letters, 0), run({**letters, "content": "0" * 64}, 1), *outcomes)
    assert relabelled.paired is None and relabelled.verdict == "no difference shown", relabelled
    assert relabelled.note == ("not paired: other files (notmnist test (content 66751d7f) vs notmnist test "
                               "(content 00000000))")
    # the same name for another plugin (a review: a suite's "mnist" made Fashion-MNIST, paired with MNIST)
    fashion = {"dataset": "nm", "plugin": "fashion-mnist", "params": {}, "split": "test", "n": 300, "subset_seed": 1}
    (other,) = diff_runs(run(letters, 0), run(fashion, 1), *outcomes)
    assert other.verdict == "not comparable" and other.delta is None, other
    assert other.note == "other images: notmnist test (content 66751d7f) vs fashion-mnist test"
    # a dataset plugin of another version (its load may have changed) or distribution: not paired
    (newer,) = diff_runs(run(letters, 0), run({**letters, "version": "2.0"}, 1), *outcomes)
    assert newer.paired is None and newer.note == ("not paired: another plugin version (notmnist test (content "
                                                   "66751d7f) vs notmnist 2.0 test (content 66751d7f))")
    # a parameter the plugin added since, recorded at its default by the newer run only: the same images
    from pydantic import BaseModel

    from rbench.manager import PluginInfo, get_registry

    class Grown:
        name = "grown"

        class Params(BaseModel):
            invert: bool = False

    datasets = get_registry().plugins["dataset"]
    datasets["grown"] = PluginInfo("dataset", "grown", "0", "tests", "tests", Grown())
    try:
        grown = {**letters, "plugin": "grown"}
        (added,) = diff_runs(run(grown, 0), run({**grown, "params": {"invert": False}}, 1), *outcomes)
        assert added.paired == 300, added
        (inverted,) = diff_runs(run(grown, 0), run({**grown, "params": {"invert": True}}, 1), *outcomes)
        assert inverted.verdict == "not comparable", inverted
    finally:
        del datasets["grown"]


def _table(a: int, b: int, c: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Two runs' outcomes on a + b + c + d samples: both 1 on a, only the first on b, only the second on c."""
    first = np.repeat([True, True, False, False], [a, b, c, d])
    second = np.repeat([True, False, True, False], [a, b, c, d])
    return first, second


@pytest.mark.parametrize(("counts", "expected"), [
    ((20, 12, 2, 16), (0.0562, 0.3292)), ((35, 14, 0, 1), (0.1461, 0.4175)),
    ((30, 0, 0, 24), (-0.0358, 0.0358)), ((27, 0, 0, 27), (-0.0351, 0.0351))])
def test_paired_interval_reproduces_newcombe_s_table(counts, expected):
    """Newcombe (1998b), Table III, method 10 (with his correction of phi: two runs that agree on every sample
    still get an interval, not [0, 0])."""
    first, second = _table(*counts)
    low, high, n = paired_interval(_outcomes(first), _outcomes(second))
    assert n == sum(counts) and (round(low / 100, 4), round(high / 100, 4)) == expected


def test_paired_interval_covers_the_true_difference():
    """Simulated paired outcomes (two runs of one model: most samples agree): 95% coverage of the true difference
    of the two rates, at least 93% over 1500 draws of 300 samples."""
    rng = np.random.default_rng(1)
    held = 0
    for _ in range(1500):
        a = rng.random(300) < 0.4
        flip = rng.random(300)
        b = np.where(flip < 0.03, True, np.where(flip < 0.05, False, a))  # b gains 3% of 60% and loses 2% of 40%
        low, high, _ = paired_interval(_outcomes(a), _outcomes(b))
        true = 100 * (0.4 - (0.4 * 0.95 + 0.03))  # P(a) - P(b) = 0.4 - (0.4*(1-0.05) + 0.03) = -1.0 points
        held += low <= true <= high
    assert held / 1500 >= 0.93


def test_outcomes_file_round_trips_and_is_checked_against_the_results(tmp_path):
    """outcomes.parquet holds each rate cell's indices and outcomes; read back, it must agree with results.json."""
    results = _results({("r1", "x"): _rate(3, 5), ("r2", "x"): _rate(1, 5)})
    table = results.tables[0]
    table.outcomes = {("r1", "x"): (np.array([4, 2, 0, 1, 3]), np.array([1, 1, 1, 0, 0], dtype=bool)),
                      ("r2", "x"): (np.array([0, 1, 2, 3, 4]), np.array([0, 0, 1, 0, 0], dtype=bool))}
    for key, kept in table.outcomes.items():
        table.cell(*key).outcomes_sha256 = outcomes_digest(*kept)
    assert write_outcomes(results, tmp_path) == tmp_path / "outcomes.parquet"
    back = read_outcomes(tmp_path, results)
    assert back[("t", "r1", "x")][0].tolist() == [4, 2, 0, 1, 3] and back[("t", "r2", "x")][1].tolist() == \
        [False, False, True, False, False]
    assert read_outcomes(tmp_path / "elsewhere", results) == {}  # no file: nothing to pair on
    # the same count of hits on other samples (outcomes shuffled): the digest results.json recorded tells
    table.outcomes[("r1", "x")] = (np.array([4, 2, 0, 1, 3]), np.array([0, 1, 1, 1, 0], dtype=bool))
    write_outcomes(results, tmp_path)
    with pytest.raises(RbenchError, match=r"cell \(r1, x\) of table 't': its outcomes are not those results.json"):
        read_outcomes(tmp_path, results)
    table.outcomes[("r1", "x")] = (np.array([4, 2, 0, 1, -3]), np.array([1, 1, 1, 0, 0], dtype=bool))
    write_outcomes(results, tmp_path)
    with pytest.raises(RbenchError, match="none below 0 expected"):
        read_outcomes(tmp_path, results)
    table.outcomes[("r1", "x")] = (np.array([4, 2, 0, 1, 3]), np.array([1, 1, 1, 0, 0], dtype=bool))
    write_outcomes(results, tmp_path)
    table.cell("r1", "x").value = 40.0  # results.json says 2/5, the outcomes 3/5
    with pytest.raises(RbenchError, match=r"cell \(r1, x\) of table 't': its outcomes give 60, results.json 40"):
        read_outcomes(tmp_path, results)
    (tmp_path / "outcomes.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(RbenchError, match="not an outcomes file written by rbench"):
        read_outcomes(tmp_path, results)


def _worst_row(eps: float) -> str:
    """A row of the robust accuracy under FGSM at ``eps``, labelled like the other rows' metrics."""
    call = f'plugin = "worst_case", params = {{ attacks = [{{ attack = "fgsm(eps={eps})" }}], statistic = "accuracy" }}'
    return f'{{ label = "fgsm {eps}", attack = "clean", metric = {{ {call}, label = "robust accuracy" }} }}'


WORST_TABLE = f"""
[tables.worst]
evaluation = "wb"
columns = "model"
rows = [
  {_worst_row(0.1)},
  {_worst_row(0.3)},
  {{ label = "clean", attack = "clean", metric = {{ plugin = "accuracy", label = "robust accuracy" }} }},
]
"""


def test_rows_sharing_a_metric_label_record_each_their_own_call(tiny_reference, tmp_path):
    """Three rows labelled "robust accuracy" by other metric calls (quickstart's worst_case table): every cell
    records its own plugin and params (one call per label was kept, the last row's, so cells.csv and the
    reporters named eps 0.3 behind the eps 0.1 row), and two runs whose calls differ are not compared."""
    suite, store, _, _ = tiny_reference
    shutil.copytree(store, tmp_path / "store")
    wide = tmp_path / "wide.toml"
    wide.write_text(suite.read_text() + WORST_TABLE)
    run = tmp_path / "run"
    out = rbench("run", str(wide), "--store", str(tmp_path / "store"), "--run-dir", str(run), "-q", "--only", "worst")
    assert out.returncode == 0, out.stderr
    results = RunResults.read(run)
    table = next(t for t in results.tables if t.name == "worst")
    calls = {row: table.metric_call(table.cell(row, "mlp")) for row in table.rows}
    assert calls["fgsm 0.1"]["params"]["attacks"][0]["attack"] == "fgsm(eps=0.1)"
    assert calls["fgsm 0.3"]["params"]["attacks"][0]["attack"] == "fgsm(eps=0.3)"
    assert calls["clean"]["plugin"] == "accuracy"
    assert {table.metric(c) for c in table.cells} == {"robust accuracy"}
    # every cell's own attack is clean: the attacks its metric reads are listed under it all the same
    assert {label: call["params"]["eps"] for label, call in table.attack_calls.items()} == {
        "fgsm(eps=0.1)": 0.1, "fgsm(eps=0.3)": 0.3}
    assert "- fgsm(eps=0.1): fgsm(" in (run / "tables.md").read_text()
    import pyarrow.parquet as pq

    tidy = pq.read_table(run / "cells.parquet").to_pandas()
    shown = tidy[(tidy["table"] == "worst") & (tidy["column"] == "mlp")].set_index("row")
    assert [json.loads(a)[0]["attack"] for a in shown.loc[["fgsm 0.1", "fgsm 0.3"], "metric_attacks"]] == \
        ["fgsm(eps=0.1)", "fgsm(eps=0.3)"]
    other = _swapped_calls(results, "worst", "fgsm 0.1", "fgsm 0.3")
    diffs = {(d.row, d.column): d for d in diff_runs(results, other) if d.table == "worst"}
    assert diffs[("fgsm 0.1", "mlp")].verdict == "not comparable" and "fgsm(eps=0.3)" in diffs[("fgsm 0.1", "mlp")].note
    assert diffs[("clean", "mlp")].verdict == "equal"
    import copy

    older = copy.deepcopy(results)  # recorded before a parameter was added (at its default): the same call
    table = next(t for t in older.tables if t.name == "worst")
    recorded = table.metric_calls[table.cell("fgsm 0.1", "mlp").call]["params"]
    dropped = next(k for k in ("broken_by", "only_by", "gap_to") if k in recorded)
    del recorded[dropped]
    diffs = {(d.row, d.column): d for d in diff_runs(results, older) if d.table == "worst"}
    assert diffs[("fgsm 0.1", "mlp")].verdict == "equal"


def _swapped_calls(results: RunResults, name: str, a: str, b: str) -> RunResults:
    """A copy of ``results`` whose table ``name`` gives row ``a``'s cells row ``b``'s metric call (values kept)."""
    import copy

    other = copy.deepcopy(results)
    table = next(t for t in other.tables if t.name == name)
    for cell in table.cells:
        if cell.row == a:
            cell.call = table.cell(b, cell.column).call
    return other
