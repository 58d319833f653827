"""A fitted :class:`~xpnet.estimators.classifier.Classifier` or
:class:`~xpnet.estimators.classifier_cv.ClassifierCV` in a ``.npz`` file, without pickle.

The file is a :meth:`Network.save <xpnet.network.network.Network.save>` checkpoint (see
:mod:`xpnet.network.checkpoint`) with more members, so ``Network.load`` reads it too:
``classifier`` (the Classifier's own settings as JSON) and ``classes`` (its ``classes_``
``(C,)``: numbers, or strings as text); a ClassifierCV's file adds ``search`` (JSON: the
search's own keywords, ``cv_results_``, ``val_scores_``, ``survivors_`` and the best
indices), and ``Classifier.load`` reads it as the Classifier of all its remaining models.
Loading checks what :mod:`xpnet.network.checkpoint` checks, and the settings, the classes (1-D,
unique, sorted, finite) and the search's indices against the network they describe.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np

from xpnet.base import codec
from xpnet.errors import CheckpointError, XpnetError
from xpnet.estimators import common
from xpnet.estimators.keywords import network_keywords
from xpnet.network import checkpoint
from xpnet.network.network import Network
from xpnet.training import optim

#: Own keywords a checkpoint stores beside the network (which holds the network's).
SAVED = ("sigma", "momentum", "optimizer", "batch_size", "n_classes", "evals_per_cycle",
         "train_eval_size", "dtype")
#: A ClassifierCV keyword that a file does not store: the load's ``device`` replaces it,
#: and schedules are not saved (``fit`` after ``load`` uses the default, as for Classifier).
NOT_SAVED = ("schedule", "halving", "pbt", "device")
#: The keys of the ``search`` member, and the dtypes a ``cv_results_`` column may have.
SEARCH_KEYS = ("params", "cv_results", "val_scores", "survivors", "best_index",
               "best_model_index")
COLUMN_DTYPES = ("float64", "int32", "int64", "object")


def save(clf, path) -> None:
    """Write fitted ``clf`` to ``path`` atomically."""
    clf._fitted()  # refuses an unfitted classifier in its sentence
    checkpoint.write(path, _state(clf, clf.classes_))


def _state(clf, classes, **settings_changes) -> dict[str, np.ndarray]:
    net = clf._fitted()
    state = net.state_dict()
    checked = clf._settings()
    settings = {name: checked[name] for name in SAVED}
    optimizer = clf.optimizer
    survivors = getattr(clf, "survivors_", None)
    if survivors is not None:  # halving (or divergence) left some models: theirs only
        kept = [int(i) for i in common.host(survivors)]
        settings.update({name: _kept(settings[name], kept, net.n_models)
                         for name in ("sigma", "momentum")})
        if optimizer is not None:
            optimizer = dataclasses.replace(optimizer, **{
                name: _kept(getattr(optimizer, name), kept, net.n_models)
                for name in optimizer.per_model_fields()})
    settings["optimizer"] = optim.to_dict(optimizer)
    settings.update(settings_changes)
    state["classifier"] = np.array(json.dumps(settings))
    # labels held as objects (strings) become text; numbers stay numbers
    classes = np.asarray(common.host(classes).tolist())
    if classes.dtype.kind not in "biufU":
        raise CheckpointError("These class labels cannot be saved without pickle; "
                              "fit on numbers or strings to save the classifier.")
    state["classes"] = classes
    return state


def _kept(value, kept: list[int], n_models: int):
    """A per-model setting of the models that started (a tuple) for the ``kept`` ones
    still in the network; one value for all stays as it is."""
    if isinstance(value, tuple) and len(value) != n_models:
        return tuple(value[i] for i in kept)
    return value


def load(cls, path, device="cpu"):
    """A fitted ``cls`` (a Classifier) from a file written by :func:`save`, by
    ``ClassifierCV.save`` (all its remaining models) or by ``Network.save``.

    It predicts and scores at once; ``fit`` retrains from scratch with the stored
    settings (architecture, ``lam``, ``seeds``, ``bn_eps``, momentum, batch size, ...).
    A plain ``Network`` checkpoint has classes ``0 .. C - 1``.
    """
    contents = checkpoint.read(path, "pass a file written by Classifier.save",
                               extras=("classifier", "classes"))
    return _classifier(cls, contents, device)


def _classifier(cls, contents: checkpoint.Contents, device):
    """The Classifier ``contents`` holds, its settings and classes checked."""
    net = checkpoint.network(Network, contents, device)
    settings = contents.extras.get("classifier", {})
    if not isinstance(settings, dict):
        raise contents.error("classifier", f"is a JSON {checkpoint.json_kind(settings)}, not "
                             "an object of settings")
    unknown = sorted(set(settings) - set(SAVED))
    if unknown:
        raise contents.error("classifier", f"has an unknown setting {unknown[0]!r}")
    settings = dict(settings)
    if settings.get("optimizer") is not None:
        settings["optimizer"] = _optimizer(contents, "classifier", settings["optimizer"])
    c = net.config
    stored = {name: getattr(c, name) for name in network_keywords()}
    for name, values in net.per_model_host.items():  # one value per model, or one for all
        stored[name] = float(values[0]) if np.all(values == values[0]) else tuple(
            values.tolist())
    try:
        clf = cls(hidden=c.hidden, lam=tuple(net.lam_host.tolist()),
                  seeds=0 if net.seeds is None else tuple(net.seeds), device=device,
                  **stored, **settings)
    except XpnetError as exc:
        raise contents.error("classifier", f"has settings xpnet refuses: "
                             f"{checkpoint.clause(exc)}") from None
    arrays_dtype = next(iter(contents.params.values())).dtype.name
    if "dtype" in settings and settings["dtype"] != arrays_dtype:
        raise contents.error("classifier", f"says dtype {settings['dtype']!r} but the "
                             f"network's arrays are {arrays_dtype}")
    classes = _classes(contents, settings.get("n_classes"))
    clf.network_, clf.history_ = net, None
    clf._fitted_attributes(classes, None)
    return clf


def _optimizer(contents, member: str, d):
    """The optimizer options ``d`` describes (as :func:`xpnet.training.optim.to_dict`
    writes them)."""
    fields = None
    if isinstance(d, dict) and d.get("type") in optim.OPTIMIZERS:
        fields = {f for f in optim.OPTIMIZERS[d["type"]].__dataclass_fields__}
    if fields is None or not set(d) - {"type"} <= fields:
        raise contents.error(member, f"has an optimizer xpnet does not know: {checkpoint.short(d)}")
    try:
        return optim.from_dict(d)
    except XpnetError as exc:
        raise contents.error(member, f"has optimizer options xpnet refuses: "
                             f"{checkpoint.clause(exc)}") from None


def _classes(contents, n_classes) -> np.ndarray:
    """The checked ``classes`` ``(C,)``: unique and sorted (as ``fit`` makes them), finite,
    ``0 .. C - 1`` where the settings give ``n_classes``; a Network's file: ``0 .. C - 1``."""
    C = contents.config.n_classes
    classes = contents.extras.get("classes")
    if classes is None:
        return np.arange(C)
    if classes.dtype.kind == "f" and not np.all(np.isfinite(classes)):
        raise contents.error("classes", "holds NaN or infinite labels")
    if not np.all(classes[1:] > classes[:-1]):
        raise contents.error("classes", "is not sorted without repeats, as fit makes it")
    if n_classes is not None and n_classes != C:
        raise contents.error("classifier", f"gives n_classes={n_classes} but its network has "
                             f"{C} outputs")
    if n_classes is not None and not np.array_equal(classes, np.arange(C)):
        raise contents.error("classes", f"is not 0 to {C - 1} while its settings give "
                             f"n_classes={n_classes}")
    return classes


