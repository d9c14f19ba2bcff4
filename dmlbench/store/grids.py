"""Retrieval grids: one row per query, its neighbours framed green (same class) or red.

Drawn with matplotlib (one small axes per image) rather than pasted with PIL, so
the captions use the same fonts as the report's plots and a PDF would be vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

RIGHT = "#1a9641"
WRONG = "#d7191c"
QUERY = "#2b83ba"


@dataclass
class Cell:
    image: Image.Image
    caption: str
    correct: bool | None = None  # None: the query itself


@dataclass
class GridRow:
    query: Cell
    groups: list[list[Cell]] = field(default_factory=list)  # e.g. one per compared run


def draw_grid(rows: list[GridRow], path: Path, title: str, group_titles: list[str]) -> Path:
    """A PNG of ``rows``; ``group_titles`` head the neighbour groups (left to right)."""
    groups = len(group_titles)
    per_group = max((len(g) for row in rows for g in row.groups), default=1)
    # columns: query, then each group after a narrow spacer
    widths = [1.0] + [0.25, *[1.0] * per_group] * groups
    cell_inches = 1.05
    # room above the first row for the title (two lines) and, when compared, group titles
    head_inches = 0.55 + 0.25 * (groups > 1)
    height = 1.25 * cell_inches * len(rows) + head_inches
    fig = plt.figure(figsize=(cell_inches * sum(widths), height))
    grid = fig.add_gridspec(len(rows), len(widths), width_ratios=widths, wspace=0.08,
                            hspace=0.45, top=1 - head_inches / height, bottom=0.02)  # fmt: skip
    for r, row in enumerate(rows):
        _cell(fig.add_subplot(grid[r, 0]), row.query)
        for g, cells in enumerate(row.groups):
            first = 1 + g * (per_group + 1) + 1
            for c, cell in enumerate(cells):
                ax = fig.add_subplot(grid[r, first + c])
                _cell(ax, cell)
                if r == 0 and c == 0 and groups > 1:
                    ax.text(0, 1.45, group_titles[g], transform=ax.transAxes, fontsize=8,
                            fontweight="bold", va="bottom")  # fmt: skip
    fig.suptitle(title, fontsize=9, y=1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _cell(ax, cell: Cell) -> None:
    ax.imshow(cell.image)
    ax.set_xticks([])
    ax.set_yticks([])
    colour = QUERY if cell.correct is None else RIGHT if cell.correct else WRONG
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3.5 if cell.correct is not None else 2.5)
    ax.set_title(cell.caption, fontsize=6.5, color=colour if cell.correct is False else "black",
                 pad=2)  # fmt: skip
