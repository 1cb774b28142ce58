"""Pieces the paper reproductions stand on: disjoint training parts, amplification, operator-norm bounds,
explicit table selectors, and the comparison with published tables."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from support import REPO, rbench

from rbench.compare import Published, Tolerance, compare_table, load_published
from rbench.errors import RbenchError, SuiteError
from rbench.inputs import load_slice
from rbench.manager import get_registry
from rbench.plugins import get_plugin
from rbench.plugins.metrics.operator_norm import layer_bounds
from rbench.results import Cell, ResultTable
from rbench.specs import DataSlice
from rbench.suite import load_suite


def _data(**extra):
    version = get_registry().get("dataset", "mnist").version  # what a job's key names
    spec = {"dataset": {"plugin": "mnist", "version": version, "params": {}}, "split": "train", "n": None,
            "subset_seed": 0}
    return DataSlice.from_dict({**spec, **extra})


def test_parts_are_disjoint_halves_and_n_takes_a_subset_of_a_part():
    _, _, p1 = load_slice(_data(parts=[30000, 30000], part=0))
    _, _, p2 = load_slice(_data(parts=[30000, 30000], part=1))
    assert len(p1) == len(p2) == 30000 and not np.intersect1d(p1, p2).size
    _, _, small = load_slice(_data(parts=[30000, 30000], part=1, n=100))
    assert len(small) == 100 and np.isin(small, p2).all()


def test_amplify_rescales_each_perturbation_to_the_rms_size():
    amp = get_plugin("transform", "amplify")
    x = torch.full((3, 1, 28, 28), 0.5)
    d = torch.zeros_like(x)
    d[0, 0, :20, :20] = 0.02  # spread enough that the amplified pixels stay inside [0, 1]
    d[1] = 0.001 * torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = amp.apply(x, x + d, amp.Params(size=0.1))
    rms = (out - x).flatten(1).norm(dim=1) / 28
    assert torch.allclose(rms[:2], torch.tensor([0.1, 0.1]), atol=1e-4)
    assert torch.equal(out[2], x[2])  # nothing found: nothing to amplify
    assert out.min() >= 0 and out.max() <= 1


def test_operator_norm_bounds_hold_for_linear_and_conv_layers():
    torch.manual_seed(0)
    net = get_plugin("model", "lenet").build(get_plugin("model", "lenet").Params(channels=[4, 6], hidden=16))
    bounds = dict(layer_bounds(net))
    conv = net.net[0]
    x = torch.randn(1, 1, 28, 28)
    for _ in range(100):  # power iteration on the conv's linear part: a lower estimate of its true norm
        y = torch.nn.functional.conv2d(x, conv.weight)
        x = torch.nn.functional.conv_transpose2d(y, conv.weight)
        x = x / x.norm()
    true_norm = torch.nn.functional.conv2d(x, conv.weight).norm().item()
    assert true_norm <= bounds["net.0"] + 1e-6
    linear = next(m for m in net.modules() if isinstance(m, torch.nn.Linear))
    assert bounds["net.7"] == pytest.approx(torch.linalg.svdvals(linear.weight).max().item(), rel=1e-5)
    assert len(bounds) == 4


def test_spectral_norms_are_the_largest_singular_values():
    from rbench.plugins.metrics.operator_norm import spectral_norms

    torch.manual_seed(0)
    for shape in [(100, 784), (784, 100), (10, 10), (3, 3, 32, 16), (5, 5, 1, 6)]:
        w = torch.randn(*shape) * 0.05
        want = torch.linalg.svdvals(w.double())[..., 0]
        assert torch.allclose(spectral_norms(w), want, rtol=1e-12, atol=0), shape
    assert float(spectral_norms(torch.zeros(4, 7))) == 0.0 == float(spectral_norms(torch.zeros(0, 7)))


def test_operator_norm_is_computed_once_per_model_object_never_per_key():
    """The bounds are kept per model object for the other layers' cells of that model; a model of the same cell
    key ("model", as the metric kit names every model) but other weights gets its own."""
    from types import SimpleNamespace

    from rbench.metric import CellData, CellKeys

    metric = get_plugin("metric", "operator_norm")
    plugin = get_plugin("model", "lenet")
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(plugin.build(plugin.Params(channels=[4, 6], hidden=16)))
    values = []
    for net in nets:
        outputs = SimpleNamespace(model=lambda key, net=net: net)
        cell = CellData("m", "clean", "m", CellKeys(predictions="p", model="model"), outputs, "e")
        values.append([metric.compute(cell, metric.Params(layer=layer)) for layer in ("product", 1, 4)])
    for net, (product, first, last) in zip(nets, values, strict=True):
        bounds = [b for _, b in layer_bounds(net)]
        assert (first, last) == (bounds[0], bounds[3]) and product == pytest.approx(float(np.prod(bounds)))
    assert values[0] != values[1]


def test_selector_tables_check_every_cell(write_suite):
    base = """
