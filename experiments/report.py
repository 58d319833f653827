"""A markdown report from ``results.json``, plus the number formats its tables use.

The report knows nothing of particular studies.  It renders this structure::

    {"meta": {"created", "updated", "device", "quick", "seeds", "versions": {...},
              "command", ...},
     "studies": {name: {"description", "status", "summary", "wall_s",
                        "headline": [[setting, ours, reports], ...],
                        "tables": [{"title", "columns": [...], "rows": [[...]], "note"}],
                        "figures": ["figures/x.png", ...], "notes": [...], ...}}}

Cells are strings already (studies format them with :func:`pct`,
:func:`accuracy_cell` and :func:`sci`), so the report is a plain renderer.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from xpnet.atomic import write_text_atomic

QUICK_BANNER = (
    "> **Smoke test (`--quick`).** Data and schedules were shrunk so the whole suite "
    "runs in about a minute; the numbers below are NOT comparable to the reports'."
)


# ------------------------------------------------------------------- formats
def pct(values, digits: int = 1) -> str:
    """Accuracies in [0, 1] as ``"53.2 ± 0.3 %"`` (mean ± std over finite values)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "—"
    if v.size == 1:
        return f"{100 * v[0]:.{digits}f} %"
    return f"{100 * v.mean():.{digits}f} ± {100 * v.std():.{digits}f} %"


def sci(x, digits: int = 1) -> str:
    """``7.0e-03``-style scientific notation; ``"—"`` for None/NaN."""
    if x is None or not math.isfinite(float(x)):
        return "—"
    return f"{float(x):.{digits}e}"


def accuracy_cell(accuracy, diverged_step=None, last_finite=None) -> str:
    """An accuracy cell over M models ``(M,)`` that names divergence.

    All diverged: ``"diverged at step N (last finite: x %)"`` with N the earliest step
    and x the mean last finite accuracy; some diverged: the survivors' figure plus
    ``"(k/M diverged at step N)"``.
    """
    acc = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    steps = (np.full(acc.shape, -1) if diverged_step is None
             else np.asarray(diverged_step, dtype=np.int64).reshape(-1))
    dead = steps >= 0
    if not dead.any():
        return pct(acc)
    first = int(steps[dead].min())
    if dead.all():
        last = "—" if last_finite is None else pct(np.asarray(last_finite)[dead])
        return f"diverged at step {first} (last finite: {last})"
    return f"{pct(acc[~dead])} ({int(dead.sum())}/{acc.size} diverged at step {first})"


def mean_or_nan(values) -> float:
    """NaN-ignoring mean of a sequence (NaN when nothing is finite)."""
    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(v)) if v.size else math.nan


# ------------------------------------------------------------------ markdown
def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(columns, rows) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_report(results: dict, order=None) -> str:
    """The whole report as markdown; ``order`` lists study names (default: as stored)."""
    meta = results.get("meta", {})
    studies = results.get("studies", {})
    names = [n for n in (order or studies) if n in studies]
    out = ["# xpnet: DD2424 Assignment 3 studies on CIFAR-10", ""]
    if meta.get("quick"):
        out += [QUICK_BANNER, ""]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    out += [
        f"- Date: {meta.get('updated', meta.get('created', '?'))}",
        f"- Device: {meta.get('device', '?')}",
        f"- Seeds per setting: {meta.get('seeds', '?')} (accuracies are mean ± std over "
        "seeds that train together on the model axis; the reports give single runs)",
        f"- Versions: {versions}",
        f"- Command: `{meta.get('command', '')}`",
        "",
    ]
    headline = [[name, *row] for name in names for row in studies[name].get("headline", [])]
    if headline:
        out += ["## Headline: ours vs the reports (test accuracy unless stated)", "",
                markdown_table(["study", "setting", "ours", "reports"], headline), ""]
    for name in names:
        out += _study_section(name, studies[name])
    return "\n".join(out).rstrip() + "\n"


def _study_section(name: str, study: dict) -> list[str]:
    out = [f"## {name}", ""]
    if study.get("description"):
        out += [study["description"], ""]
    status = study.get("status", "?")
    wall = study.get("wall_s")
    line = f"Status: {status}"
    if wall is not None:
        line += f"; wall time {wall:.0f} s"
    if study.get("summary"):
        line += f"; {study['summary']}"
    out += [line, ""]
    for table in study.get("tables", []):
        if table.get("title"):
            out += [f"### {table['title']}", ""]
        out += [markdown_table(table["columns"], table["rows"]), ""]
        if table.get("note"):
            out += [table["note"], ""]
    for note in study.get("notes", []):
        out += [f"- {note}"]
    if study.get("notes"):
        out.append("")
    figures = study.get("figures", [])
    if figures:
        out += ["Figures:", ""]
        out += [f"![{Path(f).stem}]({f})" for f in figures]
        out.append("")
    return out


def write_report(results: dict, path, order=None) -> Path:
    """Render :func:`render_report` and write it atomically to ``path``."""
    return write_text_atomic(path, render_report(results, order))
