"""A Classifier's arguments, checked: the one place that turns what a user gave into the
settings a fit uses (network options, per-model values, schedule, optimizer, batch)."""

from __future__ import annotations

from xpnet.base import inputs
from xpnet.errors import InputError
from xpnet.estimators import common
from xpnet.estimators.keywords import network_keywords, per_model_keywords
from xpnet.network import config as network_config
from xpnet.training import TrainConfig
from xpnet.training.schedules import CyclicalLR


def default_schedule() -> CyclicalLR:
    """The reports' schedule: eta 1e-5 .. 1e-1, n_s = 5 epochs, 2 cycles."""
    return CyclicalLR(1e-5, 1e-1, n_s_epochs=5, cycles=2)


def checked(clf) -> dict:
    """Every argument of Classifier ``clf`` checked and in its normal form (per-model
    sequences as tuples); raises :class:`~xpnet.errors.XpnetError` naming the first bad one."""
    s = {"hidden": inputs.widths(clf.hidden), "device": common.device(clf.device),
         "dtype": common.dtype_name(clf.dtype)}
    # The network's options, checked (and per-model tuples normalised) by the config.
    probe = network_config.NetworkConfig(d_in=1, hidden=s["hidden"], n_classes=2,
                                         **{k: getattr(clf, k) for k in network_keywords()})
    s.update({name: getattr(probe, name) for name in network_keywords()})
    s["lam"] = inputs.per_model_number("lam", clf.lam, "of at least 0", lambda a: a >= 0)
    s["seeds"] = inputs.per_model_value("seeds", clf.seeds, whole=True)
    s["sigma"] = None if clf.sigma is None else inputs.per_model_number(
        "sigma", clf.sigma, "above 0", lambda a: a > 0)
    s["momentum"] = inputs.per_model_value("momentum", clf.momentum)
    s["batch_size"] = inputs.whole("batch_size", clf.batch_size, 1)
    s["n_classes"] = (None if clf.n_classes is None
                      else inputs.whole("n_classes", clf.n_classes, 2))
    s["evals_per_cycle"] = inputs.whole("evals_per_cycle", clf.evals_per_cycle, 1)
    s["train_eval_size"] = (None if clf.train_eval_size is None
                            else inputs.whole("train_eval_size", clf.train_eval_size, 1))
    s["optimizer"] = clf.optimizer
    s["schedule"] = default_schedule() if clf.schedule is None else clf.schedule
    if isinstance(s["schedule"], type) or not hasattr(s["schedule"], "rates"):
        got = (f"the class {s['schedule'].__name__}" if isinstance(s["schedule"], type)
               else type(s["schedule"]).__name__)
        raise InputError("schedule must be one of xpnet's schedules (CyclicalLR(...), "
                         f"ConstantLR(...), ...), got {got}.")
    train_config(s, s["batch_size"])  # checks the optimizer with the momentum
    model_count(s)  # lengths agree
    return s


def train_config(s: dict, batch_size: int) -> TrainConfig:
    """The :class:`~xpnet.training.config.TrainConfig` of checked settings ``s``."""
    return TrainConfig(batch_size=batch_size, momentum=s["momentum"],
                       evals_per_cycle=s["evals_per_cycle"],
                       train_eval_size=s["train_eval_size"], optimizer=s["optimizer"])


def model_count(s: dict) -> int:
    """M from the per-model values (and the schedule's); checks that they agree."""
    values = {name: s[name] for name in per_model_keywords()}
    opt = s["optimizer"]
    for name in () if opt is None else opt.per_model_fields():
        values[name] = getattr(opt, name)
    n_schedule = getattr(s["schedule"], "n_models", None)
    return inputs.models_from({**values, "the schedule": n_schedule})
