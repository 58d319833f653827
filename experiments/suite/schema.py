"""The structure of ``results.json``, checked in one place before anything reads it.

The suite (resuming an output folder, :class:`experiments.suite.store.ResultStore`) and
``xpnet-results`` (:func:`experiments.results.read_results`) both call :func:`problem`
on the parsed file and refuse it, in one sentence, if it returns one: a file the suite
did not write (a list, another tool's object) or one edited into another shape (a
wrong-typed, ragged or missing entry) is never overwritten, half read or miscounted.
The file::

    {"format": 1,                                   optional
     "meta": {"scale": {"quick", "seeds"}, "data": {"train", "val", "test",
              "train_stats"}, "created", "updated", "device", "executor",
              "command", "versions": {library: version}, ...},   optional
     "studies": {name: {"runs": {key: record}, "status": "running" | "done" |
                        "failed", "description", "summary", "error", "wall_s",
                        "figures": [path], "headline": [[cell]], "tables": [{"columns",
                        "rows": [[cell]], ...}], "differences": [{"setting", "ours",
                        "reports", "cause", "tested_by": [study, claim]}],
                        "evidence": {claim: text}, ...}}}

A *record* is what a run stored (``spec``, ``fingerprint``, ``wall_s``,
``finished_at``, ``compute_s`` and what its function returned).  A record of a training
spec (its ``spec`` has ``models``) holds M models, M the length of
``spec["models"]["seeds"]``: every per-model value has M entries (``spec["models"]``'s
lists, ``test_accuracy``, ``test_loss``, ``last_val_accuracy``, ``diverged_step``).  A
training record (it has a ``history``) has all of these, and the history's ``epochs``,
``eta`` and each metric have one entry per record point (``history["steps"]``), a
metric's entry one value per model (``history["diverged_step"]``: one per model).  Other
fields (a study's own) may hold any JSON.
"""

from __future__ import annotations

import json
import re

#: The version of the file's layout this suite writes and reads.
FORMAT = 1
#: A study's status.
STATUSES = ("running", "done", "failed")
#: The per-model results of a training record (one value per model, null for none).
PER_MODEL_RESULTS = ("test_accuracy", "test_loss", "last_val_accuracy")

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-]+\Z")


def problem(data) -> str | None:
    """The first thing in ``data`` (a parsed ``results.json``) that the suite's readers
    cannot take, in words that name its place in the file, or None if it is sound.

    >>> problem({"studies": {"demo": {"runs": {}}}}) is None
    True
    >>> problem([1, 2])
    'the top level is an array, not an object'
    >>> problem({"studies": {"demo": {"runs": "oops"}}})
    'studies.demo.runs is a string, not an object'
    """
    return next(_file(data), None)


# ------------------------------------------------------------------ words
def where(path: tuple) -> str:
    """``("studies", "gradcheck", "runs", "K2-lam0.01", "spec")`` as
    ``studies.gradcheck.runs["K2-lam0.01"].spec``; list indices as ``[i]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "the top level"


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is(value, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "array": list, "string": str,
                              "boolean": bool}[kind])


_ARTICLE = {"object": "an object", "array": "an array", "string": "a string",
            "number": "a number", "integer": "a whole number", "boolean": "true or false"}


def _want(value, path, *kinds, null: bool = False):
    """Yield a problem unless ``value`` is one of ``kinds`` (or null, where allowed)."""
    if (null and value is None) or any(_is(value, k) for k in kinds):
        return
    wanted = " or ".join(_ARTICLE[k] for k in kinds) + (" or null" if null else "")
    yield f"{where(path)} is {_kind(value)}, not {wanted}"


def _list(value) -> list:
    """``value`` if it is an array, else nothing to walk (its kind is checked elsewhere)."""
    return value if isinstance(value, list) else []


def _missing(path) -> str:
    return f"{where(path)} is missing"


def _fields(obj: dict, path, kinds: dict):
    """Each of ``kinds``' keys present in ``obj`` has its kind (a tuple: one of them)."""
    for key, kind in kinds.items():
        if key in obj:
            yield from _want(obj[key], (*path, key), *kind)


def _array(value, path, length: int | None, unit: str, item=None, *, null=False):
    """``value`` is an array of ``length`` entries (one per ``unit``), each of kind
    ``item`` (or null where allowed)."""
    yield from _want(value, path, "array")
    if not isinstance(value, list):
        return
    if length is not None and len(value) != length:
        yield (f"{where(path)} has {len(value)} entr{'y' if len(value) == 1 else 'ies'}, "
               f"not one per {unit} ({length})")
        return
    if item is not None:
        for i, entry in enumerate(value):
            yield from _want(entry, (*path, i), *item, null=null)