[suite]
name = "s"
[datasets.mnist]
plugin = "mnist"
[models.a]
plugin = "mlp"
dataset = "mnist"
[models.b]
plugin = "mlp"
dataset = "mnist"
parts = [100, 100]
part = 1
[attacks.noise]
plugin = "gaussian_noise"
params = { sigma = 0.1 }
[attacks.amp]
transform = "amplify"
input = "noise"
params = { size = 0.2 }
[evaluations.ev]
dataset = "mnist"
n = 10
sources = ["a", "b"]
targets = ["a", "b"]
attacks = ["noise", "amp"]
[tables.t]
evaluation = "ev"
metric = "error"
columns = "target"
rows = [{ label = "noise on a", source = "a", attack = "noise" }, { label = "amp on b", source = "b", attack = "amp" }]
"""
    suite = load_suite(write_suite(base))
    cells = suite.tables["t"].cells
    assert cells[("amp on b", "a")].source == "b" and cells[("amp on b", "a")].attack == "amp"
    assert suite.evaluations["ev"].attacks["amp"].base_label == "noise"
    assert suite.models["b"].data.parts == (100, 100)
    for old, new, fragment in [
        ('attack = "amp" }]', 'attack = "ampp" }]', "tables.t.rows[1].attack: 'ampp' is not among"),
        ('source = "b", attack', 'source = "c", attack', "tables.t.rows[1].source"),
        ('input = "noise"', 'input = "nose"', "attacks.amp.input: no attack named 'nose'"),
        ('input = "noise"\n', '', "attacks.amp.input: a transform needs 'input'"),
        ('transform = "amplify"', 'plugin = "fgsm"\ntransform = "amplify"', "exactly one of 'plugin' and 'transform'"),
        ("part = 1", "part = 2", "models.b.part: 2 is not an index"),
        ('{ label = "amp on b"', '{ label = "noise on a"', "two entries have the same label"),
    ]:
        assert old in base, old
        with pytest.raises(SuiteError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
            load_suite(write_suite(base.replace(old, new, 1), "bad.toml"))


def _table(values: dict[tuple[str, str], float | None]) -> ResultTable:
    rows = sorted({r for r, _ in values})
    cols = sorted({c for _, c in values})
    cells = [Cell(r, c, v) for (r, c), v in values.items()]
    return ResultTable("t", "t", rows, cols, "rows", "columns", {"error": "%"}, {"error": ".1f"}, cells)


def test_compare_cells_tolerances_and_missing_cells():
    pub = Published.model_validate({
        "source": {"citation": "x"},
        "tables": {"t": {"figure": "Table 1", "why": "w", "tolerance": {"abs": 1.0, "rel": 0.1},
                         "column_tolerance": {"d": {"rel": 0.5}},
                         "values": {"r1": {"e": 10.0, "d": 1.0}, "r2": {"e": 50.0, "x": 3.0}}}}}).tables["t"]
    rows = compare_table("t", pub, _table({("r1", "e"): 10.9, ("r1", "d"): 1.6, ("r2", "e"): 44.0}))
    got = {(r.row, r.column): r for r in rows}
    assert got[("r1", "e")].within_tolerance and got[("r1", "e")].delta == pytest.approx(0.9)
    assert not got[("r1", "d")].within_tolerance  # 60% off, 50% allowed
    assert not got[("r2", "e")].within_tolerance  # 6 off, max(1, 5) allowed
    assert got[("r2", "x")].ours is None and "no cell" in got[("r2", "x")].note
    assert Tolerance(abs=1.0).allows(11.0, 10.0) and not Tolerance(rel=0.1).allows(12.0, 10.0)


def test_published_szegedy_file_is_valid_and_matches_the_suite_tables():
    pub = load_published(REPO / "results" / "published" / "szegedy2013.toml")
    suite = load_suite(REPO / "suites" / "szegedy2013.toml")
    for name, table in pub.tables.items():
        ours = suite.tables[name]
        for row, cols in table.values.items():
            for col in cols:
                assert (row, col) in ours.cells, (name, row, col)
    # the paper's cells, plus its values beside the variant readings (issue 15): the UFLDL AE400-10 row (3) and
    # column (7), and the one-factor amplified rows (3 x 3)
    assert sum(len(c) for t in pub.tables.values() for c in t.values.values()) == 18 + 48 + 12 + 24 + 3 + 7 + 9


@pytest.mark.parametrize("profile", [None, "quick"])
def test_published_mlss_file_matches_the_mlss_suite_tables(profile):
    pub = load_published(REPO / "results" / "published" / "mlss.toml")
    suite = load_suite(REPO / "suites" / "mlss_ensemble.toml", profile)
    assert suite.published and suite.published[0].endswith("mlss.toml")
    for name, table in pub.tables.items():
        ours = suite.tables[name]
        for row, cols in table.values.items():
            for col in cols:
                assert (row, col) in ours.cells, (name, row, col)
    assert sum(len(c) for t in pub.tables.values() for c in t.values.values()) == 84 + 9 + 16
    # the report's OOD table is compared on notMNIST (the sample's SHA-256 is recorded); Fashion-MNIST, the
    # outlier-exposure set's family, is a second table the report does not have
    assert suite.evaluations["ood_out"].data.call.name == "notmnist" and "notMNIST" in suite.tables["ood"].title
    assert suite.evaluations["ood_out_fashion"].data.call.name == "fashion-mnist"
    assert "the report: no table" in suite.tables["ood_fashion"].title and "ood_fashion" not in pub.tables
    sums = (REPO.parent / "shared" / "data" / "SHA256SUMS")
    if sums.exists():
        digest = next(line.split()[0] for line in sums.read_text().splitlines() if "notmnist/t10k-images" in line)
        assert digest in " ".join(pub.source.notes)
    checked = {c.table for c in pub.claims}
    assert {"ood", "ood_fashion"} <= checked


def test_bad_published_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('[source]\ncitation = "x"\n[tables.t]\nfigure = "f"\nwhy = "w"\nvalues = {}\n')
    with pytest.raises(RbenchError, match=r"p.toml: tables.t.tolerance: Field required"):
        load_published(bad)


def test_compare_cli_formats(tmp_path):
    from rbench.results import RunResults

    pub = tmp_path / "pub.toml"
    pub.write_text('[source]\ncitation = "x"\n[tables.t]\nfigure = "Table 9"\nwhy = "w"\n'
                   'tolerance = { abs = 1.0 }\nvalues = { r1 = { e = 10.0 } }\n')
    run = tmp_path / "run"
    run.mkdir()
    results = RunResults("s", "", None, [], {}, [_table({("r1", "e"): 10.5})], published=[str(pub)])
    from dataclasses import asdict

    (run / "results.json").write_text(json.dumps(asdict(results)))
    out = rbench("compare", str(run), "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [row] = doc["cells"]
    assert doc["claims"] == []
    assert {k: row[k] for k in ("table", "row", "column", "ours", "published", "within_tolerance")} == {
        "table": "t", "row": "r1", "column": "e", "ours": 10.5, "published": 10.0, "within_tolerance": True}
    assert row["delta"] == pytest.approx(0.5)
    text = rbench("compare", str(run))
    assert "compare t (Table 9): 1/1 cells within tolerance" in text.stdout
    bad = rbench("compare", str(run), "--format", "xml")
    assert bad.returncode == 2 and "--format" in bad.stderr


def test_every_published_file_is_valid():
    files = sorted((REPO / "results" / "published").glob("*.toml"))
    assert {f.name for f in files} >= {"szegedy2013.toml", "mlss.toml"}
    for f in files:
        published = load_published(f)
        assert published.tables or published.claims  # a paper of figures only (Bečková et al.) has only claims


def test_every_claim_holds_on_the_papers_own_numbers():
    """A claim whose cells the paper's transcribed table gives must hold on that table: a claim the paper's own
    numbers contradict (the Uličný DAE vs low-pass claim at dist 0.1, 52.4 vs 52.0) tests our reading, not the
    reproduction. Claims on cells the paper gives no number for (our extensions, figure-only papers) are skipped."""
    from rbench.compare import check_one_claim

    checked = 0
    for path in sorted((REPO / "results" / "published").glob("*.toml")):
        published = load_published(path)
        tables = {}
        for name, t in published.tables.items():
            columns = sorted({c for values in t.values.values() for c in values})
            cells = [Cell(r, c, v) for r, values in t.values.items() for c, v in values.items()]
            # the paper's table has one threat model: Uličný's claims on our adaptive columns read its own columns
            cells += [Cell(r, f"{c} adaptive", v) for r, values in t.values.items() for c, v in values.items()]
            columns += [f"{c} adaptive" for c in columns]
            tables[name] = ResultTable(name, t.figure, list(t.values), columns, "rows", "columns", {}, {}, cells)
        for claim in published.claims:
            check = check_one_claim(claim, tables.get(claim.table))
            assert check.held is not False, f"{path.name}: {claim.text}: {check.detail}"
            checked += check.held is True
    assert checked >= 16  # the MLSS and Uličný claims on their tables (16 on 2026-12-01)


def test_one_sided_and_change_claims():
    """``not_less_by`` holds when ``a`` is above ``b`` (a standard committee no better than one model: Uličný's Table
    2 at dist 0.2, 97.2 vs 96.1, which ``barely_less`` failed) and fails at the margin; ``less_change`` compares
    two changes (ODIN's gain: MLSS's +1.3 for Ens < +3.1 for Ens OE), not each change alone."""
    from rbench.compare import Claim, check_one_claim

    table = ResultTable("t", "T", ["one", "committee", "msp", "odin"], ["e", "oe"], "rows", "columns", {}, {},
                        [Cell("one", "e", 96.1), Cell("committee", "e", 97.2), Cell("msp", "e", 0.977),
                         Cell("odin", "e", 0.990), Cell("msp", "oe", 0.938), Cell("odin", "oe", 0.969)])
    pair = {"text": "c", "table": "t", "a": {"row": "committee", "column": "e"}, "b": {"row": "one", "column": "e"}}
    assert check_one_claim(Claim(**pair, kind="barely_less", margin=10), table).held is False
    check = check_one_claim(Claim(**pair, kind="not_less_by", margin=10), table)
    assert check.held is True and "needed: not lower by 10 or more" in check.detail
    swapped = {**pair, "a": pair["b"], "b": pair["a"]}  # one model 1.1 below the committee: less than 1.1 holds not
    assert check_one_claim(Claim(**swapped, kind="not_less_by", margin=1.1), table).held is False
    assert check_one_claim(Claim(**swapped, kind="not_less_by", margin=1.2), table).held is True
    with pytest.raises(ValueError, match="a 'not_less_by' claim needs a margin above 0"):
        Claim(**pair, kind="not_less_by")
    gain = {"text": "g", "table": "t", "kind": "less_change", "a_from": {"row": "msp", "column": "e"},
            "a": {"row": "odin", "column": "e"}, "b_from": {"row": "msp", "column": "oe"},
            "b": {"row": "odin", "column": "oe"}}
    check = check_one_claim(Claim(**gain), table)
    assert check.held is True and "(+0.013)" in check.detail and "(+0.031)" in check.detail, check.detail
    reverse = {**gain, "a_from": gain["b_from"], "a": gain["b"], "b_from": gain["a_from"], "b": gain["a"]}
    assert check_one_claim(Claim(**reverse), table).held is False
    with pytest.raises(ValueError, match="a 'less_change' claim needs 'b_from'"):
        Claim(**{k: v for k, v in gain.items() if k != "b_from"})
    with pytest.raises(ValueError, match="a 'less' claim takes no 'a_from'"):
        Claim(**{**pair, "kind": "less", "a_from": gain["a_from"]})
    with pytest.raises(ValueError, match="a 'less_change' claim takes no 'margin'"):  # it was ignored
        Claim(**gain, margin=0.05)
    with pytest.raises(ValueError, match="a 'less' claim takes no 'among'"):
        Claim(**{**pair, "kind": "less", "among": ["one"]})
    with pytest.raises(ValueError, match="a 'at_least' claim needs at least 1 cell"):  # could only be unchecked
        Claim(text="c", table="t", kind="at_least", value=1.0, cells=[])


def test_an_order_within_overlapping_intervals_is_held_and_says_it_may_be_chance():
    """Bečková's "T = 1/64 is harder to train" held on 74.4 vs 74.6 of 1000 samples: ``less`` and ``lowest`` judge
    the point estimates, as the papers do, and their detail says where the two cells' 95% intervals overlap."""
    from rbench.compare import Claim, check_one_claim

    close = [Cell("hard", "acc", 74.4, low=71.6, high=77.0), Cell("easy", "acc", 74.6, low=71.8, high=77.2),
             Cell("far", "acc", 90.0, low=88.0, high=91.7)]
    table = ResultTable("t", "T", ["hard", "easy", "far"], ["acc"], "rows", "columns", {}, {}, close)
    pair = {"text": "c", "table": "t", "kind": "less", "a": {"row": "hard", "column": "acc"}}
    check = check_one_claim(Claim(**pair, b={"row": "easy", "column": "acc"}), table)
    assert check.held is True and "the 95% intervals overlap ([71.6, 77.0] and [71.8, 77.2])" in check.detail
    check = check_one_claim(Claim(**pair, b={"row": "far", "column": "acc"}), table)
    assert check.held is True and "overlap" not in check.detail
    check = check_one_claim(Claim(**{**pair, "kind": "lowest"}), table)
    assert check.held is True and "overlap ([71.6, 77.0] and [71.8, 77.2])" in check.detail
    bare = ResultTable("t", "T", ["hard", "easy"], ["acc"], "rows", "columns", {}, {},
                       [Cell("hard", "acc", 74.4), Cell("easy", "acc", 74.6)])  # no intervals: nothing to say
    assert "overlap" not in check_one_claim(Claim(**pair, b={"row": "easy", "column": "acc"}), bare).detail


