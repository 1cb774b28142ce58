"""The ``latex`` reporter: a run's result tables as LaTeX (``tables.tex``), one booktabs ``table`` float per table,
ready for ``\\input`` into a paper.

Each cell is shown as every report shows it (:meth:`rbench.results.ResultTable.shown`: the metric's format, the
95% interval's half-width as ``\\pm`` or both sides as super- and subscripts); a cell with a published value
carries it in parentheses, marked where the comparison's verdict is not "within tolerance" (the marks are
explained in the caption). What the table's caption cannot hold, the images, the attacks' parameters, the paired
tests and the models, follows each float as LaTeX comments, so the file says what it shows without typesetting it.

The file needs ``\\usepackage{booktabs,graphicx}`` (a table wider than the line is scaled down to it, :data:`FIT`),
and puts a ``\\clearpage`` after every :data:`FLOATS_PER_CLEARPAGE` tables (LaTeX holds
at most 18 floats waiting for a page). It is UTF-8, which pdflatex reads for Latin letters (Bečková's č), and
xelatex or lualatex with fontspec and a font holding them for any character; Greek letters (with ϵ ϕ ϑ ϱ ϖ) and
a few math characters (−, ±, ×, ≤, ≥, ≈, ≠, →, ∞, ℓ, ∇, ∈, √, ·) are written as LaTeX math.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tabulate import LATEX_ESCAPE_RULES

from rbench.compare import Comparison, check_claims, compare, describe_verdict, paper_summary
from rbench.report.reporters import (
    INTERVAL_NOTE,
    Reporter,
    describe_attacks,
    describe_images,
    describe_models,
    describe_paired,
    full_title,
    header,
    run_models,
    safe_name,
)
from rbench.results import ResultTable, RunResults, Shown

#: the Greek letters in alphabetical order, and how LaTeX writes each (a capital it has no command for: the Latin
#: letter it looks like); a label such as "σ = 0.1 noise" stopped pdflatex
_GREEK = dict(zip(
    "αβγδεζηθικλμνξοπρστυφχψωςϵϕϑϱϖΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ",
    [rf"\ensuremath{{\{n}}}" if n != "o" else n for n in (
        "alpha beta gamma delta varepsilon zeta eta theta iota kappa lambda mu nu xi o pi rho sigma tau upsilon "
        "phi chi psi omega varsigma").split()]
    + [rf"\ensuremath{{\{n}}}" for n in "epsilon phi vartheta varrho varpi".split()]
    + [n if len(n) == 1 else rf"\ensuremath{{\{n}}}" for n in (
        "A B Gamma Delta E Z H Theta I K Lambda M N Xi O Pi P Sigma T Upsilon Phi X Psi Omega").split()],
    strict=True))


#: characters LaTeX reads as markup in math (tabulate's rules: a cell's number and interval are set in math)
_MATH_ESCAPES = dict(LATEX_ESCAPE_RULES)
#: and in text, with the math characters rbench's own texts hold; brackets braced (after ``\\`` or ``\midrule``
#: a row starting "[0.1, 0.3]" was read as their optional argument), a hyphen closed (``--`` is a dash)
_ESCAPES = {**LATEX_ESCAPE_RULES, "−": r"\ensuremath{-}", "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}",
            "≤": r"\ensuremath{\leq}", "≥": r"\ensuremath{\geq}", "→": r"\ensuremath{\rightarrow}",
            "|": r"\textbar{}", "[": "{[}", "]": "{]}", "-": "-{}", "\n": " ",
            "∞": r"\ensuremath{\infty}", "≈": r"\ensuremath{\approx}", "≠": r"\ensuremath{\neq}",
            "·": r"\ensuremath{\cdot}", "ℓ": r"\ensuremath{\ell}", "∇": r"\ensuremath{\nabla}",
            "∈": r"\ensuremath{\in}", "√": r"\ensuremath{\surd}", "^": r"\textasciicircum{}", **_GREEK}
#: tables per page of floats: LaTeX holds at most 18 floats waiting for a page, and a suite may have 50 tables
FLOATS_PER_CLEARPAGE = 8
#: sets a table at its width, or scaled down to the line width where it is wider (graphicx's ``\resizebox``): the
#: width is measured when the paper is compiled (a count of columns left 5- and 6-column tables 8-63 pt too wide)
FIT = r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi"
#: the mark of a published value by the comparison's verdict on it (none: within tolerance, or no value of ours)
MARKS = {"outside": r"\dagger", "inconclusive": r"\ddagger"}
_MARK_TEXT = {"outside": "outside its tolerance", "inconclusive": "outside its tolerance, but inside our 95\\% "
              "interval (too few samples to tell)"}


def tex(text: str) -> str:
    """``text`` as LaTeX text: each character LaTeX reads as markup escaped (one pass, so an escape is never
    escaped again); a leading ``*`` braced (after ``\\`` it would make the line break's star form)."""
    escaped = "".join(_ESCAPES.get(ch, ch) for ch in text)
    return "{}" + escaped if escaped.lstrip().startswith("*") else escaped


def _math(text: str) -> str:
    """A number as text for math mode: ``12.5%`` -> ``12.5\\%``, ``1.2e-07`` -> ``1.2\\mathrm{e}{-}07`` (not "e
    minus 07"), ``12,345.6`` -> ``12{,}345.6`` (no space after the comma), ``inf`` -> ``\\infty``."""
    escaped = "".join(_MATH_ESCAPES.get(ch, ch) for ch in text).replace(",", "{,}")
    escaped = re.sub(r"(?<=\d)e([+-]?)(\d+)", r"\\mathrm{e}{\1}\2", escaped)
    return re.sub(r"\binf\b", r"\\infty", escaped)


def tex_cell(shown: Shown) -> str:
    """A cell in math mode: ``$3.1 \\pm 1.2$``, ``$3.1^{+7.6}_{-2.3}$``, ``$0.0^{+1.9}$``; ``--`` where it does not
    apply and ``failed`` where its jobs failed."""
    if shown.value == "-":
        return "--"
    if shown.value == "failed":
        return "failed"
    value = _math(shown.value)
    if shown.symmetric:
        return f"${value} \\pm {_math(shown.plus)}$"
    upper = f"^{{+{_math(shown.plus)}}}" if shown.plus else ""
    lower = f"_{{-{_math(shown.minus)}}}" if shown.minus else ""
    return f"${value}{upper}{lower}$"


def _published_text(rows: list[Comparison]) -> str:
    """`` (1.8)`` with each published value of a cell, marked by its verdict (:data:`MARKS`)."""
    parts = []
    for r in rows:
        mark = f"$^{{{MARKS[r.verdict]}}}$" if r.verdict in MARKS else ""
        parts.append(f"{tex(format(r.published, 'g'))}{mark}")
    return f" ({'; '.join(parts)})" if parts else ""


def _comment(lines: Iterable[str]) -> list[str]:
    """Each line as a LaTeX comment (a line break inside one would end the comment)."""
    return [f"% {' '.join(line.splitlines())}" for line in lines]


def _caption(table: ResultTable, published: list[Comparison], intervals: bool) -> str:
    """The title with its unit and sizes, what the ``±`` means where a cell shows an interval (``intervals``), and
    what the published values and their marks are where the table has any."""
    parts = [tex(full_title(table)) + "."]
    if intervals:
        parts.append(r"Each value with the half-width of its 95\% interval ($\pm$), or its two sides where they "
                     "differ.")
    if published:
        papers = sorted({f"{r.paper}, {r.figure}" if r.figure else r.paper for r in published})
        parts.append(f"In parentheses: the published value ({tex('; '.join(papers))})" + "".join(
            f"; ${MARKS[v]}$ {_MARK_TEXT[v]}" for v in MARKS if any(r.verdict == v for r in published)) + ".")
    return " ".join(parts)


def render_table(table: ResultTable, published: list[Comparison], label_prefix: str) -> list[str]:
    """One table float (with the comments that follow it) as lines."""
    by_cell: dict[tuple[str, str], list[Comparison]] = {}
    for r in published:
        by_cell.setdefault((r.row, r.column), []).append(r)
    shown = {(c.row, c.column): table.shown(c, spread=True) for c in table.cells}
    intervals = any(s.plus or s.minus for s in shown.values())
    lines = [r"\begin{table}[htbp]", r"  \centering", f"  \\caption{{{_caption(table, published, intervals)}}}",
             f"  \\label{{tab:{label_prefix}:{safe_name(table.name)}}}", r"  \sbox0{%",
             f"  \\begin{{tabular}}{{l{'r' * len(table.columns)}}}", r"    \toprule",
             "    " + " & ".join(tex(h) for h in header(table)) + r" \\", r"    \midrule"]
    for row in table.rows:
        if row == table.mean_row:  # set apart from the rows it averages, as report.html's rule does
            lines.append(r"    \midrule")
        cells = [tex_cell(shown[(row, col)]) + _published_text(by_cell.pop((row, col), [])) for col in table.columns]
        lines.append("    " + " & ".join([tex(row), *cells]) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}}%", f"  {FIT}", r"\end{table}"]
    lacking = [f"({r.row}, {r.column}): published {r.published:g} ({r.paper}, {r.figure}), {describe_verdict(r)}"
               for rs in by_cell.values() for r in rs]
    if lacking:
        lines += _comment(["Published cells this table lacks:", *lacking])
    if table.data_calls:
        lines += _comment(["Images:", *describe_images(table)])
    if table.attack_calls:
        lines += _comment(["Attacks:", *describe_attacks(table)])
    if table.paired:
        lines += _comment(["Paired tests:", *(describe_paired(p) for p in table.paired)])
    return lines


