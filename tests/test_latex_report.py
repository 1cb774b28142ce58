"""The ``latex`` reporter: tables.tex of a small real run with a published file, compiled by pdflatex (Debian's
``texlive-latex-base`` and ``texlive-latex-recommended``, installed by ``make test``; the compile test skips
without them), and its pieces rendered in-process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support import rbench

from rbench.compare import Comparison
from rbench.report.latex import render_table, tex, tex_cell
from rbench.results import Cell, ResultTable, RunResults, Shown

pytestmark = pytest.mark.slow

#: every character LaTeX reads as markup, a Latin letter pdflatex reads from UTF-8, and the math characters rbench
#: writes into its own texts
TITLE = "Error of Bečková's −ε model: 50% & more_{x} #1 $ ~ ^ \\\\ | <b>"
SUITE = f"""
[suite]
name = "latex_report"
seed = 5
published = ["published.toml"]

[datasets.mnist]
plugin = "mnist"

[models.small]
plugin = "mlp"
params = {{ widths = [16] }}
dataset = "mnist"
n_train = 300
trainer = {{ params = {{ epochs = 1, batch_size = 32, lr = 3e-3 }} }}

[attacks.fgsm]
plugin = "fgsm"
grid = {{ eps = [0.1, 0.3] }}

[evaluations.wb]
dataset = "mnist"
n = 40
sources = ["small"]
targets = ["small"]
attacks = ["fgsm"]

[tables.errors]
title = "{TITLE}"
evaluation = "wb"
columns = "model"
rows = [{{ label = "clean_{{0}} & 100%", attack = "clean" }}, {{ label = "fgsm 0.1", attack = "fgsm(eps=0.1)" }},
        {{ label = "fgsm 0.3", attack = "fgsm(eps=0.3)" }}]
metric = "error"

[tables.distortion]
evaluation = "wb"
rows = "attack"
columns = "model"
metric = {{ plugin = "distortion", params = {{ norm = "l2" }} }}
"""

# no trained model errs on all 40 clean images (outside a tolerance of 0), and any error rate lies within 100 points
PUBLISHED = """
[source]
citation = "A test paper"

[tables.errors]
figure = "Table 1"
tolerance = { abs = 100.0 }
why = "any error rate will do"
column_tolerance = { small = { abs = 0.0 } }
values = { "clean_{0} & 100%" = { small = 100.0 } }

[tables.distortion]
figure = "Table 2"
tolerance = { rel = 10.0 }
why = "any distortion will do"
values = { "fgsm(eps=0.3)" = { small = 5.0 } }
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("latex_report")
    (root / "suite.toml").write_text(SUITE, encoding="utf-8")
    (root / "published.toml").write_text(PUBLISHED)
    out = rbench("run", str(root / "suite.toml"), "--store", str(root / "store"), "--run-dir", str(root / "run"),
                 "-q", "--device", "cpu")
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "run"


def test_tables_tex_shows_every_cell_as_the_other_reports_do(run):
    """tables.tex holds one booktabs float per table, each cell as tables.md shows it (value and 95% interval),
    the published values beside theirs with the mark of their verdict, and ``rbench report -f latex`` prints the
    same file again."""
    text = (run / "tables.tex").read_text(encoding="utf-8")
    again = rbench("report", str(run), "-f", "latex")
    assert again.returncode == 0 and again.stdout == text, again.stderr
    results = RunResults.read(run)
    assert text.count(r"\begin{table}") == len(results.tables) == 2
    for table in results.tables:
        assert f"\\label{{tab:latex_report:{table.name}}}" in text
        for cell in table.cells:
            shown = table.shown(cell, spread=True)
            assert shown.plus or shown.minus or cell.value is None, cell  # every measured cell has an interval
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(tex(cell.row) + " &"))
            assert f" & {tex_cell(shown)}" in line, (line, shown)
    md = (run / "tables.md").read_text(encoding="utf-8")
    errors = results.tables[0]
    clean = errors.cell("clean_{0} & 100%", "small")
    assert errors.format(clean, spread=True) in md  # the same numbers as tables.md
    row = next(ln for ln in text.splitlines() if ln.strip().startswith(r"clean\_\{0\} \& 100\%"))
    assert row.endswith(r"(100$^{\dagger}$) \\"), row  # published 100, outside a tolerance of 0
    assert r"$\dagger$ outside its tolerance" in text and r"\ddagger" not in text
    assert "(5$^" not in text and "(5) \\\\" in text  # the distortion within its tolerance: no mark
    assert (r"Error of Bečková's \ensuremath{-}\ensuremath{\varepsilon} model: 50\% \& more\_\{x\} \#1 \$ "
            r"\textasciitilde{} \textasciicircum{} \textbackslash{} \textbar{} \ensuremath{<}b\ensuremath{>}") in text
    # what the caption cannot hold follows each float as comments: nothing outside a float is typeset
    body = [ln for ln in text.splitlines() if ln and not ln.startswith("%")]
    assert body[0] == r"\begin{table}[htbp]" and body[-1] == r"\end{table}"
    assert "% fgsm(eps=0.3): fgsm(eps=0.3)" in text and "% small: mlp(widths=[16]" in text
    # which images each table's cells are computed on, in every report
    assert "% wb: mnist test, 40 images drawn with subset seed 5" in text
    assert "Images:\n\n- wb: mnist test, 40 images drawn with subset seed 5\n" in md
    assert "<li>wb: mnist test, 40 images drawn with subset seed 5</li>" in (run / "report.html").read_text()
    assert "% published: 1/2 cells within tolerance" in text


