"""A markdown report from ``results.json``, plus the number formats its tables use.

The report knows nothing of particular studies.  It renders this structure::

    {"meta": {"created", "updated", "device", "scale": {"quick", "seeds"},
              "versions": {...}, "command", ...},
     "studies": {name: {"description", "status", "summary", "wall_s", "error" (if failed),
                        "headline": [[setting, ours, reports], ...],
                        "tables": [{"title", "columns": [...], "rows": [[...]], "note",
                                    "appendix": bool}],
                        "differences": [{"setting", "ours", "reports", "cause",
                                         "tested_by": [study, claim] (optional)}],
                        "evidence": {claim: "what this study found, in words"},
                        "figures": ["figures/x.png", ...], "notes": [...], ...}}}

Cells are strings already (studies format them with :func:`pct`,
:func:`accuracy_cell`, :func:`seeds_cell` and :func:`sci`), so the report is a plain
renderer.  A table marked ``appendix`` is printed at the end of the report (long
detail tables); ``differences`` are where a study's numbers part from the reports',
each with its likely cause, printed as an explanation (not a finding) in their own
section after the headline.  A study decides which of its cells differ with
:func:`differs` (more than :data:`DIFFERS_BY` apart), and says what is known of each;
where another study of the suite tests the cause, the entry names it (``tested_by``) and
the report quotes that study's ``evidence`` for the claim.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from xpnet.base.atomic import write_text_atomic

QUICK_BANNER = (
    "> **Smoke test (`--quick`).** Data and schedules were shrunk: the whole suite took 84 s "
    "on an idle 2-core machine (237 s on a busy one); the numbers below are NOT comparable "
    "to the reports'."
)

#: Chance accuracy on CIFAR-10's ten classes.
CHANCE = 0.1
#: A seed within this of chance is "stuck" (a net stuck at chance predicts one class: 10.0 %
#: of the balanced test set, 8.7-11.3 % of the 1,000 test images of --quick) ...
STUCK_WITHIN = 0.02
#: ... and one more than this above chance "trained"; a cell with both has split seeds.
TRAINED_ABOVE = 0.05
SPLIT_RULE = (f"at least one seed ends within {100 * STUCK_WITHIN:g} points of chance "
              f"({100 * CHANCE:g} %) and another more than {100 * TRAINED_ABOVE:g} points "
              "above it")
#: Our mean accuracy and the reports' figure "differ" when more than this apart (3 points).
DIFFERS_BY = 0.03
STD_NOTE = ("± is the population standard deviation over seeds (NumPy's `std`, ddof = 0), "
            "not the sample one")


# ------------------------------------------------------------------- formats
def pct(values, digits: int = 1) -> str:
    """Accuracies in [0, 1] as ``"53.2 ± 0.3 %"``: mean ± population std over finite values.

    The std is NumPy's default ``ddof=0`` (the report's header says so).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "—"
    if v.size == 1:
        return f"{100 * v[0]:.{digits}f} %"
    return f"{100 * v.mean():.{digits}f} ± {100 * v.std(ddof=0):.{digits}f} %"


def split_outcome(values, chance: float = CHANCE):
    """``(stuck, trained)`` boolean masks over the finite ``values`` if the seeds split, else None.

    Split (``SPLIT_RULE``): some seed within :data:`STUCK_WITHIN` of ``chance`` and
    some other more than :data:`TRAINED_ABOVE` above it.  When split, every seed that is
    not stuck counts as trained.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    stuck = np.abs(v - chance) <= STUCK_WITHIN
    if not stuck.any() or not (v > chance + TRAINED_ABOVE).any():
        return None
    return stuck, ~stuck


def seeds_cell(values, digits: int = 1, chance: float = CHANCE) -> str:
    """:func:`pct`, or each seed with counts where the seeds split (:func:`split_outcome`).

    E.g. ``"2 of 3 trained: 44.6, 50.8 %; 1 stuck at 10.0 %"`` instead of a mean ± std
    that no seed produced.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    split = split_outcome(v, chance)
    if split is None:
        return pct(v, digits)
    stuck, trained = split

    def listed(mask):
        return ", ".join(f"{100 * x:.{digits}f}" for x in np.sort(v[mask])) + " %"

    return (f"{int(trained.sum())} of {v.size} trained: {listed(trained)}; "
            f"{int(stuck.sum())} stuck at {listed(stuck)}")