class Latex(Reporter):
    """``tables.tex``: every result table as a LaTeX ``table`` float (booktabs)."""

    name = "latex"
    suffix = "tables.tex"

    def render(self, results: RunResults) -> str:
        rows = compare(results) if results.published else []
        claims = check_claims(results) if results.published else []
        lines = _comment([f"{self.suffix}: the result tables of rbench suite {results.suite!r}, profile "
                          f"{results.profile or 'default'!r}, as LaTeX; \\input it where \\usepackage{{booktabs,"
                          "graphicx} is loaded (graphicx scales a table wider than the line down to it); UTF-8: "
                          "pdflatex reads Latin letters, xelatex or lualatex with fontspec and a font that has them "
                          "any character.", INTERVAL_NOTE])
        lines += _comment(p.describe() for p in paper_summary(rows, claims))
        prefix = safe_name(results.suite)
        for i, table in enumerate(results.tables):
            if i and i % FLOATS_PER_CLEARPAGE == 0:  # the floats so far are placed before more wait
                lines += ["", r"\clearpage"]
            lines.append("")
            lines += render_table(table, [r for r in rows if r.table == table.name], prefix)
        models = describe_models(run_models(results))
        if models:
            lines += ["", *_comment(["Models:", *models])]
        return "\n".join(lines) + "\n"
