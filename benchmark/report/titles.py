"""Figure titles wrapped to the width they are drawn in."""

from __future__ import annotations

import textwrap

#: the share of a figure's width a title may take: an axes' title is centred over the axes, which the y label's
#: margin pushes right; a figure's title over the whole figure
AXES_SHARE, FIGURE_SHARE = 0.8, 0.95


def fit_title(text: str, width_in: float, fontsize: str | float = "medium") -> str:
    """``text`` wrapped at spaces into lines that each measure at most ``width_in`` inches in matplotlib's default
    font at ``fontsize``; a word wider than that is broken. A fixed count of characters per line (what the
    figures used) let a title of wide letters run off the figure's edge, where savefig cut it."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    font, measure = FontProperties(size=fontsize), TextToPath()
    limit = width_in * 72  # points

    def fits(line: str) -> bool:
        return measure.get_text_width_height_descent(line, font, ismath=False)[0] <= limit

    if fits(text):
        return text
    for chars in range(len(text) - 1, 0, -1):
        lines = textwrap.wrap(text, chars)
        if all(fits(line) for line in lines):
            return "\n".join(lines)
    return text
