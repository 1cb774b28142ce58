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


#: a legend of more entries than this goes beside the plot, not over it: matplotlib's "best" corner is only the
#: emptiest one, and a 14-line legend of a lines figure hid a data point (an HTML audit, 2026-12-04)
LEGEND_INSIDE_MAX = 6


def place_legends(fig: Any, axes: list[Any], fontsize: float = 7) -> None:
    """Legends for ``axes`` of ``fig`` (a constrained-layout figure): each axes its own in its emptiest corner
    where every one has at most :data:`LEGEND_INSIDE_MAX` entries; else one legend for the whole figure, every
    label once, to the right of the axes, the figure widened by about the legend's width so the axes keep theirs.
    An axes with no labelled artist gets none (matplotlib would warn)."""
    entries = [ax.get_legend_handles_labels() for ax in axes]
    if max((len(labels) for _, labels in entries), default=0) <= LEGEND_INSIDE_MAX:
        for ax, (_, labels) in zip(axes, entries, strict=True):
            if labels:
                ax.legend(fontsize=fontsize, loc="best")
        return
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextToPath

    first: dict[str, Any] = {}
    for handles, labels in entries:
        for handle, label in zip(handles, labels, strict=True):
            first.setdefault(label, handle)
    widest = max(TextToPath().get_text_width_height_descent(label, FontProperties(size=fontsize), ismath=False)[0]
                 for label in first) / 72
    fig.set_figwidth(fig.get_figwidth() + widest + 0.6)  # + the handle, its padding and the frame
    fig.legend(list(first.values()), list(first), fontsize=fontsize, loc="outside right upper")