def test_a_claim_of_a_size_needs_that_size(tmp_path):
    from rbench.compare import Claim, check_one_claim

    table = ResultTable("t", "T", ["odin", "msp"], ["e"], "rows", "columns", {}, {},
                        [Cell("odin", "e", 0.990), Cell("msp", "e", 0.985)])
    by = {"text": "c", "table": "t", "kind": "less_by", "a": {"row": "msp", "column": "e"},
          "b": {"row": "odin", "column": "e"}}
    assert check_one_claim(Claim(**by, margin=0.005), table).held is True  # 0.990 - 0.985, as decimals
    check = check_one_claim(Claim(**by, margin=0.01), table)
    assert check.held is False and "needed: lower by at least 0.01" in check.detail
    with pytest.raises(ValueError, match="a 'less_by' claim needs a margin above 0"):
        Claim(**by)


def test_published_claims_are_checked_held_or_not(tmp_path):
    from rbench.compare import check_claims, describe_claim
    from rbench.results import RunResults

    pub = tmp_path / "pub.toml"
    pub.write_text('''[source]
citation = "x"
[tables.t]
figure = "Table 9"
why = "w"
tolerance = { abs = 1.0 }
values = { a = { "0.1" = 10.0 } }
[[claims]]
text = "a beats b"
table = "t"
kind = "less"
a = { row = "a", column = "0.1" }
b = { row = "b", column = "0.1" }
[[claims]]
text = "c is barely better than b"
table = "t"
kind = "barely_less"
margin = 5
a = { row = "c", column = "0.1" }
b = { row = "b", column = "0.1" }
[[claims]]
text = "a is the lowest"
table = "t"
kind = "lowest"
a = { row = "a", column = "0.1" }
[[claims]]
text = "about a row the run lacks"
table = "t"
kind = "less"
a = { row = "zz", column = "0.1" }
b = { row = "a", column = "0.1" }
''')
    results = RunResults("s", "", None, [], {}, [_table({("a", "0.1"): 10.0, ("b", "0.1"): 40.0,
                                                        ("c", "0.1"): 30.0})], published=[str(pub)])
    checks = check_claims(results)
    assert [c.held for c in checks] == [True, False, True, None]  # c is 10 below b: more than "barely"
    assert "NOT held" in describe_claim(checks[1])
    assert "c at 0.1 = 30.0 vs b at 0.1 = 40.0" in checks[1].detail  # in the table's format
    bad = tmp_path / "bad.toml"
    bad.write_text('[source]\ncitation = "x"\n[tables.t]\nfigure = "f"\nwhy = "w"\ntolerance = { abs = 1.0 }\n'
                   'values = {}\n[[claims]]\ntext = "t"\ntable = "t"\nkind = "less"\na = { row = "a", column = "b" }\n')
    with pytest.raises(RbenchError, match="claims.0: .*needs 'b'"):
        load_published(bad)


