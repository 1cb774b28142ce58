"""A run folder's results.json and the published files compared with it: what would show a wrong number, or
count one twice, is refused in one line (exit 2) by ``report`` and ``compare``."""

from __future__ import annotations

import json
import shutil

from support import cli_in_process


def _edited(run, tmp_path, name, edit):
    copy = tmp_path / name
    shutil.copytree(run, copy)
    raw = json.loads((copy / "results.json").read_text())
    edit(raw)
    (copy / "results.json").write_text(json.dumps(raw))
    return copy


def _errors(raw):
    return next(t for t in raw["tables"] if t["name"] == "errors")


def test_repeated_tables_and_cells_and_failed_cells_with_values_are_refused(tiny_reference, tmp_path, capsys):
    """An audit inserted a copy of one cell under another cell's labels: report showed it (75.0 where the run had
    100.0, exit 0), compare --run judged both; a cell with a value and an error read as a number in report and as
    failed in compare --run."""
    _, _, run, _ = tiny_reference

    def twin_cell(raw):
        cells = _errors(raw)["cells"]
        cells.insert(1, {**cells[0], "row": cells[1]["row"], "column": cells[1]["column"]})

    def twin_table(raw):
        raw["tables"].append(_errors(raw))

    def failed_with_value(raw):
        next(c for c in _errors(raw)["cells"] if c["value"] is not None)["error"] = "boom"

    for name, edit, message in [
            ("cell", twin_cell, "table 'errors': cell ("), ("table", twin_table, "table 'errors' is listed twice"),
            ("failed", failed_with_value, "and an error")]:
        folder = _edited(run, tmp_path, name, edit)
        for command in (["report", str(folder)], ["compare", str(folder), "--run", str(run)]):
            code, err = cli_in_process(capsys, *command)
            assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (name, command, err)
    code, err = cli_in_process(capsys, "report", str(run))
    assert code in (None, 0), err


def _published(path, row, column, value):
    path.write_text(f'[source]\ncitation = "x"\n\n[tables.errors]\ntolerance = {{ abs = 5.0 }}\nwhy = "w"\n'
                    f'figure = "f"\n\n[tables.errors.values]\n'
                    f'{json.dumps(row)} = {{ {json.dumps(column)} = {value} }}\n')
    return path


def test_published_files_are_counted_once_and_hold_percentages_where_the_run_does(tiny_reference, tmp_path, capsys):
    """--published x --published ./x (or a link to x) counted every cell twice (4/4 within tolerance for a run of
    2 cells); a published 500 beside a cell in % was judged "outside"."""
    _, _, run, _ = tiny_reference
    raw = json.loads((run / "results.json").read_text())
    cell = next(c for c in _errors(raw)["cells"] if c["value"] is not None)
    good = _published(tmp_path / "pub.toml", cell["row"], cell["column"], cell["value"])
    (tmp_path / "link.toml").symlink_to(good)
    code, err = cli_in_process(capsys, "compare", str(run), "--published", str(good))
    assert code in (None, 0), err
    for twice in (str(tmp_path / "." / "pub.toml"), str(tmp_path / "link.toml")):
        code, err = cli_in_process(capsys, "compare", str(run), "--published", str(good), "--published", twice)
        assert code == 2 and f"--published {twice}: the same file as --published {good}, given twice" in err, err
    for value in (500.0, -5.0):
        bad = _published(tmp_path / "bad.toml", cell["row"], cell["column"], value)
        code, err = cli_in_process(capsys, "compare", str(run), "--published", str(bad))
        assert code == 2 and "is no percentage, and the table's cell is in %" in err and f"{value:g}" in err, err


def test_a_recorded_published_file_that_does_not_fit_the_run_is_refused(tiny_reference, tmp_path, capsys):
    """results.json keeps each published file as the run read it; one edited in (a -5 beside an error rate, a
    table the run lacks, no document at all) was compared with as if the suite's loading had checked it, and a
    broken one was named as plain "results.json", not the file."""
    _, _, run, _ = tiny_reference
    raw = json.loads((run / "results.json").read_text())
    cell = next(c for c in _errors(raw)["cells"] if c["value"] is not None)

    def recording(value, table="errors", doc=None):
        def edit(raw):
            raw["published"] = ["/papers/pub.toml"]
            raw["published_docs"] = {"/papers/pub.toml": doc if doc is not None else {
                "source": {"citation": "x"}, "tables": {table: {
                    "figure": "f", "why": "w", "tolerance": {"abs": 5.0},
                    "values": {cell["row"]: {cell["column"]: value}}}}}}
        return edit

    folder = _edited(run, tmp_path, "good", recording(cell["value"]))
    code, err = cli_in_process(capsys, "compare", str(folder))
    assert code in (None, 0), err
    for name, edit, message in [
            ("percent", recording(-5.0), f"values.{cell['row']}.{cell['column']}: -5 is no percentage"),
            ("table", recording(1.0, table="nope"), "the run has no table 'nope'"),
            ("document", recording(1.0, doc={"tables": {}}), "not a published document")]:
        folder = _edited(run, tmp_path, name, edit)
        for command in (["report", str(folder)], ["compare", str(folder)]):
            code, err = cli_in_process(capsys, *command)
            assert code == 2 and len(err.strip().splitlines()) == 1, (name, command, err)
            assert f"{folder / 'results.json'}: " in err and "published_docs['/papers/pub.toml']: " in err, err
            assert message in err, (name, err)


def test_a_warm_run_refuses_an_rbench_data_that_names_no_folder(tiny_reference, tmp_path, capsys, monkeypatch):
    """Every job stored, no data file is read; a typo in RBENCH_DATA still passed silently (exit 0), though the
    README calls it an error. A dry run, which plans what the run would do, refuses it alike (it said all was
    well, exit 0)."""
    suite, store, _, _ = tiny_reference
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    monkeypatch.setenv("RBENCH_DATA", str(tmp_path / "no-such-folder"))
    for dry in ([], ["--dry-run"]):
        code, err = cli_in_process(capsys, "run", str(suite), "--store", str(copy), "--run-dir",
                                   str(tmp_path / "run"), "-q", "--device", "cpu", *dry)
        assert code == 2 and "RBENCH_DATA=" in err and "is not a folder (missing)" in err, (dry, err)
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists(), err

