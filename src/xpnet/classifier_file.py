"""A fitted :class:`~xpnet.classifier.Classifier` in a ``.npz`` file, without pickle.

The file is a :meth:`Network.save <xpnet.network.Network.save>` checkpoint with two more
entries, so ``Network.load`` reads it too: ``classifier`` (the Classifier's own settings
as JSON) and ``classes`` (its ``classes_``: numbers, or strings as text).
"""

from __future__ import annotations

import json
import os

import numpy as np

from xpnet import estimator, optim
from xpnet.atomic import atomic_write
from xpnet.errors import CheckpointError
from xpnet.network import Network

#: Own keywords a checkpoint stores beside the network (which holds the network's).
SAVED = ("sigma", "momentum", "optimizer", "batch_size", "n_classes", "evals_per_cycle",
         "train_eval_size", "dtype")


def save(clf, path) -> None:
    """Write fitted ``clf`` to ``path`` atomically."""
    state = clf._fitted().state_dict()
    checked = clf._settings()
    settings = {name: checked[name] for name in SAVED}
    settings["optimizer"] = optim.to_dict(clf.optimizer)
    state["classifier"] = np.array(json.dumps(settings))
    # labels held as objects (strings) become text; numbers stay numbers
    classes = np.asarray(estimator.host(clf.classes_).tolist())
    if classes.dtype.kind not in "biufU":
        raise CheckpointError("These class labels cannot be saved without pickle; "
                              "fit on numbers or strings to save the classifier.")
    state["classes"] = classes
    with atomic_write(path) as f:
        np.savez(f, **state)


def load(cls, path, device="cpu"):
    """A fitted ``cls`` (a Classifier) from a file written by :func:`save` or ``Network.save``.

    It predicts and scores at once; ``fit`` retrains from scratch with the stored
    settings (architecture, ``lam``, ``seeds``, ``bn_eps``, momentum, batch size, ...).
    A plain ``Network`` checkpoint has classes ``0 .. C - 1``.
    """
    from xpnet.classifier import network_keywords

    net = Network.load(path, device=device)
    with np.load(os.fspath(path), allow_pickle=False) as f:
        stored = str(f["classifier"]) if "classifier" in f.files else "{}"
        classes = f["classes"] if "classes" in f.files else np.arange(net.config.n_classes)
    try:
        settings = json.loads(stored)
    except ValueError:
        raise CheckpointError(f"{path} has damaged classifier settings; pass a file "
                              "written by Classifier.save.") from None
    if settings.get("optimizer") is not None:
        settings["optimizer"] = optim.from_dict(settings["optimizer"])
    c = net.config
    stored = {name: getattr(c, name) for name in network_keywords()}
    for name, values in net.per_model_host.items():  # one value per model, or one for all
        stored[name] = float(values[0]) if np.all(values == values[0]) else tuple(
            values.tolist())
    clf = cls(hidden=c.hidden, lam=tuple(net.lam_host.tolist()),
              seeds=0 if net.seeds is None else tuple(net.seeds), device=device,
              **stored, **{k: v for k, v in settings.items() if k in SAVED})
    clf.network_, clf.history_ = net, None
    clf._fitted_attributes(classes, None)
    return clf