def test_a_claim_shows_its_cells_as_the_table_does_with_digits_where_rounding_would_hide_the_verdict(tmp_path):
    from rbench.compare import check_claims
    from rbench.results import RunResults

    pub = tmp_path / "pub.toml"
    pub.write_text('[source]\ncitation = "x"\n[tables.t]\nfigure = "f"\nwhy = "w"\ntolerance = { abs = 1.0 }\n'
                   'values = {}\n'
                   '[[claims]]\ntext = "up to 98%"\ntable = "t"\nkind = "at_least"\nvalue = 98\n'
                   'a = { row = "a", column = "0.1" }\n'
                   '[[claims]]\ntext = "b at most 50"\ntable = "t"\nkind = "at_most"\nvalue = 50\n'
                   'a = { row = "b", column = "0.1" }\n')
    results = RunResults("s", "", None, [], {}, [_table({("a", "0.1"): 97.96, ("b", "0.1"): 40.0})],
                         published=[str(pub)])
    first, second = check_claims(results)
    assert not first.held and first.detail == "a at 0.1 = 97.96; needed: at least 98"  # not "98.0"
    assert second.held and second.detail == "b at 0.1 = 40.0; needed: at most 50"  # as the table shows it
    results.tables[0].formats["error"] = ".1%"  # a format that prints a sign: compared as text, not parsed
    first, _ = check_claims(results)
    assert first.detail.startswith("a at 0.1 = 9796.0%")