# ------------------------------------------------------------------- ClassifierCV
def save_search(search, path) -> None:
    """Write fitted ClassifierCV ``search`` to ``path`` atomically: the network of every
    model still in it, ``classes_``, and the ``search`` member."""
    search._best()  # refuses an unfitted search in its sentence
    clf = search.classifier_
    # the inner classifier was fitted on codes 0 .. C - 1; the file holds the real labels
    state = _state(clf, search.classes_, n_classes=None)
    params = {k: v for k, v in search.get_params(deep=False).items() if k not in NOT_SAVED}
    params["optimizer"] = optim.to_dict(params["optimizer"])
    record = {
        "params": codec.to_jsonable(params),
        "cv_results": {k: {"dtype": np.asarray(v).dtype.name,
                           "values": codec.to_jsonable(np.asarray(v))}
                       for k, v in search.cv_results_.items() if k != "params"},
        "val_scores": codec.to_jsonable(search.val_scores_),
        "survivors": [int(i) for i in np.asarray(search.survivors_)],
        "best_index": int(search.best_index_),
        "best_model_index": int(search.best_model_index_)}
    state["search"] = np.array(json.dumps(record))
    checkpoint.write(path, state)


def load_search(cls, classifier_cls, path, device="cpu"):
    """A fitted ``cls`` (a ClassifierCV) from a file written by :func:`save_search`.

    It predicts and scores at once, with the fitted attributes ``fit`` sets
    (``cv_results_``, ``best_params_``, ``best_score_``, ``model_params_``, ...; the fit
    and score times are those of the original fit).  ``schedule``, ``halving`` and ``pbt``
    are not stored: a later ``fit`` uses the defaults unless they are set again.
    """
    contents = checkpoint.read(path, "pass a file written by ClassifierCV.save",
                               extras=("classifier", "classes", "search"))
    if "search" not in contents.extras:
        raise contents.error(None, "it holds no 'search' member: it is a Classifier's or a "
                             "Network's file, which Classifier.load reads")
    clf = _classifier(classifier_cls, contents, device)
    record = contents.extras["search"]
    if not (isinstance(record, dict) and set(record) == set(SEARCH_KEYS)):
        raise contents.error("search", f"is not an object of {', '.join(SEARCH_KEYS)}")
    search = _search(cls, contents, record["params"], device)
    candidates = _candidates(contents, search)
    n_seeds = len(search.seeds)
    total = len(candidates) * n_seeds
    survivors = _survivors(contents, record["survivors"], total, clf.n_models)
    val_scores = _val_scores(contents, record["val_scores"], total, survivors)
    best = _index(contents, "best_index", record["best_index"], len(candidates))
    best_model = _index(contents, "best_model_index", record["best_model_index"], total)
    if best_model not in survivors or best_model // n_seeds != best:
        raise contents.error("search", f"has best_model_index {best_model}, not a remaining "
                             f"model of candidate {best}")
    results = _cv_results(contents, record["cv_results"], len(candidates))
    results = {"params": candidates, **results}
    # the inner classifier predicts codes 0 .. C - 1, as fit left it
    classes = clf.classes_
    clf.n_classes = len(classes)
    clf._fitted_attributes(np.arange(len(classes)), None)
    clf.survivors_ = survivors
    search.classifier_, search.survivors_ = clf, survivors
    search.model_params_ = [{**c, "seeds": s} for c in candidates for s in search.seeds]
    search.val_scores_ = val_scores
    search.cv_results_ = results
    search.best_index_, search.best_model_index_ = best, best_model
    search.best_params_ = dict(candidates[best])
    search.best_score_ = float(results["mean_test_score"][best])
    search.classes_ = classes
    search.n_features_in_ = contents.config.d_in
    return search


