"""Schedules given in epochs work in the suite's spec as in ``Classifier``: the spec holds
their steps (an epoch is ``n_train // batch_size`` steps, as training counts it), so a
schedule in epochs is the same run, with the same fingerprint, as the one in those steps,
and the fingerprints of runs stored today stay what they are (tests/suite/test_options.py
pins them)."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from experiments.suite import spec as specs
from experiments.suite.store import fingerprint
from tests.suite.test_options import FixedData
from xpnet.training import schedules
from xpnet.training.schedules import CyclicalLR


def epoch_options() -> list:
    """``(schedule class, keyword)`` for every length a schedule of xpnet.training.schedules takes
    in epochs (a keyword named ``*_epochs``): a new one is tested with no edit here."""
    found = []
    for _, cls in inspect.getmembers(schedules, inspect.isclass):
        if dataclasses.is_dataclass(cls) and cls.__module__ == schedules.__name__:
            found += [(cls, name) for name in inspect.signature(cls).parameters
                      if name.endswith("_epochs")]
    return found


def test_there_is_a_schedule_in_epochs_to_test():
    assert (CyclicalLR, "n_s_epochs") in epoch_options()


@pytest.mark.parametrize("cls, keyword", epoch_options(),
                         ids=lambda p: p if isinstance(p, str) else p.__name__)
def test_a_schedule_in_epochs_is_the_run_in_the_steps_it_comes_to(cls, keyword):
    ctx = FixedData()  # 45,000 training images, batch 100: an epoch is 450 steps
    in_epochs = cls(**{keyword: 2})
    in_steps = in_epochs.resolve(450)
    assert in_steps != in_epochs
    spec = ctx.train_spec(hidden=(50,), seeds=[0, 1], schedule=in_epochs)
    assert spec == ctx.train_spec(hidden=(50,), seeds=[0, 1], schedule=in_steps)
    assert fingerprint(spec) == fingerprint(ctx.train_spec(hidden=(50,), seeds=[0, 1],
                                                           schedule=in_steps))
    assert specs.make_schedule(spec["schedule"], spec["models"]) == in_steps
    # On fewer images (n_train) or another batch size an epoch has fewer steps.
    small = ctx.train_spec(hidden=(50,), n_train=1000, schedule=in_epochs,
                           train=ctx.train_config(batch_size=50))
    assert specs.make_schedule(small["schedule"], small["models"]) == in_epochs.resolve(20)


def test_cyclical_in_epochs_trains_in_a_study(tmp_path):
    """Before: ``float() argument must be a string or a real number, not 'dict'``."""
    from experiments.suite.sandbox import sandbox

    ctx = sandbox(tmp_path)  # 500 training images: an epoch is 5 steps of 100
    record = ctx.submit_train("epochs", seeds=ctx.seeds, hidden=(8,),
                              schedule=CyclicalLR(1e-5, 1e-1, n_s_epochs=2, cycles=1)).result()
    assert record["spec"]["schedule"]["n_s"] == 10
    assert record["history"]["steps"][-1] == 20
    again = ctx.submit_train("epochs", seeds=ctx.seeds, hidden=(8,),
                             schedule=CyclicalLR(1e-5, 1e-1, n_s=10, cycles=1))
    assert again.result() is record or again.result() == record  # reused, not retrained
    assert ctx.trained == 1 and ctx.reused == 1


def test_an_epoch_shorter_than_a_batch_is_one_sentence():
    with pytest.raises(specs.SpecError) as err:
        FixedData().train_spec(hidden=(50,), n_train=50, schedule=CyclicalLR(n_s_epochs=1))
    message = str(err.value)
    assert "batch_size 100" in message and message.endswith(".") and ". " not in message
