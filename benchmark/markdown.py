"""Text that goes into a Markdown report (tables.md, ``rbench compare -f md``): labels, titles and notes come from
suites and published files, so they are escaped to stay text: a ``|`` in a row label split its table row into one
column too many, and ``<script>`` or ``&amp;`` in a title was markup to every renderer. Only what would be read as
structure is escaped, so that ``p < 0.001``, ``-rho >= 0.8`` and ``a -> b`` read as they are, raw or rendered."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from tabulate import tabulate

#: what a Markdown renderer reads as HTML (a tag's or comment's start, an entity or character reference), and a
#: backslash that would escape the ASCII punctuation after it (one before a space or a letter is shown as it is)
_MARKUP = re.compile(r"<(?=[A-Za-z/!?])|&(?=#?[A-Za-z0-9]+;)|\\(?=[!-/:-@\[-`{-~])")


def md(text: object) -> str:
    """``text`` as literal Markdown text: a backslash (CommonMark's escape for ASCII punctuation) before a ``<``
    that would open a tag, an ``&`` that would start an entity, a backslash that would escape what follows it, and
    every ``|`` (tabulate does not escape it in GitHub tables). ``attack \\ model`` stays as it is."""
    return _MARKUP.sub(lambda m: "\\" + m.group(0), str(text)).replace("|", "\\|")


#: what starts a block at the start of a line (a heading, quote, list item, fence, thematic break, setext
#: underline, or an ordered item's number)
_BLOCK_START = re.compile(r"^([#>+*=`~_\[-]|\d+(?=[.)]))")


def md_paragraphs(text: str) -> str:
    """Free text (a suite's description) as literal Markdown: each line escaped by :func:`md`, stripped, with
    what would start a block at its start escaped too (a line of ```` ``` ```` opened a code fence that swallowed
    the rest of tables.md), and its line breaks kept (hard breaks; an empty line starts a paragraph)."""
    lines = [_BLOCK_START.sub(lambda m: "\\" + m.group(0) if not m.group(0).isdigit() else m.group(0) + "\\",
                              md(line.strip())) for line in text.splitlines()]
    # a backslash ending a line would escape the hard break after it (and a link definition's "[" is escaped above)
    lines = [line + "\\" if (len(line) - len(line.rstrip("\\"))) % 2 else line for line in lines]
    return "\n".join(line + ("\\" if line and nxt else "") for line, nxt in zip(lines, [*lines[1:], ""],
                                                                                strict=True))


def md_table(rows: Iterable[Sequence[object]], headers: Sequence[object]) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` under ``headers``, every entry escaped by :func:`md` and kept
    as text (no number parsing: ``1.0`` stays ``1.0``)."""
    return tabulate([[md(v) for v in row] for row in rows], headers=[md(h) for h in headers], tablefmt="github",
                    disable_numparse=True)
