"""Plots written like every other run file: matplotlib without a display, saved atomically (a killed run never
leaves half a PNG)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported only when a plot is made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path | str, dpi: int = 110) -> Path:
    """Save `fig` to `path` through a temporary sibling and a rename, then close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        tmp.replace(path)
    finally:
        pyplot().close(fig)
        tmp.unlink(missing_ok=True)
    return path