# ------------------------------------------------------------------ the file
def _file(data):
    yield from _want(data, (), "object")
    if not isinstance(data, dict):
        return
    if "studies" not in data:
        yield "the top level has no studies"
        return
    if "format" in data and data["format"] != FORMAT:
        yield (f"format is {json.dumps(data['format'])}, and this version of the suite "
               f"reads format {FORMAT}")
        return
    if "meta" in data:
        yield from _meta(data["meta"], ("meta",))
    yield from _want(data["studies"], ("studies",), "object")
    if isinstance(data["studies"], dict):
        for name, entry in data["studies"].items():
            yield from _study(entry, ("studies", name))


META_FIELDS = {"created": ("string",), "updated": ("string",), "device": ("string",),
               "executor": ("string",), "command": ("string",),
               "wall_s_last_invocation": ("number",), "quick": ("boolean",),
               "seeds": ("integer",), "scale": ("object",), "data": ("object",),
               "versions": ("object",)}


def _meta(meta, path):
    yield from _want(meta, path, "object")
    if not isinstance(meta, dict):
        return
    yield from _fields(meta, path, META_FIELDS)
    if isinstance(meta.get("scale"), dict):
        yield from _fields(meta["scale"], (*path, "scale"),
                           {"quick": ("boolean",), "seeds": ("integer",)})
    if isinstance(meta.get("data"), dict):
        yield from _fields(meta["data"], (*path, "data"),
                           {"train": ("integer",), "val": ("integer",), "test": ("integer",),
                            "train_stats": ("string",)})
    if isinstance(meta.get("versions"), dict):
        yield from _fields(meta["versions"], (*path, "versions"),
                           {k: ("string",) for k in meta["versions"]})


# ------------------------------------------------------------------ a study
STUDY_FIELDS = {"description": ("string",), "status": ("string",), "summary": ("string",),
                "error": ("string",), "finished_at": ("string",), "wall_s": ("number",),
                "figures": ("array",), "headline": ("array",), "tables": ("array",),
                "differences": ("array",), "evidence": ("object",), "notes": ("array",)}


def _study(entry, path):
    yield from _want(entry, path, "object")
    if not isinstance(entry, dict):
        return
    if "runs" not in entry:
        yield _missing((*path, "runs"))
        return
    yield from _fields(entry, path, STUDY_FIELDS)
    if "status" in entry and isinstance(entry["status"], str) and \
            entry["status"] not in STATUSES:
        yield (f"{where((*path, 'status'))} is {json.dumps(entry['status'])}, not one of "
               f"{', '.join(STATUSES)}")
    yield from _report_parts(entry, path)
    yield from _want(entry["runs"], (*path, "runs"), "object")
    if isinstance(entry["runs"], dict):
        for key, record in entry["runs"].items():
            yield from _record(record, (*path, "runs", key))


def _report_parts(entry: dict, path):
    """What the report renders of a study: figures, headline rows, tables, differences."""
    for i, figure in enumerate(_list(entry.get("figures"))):
        yield from _want(figure, (*path, "figures", i), "string")
    for i, row in enumerate(_list(entry.get("headline"))):
        yield from _want(row, (*path, "headline", i), "array")
    for i, table in enumerate(_list(entry.get("tables"))):
        at = (*path, "tables", i)
        yield from _want(table, at, "object")
        if not isinstance(table, dict):
            continue
        for key in ("columns", "rows"):
            if key not in table:
                yield _missing((*at, key))
                return
        yield from _array(table["columns"], (*at, "columns"), None, "")
        if isinstance(table["columns"], list):
            yield from _array(table["rows"], (*at, "rows"), None, "", ("array",))
            for r, row in enumerate(_list(table["rows"])):
                yield from _array(row, (*at, "rows", r), len(table["columns"]), "column")
        yield from _fields(table, at, {"title": ("string",), "note": ("string",),
                                       "appendix": ("boolean",)})
    for i, item in enumerate(_list(entry.get("differences"))):
        at = (*path, "differences", i)
        yield from _want(item, at, "object")
        if not isinstance(item, dict):
            continue
        for key in ("setting", "ours", "reports", "cause"):
            if key not in item:
                yield _missing((*at, key))
                return
        if item.get("tested_by") is not None:
            yield from _array(item["tested_by"], (*at, "tested_by"), 2, "of study and claim",
                              ("string",))
    evidence = entry.get("evidence")
    for claim, text in (evidence.items() if isinstance(evidence, dict) else ()):
        yield from _want(text, (*path, "evidence", claim), "string")


