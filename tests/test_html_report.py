"""The ``html`` reporter: report.html of a small real run with a published file, opened in a real headless
Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium; the browser tests skip without
them), and rendered in-process from results written by older versions and from degenerate tables."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from support import rbench

from rbench.report.html import REPORT_FILE, figures_of, render
from rbench.report.reporters import Markdown
from rbench.results import Cell, ResultTable, RunResults

pytestmark = pytest.mark.slow

SUITE = """
[suite]
name = "html_report"
title = "An HTML report <of & for> tests"
description = '''What this suite is for: <i>a test</i>.
Its second line.'''
seed = 5
published = ["published.toml"]

[datasets.mnist]
plugin = "mnist"

[models.small]
plugin = "mlp"
params = { widths = [16] }
dataset = "mnist"
n_train = 500
trainer = { params = { epochs = 1, batch_size = 32, lr = 3e-3 } }

[models.wide]
plugin = "mlp"
params = { widths = [32] }
dataset = "mnist"
n_train = 500
trainer = { params = { epochs = 1, batch_size = 32, lr = 3e-3 } }

[attacks.fgsm]
plugin = "fgsm"
grid = { eps = [0.1, 0.2, 0.3] }

[attacks.noise]
plugin = "gaussian_noise"
params = { norm = "l2", eps = 3.0 }

[evaluations.wb]
dataset = "mnist"
n = 40
sources = ["small", "wide"]
targets = ["small", "wide"]
attacks = ["fgsm", "noise"]

[tables.errors]
title = "Error under attack"
evaluation = "wb"
rows = "attack"
columns = "model"
metric = "error"
paired = [["small", "wide"]]

[tables.distortion]
evaluation = "wb"
rows = "attack"
columns = "model"
metric = { plugin = "distortion", params = { norm = "l2" } }

[tables.transfer]
evaluation = "wb"
rows = "source"
columns = "target"
metric = "error"
where = { attack = "fgsm(eps=0.3)" }

# labels that are markup and hold the "|" cells were once keyed by ("row|column": read back split wrongly)
[tables.labelled]
title = "Labels <i>with</i> | & markup"
evaluation = "wb"
columns = "model"
rows = [{ label = "clean | <b>x</b> & y", attack = "clean" }, { label = "fgsm | 0.1", attack = "fgsm(eps=0.1)" }]
metric = "error"

[tables.labelled_distortion]
evaluation = "wb"
columns = "model"
rows = [{ label = "fgsm | 0.1", attack = "fgsm(eps=0.1)" }, { label = "a|b", attack = "fgsm(eps=0.2)" }]
metric = { plugin = "distortion", params = { norm = "l2" } }
"""

# verdicts that do not depend on the trained numbers: any error is within 100 points; no
# trained model's clean error is 100% (every one of 40 images wrong); a row the
# run lacks and the clean row's distortion (not applicable) are missing
PUBLISHED = """
[source]
citation = "A test paper <2024>"

[tables.errors]
figure = "Table 1"
tolerance = { abs = 100.0 }
why = "any error rate will do"
notes = ["the wide column is read from a blurry scan"]
column_tolerance = { wide = { abs = 0.0 } }
values = { clean = { small = 20.0, wide = 100.0 }, "no such attack" = { small = 50.0 } }

[tables.distortion]
figure = "Table 2"
tolerance = { rel = 0.5 }
why = "distortions vary"
values = { clean = { small = 0.0 } }

[[claims]]
text = "the clean error is at most 90%"
table = "errors"
kind = "at_most"
a = { row = "clean", column = "small" }
value = 90.0

[[claims]]
text = "the clean error is at least 99%"
table = "errors"
kind = "at_least"
a = { row = "clean", column = "small" }
value = 99.0

