"""`nlab runs report RUN... --out report.md`: a Markdown lab report of finished runs, the analysis the lab used to
write by hand: each run's status and provenance, its config (the options that differ from the phase's defaults,
or all of them), its headline metrics with their 95% intervals and n, analyze-history's findings on its history
(phases/history, the same analysis), its plots (copied beside the report, linked relatively), and the paired
comparison of every two runs of one phase (phases/notebook/compare.py, the one paired test). `--html` also
renders it with the `markdown` library (`pip install 'nlab[report]'`)."""

from __future__ import annotations

import html as _html
import importlib
import itertools
import shutil
from dataclasses import fields
from pathlib import Path

from phases.core import render
from phases.core.errors import InputError
from phases.core.runs import RESUME_ALWAYS_DIFFER
from phases.notebook import index
from phases.notebook.config import PairConfig, ReportConfig
from phases.notebook.inspect import findings_of

HTML_EXTRA = "report"


def _cell(v) -> str:
    text = render.fmt(v) if index.is_scalar(v) else str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(columns: list[str], rows) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines + [""]


def defaults_of(phase: str) -> dict | None:
    """The phase's option defaults (its config class), or None for a phase nlab does not know."""
    from phases import registry

    info = registry.get(phase)
    if info is None:
        return None
    cls = info.load("config")
    try:
        default = cls()
    except TypeError:  # a config with required fields
        return {f.name: f.default for f in fields(cls)}
    return {f.name: getattr(default, f.name) for f in fields(cls)}


def options(config: dict, phase: str, everything: bool) -> list[tuple[str, object, object]]:
    """(option, value, default) of the options to show: those that differ from the phase's defaults (options set
    by the user, or resolved from a per-dataset default), or every one."""
    defaults = defaults_of(phase) or {}
    rows = []
    for k, v in config.items():
        if k in RESUME_ALWAYS_DIFFER:
            continue
        d = defaults.get(k, "(derived)")
        if everything or (k in defaults and v != d and not (isinstance(v, str) and str(d) == v)):
            rows.append((k, v, d))
    return rows


def headline_rows(metrics: dict) -> list[tuple]:
    """The primary metric first, then every metric that carries a 95% interval: (metric, value, interval, n)."""
    from phases.notebook.index import headline

    keys = [metrics.get("primary")] + [k for k in metrics if isinstance(metrics.get(k), (int, float))
                                       and ((f"{k}_ci_low" in metrics) or (f"{k}_low" in metrics))]
    rows = []
    for k in dict.fromkeys(k for k in keys if isinstance(k, str) and k in metrics):
        h = headline({**metrics, "primary": k})
        interval = f"[{render.fmt(h['low'])}, {render.fmt(h['high'])}]" if h["low"] is not None else ""
        rows.append((k + (" (primary)" if k == metrics.get("primary") else ""), h["value"], interval,
                     "" if h["n"] is None else h["n"]))
    return rows


def plots_of(run_dir: Path) -> list[Path]:
    """The run's own plots (*.png anywhere in its folder but the trackers' and weights' folders)."""
    return sorted(p for p in run_dir.rglob("*.png")
                  if not any(part in index._SKIP for part in p.relative_to(run_dir).parts[:-1]))


def _copy_plots(run_dir: Path, run_id: str, assets: Path, out_dir: Path) -> list[str]:
    links = []
    for p in plots_of(run_dir):
        target = assets / run_id / "_".join(p.relative_to(run_dir).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, target)
        links.append(target.relative_to(out_dir).as_posix())
    return links


def _run_section(summary: dict, everything: bool, links: list[str], found: list[dict] | None) -> list[str]:
    m = summary["metrics"]
    lines = [f"## {summary['run_id']} ({summary['phase']})", "",
             f"- status: {index.status_label(summary)}" + (f" ({summary['exit_reason']})"
                                                           if summary["status"] == "failed" else ""),
             f"- started {summary['start_time']}, wall time "
             f"{render.fmt(summary['wall_time_s'], 3) if summary['wall_time_s'] is not None else '?'} s",
             f"- folder: `{summary['run_dir']}`", ""]
    if summary["hint"]:
        lines += [f"Resume with `{summary['hint']}`.", ""]
    rows = options(summary["config"], summary["phase"], everything)
    lines += [f"### Config ({'all options' if everything else 'options that differ from the defaults'})", ""]
    lines += _table(["option", "value", "default"], rows) if rows else ["All options at their defaults.", ""]
    lines += ["### Headline metrics", ""]
    lines += _table(["metric", "value", "95% interval", "n"], headline_rows(m)) if m else ["No metrics.json (the "
                                                                                         "run has not completed).", ""]
    lines += ["### Findings (analyze-history)", ""]
    if found is None:
        lines += ["No history.jsonl to analyse.", ""]
    else:
        lines += [f"- {f['text']}" for f in found] or ["No spike, stagnation, overfitting or forgetting found."]
        lines += [""]
    if links:
        lines += ["### Plots", ""] + [f"![{Path(link).name}]({link})" for link in links] + [""]
    return lines