def test_significant_digit_formats_stay_plain_below_a_million():
    """A `.3g` column (operator norms) keeps plain digits where Python's `format` switches to exponents at 1000;
    the table cell, its interval and a signed delta all show it so; a million and more keep the exponent."""
    from rbench.compare import fmt_number
    from rbench.results import format_value

    assert [format_value(v, ".3g") for v in (0.01234, 12.34, 999.4, 1000.0, 1234.5, -98765.0)] == \
        ["0.0123", "12.3", "999", "1000", "1230", "-98800"]
    assert format_value(2.5e6, ".3g") == "2.5e+06" and format_value(1234.5, ".1f") == "1234.5"
    assert format_value(999999.5, ".3g") == "1e+06"  # rounds to a million: the exponent stays
    assert format_value(1234.5, "*>10.3g") == "**1.23e+03"  # a fill or width: as format writes it, no error
    assert fmt_number(1234.5, signed=True, fmt=".3g") == "+1230"
    table = _table({("a", "0.1"): 1500.0})
    table.formats["error"] = ".3g"
    assert table.format(table.cell("a", "0.1")) == "1500"
    cell = Cell("a", "0.1", 0.25, low=0.2, high=0.31)  # any format spec a metric may declare, with an interval
    for fmt, text in ((".1%", "25.0% ±6.0%"), (",.2f", "0.25 ±0.06"), (".3g", "0.25 ±0.06"), (".0f", "0")):
        table.formats["error"] = fmt
        assert table.format(cell, spread=True) == text
    table.formats["error"] = ".1f"  # an interval wholly on one side of its value (0 or 100%) is shown one-sided
    for (value, low, high), text in (((0.0, 0.0, 1.9), "0.0 +1.9"), ((100.0, 98.1, 100.0), "100.0 −1.9"),
                                     ((0.02, 0.0, 1.9), "0.0 +1.9"), ((50.0, 45.0, 55.5), "50.0 ±5.5"),
                                     # sides far apart (2 of 64): "±7.6" read as if the rate could be negative
                                     ((3.1, 0.9, 10.7), "3.1 +7.6/−2.2"),
                                     # sides within a fifth, but the range would cross 0 where the interval does not
                                     ((3.0, 0.5, 6.1), "3.0 +3.1/−2.5"), ((-3.0, -6.1, -0.5), "-3.0 +2.5/−3.1"),
                                     # narrower than the precision: bare only where both ends read as the value
                                     ((0.01, 0.002, 0.057), "0.0 +0.1"), ((99.99, 99.943, 99.998), "100.0 −0.1"),
                                     ((50.01, 49.96, 50.04), "50.0")):
        assert table.format(Cell("a", "0.1", value, low=low, high=high), spread=True) == text
    # the range ±h would pass an end of the quantity's range that the interval stops at: 100 for a rate in %
    rates = {(99.2, 98.21, 100.0): "99.2 +0.8/−1.0", (0.8, 0.0, 1.79): "0.8 +1.0/−0.8", (50.0, 45.0, 55.5): "50.0 ±5.5"}
    for unit, interval in (("%", ""), ("", "wilson")):
        table.units["error"] = unit
        for (value, low, high), text in rates.items():
            assert table.format(Cell("a", "0.1", value, low=low, high=high, interval=interval), spread=True) == text
    table.units["error"] = ""
    assert table.format(Cell("a", "0.1", 99.2, low=98.21, high=100.0), spread=True) == "99.2 ±1.0"  # no known end
    table.formats["error"] = ".3f"  # an AUROC ends at 1
    assert table.format(Cell("a", "0.1", 0.992, low=0.982, high=1.0, interval="hanley-mcneil"), spread=True) == \
        "0.992 +0.008/−0.010"