[[claims]]
text = "a claim on a cell the run lacks"
table = "errors"
kind = "at_most"
a = { row = "no such attack", column = "small" }
value = 50.0
"""


#: PUBLISHED without the row and the claim the run lacks: a suite's published file may name only its tables' cells
#: (checked when the suite is loaded), so such cells come from a file edited after the run
CHECKED = PUBLISHED.replace(', "no such attack" = { small = 50.0 }', "").rsplit("[[claims]]", 1)[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html_report")
    (root / "suite.toml").write_text(SUITE)
    (root / "published.toml").write_text(PUBLISHED)
    refused = rbench("validate", str(root / "suite.toml"))
    assert refused.returncode == 2 and "has no row 'no such attack'" in refused.stderr, refused.stderr
    (root / "published.toml").write_text(CHECKED)
    out = rbench("run", str(root / "suite.toml"), "--store", str(root / "store"), "--run-dir", str(root / "run"),
                 "-q", "--device", "cpu")
    assert out.returncode == 0, out.stdout + out.stderr
    raw = json.loads((root / "run" / "results.json").read_text())
    assert raw["published_docs"][str(root / "published.toml")]["tables"]["errors"]["values"]["clean"] == \
        {"small": 20.0, "wide": 100.0}  # the run records its published file as it read then
    # as results written before that was recorded: the file is read now, edited after the run with a row the
    # suite lacks, and the report shows what it lacks
    (root / "run" / "results.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "published_docs"}))
    (root / "published.toml").write_text(PUBLISHED)
    out = rbench("report", str(root / "run"), "-f", "html")
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "run"


def test_a_re_rendered_comparison_is_the_run_s_though_its_published_file_changed_or_went(run, tmp_path):
    """``rbench report`` re-read the suite's published files as they are now, so an edited file silently changed
    a finished run's verdicts, and a moved one lost them; the run now keeps what it compared with."""
    root = tmp_path / "again"
    root.mkdir()
    (root / "suite.toml").write_text(SUITE)
    (root / "published.toml").write_text(CHECKED)
    out = rbench("run", str(root / "suite.toml"), "--store", str(run.parent / "store"), "--run-dir",
                 str(root / "run"), "-q", "--device", "cpu")  # the store is warm: nothing is computed
    assert out.returncode == 0, out.stdout + out.stderr
    before = rbench("report", str(root / "run"), "-f", "md").stdout
    assert re.search(r"\| clean +\| wide +\| [0-9.]+ +\| .* \| 100 +\| .* \| exact +\| outside tolerance", before)
    assert "Note: the wide column is read from a blurry scan" in before  # the published file's note on the table
    page = (root / "run" / REPORT_FILE).read_text()
    assert '<p class="compared">Note: the wide column is read from a blurry scan</p>' in page
    (root / "published.toml").write_text(CHECKED.replace("wide = 100.0", "wide = 7.0").replace("abs = 100.0",
                                                                                               "abs = 0.5"))
    assert rbench("report", str(root / "run"), "-f", "md").stdout == before
    (root / "published.toml").unlink()
    assert rbench("report", str(root / "run"), "-f", "md").stdout == before


def test_labels_with_a_bar_or_markup_read_back_and_stay_text_in_markdown(run, tmp_path):
    """A row label holding "|" made the run's own outcomes and samples unreadable (cells were keyed "row|column"
    and split at the first bar: ``rbench report`` and ``compare --run`` refused the run that wrote them), and
    labels went into tables.md raw: a "|" split a table row, markup was markup."""
    from rbench.report.tidy import read_outcomes

    results = RunResults.read(run)
    labelled = next(t for t in results.tables if t.name == "labelled_distortion")
    assert set(labelled.samples) == {("fgsm | 0.1", "small"), ("fgsm | 0.1", "wide"), ("a|b", "small"),
                                     ("a|b", "wide")}
    assert all(labelled.metric(c).startswith("distortion") for c in labelled.cells)
    outcomes = read_outcomes(run, results)
    assert ("labelled", "clean | <b>x</b> & y", "small") in outcomes
    for args in (("report", str(run), "-f", "md"), ("compare", str(run), "--run", str(run), "-f", "md")):
        out = rbench(*args)
        assert out.returncode == 0, out.stdout + out.stderr
    markdown = rbench("report", str(run), "-f", "md").stdout
    assert "## Labels \\<i>with\\</i> \\| & markup" in markdown  # CommonMark's backslash escapes
    rows = [line for line in markdown.splitlines() if line.startswith("| clean \\| \\<b>x\\</b> & y")]
    header = next(line for line in markdown.splitlines() if line.startswith("| model") or "small" in line)
    assert rows and all(line.replace("\\|", "").count("|") == 4 for line in rows), rows  # label, small, wide
    assert not re.search(r"(?<!\\)<[A-Za-z/]", markdown), header  # no tag a renderer would read as one
    from rbench.markdown import md

    assert md("p < 0.001, -rho >= 0.8, a -> b, x & y") == "p < 0.001, -rho >= 0.8, a -> b, x & y"  # no markup
    # the suite's description: recorded, and text in tables.md with its line break (a hard break)
    assert results.description == "What this suite is for: <i>a test</i>.\nIts second line."
    assert "What this suite is for: \\<i>a test\\</i>.\\\nIts second line.\n" in markdown
    from rbench.markdown import md_paragraphs

    assert md_paragraphs("```\n# not a heading\n1. not a list\n===") == "\\```\\\n\\# not a heading\\\n1\\. " \
        "not a list\\\n\\==="  # a fence, heading, list or setext line in a description stays text
    for ending in ("\\", "\\\\"):  # a line ending in backslashes keeps its hard break (an even run of them)
        first = md_paragraphs(f"a{ending}\nb").split("\n")[0]
        assert (len(first) - len(first.rstrip("\\"))) % 2 == 1, first
    # every attack's parameters, defaults included: the label "noise" alone does not say it is an L2 noise
    assert re.search(r'^- noise[^:]*: gaussian_noise\(.*norm="l2".*eps=3\.0', markdown, re.M), markdown
    assert re.search(r"^- fgsm\(eps=0\.3\): fgsm\(eps=0\.3", markdown, re.M)


