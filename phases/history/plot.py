"""One PNG: every metric over steps, runs overlaid (a colour per run, a line style per split), stage boundaries
marked with dotted lines and named, spikes circled."""

from __future__ import annotations

from pathlib import Path

from phases.core.plots import pyplot, save
from phases.history.load import History

_STYLES = {"train": "-", "val": "--", "test": ":"}


def plot_histories(histories: list[History], analyses: list[dict], path: Path) -> Path:
    plt = pyplot()
    metrics = sorted({m for h in histories for m in h.metric_names()})
    cols = min(3, len(metrics))
    rows = (len(metrics) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.6 * rows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes.flat, metrics):
        for ri, (h, a) in enumerate(zip(histories, analyses)):
            colour = colours[ri % len(colours)]
            keys = sorted({(p.split, p.task) for p in h.points if metric in p.metrics}, key=str)
            for ki, (split, task) in enumerate(keys):
                if len(histories) == 1:  # one run: a colour per curve; several runs: a colour per run
                    colour = colours[ki % len(colours)]
                pts = sorted((p.step, p.metrics[metric]) for p in h.points
                             if p.split == split and p.task == task and metric in p.metrics)
                label = f"{h.name} {split}" + (f" [{task}]" if task is not None else "")
                ax.plot([s for s, _ in pts], [v for _, v in pts], _STYLES.get(split, "-."), color=colour,
                        alpha=0.9 if task is None else 0.6, lw=1.2, label=label, marker="." if len(pts) < 40 else None)
            for b in a["boundaries"]:
                ax.axvline(b["boundary_step"], color="grey" if len(histories) == 1 else colour, ls=":", lw=0.9)
                if ri == 0:
                    ax.text(b["boundary_step"], 1.0, f" {b['to_stage']}", transform=ax.get_xaxis_transform(),
                            fontsize=7, va="top", rotation=90)
                if b["is_spike"] and metric == "loss":
                    ax.plot([b["peak_step"]], [b["peak_loss"]], "o", mfc="none", mec="red", ms=10)
        values = [p.metrics[metric] for h in histories for p in h.points if metric in p.metrics]
        if values and min(values) > 0 and max(values) / min(values) > 20:
            ax.set_yscale("log")
        ax.set_title(metric)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    return save(fig, path)