def sci(x, digits: int = 1) -> str:
    """``7.0e-03``-style scientific notation; ``"—"`` for None/NaN."""
    if x is None or not math.isfinite(float(x)):
        return "—"
    return f"{float(x):.{digits}e}"


def accuracy_cell(accuracy, diverged_step=None, last_finite=None) -> str:
    """An accuracy cell over M models ``(M,)`` that names divergence and split seeds.

    All diverged: ``"diverged at step N (last finite: x %)"`` with N the earliest step
    and x the mean last finite accuracy; some diverged: the survivors' figure plus
    ``"(k/M diverged at step N)"``.  The figure is :func:`seeds_cell`'s: per seed where
    the seeds split.
    """
    acc = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    steps = (np.full(acc.shape, -1) if diverged_step is None
             else np.asarray(diverged_step, dtype=np.int64).reshape(-1))
    dead = steps >= 0
    if not dead.any():
        return seeds_cell(acc)
    first = int(steps[dead].min())
    if dead.all():
        last = "—" if last_finite is None else pct(np.asarray(last_finite)[dead])
        return f"diverged at step {first} (last finite: {last})"
    return f"{seeds_cell(acc[~dead])} ({int(dead.sum())}/{acc.size} diverged at step {first})"


def differs(accuracy, reports) -> bool:
    """Whether our accuracies (one per seed, NaN where a model diverged) differ from the
    reports' by more than :data:`DIFFERS_BY`.

    ``reports`` is their figure in [0, 1], several figures (reports that disagree: ours
    differs when its mean lies more than that outside their range), or None (they give
    none to compare with).  Ours all diverged against a figure of theirs differs.
    """
    if reports is None:
        return False
    figures = np.atleast_1d(np.asarray(reports, dtype=np.float64))
    acc = np.asarray(accuracy, dtype=np.float64).reshape(-1)
    acc = acc[np.isfinite(acc)]
    if acc.size == 0:
        return True
    mean = float(acc.mean())
    return bool(mean < figures.min() - DIFFERS_BY or mean > figures.max() + DIFFERS_BY)


def ours_runs(n_seeds: int) -> str:
    """``"ours is the mean of 3 seeds"``, or ``"ours is one seed too"``."""
    return "ours is one seed too" if n_seeds == 1 else f"ours is the mean of {n_seeds} seeds"


def unexplained(n_seeds: int, known: str | None = None) -> str:
    """The cause of a difference when none is known (said as plainly as that), after
    what is ``known`` of the setting if anything."""
    note = f"the reports give one run, {ours_runs(n_seeds)}"
    return f"{known}; no other cause is known ({note})." if known else f"none known ({note})."


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


def scale_setting(meta: dict, key: str, default=None):
    """``meta["scale"][key]`` (``"seeds"``, ``"quick"``), or the old top-level ``meta[key]``."""
    scale = meta.get("scale")
    if isinstance(scale, dict) and key in scale:
        return scale[key]
    return meta.get(key, default)


