"""A suite's output folder as two tidy tables: one row per model, and its curves.

``results.json`` is nested (studies -> runs -> per-model lists); :func:`load` turns it
into two pandas DataFrames a user can filter, group and plot:

- **models**: one row per model of every training run: ``study``, ``key`` (the run's
  key), ``model`` (its index on the run's model axis), ``seed``; the run's per-model
  settings (``spec["models"]``: ``lam``, ``sigma``, per-model ``schedule.*`` fields,
  ...); its per-model results (``test_accuracy``, ``test_loss``, ``diverged_step``,
  ``last_val_accuracy``, and any per-model value a study's own run function records);
  ``final_<metric>`` (each history metric at the last record point); for a PBT run
  ``pbt_root`` (the model's ancestor at step 0) and ``pbt_ancestry`` (``"0:5 -> 120:2"``:
  from each step on, the place its state trained in; :func:`lineage` gives the whole
  schedule); then the run-wide
  settings, flattened with dots (``config.hidden``, ``train.batch_size``,
  ``schedule.type``, ``n_train``, ...) and the run's scalars (``wall_s``, ...).
- **curves**: one row per model, record point and metric: ``study``, ``key``,
  ``model``, ``step``, ``epoch``, ``metric`` (``train_loss``, ``val_accuracy``, ...,
  and ``eta``), ``value`` (NaN where a model had diverged).

Columns come from the stored dicts themselves, so a setting added to a config, the
spec or a record appears without a change here.  Every field of ``NetworkConfig`` and
``TrainConfig`` has its column (``config.norm``, ``config.dropout``, ``train.momentum``,
...) in every row, filled with the run's value or the field's default where the spec
leaves it out, so ``groupby`` on it never meets a NaN that means "the default".  A
per-model value (a Grid setting) is a column under its own name (``lam``, ``dropout``,
``momentum``, ``eps``, ``schedule.eta``...) and also fills the run-wide field it replaces
(``train.momentum``, ``config.bn_eps``): the one whose last dotted part is the per-model
name, else the one whose last part ends in ``_`` + it.  Lists of length M hold one value
per model; other lists (a study's per-layer probes) stay out.
Runs without per-model models (a gradient check) have no rows.

The suite replaces ``results.json`` atomically after every finished run, so reading a
folder it is still writing sees every run finished so far and nothing half-written.

``xpnet-results OUT [--csv DIR]`` prints a summary, or writes ``models.csv`` and
``curves.csv``.  pandas is an optional extra: ``pip install "xpnet[pandas]"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from experiments.suite import schema
from xpnet import History, NetworkConfig, TrainConfig
from xpnet.base.atomic import write_text_atomic
from xpnet.base.codec import to_float_array
from xpnet.errors import XpnetError

RESULTS_FILE = "results.json"
#: The columns that say which model a row is, first in both tables.
ID_COLUMNS = ("study", "key", "model")


class ResultsError(XpnetError):
    """An output folder (or pandas) that the tables cannot be made from."""


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ResultsError('Results as tables need pandas; install it with '
                           'pip install "xpnet[pandas]".') from None
    return pandas


def read_results(out_dir) -> dict:
    """``results.json`` of the suite's output folder ``out_dir``, as saved last.

    Args:
        out_dir: the suite's ``--out`` folder.

    Returns:
        The parsed file: ``{"format", "meta", "studies": {study: {"runs": {key:
        record}, ...}}}``.

    Raises:
        ResultsError: no ``results.json`` there, or one that is not the suite's (its
            first entry of another shape is named, see :mod:`experiments.suite.schema`).

    >>> try:
    ...     read_results("/nonexistent/run")
    ... except ResultsError as err:
    ...     print(err)  # doctest: +NORMALIZE_WHITESPACE
    There is no results.json in /nonexistent/run yet; pass the --out folder of a suite
    run (the file appears when its first run finishes).
    """
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise ResultsError(f"There is no {RESULTS_FILE} in {out_dir} yet; pass the --out "
                           "folder of a suite run (the file appears when its first run "
                           "finishes).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path} is not readable JSON ({type(exc).__name__}); pass the "
                           "--out folder of a suite run.") from None
    what = schema.problem(data)
    if what is not None:
        raise ResultsError(f"{path} is not a results file of the suite ({what}); pass the "
                           "--out folder of a suite run.")
    return data


def flatten(value, prefix: str = "") -> dict:
    """Nested dicts as one dict with dotted keys; lists become tuples (hashable cells).

    Args:
        value: a dict (nested or not), or a leaf value.
        prefix: the key of ``value`` itself ("" at the top).

    Returns:
        ``{dotted key: leaf}``.

    >>> flatten({"config": {"hidden": [50, 50], "batch_norm": True}, "n_train": 900})
    {'config.hidden': (50, 50), 'config.batch_norm': True, 'n_train': 900}
    """
    if not isinstance(value, dict):
        return {prefix: tuple(value) if isinstance(value, list) else value}
    out = {}
    for key, item in value.items():
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def training_runs(data: dict):
    """``(study, key, record)`` of every stored run with per-model models, in stored order."""
    for study, entry in data["studies"].items():
        for key, record in (entry.get("runs") or {}).items():
            models = (record.get("spec") or {}).get("models")
            if isinstance(models, dict) and isinstance(models.get("seeds"), list):
                yield study, key, record


#: The spec's sections that hold a dataclass's fields (see experiments.suite.spec): a
#: per-model value can replace any of their fields, also one the spec then leaves out.
SPEC_SECTIONS = {"config": NetworkConfig, "train": TrainConfig}


def _run_wide_name(name: str, run_wide: dict) -> str:
    """The run-wide column a per-model value ``name`` replaces, else ``name`` itself."""
    if name in run_wide:
        return name
    last = name.rsplit(".", 1)[-1]
    fields = {f"{section}.{field.name}" for section, cls in SPEC_SECTIONS.items()
              for field in dataclasses.fields(cls)}
    candidates = sorted(fields | set(run_wide))
    matches = [c for c in candidates if c.rsplit(".", 1)[-1] == last]
    if not matches:
        matches = [c for c in candidates if c.rsplit(".", 1)[-1].endswith("_" + last)]
    return matches[0] if len(matches) == 1 else name


def _is_per_model(value, M: int) -> bool:
    return (isinstance(value, tuple) and len(value) == M
            and all(v is None or isinstance(v, (bool, int, float, str)) for v in value))


def _with_defaults(run_wide: dict) -> dict:
    """``run_wide`` with every field of :data:`SPEC_SECTIONS` the spec leaves out at its
    default (a spec writes only what differs, so older runs keep their fingerprints), and
    ``config.norm`` beside the legacy ``config.batch_norm`` the spec writes for it."""
    out = dict(run_wide)
    if "config.batch_norm" in out:
        out.setdefault("config.norm", "batch" if out["config.batch_norm"] else None)
    for section, cls in SPEC_SECTIONS.items():
        for field in dataclasses.fields(cls):
            column = f"{section}.{field.name}"
            if column in out or any(k.startswith(column + ".") for k in out):
                continue
            default = field.default
            out[column] = tuple(default) if isinstance(default, (list, tuple)) else default
    if "config.norm" in out:
        out["config.batch_norm"] = out["config.norm"] == "batch"
    return out


def model_rows(study: str, key: str, record: dict, status=None) -> list[dict]:
    """The rows of one training run in the models table (see the module's docstring)."""
    spec = record["spec"]
    M = len(spec["models"]["seeds"])
    run_wide = _with_defaults(flatten({k: v for k, v in spec.items() if k != "models"}))
    per_model = {}
    for name, values in flatten(spec["models"]).items():
        if values is None:  # e.g. sigma when the init's default is used: no values
            per_model.setdefault(name, (None,) * M)
        elif _is_per_model(values, M):
            # Under its own name (a Grid setting's), and in the run-wide field it replaces.
            per_model["seed" if name == "seeds" else name] = values
            wide = _run_wide_name(name, run_wide)
            if wide != name:
                run_wide.pop(wide, None)
                per_model[wide] = values
    results, scalars = {}, {}
    for name, value in flatten({k: v for k, v in record.items()
                                if k not in ("spec", "history")}).items():
        if _is_per_model(value, M):
            results[name] = value
        elif not isinstance(value, tuple):
            scalars[name] = value
    history = record.get("history") or {}
    for metric, rows in (history.get("metrics") or {}).items():
        values = to_float_array(rows)
        if values.ndim == 2 and values.shape[1] == M and len(values):
            results[f"final_{metric}"] = tuple(values[-1])
    if history.get("pbt_events") is not None:  # PBT: each final model's ancestry
        lines = [lineage(record, m) for m in range(M)]
        results["pbt_root"] = tuple(line["ancestry"][0][1] for line in lines)
        results["pbt_ancestry"] = tuple(" -> ".join(f"{step}:{place}" for step, place
                                                    in line["ancestry"]) for line in lines)
    extra = {"study_status": status} if status is not None else {}
    return [{"study": study, "key": key, "model": m,
             **{c: v[m] for c, v in per_model.items()},
             **{c: v[m] for c, v in results.items()}, **run_wide, **scalars, **extra}
            for m in range(M)]


def lineage(record: dict, model: int) -> dict:
    """The ancestry of ``model`` of a PBT run's record and the hyper-parameter schedule it
    followed (:meth:`xpnet.History.lineage`: ``ancestry`` ``[[step, place], ...]``,
    ``steps``, ``places``, and ``rate_scale``, ``lam``... per step)."""
    return History.from_dict(record["history"]).lineage(model)


def curve_frame(study: str, key: str, record: dict):
    """The curves of one training run (see the module's docstring) as a DataFrame."""
    pd = _pandas()
    M = len(record["spec"]["models"]["seeds"])
    history = record.get("history") or {}
    steps = np.asarray(history.get("steps") or [], dtype=np.int64)
    epochs = to_float_array(history.get("epochs") or [np.nan] * len(steps))
    series = dict(history.get("metrics") or {})
    if history.get("eta") is not None:
        series["eta"] = history["eta"]
    frames = []
    for metric, rows in series.items():
        values = to_float_array(rows)
        if values.ndim == 1:  # one value per point for every model (a shared rate)
            values = np.repeat(values[:, None], M, axis=1)
        if values.shape != (len(steps), M):
            continue  # not a per-point, per-model series
        frames.append(pd.DataFrame({
            "study": study, "key": key, "model": np.tile(np.arange(M), len(steps)),
            "step": np.repeat(steps, M), "epoch": np.repeat(epochs, M),
            "metric": metric, "value": values.reshape(-1)}))
    return pd.concat(frames, ignore_index=True) if frames else None


CURVE_COLUMNS = (*ID_COLUMNS, "step", "epoch", "metric", "value")


def load(out_dir):
    """The models and curves tables of the suite's output folder ``out_dir``.

    Returns ``(models, curves)``, two pandas DataFrames: ``models`` has one row per
    model of every training run, ``curves`` one row per model, record point and metric
    (columns: see the module's docstring).  Reads the last complete save, so it works
    while the suite is still writing the folder.

    Args:
        out_dir: the suite's ``--out`` folder.

    Returns:
        ``(models, curves)``, two ``pandas.DataFrame``.

    Raises:
        ResultsError: pandas is not installed, or the folder has no ``results.json``.

    >>> import tempfile
    >>> from experiments.suite.sandbox import sandbox
    >>> from experiments.studies.kit import Grid
    >>> folder = tempfile.mkdtemp()
    >>> ctx = sandbox(folder, study="demo")
    >>> grid = Grid(ctx.seeds, lam=(0.0, 0.01))
    >>> _ = ctx.submit_train("2-layer", grid, hidden=(8,), schedule=ctx.cyclical(1)).result()
    >>> models, curves = load(folder)
    >>> models[["study", "key", "model", "seed", "lam"]]
      study      key  model  seed   lam
    0  demo  2-layer      0     0  0.00
    1  demo  2-layer      1     1  0.00
    2  demo  2-layer      2     0  0.01
    3  demo  2-layer      3     1  0.01
    >>> sorted(curves["metric"].unique())[:3]
    ['eta', 'train_accuracy', 'train_cost']
    """
    pd = _pandas()
    data = read_results(out_dir)
    rows, frames = [], []
    for study, key, record in training_runs(data):
        status = data["studies"][study].get("status")
        rows += model_rows(study, key, record, status)
        frame = curve_frame(study, key, record)
        if frame is not None:
            frames.append(frame)
    models = pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*ID_COLUMNS, "seed"])
    curves = (pd.concat(frames, ignore_index=True) if frames
              else pd.DataFrame(columns=list(CURVE_COLUMNS)))
    return models, curves