def _search(cls, contents, params, device):
    """The ClassifierCV that ``params`` (its stored keywords) describe."""
    if not isinstance(params, dict):
        raise contents.error("search", "has params that are not an object of keywords")
    params = dict(params)
    if params.get("optimizer") is not None:
        params["optimizer"] = _optimizer(contents, "search", params["optimizer"])
    lams, seeds, grid = params.get("lams"), params.get("seeds"), params.get("param_grid")
    if not (_numbers(lams) and isinstance(seeds, list) and seeds
            and all(checkpoint.is_int(s) and s >= 0 for s in seeds)
            and (grid is None or (isinstance(grid, dict)
                                  and all(_numbers(v) for v in grid.values())))):
        raise contents.error("search", "has lams, seeds or param_grid that are not lists of "
                             "numbers")
    # JSON has lists where the keywords had tuples (as NetworkConfig.from_dict reads them)
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    if grid is not None:
        params["param_grid"] = {k: tuple(v) for k, v in grid.items()}
    try:
        return cls(**params, device=device)
    except XpnetError as exc:
        raise contents.error("search", f"has keywords xpnet refuses: "
                             f"{checkpoint.clause(exc)}") from None


def _candidates(contents, search) -> list[dict]:
    try:
        return search.candidates()
    except XpnetError as exc:
        raise contents.error("search", f"has a grid xpnet refuses: "
                             f"{checkpoint.clause(exc)}") from None


