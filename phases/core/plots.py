"""The one way a phase makes and saves a matplotlib figure: the Agg backend (no display needed), and the PNG
written atomically (a temporary file in the same folder, then renamed)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported here, not at module import: `nlab --help` stays fast)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path | str, dpi: int = 110) -> Path:
    """Save `fig` to `path` through a temporary sibling and a rename (a killed run never leaves half a PNG), then
    close it."""
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