def test_wide_tables_are_never_cut(monkeypatch):
    """Written to a pipe or file (no terminal, COLUMNS unset) a run's tables keep their natural width, where rich's
    80 columns cut mnist_full's labels to "softma…"; on a terminal narrower than a table, labels wrap, never cut."""
    import io

    from rich.console import Console

    from rbench.report.terminal import output_console, print_tables
    from rbench.results import RunResults

    label = "softmax-a (lambda=1e-2, trained on P1)"
    results = RunResults("s", "", None, [], {}, [_table({(label, f"{label} #{i}"): 50.0 for i in range(6)})])
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich's is_terminal says yes; stdout is still not a tty
    monkeypatch.setattr("sys.stdout", io.StringIO())
    piped = output_console()
    assert piped.width >= 300
    print_tables(results, piped)
    text = piped.file.getvalue()
    assert "…" not in text and all(f"{label} #{i}" in text for i in range(6))
    monkeypatch.setenv("COLUMNS", "90")
    assert output_console().width == 90  # the user's width is kept
    narrow = Console(file=io.StringIO(), width=80, color_system=None)
    print_tables(results, narrow)
    first_column = [line.split("│")[1] for line in narrow.file.getvalue().splitlines() if line.count("│") > 2]
    assert first_column and not any("…" in part for part in first_column)  # row labels wrap, never cut