def _driver():
    """A headless Chromium from the system (Selenium's manager downloads nothing), or a skip saying what lacks."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium or chromedriver is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,2400"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _driver()
    yield driver
    driver.quit()


def test_the_contents_reach_the_run_s_record_and_unfold_it(run, browser):
    """The contents list the comparison and the run's record (provenance, files, models, jobs, store keys) as well
    as the tables, and a link to a folded part of the record, or an address ending in its name, unfolds it."""
    from selenium.webdriver.common.by import By

    browser.get((run / REPORT_FILE).as_uri())
    links = [a.get_attribute("href").split("#")[1] for a in browser.find_elements(By.CSS_SELECTOR, "nav ul.record a")]
    assert [n for n in links if n != "models"] == ["comparison", "provenance", "files", "jobs", "keys"]
    assert all(browser.find_elements(By.ID, n) for n in links)
    jobs = browser.find_element(By.ID, "jobs")
    assert jobs.get_attribute("open") is None
    browser.find_element(By.CSS_SELECTOR, "nav ul.record a[href='#jobs']").click()
    assert jobs.get_attribute("open") is not None
    browser.get("about:blank")  # a new load (the same page with another # would only change the hash)
    browser.get((run / REPORT_FILE).as_uri() + "#keys")
    assert browser.find_element(By.ID, "keys").get_attribute("open") is not None
    assert browser.find_element(By.ID, "jobs").get_attribute("open") is None  # only the one named


def _values(table) -> list[str]:
    return table.parent.execute_script(
        "return Array.from(arguments[0].tBodies[0].rows, r => r.cells[arguments[1]].getAttribute('data-value'))",
        table, 1)


def test_report_in_a_browser(run, browser):
    from selenium.webdriver.common.by import By

    results = RunResults.read(run)
    browser.get((run / REPORT_FILE).as_uri())
    assert browser.title.startswith("An HTML report <of & for> tests")
    tables = browser.find_elements(By.CSS_SELECTOR, "table.results")
    assert len(tables) == len(results.tables) == 5
    labelled = tables[3].find_elements(By.CSS_SELECTOR, "tbody th")
    assert [th.text for th in labelled] == ["clean | <b>x</b> & y", "fgsm | 0.1"]  # text, not markup
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 3  # robustness_errors, robustness_distortion, heatmap_transfer, distribution_...
    assert all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
               for i in images)
    for img in images:  # each figure links back to its table, and its table links to it
        figure = img.find_element(By.XPATH, "..")
        back = figure.find_element(By.CSS_SELECTOR, "figcaption a").get_attribute("href").split("#")[1]
        section = browser.find_element(By.ID, back)
        assert section.find_elements(By.CSS_SELECTOR, f"a[href='#{figure.get_attribute('id')}']")

    # verdicts: within tolerance, outside, missing (a not-applicable cell), claims held / NOT held / not checked
    errors = tables[0]
    assert "within" in errors.find_element(By.XPATH, ".//tr[th='clean']/td[1]").get_attribute("class")
    outside = errors.find_element(By.XPATH, ".//tr[th='clean']/td[2]")
    assert "outside" in outside.get_attribute("class").split()
    assert outside.text.endswith(" · paper 100 ✗")  # as published, not in our format; the verdict without colour
    assert errors.find_element(By.XPATH, ".//tr[th='clean']/td[1]").text.endswith(" ✓")
    assert "tolerance exact: this column's own tolerance" in outside.get_attribute("title")  # not the table's why
    assert "any error rate will do" not in outside.get_attribute("title")
    assert "verdict: outside tolerance" in outside.get_attribute("title")
    missing = tables[1].find_element(By.XPATH, ".//tr[th='clean']/td[1]")
    assert "missing" in missing.get_attribute("class").split() and missing.get_attribute("data-value") == ""
    claims = [c.get_attribute("class") for c in browser.find_elements(By.CSS_SELECTOR, "li.claim")]
    assert claims == ["claim held", "claim not-held", "claim unchecked"]
    assert "no such attack / small" in browser.find_element(By.CSS_SELECTOR, "ul.absent").text
    assert "McNemar exact p" in browser.find_element(By.CSS_SELECTOR, "ul.paired").text
    assert 'norm="l2"' in browser.find_element(By.CSS_SELECTOR, "ul.attacks").text
    drawn_from = browser.find_element(By.CSS_SELECTOR, "ul.images").text
    assert drawn_from == "wb: mnist test, 40 images drawn with subset seed 5"

    # sorting: the distortion column of "small" (the clean row has no value: it stays last either way)
    table = tables[1]
    before = _values(table)
    heading = table.find_elements(By.CSS_SELECTOR, "thead th")[1]
    heading.click()
    ascending = _values(table)
    numbers = [float(v) for v in ascending if v]
    assert ascending != before and numbers == sorted(numbers) and ascending[-1] == ""
    heading.click()
    descending = _values(table)
    assert [float(v) for v in descending if v] == sorted(numbers, reverse=True) and descending[-1] == ""
    assert heading.get_attribute("aria-sort") == "descending"
    from selenium.webdriver.common.keys import Keys

    more = outside.find_element(By.CSS_SELECTOR, ".more")  # the hover text, in the cell on request
    assert not more.is_displayed() and "verdict: outside tolerance" in more.get_attribute("textContent")
    browser.find_element(By.ID, "show-details").click()
    assert more.is_displayed() and "verdict: outside tolerance" in more.text
    browser.find_element(By.ID, "show-details").click()
    assert not more.is_displayed()
    heading.send_keys(Keys.SPACE)  # a third time (from the keyboard): back to the suite's order
    assert _values(table) == before and heading.get_attribute("aria-sort") is None
    # the row labels stay in view while a wide table scrolls sideways
    label = table.find_element(By.CSS_SELECTOR, "tbody th")
    assert browser.execute_script("return getComputedStyle(arguments[0]).position", label) == "sticky"
    description = browser.find_element(By.CSS_SELECTOR, "p.description")
    assert description.text == "What this suite is for: <i>a test</i>.\nIts second line."  # text, its lines kept

    browser.save_screenshot("/tmp/report.png")
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


def test_report_command_rerenders_without_javascript(run, browser, tmp_path):
    """``rbench report RUN -f html`` rewrites report.html from results.json (here of a copy whose published file
    now has a cell our interval cannot tell apart), and the page shows its tables without JavaScript."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / REPORT_FILE).unlink()
    raw = json.loads((copy / "results.json").read_text())
    cell = next(c for t in raw["tables"] if t["name"] == "distortion" for c in t["cells"]
                if c["row"] == "noise" and c["column"] == "wide")
    inside = cell["value"] - (cell["value"] - cell["low"]) / 2  # in our interval, outside a zero tolerance
    published = tmp_path / "published.toml"
    published.write_text(PUBLISHED.replace('values = { clean = { small = 0.0 } }',
                                           f'column_tolerance = {{ wide = {{ abs = 0.0 }} }}\n'
                                           f'values = {{ clean = {{ small = 0.0 }}, noise = {{ wide = {inside} }} }}'))
    raw["published"] = [str(published)]
    (copy / "results.json").write_text(json.dumps(raw))
    out = rbench("report", str(copy), "-f", "html")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"wrote {copy / REPORT_FILE}"
    page = (copy / REPORT_FILE).read_text()
    assert page.count('<table class="results sortable"') == 5
    assert re.search(r'<td class="compared inconclusive" data-value="[0-9.]+" title="[^"]*too few samples', page)
    assert "An HTML report &lt;of &amp; for&gt; tests" in page and "<of & for>" not in page
    assert "https://" not in page and "http://" not in page  # nothing fetched: the page works offline

    from selenium.webdriver.common.by import By

    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.get((copy / REPORT_FILE).as_uri())
        tables = browser.find_elements(By.CSS_SELECTOR, "table.results")
        assert len(tables) == 5 and all(t.is_displayed() for t in tables)
        assert not browser.find_elements(By.CSS_SELECTOR, "th.sortable")  # the script did not run
        assert browser.find_element(By.CSS_SELECTOR, "td.inconclusive").text.endswith(f"paper {inside:g} ?")
    finally:
        browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})


