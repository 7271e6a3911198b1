"""Showing a figure in a notebook: saved beside the notebook's outputs, shown inline exactly once.

Every figure of the workbook goes through :func:`show_figure`: it writes the PNG atomically into the notebook's
output folder, closes the matplotlib figure (so the inline backend does not draw it a second time at the end of
the cell) and displays the saved file with the metadata ``{"omnirl_figure": <file name>}``.
:mod:`.audit` reads that metadata back from the executed notebook: an image without it was drawn by something
else (a figure left open, shown twice), and a figure cell without an image hid its figure. A cell that draws no
figure on purpose says why with :func:`no_figure`.

Nothing here selects a matplotlib backend: the kernel's own (inline in Jupyter, Agg in a script) is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import atomic_write

FIGURE_KEY = "omnirl_figure"
"""Output metadata key that names the file an image output shows."""
NO_FIGURE = "no figure:"
"""Prefix of the line :func:`no_figure` prints."""


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` as PNG through a temporary file (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight"), fsync=False)
    return path


def show_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Save ``fig`` to ``path`` (PNG), close it, and display the file once inline, tagged with its name."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    path = save_figure(fig, path, dpi=dpi)
    plt.close(fig)
    display(Image(filename=str(path)), metadata={FIGURE_KEY: path.name})
    return path


def no_figure(reason: str) -> None:
    """Say, in the cell's output, why a figure cell draws nothing this time (the audit accepts the cell then)."""
    print(f"{NO_FIGURE} {reason}")