def test_verdicts_say_when_our_interval_reaches_across_the_tolerance():
    """A point estimate within tolerance whose 95% interval reaches beyond it is a weak match (44 of 50 images
    against 50 +-10: [31.2, 57.7]); one outside whose interval reaches into the tolerance, a weak mismatch. The
    verdicts stay those of the point estimate; `firm` and the words say how far the interval backs them."""
    from rbench.compare import describe_verdict, judge, paper_summary

    tol = Tolerance(abs=10.0)

    def cell(value, low, high):
        return Cell("r", "c", value, n=50, low=low, high=high, interval="wilson")

    weak = judge("t", "r", "c", cell(44.0, 31.2, 57.7), 50.0, tol, "Table 1", "")
    firm = judge("t", "r", "c", cell(50.0, 46.9, 53.1), 52.0, tol, "Table 1", "")
    assert (weak.verdict, weak.firm, firm.verdict, firm.firm) == ("within", False, "within", True)
    assert describe_verdict(weak) == "within tolerance (our interval reaches beyond it)"
    assert describe_verdict(firm) == "within tolerance"
    near = judge("t", "r", "c", cell(50.0, 46.9, 53.1), 55.5, Tolerance(abs=3.0), "Table 1", "")
    far = judge("t", "r", "c", cell(30.0, 27.0, 33.0), 50.0, Tolerance(abs=3.0), "Table 1", "")
    assert (near.verdict, near.firm, far.verdict, far.firm) == ("outside", False, "outside", True)
    assert describe_verdict(near) == "outside tolerance (our interval reaches into it)"
    bare = judge("t", "r", "c", Cell("r", "c", 44.0), 50.0, tol, "Table 1", "")
    assert bare.verdict == "within" and bare.firm is None and describe_verdict(bare) == "within tolerance"
    (summary,) = paper_summary([weak, firm, near, far, bare], [])
    assert summary.describe() == ": 3/5 cells within tolerance (by the whole 95% interval: 1 of the 2 with one)"
    # a t interval clipped at 100% (a confidence of 99.0, unclipped +-2.26): the samples that would tell it from
    # a published 100 come from the unclipped half-width (52), not the 1.0 left below the bound (11)
    sure = Cell("r", "c", 99.0, n=10, low=96.74, high=100.0, interval="t")
    assert judge("t", "r", "c", sure, 100.0, Tolerance(abs=0.5), "T", "").samples_needed == 52
    (bare_only,) = paper_summary([bare], [])
    assert bare_only.describe() == ": 1/1 cells within tolerance"  # no interval, nothing to say about one