def _comparisons(summaries: list[dict]) -> tuple[list[str], list[dict]]:
    from phases.notebook.compare import pair, result_rows

    lines, results = [], []
    for a, b in itertools.combinations(summaries, 2):
        if a["phase"] != b["phase"]:
            continue
        title = f"### {a['run_id']} vs {b['run_id']} ({a['phase']})"
        try:
            result = pair(PairConfig(a["run_dir"], b["run_dir"]))
        except InputError as e:  # no shared items, other held-out text: said in the report, not fatal
            lines += [title, "", f"No paired test: {e.message}.", ""]
            results.append({"run_a": a["run_dir"], "run_b": b["run_dir"], "phase": a["phase"], "error": e.message})
            continue
        lines += [title, "", f"{result['test']}.", ""] + _table(["", "value"], result_rows(result))
        lines += [f"**{result['verdict']}**", ""]
        results.append(result)
    return (["## Pairwise comparisons", ""] + lines if lines else []), results


def to_html(markdown_text: str, title: str) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{_html.escape(title)}</title>\n"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}</style></head>\n"
            f"<body>\n{body}\n</body></html>\n")


def _check(c: ReportConfig) -> Path:
    if not c.runs:
        raise InputError("no run given", "pass one or more run folders or run ids (nlab runs list shows them)")
    if c.html:
        try:
            importlib.import_module("markdown")
        except ImportError:
            raise InputError("--html: the markdown library is not installed",
                             f"pip install 'nlab[{HTML_EXTRA}]' (or leave out --html)") from None
    out = Path(c.out)
    if out.suffix.lower() != ".md":
        raise InputError(f"--out {c.out}: the report is Markdown", "name it with .md, e.g. --out report.md")
    if not out.parent.is_dir():
        raise InputError(f"--out {c.out}: no folder {out.parent}", "create the folder first, or write elsewhere")
    return out


def report(config: ReportConfig) -> dict:
    out = _check(config)
    run_dirs = list(dict.fromkeys(index.resolve_run(r) for r in config.runs))  # every run checked before writing
    summaries = [index.summarise(d) for d in run_dirs]
    assets = out.parent / f"{out.stem}_files"
    shutil.rmtree(assets, ignore_errors=True)  # the plots of this report only
    title = config.title or f"nlab lab report: {len(summaries)} run(s)"
    lines = [f"# {title}", ""]
    lines += _table(["run", "phase", "status", "primary", "value", "95% interval", "n"],
                    [(s["run_id"], s["phase"], index.status_label(s), s["primary"] or "", s["value"],
                      f"[{render.fmt(s['low'])}, {render.fmt(s['high'])}]" if s["low"] is not None else "",
                      s["n"] if s["n"] is not None else "") for s in summaries])
    runs_out = []
    for d, s in zip(run_dirs, summaries):
        found = findings_of(d)
        links = _copy_plots(d, s["run_id"], assets, out.parent)
        lines += _run_section(s, config.all_options, links, found)
        runs_out.append({"run_dir": str(d), "phase": s["phase"], "findings": found, "plots": links})
    comparison_lines, comparisons = _comparisons(summaries)
    lines += comparison_lines
    text = "\n".join(lines).rstrip() + "\n"
    out.write_text(text, encoding="utf-8")
    result = {"report": str(out.resolve()), "html": None, "runs": runs_out, "comparisons": comparisons}
    if config.html:
        html_path = out.with_suffix(".html")
        html_path.write_text(to_html(text, title), encoding="utf-8")
        result["html"] = str(html_path.resolve())
    render.say(f"report: {out}" + (f" and {out.with_suffix('.html')}" if config.html else "") +
               f" ({len(summaries)} run(s), {len(comparisons)} comparison(s), "
               f"{sum(len(r['plots']) for r in runs_out)} plot(s))", markup=False)
    return result
