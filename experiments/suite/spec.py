"""The run-spec format, in one place: how a training run is written down and read back.

A run's *spec* is a JSON-able dict holding everything that determines its result, so
its fingerprint (:func:`experiments.suite.store.fingerprint`) decides whether a stored
record can be reused, and any worker can compute it:

- ``config``: :class:`xpnet.NetworkConfig` as a dict (``NetworkConfig.spec_dict``: fields
  newer than the first format only when not at their defaults); ``train``:
  :class:`xpnet.TrainConfig` fields, ``optimizer`` (``{"type": name, **fields}``) only
  when not SGD; ``schedule``: ``{"type": class name, **fields}``, lengths in steps (one
  given in epochs is turned into steps, :func:`in_steps`); ``n_train``; ``data``:
  the data's sizes and training statistics.
- ``models``: every per-model value as a list of length M (``seeds``, ``lam``, ``sigma``,
  and when used the config's per-model fields (``eps`` for ``bn_eps``, ``dropout``...),
  ``momentum``, and ``schedule`` / ``optimizer``: their per-model fields, which are then
  absent from ``spec["schedule"]`` / ``spec["train"]["optimizer"]``).  That is what lets
  a run of M lockstep models be cut into groups (:func:`split_spec`) whose records
  merge back into the record of the whole (:func:`merge_records`).
- ``halving`` (only in runs that use it, so other fingerprints are unchanged): the
  :class:`xpnet.Halving` schedule's fields.  Such a run is never cut into model groups:
  its rungs rank all its models together.
- ``pbt`` (likewise): the :class:`xpnet.PBT` schedule's fields; ``ensemble`` (likewise):
  k, for the record's ``ensemble_test_accuracy`` (the mean probabilities of the k models
  with the best validation accuracy).  Neither run is cut into model groups.

:func:`train_spec` writes a spec; :func:`make_schedule` and :func:`make_train_config`
read one.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from xpnet import PBT, Halving, TrainConfig
from xpnet.errors import XpnetError
from xpnet.network import config as network_config
from xpnet.nn import options
from xpnet.training import optim, record_steps
from xpnet.training import schedules as _schedules


class SpecError(XpnetError):
    """Per-model values of one run that do not fit together."""


#: Names the spec gives options that the first spec format named otherwise.
SPEC_NAMES = {"bn_eps": "eps"}
#: Keywords of the first format, and what they name now: ``eps`` is ``bn_eps`` and
#: ``batch_norm=True/False`` is ``norm="batch"/None``.
LEGACY = {"eps": "bn_eps", "batch_norm": "norm"}


def network_options(given: dict) -> dict:
    """``given`` keywords as :class:`xpnet.NetworkConfig` fields (legacy names mapped).

    Raises a one-sentence :class:`SpecError` for a name that is no option.
    """
    names = [f.name for f in dataclasses.fields(network_config.NetworkConfig)
             if f.name not in ("d_in", "n_classes")]
    out = {}
    for name, value in given.items():
        if name == "batch_norm":
            name, value = "norm", "batch" if value else None
        name = LEGACY.get(name, name)
        if name not in names:
            raise SpecError(f"Unknown training option {name!r}; use one of: "
                            f"{', '.join(names)}, or the legacy eps and batch_norm.")
        out[name] = value
    return out


def grid_options(per_model: dict) -> dict:
    """The per-model settings of a grid that are network options, by field name."""
    names = set(options.per_model_names(network_config.NetworkConfig))
    return network_options({k: v for k, v in per_model.items()
                            if k in names or LEGACY.get(k) in names})


def train_spec(*, data: dict, d_in: int, n_classes: int, hidden, seeds, lam, sigma=None,
               schedule, train: TrainConfig, n_train: int, halving: Halving | None = None,
               pbt: PBT | None = None, ensemble: int | None = None,
               **network_fields) -> dict:
    """The spec of a training run (see :func:`experiments.suite.tasks.train_and_test`).

    ``data`` is the data's sizes and statistics (``RunEnv.data_sizes``), ``d_in`` and
    ``n_classes`` its input and class counts, ``n_train`` the training images used;
    ``network_fields`` are :class:`xpnet.NetworkConfig` fields (``norm="layer"``,
    ``dropout=[0, 0.1]``, legacy ``batch_norm`` and ``eps``; see :func:`network_options`).

    Everything that determines the result; the dataclasses give every field, so a
    setting added to one of them later cannot be left out of the fingerprint.
    ``seeds``, ``lam``, ``sigma`` and the config's per-model fields (``bn_eps`` as
    ``eps``, ``dropout``...) are scalars or one value per model, as are the schedule's
    and the optimizer's per-model fields and ``train.momentum``; every per-model value
    goes under ``spec["models"]``, where :func:`split_spec` can cut it into model groups.
    """
    schedule = in_steps(schedule, n_train, train.batch_size)
    fields = network_options(network_fields)
    per_model_names = options.per_model_names(network_config.NetworkConfig)
    given = {name: fields.pop(name) for name in per_model_names if name in fields}
    given = {name: v for name, v in given.items() if v is not None}  # None: the default
    config = network_config.NetworkConfig(d_in=d_in, hidden=tuple(hidden),
                                          n_classes=n_classes, **fields)
    field_of = {f.name: f for f in dataclasses.fields(config)}
    sched = {"type": type(schedule).__name__, **dataclasses.asdict(schedule)}
    train_fields = {f.name: getattr(train, f.name) for f in dataclasses.fields(train)}
    optimizer = train_fields.pop("optimizer")
    per_model = {"seeds": seeds, "lam": lam, "sigma": sigma}
    for name, value in given.items():  # absent unless used: older runs keep their fingerprints
        per_model[SPEC_NAMES.get(name, name)] = options.check_field(field_of[name], value)
    if isinstance(train.momentum, tuple):
        per_model["momentum"] = train_fields.pop("momentum")
    sizes = [np.size(v) for v in per_model.values() if v is not None]
    opt_models = optimizer.n_models if optimizer is not None else None
    M = max(sizes + [schedule.n_models or 1, opt_models or 1])
    if any(size not in (1, M) for size in sizes):
        raise SpecError(f"Per-model values of one run must all have {M} entries.")
    models = {k: None if v is None else np.broadcast_to(np.asarray(v), (M,)).tolist()
              for k, v in per_model.items()}
    for what, n in (("schedule", schedule.n_models), ("optimizer", opt_models)):
        if n is not None and n != M:
            raise SpecError(f"The {what} has values for {n} models; the run has {M}.")
    if schedule.n_models is not None:
        models["schedule"] = {k: list(sched.pop(k)) for k in schedule.per_model_fields()}
    if optimizer is not None:  # None is SGD with train["momentum"], as before optimizers
        opt = {f.name: getattr(optimizer, f.name) for f in dataclasses.fields(optimizer)}
        if optimizer.n_models is not None:
            models["optimizer"] = {k: list(opt.pop(k)) for k in optimizer.per_model_fields()}
        train_fields["optimizer"] = {"type": type(optimizer).__name__, **opt}
    spec = {"config": config.spec_dict(), "train": train_fields,
            "schedule": sched, "models": models, "n_train": n_train, "data": data}
    if halving is not None:  # absent unless used: other runs keep their fingerprints
        halving.check_models(M)
        spec["halving"] = dataclasses.asdict(halving)
    if pbt is not None:  # likewise
        spec["pbt"] = dataclasses.asdict(pbt)
    if ensemble is not None:
        spec["ensemble"] = int(ensemble)
    return spec


def in_steps(schedule, n_train: int, batch_size: int):
    """``schedule`` with its lengths in epochs (``CyclicalLR(n_s_epochs=5)``) turned into
    steps as training turns them (an epoch is ``n_train // batch_size`` steps, see
    :func:`xpnet.training.schedules.resolve`), so a spec holds steps only: a schedule given in
    epochs is the same run, with the same fingerprint, as the one given in the steps it
    comes to."""
    steps_per_epoch = n_train // batch_size
    if steps_per_epoch < 1:
        if _schedules.resolve(schedule, 1) is schedule:  # nothing in epochs: train says it
            return schedule
        raise SpecError(f"A schedule in epochs needs at least one step per epoch, and "
                        f"batch_size {batch_size} is larger than the {n_train} training "
                        "images; lower the batch size or train on more images.")
    return _schedules.resolve(schedule, steps_per_epoch)


def make_halving(spec: dict) -> Halving | None:
    """The run's :class:`xpnet.Halving` schedule, or None for a run without halving."""
    fields = spec.get("halving")
    return None if fields is None else Halving(**_tuples(fields))