# ------------------------------------------------------------------ the command
def summary(models, curves) -> str:
    """Rows and columns of both tables and the test accuracy of each run, as text."""
    lines = [f"models: {len(models)} rows x {models.shape[1]} columns "
             f"(one per model of {models.groupby(['study', 'key']).ngroups if len(models) else 0}"
             " training runs)",
             f"curves: {len(curves)} rows ({', '.join(sorted(curves['metric'].unique()))})"]
    if len(models) and "test_accuracy" in models:
        table = (models.assign(test_accuracy=models["test_accuracy"].astype(float))
                 .groupby(["study", "key"], sort=False)["test_accuracy"]
                 .agg(models="size", mean="mean", min="min", max="max"))
        lines += ["", "test accuracy per run:", table.to_string(float_format="{:.3f}".format)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="xpnet-results",
        description="A suite's output folder as tables: one row per model, and its curves.")
    parser.add_argument("out", metavar="OUT", help="the suite's --out folder")
    parser.add_argument("--csv", metavar="DIR",
                        help="write models.csv and curves.csv to DIR instead of a summary")
    args = parser.parse_args(argv)
    try:
        models, curves = load(args.out)
        if args.csv is None:
            print(summary(models, curves))
            return 0
        folder = Path(args.csv)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, table in (("models", models), ("curves", curves)):
                path = folder / f"{name}.csv"
                write_text_atomic(path, table.to_csv(index=False))
                print(f"{path}: {len(table)} rows")
        except OSError as exc:
            raise ResultsError(f"Could not write to {folder} ({exc.strerror or exc}); pass "
                               "--csv a folder you can write to.") from None
    except XpnetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
