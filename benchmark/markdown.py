"""Text that goes into a Markdown report (tables.md, ``rbench compare -f md``): labels, titles and notes come from
suites and published files, so they are escaped to stay text: a ``|`` in a row label split its table row into one
column too many, and ``<script>`` or ``&amp;`` in a title was markup to every renderer."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from tabulate import tabulate


def md(text: object) -> str:
    """``text`` as literal Markdown text: HTML's special characters as entities, ``|`` escaped (tabulate does not
    escape it in GitHub tables; a backslash before it is literal text to GitHub's renderer, which shows ``|``)."""
    return html.escape(str(text), quote=False).replace("|", "\\|")


def md_table(rows: Iterable[Sequence[object]], headers: Sequence[object]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` under ``headers``, every entry escaped by :func:`md` and kept
    as text (no number parsing: ``1.0`` stays ``1.0``)."""
    return tabulate([[md(v) for v in row] for row in rows], headers=[md(h) for h in headers], tablefmt="github",
                    disable_numparse=True)