def test_published_fractions_beside_cells_in_percent_are_named():
    """A table in % whose published values were transcribed as fractions (0.98 for 98%) reads 'outside' in every
    cell: the comparison says why on each measured cell; a table of small percentages that ours match, or whose
    values times 100 would not match either, gets no such note."""
    from rbench.compare import PublishedTable

    def notes(ours: dict[str, float], theirs: dict[str, float]) -> list[str]:
        table = ResultTable("t", "T", ["r"], list(ours), "rows", "columns", {"acc": "%"}, {"acc": ".1f"},
                            [Cell("r", c, v, metric="acc") for c, v in ours.items()], "")
        pub = PublishedTable(figure="Table 1", tolerance=Tolerance(abs=2.0), why="w", values={"r": theirs})
        return [c.note for c in compare_table("t", pub, table)]

    fractions = notes({"a": 97.0, "b": 60.0, "c": 12.0}, {"a": 0.98, "b": 0.61, "c": 0.5})
    assert all("multiplied by 100, 2 of its 3 measured cells would be within tolerance" in n for n in fractions)
    from rich.console import Console

    from rbench.report.terminal import print_comparison

    table = ResultTable("t", "T", ["r"], ["a", "b"], "rows", "columns", {"acc": "%"}, {"acc": ".1f"},
                        [Cell("r", c, v, metric="acc") for c, v in (("a", 97.0), ("b", 60.0))], "")
    pub = PublishedTable(figure="Table 1", tolerance=Tolerance(abs=2.0), why="w",
                         values={"r": {"a": 0.98, "b": 0.61, "c": 0.5}})
    console = Console(record=True, width=100)
    print_comparison(compare_table("t", pub, table), console)  # the default format shows notes too, each once
    shown = console.export_text()
    assert shown.count("(fractions written for") == 1 and "note (r / a; r / b): every published" in shown
    assert "note (r / c): the run's table 't' has no cell (r, c)" in shown
    assert notes({"a": 0.8, "b": 0.6}, {"a": 0.9, "b": 0.7}) == ["", ""]  # small percentages, matched
    assert notes({"a": 40.0, "b": 30.0}, {"a": 0.9, "b": 0.7}) == ["", ""]  # no better multiplied
    assert notes({"a": 97.0}, {"a": 0.98}) == [""]  # one cell is no pattern


def test_a_delta_never_reads_as_on_the_other_side_of_the_tolerance():
    """127 of 5000 (2.54) against a published 2.0 with a tolerance of ±0.5 is outside: its delta shows as +0.54,
    not as the "+0.5" its table's one decimal gives; a delta whose rounding keeps its side keeps the format. A
    published value outside the range its cell's quantity lies in is said to be in another unit."""
    from dataclasses import replace

    from rbench.compare import fmt_delta, judge

    def delta(ours, theirs, tol):
        return fmt_delta(replace(judge("t", "r", "c", Cell("r", "c", ours), theirs, tol, "T", ""), fmt=".1f"))

    assert delta(2.54, 2.0, Tolerance(abs=0.5)) == "+0.54"
    assert delta(1.46, 2.0, Tolerance(abs=0.5)) == "-0.54"
    assert delta(2.46, 2.0, Tolerance(abs=0.5)) == "+0.5"  # within, and reads so
    assert delta(2.8, 2.0, Tolerance(abs=0.5)) == "+0.8"
    assert delta(20.04, 20.0, Tolerance(rel=0.001)) == "+0.04"
    # a published value no cell of its kind can take (an AUROC transcribed in %) is said to be in another unit
    auroc = judge("t", "r", "c", Cell("r", "c", 0.97, n=100, low=0.94, high=0.99, interval="hanley-mcneil"), 97.4,
                  Tolerance(abs=0.01), "T", "")
    assert auroc.verdict == "outside" and auroc.note.endswith("the published 97.4 lies outside [0, 1], where this "
                                                              "cell's quantity lies: in another unit?")
    assert judge("t", "r", "c", Cell("r", "c", 0.97, n=100, low=0.94, high=0.99, interval="hanley-mcneil"), 0.95,
                 Tolerance(abs=0.01), "T", "").note == ""  # ±0.1% relative, 0.02: "+0.0" read as within