def make_pbt(spec: dict) -> PBT | None:
    """The run's :class:`xpnet.PBT` schedule, or None for a run without PBT."""
    fields = spec.get("pbt")
    if fields is None:
        return None
    space = fields.get("space")
    return PBT(**{**_tuples(fields), "space": None if space is None else tuple(
        (name, kind, tuple(values)) for name, kind, values in space)})


def _tuples(fields: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def make_schedule(spec: dict, models: dict | None = None):
    """The schedule a spec's ``{"type": name, **fields}`` describes.

    ``models`` is the run's ``spec["models"]``: its ``"schedule"`` entry, if any, holds
    the per-model fields.
    """
    fields = {**spec, **((models or {}).get("schedule") or {})}
    cls = getattr(_schedules, fields.pop("type"))
    return cls(**_tuples(fields))


def make_train_config(spec: dict) -> TrainConfig:
    """The run's :class:`TrainConfig`, per-model momentum and the optimizer included."""
    fields = dict(spec["train"])
    models = spec["models"]
    if models.get("momentum") is not None:
        fields["momentum"] = models["momentum"]
    optimizer = fields.pop("optimizer", None)
    if optimizer is not None:
        fields["optimizer"] = optim.from_dict({**optimizer, **(models.get("optimizer") or {})})
    return TrainConfig(**_tuples(fields))


def make_config(spec: dict):
    """The run's :class:`xpnet.NetworkConfig` (the first format's ``batch_norm`` read too)."""
    return network_config.NetworkConfig.from_dict(spec["config"])


def network_per_model(spec: dict) -> dict:
    """The config's per-model fields the run gives per model: ``{field name: [M values]}``."""
    models = spec["models"]
    return {name: models[SPEC_NAMES.get(name, name)]
            for name in options.per_model_names(network_config.NetworkConfig)
            if models.get(SPEC_NAMES.get(name, name)) is not None}


#: Seconds per unit of :func:`estimated_seconds`' three terms, fitted to the suite's 22
#: training runs timed in one process on a 2-core x86-64 machine (the 21 that took half
#: a minute or more are estimated within 0.75-1.4x of their times): a sample through one
#: weight in training (forward and backward), a layer's Python and NumPy calls per step
#: (shared by the M models), and a sample through one weight when the history is measured.
COST_PER_TRAIN_MAC = 1.4e-10
COST_PER_LAYER_STEP = 6e-5
COST_PER_EVAL_MAC = 1.9e-11


def estimated_seconds(spec: dict) -> float:
    """Rough one-core CPU seconds of a training run, to start the longest runs first.

    Counts what the run does: ``M * steps * batch`` samples through the network's
    weights, ``steps * layers`` rounds of per-layer calls, and at each record point
    ``M * (training-eval + validation images)`` through the weights.  Only the order
    of the estimates matters (see ``Context.priority``), not their scale.
    """
    config, train_fields = spec["config"], spec["train"]
    dims = [config["d_in"], *config["hidden"], config["n_classes"]]
    macs = sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
    schedule = make_schedule(spec["schedule"], spec["models"])
    steps = schedule.total_steps
    records = len(record_steps(steps, schedule.cycle_length,
                               train_fields["evals_per_cycle"])) + 1  # and step 0
    eval_rows = (min(train_fields["train_eval_size"] or spec["n_train"], spec["n_train"])
                 + spec["data"]["val"])
    M = n_models(spec) * halving_fraction(spec, steps, schedule.cycle_length)
    return (COST_PER_TRAIN_MAC * M * steps * train_fields["batch_size"] * macs
            + COST_PER_LAYER_STEP * steps * (len(dims) - 1)
            + COST_PER_EVAL_MAC * M * records * eval_rows * macs)


def halving_fraction(spec: dict, steps: int, cycle_length: int) -> float:
    """The share of ``M * steps`` model-steps a halving run takes if no model diverges
    (1.0 without halving)."""
    halving = make_halving(spec)
    if halving is None:
        return 1.0
    rungs = halving_rungs(spec, steps, cycle_length)
    active, done, taken = n_models(spec), 0, 0
    for rung in [*rungs, steps]:
        taken += active * (rung - done)
        active, done = halving.n_keep(active) * halving.group_size, rung
    return taken / (n_models(spec) * steps)


def halving_rungs(spec: dict, steps: int, cycle_length: int) -> list[int]:
    """The steps at which a halving run's rungs drop models."""
    record_at = record_steps(steps, cycle_length, spec["train"]["evals_per_cycle"])
    steps_per_epoch = max(1, spec["n_train"] // spec["train"]["batch_size"])
    return list(make_halving(spec).rung_steps(record_at, steps_per_epoch))


def n_models(spec: dict) -> int:
    return len(spec["models"]["seeds"])


def split_spec(spec: dict, groups: int) -> list[dict]:
    """``spec`` cut into at most ``groups`` specs of consecutive models (sizes differ by <= 1).

    Every list under ``spec["models"]`` is sliced, those in nested dicts (the per-model
    schedule fields) too.
    """
    M = n_models(spec)
    bounds = np.linspace(0, M, min(groups, M) + 1).round().astype(int)

    def cut(value, lo, hi):
        if isinstance(value, dict):
            return {k: cut(v, lo, hi) for k, v in value.items()}
        return None if value is None else list(value)[lo:hi]

    return [{**spec, "models": cut(spec["models"], lo, hi)}
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def merge_records(parts: list[dict]) -> dict:
    """One run's record from the records of its model groups, in model order.

    A group that stopped early (all its models diverged) has fewer record points; its
    missing points are NaN, as they would be in the unsplit run.
    """
    longest = max(parts, key=lambda p: len(p["history"]["steps"]))
    n_points = len(longest["history"]["steps"])

    def padded(rows, width):
        rows = list(rows)
        return rows + [[None] * width for _ in range(n_points - len(rows))]

    metrics = {}
    for key in longest["history"]["metrics"]:
        blocks = [padded(p["history"]["metrics"][key], p["n_models"]) for p in parts]
        metrics[key] = [sum((b[i] for b in blocks), []) for i in range(n_points)]
    history = dict(longest["history"], metrics=metrics,
                   diverged_step=sum((p["history"]["diverged_step"] for p in parts), []),
                   stopped_step=max(p["history"].get("stopped_step") or 0 for p in parts))
    if any(isinstance(e, list) for p in parts for e in p["history"]["eta"]):  # per-model
        etas = [padded([e if isinstance(e, list) else [e] * p["n_models"]
                        for e in p["history"]["eta"]], p["n_models"]) for p in parts]
        history["eta"] = [sum((e[i] for e in etas), []) for i in range(n_points)]
    merged = {"history": history, "n_models": sum(p["n_models"] for p in parts),
              "compute_s": round(sum(p.get("compute_s", 0.0) for p in parts), 3)}
    gpus = [p["gpu"] for p in parts if "gpu" in p]
    if gpus:  # runs on GPUs are not split, but a record says where each part ran
        merged["gpu"] = gpus[0] if len(gpus) == 1 else gpus
    for key in ("test_accuracy", "test_loss", "diverged_step", "last_val_accuracy"):
        merged[key] = sum((list(p[key]) for p in parts), [])
    return merged