def test_old_and_degenerate_results(run, tmp_path):
    """Results written before cells had intervals and tables paired tests or attack calls, without published
    files or jobs, and tables with no value at all, zeros, or no cells, render (in-process)."""
    raw = json.loads((run / "results.json").read_text())
    for table in raw["tables"]:
        for key in ("paired", "attack_calls", "metric_calls", "figure", "metric_of"):
            table.pop(key, None)
        for cell in table["cells"]:
            for key in ("n", "low", "high", "interval", "evaluation", "source", "attack", "target", "metric", "call"):
                cell.pop(key, None)
    raw.update(published=[], jobs={"abc": {"label": "an old job", "seconds": "n/a"},
                                   "ghi": {"label": "a stored job", "status": "cached", "seconds": 0.0,
                                           "computed": {"device": "cuda:0 (NVIDIA H200)", "host": "node7",
                                                        "created": "2026-12-01T11:47:41+00:00", "seconds": 12.5}}},
               provenance={"finished": "then"})
    raw.pop("only", None)
    raw.pop("description", None)
    (tmp_path / "results.json").write_text(json.dumps(raw))
    results = RunResults.read(tmp_path)
    results.tables += [
        ResultTable("failed", "All failed", ["a", "b"], ["x"], "rows", "columns", {"m": "%"}, {"m": ".1f"},
                    [Cell("a", "x", None, error="job <x> failed"), Cell("b", "x", None)]),
        ResultTable("zeros", "Zeros", ["a"], ["x", "y"], "attack", "model", {}, {}, [Cell("a", "x", 0.0)],
                    paired=[{"a": "x", "b": "y"}]),
        ResultTable("empty", "Empty", [], [], "rows", "columns", {}, {}, []),
    ]
    page = render(results, tmp_path)
    assert page.count('<table class="results sortable"') == len(results.tables)
    assert "Comparison with the published tables" not in page
    assert 'title="job &lt;x&gt; failed">failed<span class="more">job &lt;x&gt; failed</span></td>' in page
    assert 'data-value="0.0">0.0</td>' in page and 'class="empty" data-value="">-</td>' in page
    assert "an old job" in page and "<img" not in page  # no PNG in this folder
    # a job read from the store says where, when and how long it was computed
    assert ('<td data-value="2026-12-01T11:47:41+00:00">12.50 s, cuda:0 (NVIDIA H200), node7, '
            '2026-12-01 11:47 UTC</td>') in page
    assert 'class="description"' not in page
    # a cell with no store entry behind it says why its keys are empty
    assert "<th scope=\"row\">a / x</th><td><span class=\"note\">none: read from the dataset files alone" in page
    assert "{&#34;a&#34;: &#34;x&#34;, &#34;b&#34;: &#34;y&#34;}" in page  # a paired test of another layout


