"""How rbench's figures look where several figures share it: titles wrapped to the width they are drawn in, and
the line of a table's mean row (column)."""

from __future__ import annotations

from typing import Any

#: the share of a figure's width a title may take: an axes' title is centred over the axes, which the y label's
#: margin pushes right; a figure's title over the whole figure
AXES_SHARE, FIGURE_SHARE = 0.8, 0.95


def line_style(mean: bool) -> dict[str, Any]:
    """Keyword arguments of a line for a row: the mean over the other rows thick and black, so it stands out
    among them; an ordinary row's keeps matplotlib's colour cycle."""
    return {"color": "black", "linewidth": 2.2} if mean else {"linewidth": 1.2}


def fit_title(text: str, width_in: float, fontsize: str | float = "medium") -> str:
    """``text`` wrapped at spaces into lines that each measure at most ``width_in`` inches in matplotlib's default
    font at ``fontsize``, filled greedily word by word; a word wider than that is broken. A fixed count of
    characters per line (what the figures used) let a title of wide letters run off the figure's edge, where
    savefig cut it. Hand-written: textwrap counts characters, matplotlib's ``wrap=True`` wraps at draw time to the
    figure's edge, where a constrained layout has no room reserved for the lines it adds."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    font, measure = FontProperties(size=fontsize), TextToPath()
    limit = width_in * 72  # points

    def fits(line: str) -> bool:
        return measure.get_text_width_height_descent(line, font, ismath=False)[0] <= limit

    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and fits(candidate):
            lines[-1] = candidate
            continue
        while not fits(word) and len(word) > 1:  # a word wider than the line: its widest piece that fits
            cut = next((i for i in range(len(word) - 1, 0, -1) if fits(word[:i])), 1)
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return "\n".join(lines)