def _survivors(contents, survivors, total: int, n_models: int) -> np.ndarray:
    """Indices of the network's models among all ``total``: increasing, one per model."""
    if not (isinstance(survivors, list) and len(survivors) == n_models
            and all(checkpoint.is_int(i) and 0 <= i < total for i in survivors)
            and all(a < b for a, b in zip(survivors, survivors[1:], strict=False))):
        raise contents.error("search", f"has survivors {checkpoint.short(survivors)}, not "
                             f"{n_models} increasing indices below {total} (one per model)")
    return np.array(survivors, dtype=np.int64)


def _val_scores(contents, scores, total: int, survivors: np.ndarray) -> np.ndarray:
    """``(total,)`` accuracies: in [0, 1] for the remaining models, null for the dropped."""
    if not (isinstance(scores, list) and len(scores) == total
            and all(s is None or _is_number(s) for s in scores)):
        raise contents.error("search", f"has val_scores that are not {total} numbers or null")
    values = codec.to_float_array(scores)
    kept = np.zeros(total, bool)
    kept[survivors] = True
    ok = np.where(kept, (values >= 0) & (values <= 1), np.isnan(values))
    if not np.all(ok):
        raise contents.error("search", "has val_scores that are not accuracies of its "
                             "remaining models (and null for the dropped)")
    return values


def _index(contents, name: str, value, n: int) -> int:
    if not (checkpoint.is_int(value) and 0 <= value < n):
        raise contents.error("search", f"has {name} {checkpoint.short(value)}, not an index "
                             f"below {n}")
    return value


def _cv_results(contents, columns, n: int) -> dict[str, np.ndarray]:
    """``cv_results_`` but ``params``: columns of ``n`` values in the dtypes they had."""
    if not (isinstance(columns, dict) and "mean_test_score" in columns):
        raise contents.error("search", "has cv_results without mean_test_score")
    out = {}
    for key, column in columns.items():
        if not (re.fullmatch(r"[a-z][a-z0-9_]*", key) and key != "params"
                and isinstance(column, dict) and set(column) == {"dtype", "values"}
                and column["dtype"] in COLUMN_DTYPES and isinstance(column["values"], list)
                and len(column["values"]) == n):
            raise contents.error("search", f"has a cv_results column {checkpoint.short(key)} "
                                 f"that is not {n} values of {', '.join(COLUMN_DTYPES)}")
        values, dtype = column["values"], column["dtype"]
        whole = dtype.startswith("int")
        if not all((checkpoint.is_int(v) if whole else (v is None or _is_number(v)))
                   for v in values):
            raise contents.error("search", f"has a cv_results column {key!r} whose values "
                                 f"are not all {dtype}")
        if dtype == "float64":
            out[key] = codec.to_float_array(values)
        else:  # int32, int64, or object (a param_ column: the grid's numbers)
            out[key] = np.array(values, dtype=dtype)
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(values) -> bool:
    return isinstance(values, list) and len(values) > 0 and all(_is_number(v) for v in values)