# ------------------------------------------------------------------ a run
RECORD_FIELDS = {"spec": ("object",), "fingerprint": ("string",), "wall_s": ("number",),
                 "compute_s": ("number",), "finished_at": ("string",)}


def _record(record, path):
    yield from _want(record, path, "object")
    if not isinstance(record, dict):
        return
    yield from _fields(record, path, RECORD_FIELDS)
    spec = record.get("spec")
    if (isinstance(spec, dict) and "models" in spec) or "history" in record:
        yield from _models(record, path)


def _models(record: dict, path):
    """A record of M models (see the module's docstring): a training record (it has a
    ``history``), or another run of a training spec (bn_eps's look at initial weights)."""
    if "spec" not in record:
        yield _missing((*path, "spec"))
        return
    at = (*path, "spec", "models")
    if "models" not in record["spec"]:
        yield _missing(at)
        return
    models = record["spec"]["models"]
    yield from _want(models, at, "object")
    if not isinstance(models, dict):
        return
    if "seeds" not in models:
        yield _missing((*at, "seeds"))
        return
    yield from _array(models["seeds"], (*at, "seeds"), None, "", ("integer",))
    if not isinstance(models["seeds"], list):
        return
    M = len(models["seeds"])
    if M == 0:
        yield f"{where((*at, 'seeds'))} is empty, and a run has at least one model"
        return
    scalar = ("number", "string", "boolean")
    for name, values in models.items():
        if isinstance(values, dict):  # the schedule's or optimizer's per-model fields
            for field, per_model in values.items():
                yield from _array(per_model, (*at, name, field), M, "model", scalar,
                                  null=True)
        elif values is not None:
            yield from _array(values, (*at, name), M, "model", scalar, null=True)
    if "n_models" in record:
        yield from _want(record["n_models"], (*path, "n_models"), "integer")
        if _is(record["n_models"], "integer") and record["n_models"] != M:
            yield (f"{where((*path, 'n_models'))} is {record['n_models']}, but the run's "
                   f"spec has {M} models")
    if "history" in record:  # trained: its results are all there
        for name in (*PER_MODEL_RESULTS, "diverged_step"):
            if name not in record:
                yield _missing((*path, name))
                return
    for name in PER_MODEL_RESULTS:
        if name in record:
            yield from _array(record[name], (*path, name), M, "model", ("number",),
                              null=True)
    if "diverged_step" in record:
        yield from _array(record["diverged_step"], (*path, "diverged_step"), M, "model",
                          ("integer",))
    if "history" in record:
        yield from _history(record["history"], (*path, "history"), M)


def _history(history, path, M: int):
    yield from _want(history, path, "object")
    if not isinstance(history, dict):
        return
    for name in ("steps", "epochs", "eta", "metrics", "diverged_step"):
        if name not in history:
            yield _missing((*path, name))
            return
    yield from _array(history["steps"], (*path, "steps"), None, "", ("integer",))
    if not isinstance(history["steps"], list):
        return
    n = len(history["steps"])
    yield from _array(history["epochs"], (*path, "epochs"), n, "record point", ("number",),
                      null=True)
    yield from _array(history["eta"], (*path, "eta"), n, "record point", ("number", "array"),
                      null=True)
    etas = _list(history["eta"])
    per_model = any(isinstance(eta, list) for eta in etas)  # then every point's is a list
    for i, eta in enumerate(etas):
        if per_model:
            yield from _array(eta, (*path, "eta", i), M, "model", ("number",), null=True)
    yield from _array(history["diverged_step"], (*path, "diverged_step"), M, "model",
                      ("integer",))
    if history.get("stopped_step") is not None:
        yield from _fields(history, path, {"stopped_step": ("integer",)})
    if history.get("dropped_step") is not None:
        yield from _array(history["dropped_step"], (*path, "dropped_step"), M, "model",
                          ("integer",))
    if history.get("dropped_reason") is not None:
        yield from _array(history["dropped_reason"], (*path, "dropped_reason"), M, "model",
                          ("string",), null=True)
    if history.get("survivors") is not None:
        yield from _array(history["survivors"], (*path, "survivors"), None, "", ("integer",))
    metrics = history["metrics"]
    yield from _want(metrics, (*path, "metrics"), "object")
    if not isinstance(metrics, dict):
        return
    for metric, rows in metrics.items():
        at = (*path, "metrics", metric)
        yield from _array(rows, at, n, "record point", ("array",))
        for i, row in enumerate(_list(rows)):
            yield from _array(row, (*at, i), M, "model", ("number",), null=True)