def test_tables_tex_compiles_with_pdflatex(run, tmp_path):
    """The file as documented: ``\\input`` into a document that loads booktabs, compiled by pdflatex without an
    error or a character its fonts lack."""
    pdflatex = shutil.which("pdflatex")
    if not pdflatex:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    shutil.copy(run / "tables.tex", tmp_path / "tables.tex")
    (tmp_path / "paper.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n"
                                        "\\begin{document}\n\\input{tables.tex}\n\\end{document}\n")
    out = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    if "booktabs.sty' not found" in log:
        pytest.skip("booktabs is not installed (apt-get install texlive-latex-recommended)")
    assert out.returncode == 0, log[-3000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 0
    assert "Missing character" not in log and "Undefined control sequence" not in log, log[-3000:]


def test_nasty_labels_and_many_wide_tables_compile(tmp_path):
    """A review: a row label starting with "[" was read as the optional argument of ``\\\\`` or ``\\midrule`` (an
    error), one starting with "*" lost it, "--" became a dash, "σ" stopped pdflatex, mnist_full's 51 tables stopped
    it ("100 consecutive dead cycles") and its 12-column tables overran the page by up to 557 pt."""
    pdflatex = shutil.which("pdflatex")
    if not pdflatex:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    from rbench.report.latex import FLOATS_PER_CLEARPAGE, Latex

    rows = ["[0.1, 0.3] eps", "*robust lenet", "--a---b", "σ = 0.1 noise, L∞ ≈ Ρ", "[robust]", "  *x", "ℓ∞ ϵ ∇ a^b"]
    columns = [f"model {i}" for i in range(12)]
    tables = [ResultTable(f"t{k}", f"Table {k}", rows, columns, "rows", "model", {"": "%"}, {},
                          [Cell(r, c, 50.0, n=10, low=20.0, high=80.0, interval="wilson") for r in rows
                           for c in columns]) for k in range(20)]
    text = Latex().render(RunResults("nasty", "", None, [], {}, tables))
    assert text.count(r"\clearpage") == (20 - 1) // FLOATS_PER_CLEARPAGE and text.count(r"\sbox0{") == 20
    assert "{[}0.1, 0.3{]} eps" in text and "{}*robust lenet" in text and "-{}-{}a-{}-{}-{}b" in text
    assert r"\usepackage{booktabs,graphicx}" in text.splitlines()[0]
    (tmp_path / "tables.tex").write_text(text, encoding="utf-8")
    (tmp_path / "paper.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n"
                                        "\\begin{document}\n\\input{tables.tex}\n\\end{document}\n")
    out = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert out.returncode == 0, log[-3000:]
    assert "Missing character" not in log and "Overfull \\hbox" not in log, log[-3000:]


def test_cells_marks_and_escapes():
    """Each form of a cell, the inconclusive verdict's mark and its caption, a published cell the table lacks
    (a comment), and escapes made in one pass (a backslash's escape is not escaped again)."""
    assert tex_cell(Shown("3.1", "1.2", "1.2")) == r"$3.1 \pm 1.2$"
    assert tex_cell(Shown("3.1", "7.6", "2.3")) == r"$3.1^{+7.6}_{-2.3}$"
    assert tex_cell(Shown("0.0", plus="1.9")) == r"$0.0^{+1.9}$"
    assert tex_cell(Shown("100.0", minus="1.9")) == r"$100.0_{-1.9}$"
    assert tex_cell(Shown("12.5%")) == r"$12.5\%$" and tex_cell(Shown("-")) == "--"
    assert tex_cell(Shown("failed")) == "failed"
    assert tex_cell(Shown("1.2e-07", "3e-08", "3e-08")) == r"$1.2\mathrm{e}{-}07 \pm 3\mathrm{e}{-}08$"
    assert tex_cell(Shown("12,345.6")) == "$12{,}345.6$" and tex_cell(Shown("inf")) == r"$\infty$"
    assert tex("a\\b{c}") == r"a\textbackslash{}b\{c\}" and tex("x\ny") == "x y"
    cells = [Cell("a", "m", 50.0, n=10, low=20.0, high=80.0, interval="wilson"), Cell("b", "m", None, error="x")]
    table = ResultTable("t", "T", ["a", "b"], ["m"], "rows", "model", {"": "%"}, {}, cells)
    near = Comparison("t", "a", "m", 50.0, 60.0, -10.0, "±1", False, "Fig. 2", paper="p", verdict="inconclusive")
    gone = Comparison("t", "z", "m", None, 5.0, None, "±1", False, "Fig. 2", paper="p", verdict="missing")
    lines = render_table(table, [near, gone], "s")
    text = "\n".join(lines)
    assert r"a & $50.0 \pm 30.0$ (60$^{\ddagger}$) \\" in text and r"b & failed \\" in text
    assert r"$\ddagger$ outside its tolerance, but inside our 95\% interval" in text and r"\dagger$ outside" \
        not in text.replace(r"\ddagger$ outside", "")
    assert "% Published cells this table lacks:" in text and "% (z, m): published 5 (p, Fig. 2), missing" in text
    assert all(line.startswith(("%", r"\begin", r"\end", "  ")) for line in lines), lines