def test_figures_embedded_are_those_the_reporters_name(tmp_path):
    """report.html embeds the PNGs the reporters say they drew of each table (tables.md links the same): not a
    user's own PNG named like one of a table (found by a ``*_<table>.png`` pattern before), nor ``lines_a_b.png``
    of table ``a b`` under table ``b`` too, nor a named one the folder lacks."""
    for name in ("lines_b.png", "lines_a_b.png", "plot_a_b.png", "heatmap_c.png", "other.png"):
        (tmp_path / name).write_bytes(b"")
    tables = [ResultTable(n, n, [], [], "rows", "columns", {}, {}, [], figure=f)
              for n, f in (("b", "lines"), ("a b", ["lines", "curves"]), ("c", None))]
    results = RunResults("s", "", None, [], {}, tables)
    assert {k: [p.name for p in v] for k, v in figures_of(results, tmp_path).items()} == {
        "b": ["lines_b.png"], "a b": ["lines_a_b.png"], "c": []}
    linked = [line for line in Markdown().render(results).splitlines() if line.startswith("Figures:")]
    assert linked == ["Figures: [lines_b.png](lines_b.png)",  # tables.md links what is named, drawn or not
                      "Figures: [lines_a_b.png](lines_a_b.png), [curves_a_b.png](curves_a_b.png)"]


def test_job_times_are_shown_in_utc_and_say_so():
    """report.html showed a job's time without its zone; one with an offset is now shown in UTC, saying so, and
    one without an offset (its zone unknown) as it is."""
    from rbench.report.html import _minute

    assert _minute("2026-12-01T13:47:41+02:00") == "2026-12-01 11:47 UTC"
    assert _minute("2026-12-01T11:47:41") == "2026-12-01 11:47"
    assert _minute("not a time") == "not a time"