def render_report(results: dict, order=None) -> str:
    """The whole report as markdown; ``order`` lists study names (default: as stored)."""
    meta = results.get("meta", {})
    studies = results.get("studies", {})
    # In ``order``, then any other stored study (a study file's, from an earlier run).
    names = [n for n in dict.fromkeys([*(order or []), *studies]) if n in studies]
    out = ["# xpnet: DD2424 Assignment 3 studies on CIFAR-10", ""]
    if scale_setting(meta, "quick"):
        out += [QUICK_BANNER, ""]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    out += [
        f"- Date: {meta.get('updated', meta.get('created', '?'))}",
        f"- Device: {meta.get('device', '?')}",
        f"- Seeds per setting: {scale_setting(meta, 'seeds', '?')} (they train together on "
        "the model axis; the reports give single runs)",
        f"- Accuracies: mean ± std over seeds; {STD_NOTE}. Where the seeds split ({SPLIT_RULE}), "
        "a cell lists each seed and the counts instead.",
        f"- Versions: {versions}",
        f"- Command: `{meta.get('command', '')}`",
        *([f"- Wall time of the last invocation: {_duration(meta['wall_s_last_invocation'])}"
           f" ({meta.get('executor', '?')})"] if meta.get("wall_s_last_invocation") else []),
        "",
    ]
    headline = [[name, *row] for name in names for row in studies[name].get("headline", [])]
    if headline:
        out += ["## Headline: ours vs the reports (test accuracy unless stated)", "",
                markdown_table(["study", "setting", "ours", "reports"], headline), ""]
    if scale_setting(meta, "quick"):
        out += ["*Differences from the reports are not listed: `--quick` numbers are not "
                "comparable with theirs.*", ""]
    else:
        out += _differences(names, studies)
    for name in names:
        out += _study_section(name, studies[name])
    out += _appendix(names, studies)
    return "\n".join(out).rstrip() + "\n"


def _differences(names, studies) -> list[str]:
    """Where we differ from the reports: each difference with its likely cause."""
    items = [(name, d) for name in names for d in studies[name].get("differences", [])]
    if not items:
        return []
    out = ["## Where we differ from the reports", "",
           f"Every setting whose mean test accuracy lies more than {100 * DIFFERS_BY:g} points "
           "from the reports' figure, and every outcome that parts from theirs. Each line "
           "gives the difference (a finding) and then its likely cause, which is an "
           "explanation we have not tested unless a study of this suite tests it: then the "
           "line quotes that study's result.", ""]
    for name, d in items:
        line = f"- **{d['setting']}** ({name}): ours {d['ours']}, reports {d['reports']}. "
        if d.get("tested_by"):
            study, claim = d["tested_by"]
            evidence = studies.get(study, {}).get("evidence", {}).get(claim)
            line += (f"*Likely cause:* {d['cause']} *Tested by the {study} study:* "
                     + (evidence or f"not in this report; run it with `--only {study}`."))
        else:
            line += f"*Likely cause (explanation, not a finding):* {d['cause']}"
        out.append(line)
    return out + [""]


def _table(table: dict, level: str = "###") -> list[str]:
    out = [f"{level} {table['title']}", ""] if table.get("title") else []
    out += [markdown_table(table["columns"], table["rows"]), ""]
    if table.get("note"):
        out += [table["note"], ""]
    return out


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
    if status == "failed" and study.get("error"):
        out += [study["error"], ""]
    for table in study.get("tables", []):
        if table.get("appendix"):
            out += [f"*{table.get('title', 'Details')}: in the appendix at the end of the "
                    "report.*", ""]
        else:
            out += _table(table)
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


def _appendix(names, studies) -> list[str]:
    """The tables marked ``appendix``, after every study."""
    tables = [(name, t) for name in names for t in studies[name].get("tables", [])
              if t.get("appendix")]
    if not tables:
        return []
    out = ["## Appendix", ""]
    for name, table in tables:
        out += _table({**table, "title": f"{table.get('title', 'Details')} ({name})"})
    return out


def _duration(seconds: float) -> str:
    """``"34 min 12 s"``, ``"64 s"``."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def write_report(results: dict, path, order=None) -> Path:
    """Render :func:`render_report` and write it atomically to ``path``."""
    return write_text_atomic(path, render_report(results, order))
