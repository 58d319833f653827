"""One home for model options: a field added to NetworkConfig reaches the suite's spec, its
fingerprint, the saved file and Classifier's keywords with no other edit, and the
fingerprints of runs stored before the options existed stay what they were."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

import xpnet.network.config
from experiments.studies.kit import ARCHS, Grid
from experiments.suite import spec as specs
from experiments.suite.context import Context, Settings
from experiments.suite.store import fingerprint
from xpnet import Classifier
from xpnet.network.network import Network, NetworkConfig
from xpnet.nn import options
from xpnet.training.optim import SGD, Adam, AdamW
from xpnet.training.schedules import ConstantLR, CyclicalLR


class FixedData(Context):
    """A study's context over fixed data sizes (CIFAR-10's), so specs are reproducible."""

    def __init__(self):
        super().__init__(Settings(), None, "/tmp", None, "pins", None, None)

    @property
    def data(self):
        return SimpleNamespace(X_train=SimpleNamespace(shape=(45000, 3072)),
                               y_train=np.zeros(45000), n_classes=10)

    def data_sizes(self):
        return {"train": 45000, "val": 5000, "test": 10000, "train_stats": "0123456789abcdef"}


def pinned_specs(ctx, bn_keywords) -> dict:
    """Specs as built-in studies write them; ``bn_keywords(bn)`` spells batch norm on/off."""
    return {
        # 10 ** x in Python: NumPy 2.4's power gives 9.999999999999999e-06 for 10 ** -5.
        "lambda_search": ctx.train_spec(hidden=ARCHS["3-layer"], seeds=0,
                                        lam=[10.0 ** float(x) for x in np.linspace(-5, -1, 8)],
                                        schedule=ctx.cyclical(2)),
        "bn_eps": ctx.train_spec(
            grid=Grid([0, 1, 2], sigma=(1e-1, 1e-3, 1e-4), eps=(1e-3, 1e-5, 1e-8)),
            hidden=ARCHS["9-layer"], init="normal", schedule=CyclicalLR(1e-5, 1e-1, n_s=900,
                                                                         cycles=1),
            **bn_keywords(True)),
        "lr_bn": ctx.train_spec(
            grid=Grid([0, 1, 2], eta=(5e-4, 1e-2, 1e-1)), hidden=ARCHS["2-layer"], lam=0.0,
            schedule=ConstantLR((5e-4,) * 3 + (1e-2,) * 3 + (1e-1,) * 3, steps=4500,
                                cycle_length=450),
            train=ctx.train_config(momentum=0.8, evals_per_cycle=2), **bn_keywords(False)),
        "momentum_grid": ctx.train_spec(grid=Grid([0, 1], momentum=(0.0, 0.9)), hidden=(50,),
                                        schedule=ctx.cyclical(1), **bn_keywords(False)),
    }


#: Computed on main before the options moved to one home (commit 7bc9d74).
PINS = {"lambda_search": "56041dcf6b1764d5", "bn_eps": "5593029d2711dbae",
        "lr_bn": "fb141c83449b2038", "momentum_grid": "b0fe3d3cb04c44b0"}


@pytest.mark.parametrize("spelling", ["legacy", "norm"])
def test_fingerprints_of_existing_runs_are_unchanged(spelling):
    def bn_keywords(bn):
        return {"batch_norm": bn} if spelling == "legacy" else {"norm": "batch" if bn else None}

    found = {key: fingerprint(spec) for key, spec in pinned_specs(FixedData(), bn_keywords).items()}
    assert found == PINS


def test_sgd_given_as_an_optimizer_is_the_same_run():
    ctx = FixedData()
    old = ctx.train_spec(hidden=(50,), train=ctx.train_config(momentum=0.8))
    assert fingerprint(ctx.train_spec(hidden=(50,), optimizer=SGD(momentum=0.8))) == \
        fingerprint(old)
    assert "optimizer" not in old["train"]


def test_an_optimizer_and_new_options_reach_the_spec_and_split_with_the_models():
    ctx = FixedData()
    optimizer = AdamW(beta1=0.85, weight_decay=(0.0, 0.1, 0.2, 0.3))
    spec = ctx.train_spec(grid=Grid([0, 1], dropout=(0.0, 0.3)), hidden=(50,), lam=0.0,
                          optimizer=optimizer, norm=None, leaky_slope=0.2)
    assert spec["train"]["optimizer"] == {"type": "AdamW", "beta1": 0.85, "beta2": 0.999,
                                          "eps": 1e-8}
    assert spec["models"]["optimizer"] == {"weight_decay": [0.0, 0.1, 0.2, 0.3]}
    assert spec["models"]["dropout"] == [0.0, 0.0, 0.3, 0.3]
    assert spec["models"]["leaky_slope"] == [0.2] * 4  # per-model fields live under models
    assert "leaky_slope" not in spec["config"] and spec["config"]["batch_norm"] is False
    assert specs.make_train_config(spec).optimizer == optimizer
    assert specs.network_per_model(spec) == {"dropout": [0.0, 0.0, 0.3, 0.3],
                                             "leaky_slope": [0.2] * 4}
    first, second = specs.split_spec(spec, 2)
    assert specs.make_train_config(second).optimizer == dataclasses.replace(
        optimizer, weight_decay=(0.2, 0.3))
    assert first["models"]["dropout"] == [0.0, 0.0]
    plain = ctx.train_spec(hidden=(50,), lam=0.0, norm=None)
    assert fingerprint(ctx.train_spec(hidden=(50,), lam=0.0, norm=None, optimizer=Adam())) \
        != fingerprint(plain)


def test_an_unknown_training_option_is_one_sentence():
    with pytest.raises(specs.SpecError) as err:
        FixedData().train_spec(hidden=(50,), dropuot=0.1)
    message = str(err.value)
    assert "'dropuot'" in message and message.endswith(".") and ". " not in message


# ------------------------------------------------------------- changeability
@dataclasses.dataclass(frozen=True)
class Extended(NetworkConfig):
    """NetworkConfig with two options more: one per model, one shared."""

    temperature: float = options.per_model(1.0, "above 0", lambda a: a > 0)
    label: str = "plain"


@pytest.fixture
def extended(monkeypatch):
    """``xpnet.network.config.NetworkConfig`` with two more fields: the one change a new
    option is (what reads the config class looks it up there)."""
    monkeypatch.setattr(xpnet.network.config, "NetworkConfig", Extended)
    return Extended


def test_a_new_field_reaches_spec_and_fingerprint(extended):
    ctx = FixedData()
    base = ctx.train_spec(hidden=(50,), seeds=[0, 1])
    assert fingerprint(base) == fingerprint(
        FixedData().train_spec(hidden=(50,), seeds=[0, 1]))  # at its default: left out
    assert "temperature" not in base["config"] and "label" not in base["config"]
    spec = ctx.train_spec(hidden=(50,), seeds=[0, 1], temperature=[0.5, 2.0], label="hot")
    assert spec["config"]["label"] == "hot" and spec["models"]["temperature"] == [0.5, 2.0]
    assert fingerprint(spec) != fingerprint(base)
    assert specs.make_config(spec) == Extended(d_in=3072, hidden=(50,), label="hot")
    assert specs.network_per_model(spec) == {"temperature": [0.5, 2.0]}
    assert [p["models"]["temperature"] for p in specs.split_spec(spec, 2)] == [[0.5], [2.0]]
    grid = ctx.train_spec(grid=Grid([0], temperature=(0.5, 3.0)), hidden=(50,))
    assert grid["models"]["temperature"] == [0.5, 3.0]
    with pytest.raises(xpnet.XpnetError, match="temperature must be a number above 0"):
        ctx.train_spec(hidden=(50,), temperature=0.0)


def test_a_new_field_reaches_the_saved_file(extended, tmp_path):
    config = Extended(d_in=4, hidden=(3,), n_classes=2, label="hot")
    net = Network.create(config, seeds=[0, 1], temperature=[0.5, 2.0], device="cpu")
    path = tmp_path / "net.npz"
    net.save(path)
    back = Network.load(path)
    assert back.config == config
    np.testing.assert_array_equal(back.per_model_host["temperature"], [0.5, 2.0])


def test_a_new_field_is_a_classifier_keyword(extended, tmp_path):
    clf = Classifier(hidden=(3,), seeds=[0, 1], temperature=[0.5, 2.0], label="hot",
                     batch_size=5, schedule=ConstantLR(0.01, steps=4, cycle_length=4))
    params = clf.get_params()
    assert params["temperature"] == [0.5, 2.0] and params["label"] == "hot"  # as given
    assert clf.n_models == 2
    assert Classifier(**params).get_params() == params  # what sklearn.base.clone does
    X = np.random.default_rng(0).standard_normal((20, 4))
    clf.fit(X, np.arange(20) % 2)
    assert clf.network_.config.label == "hot"
    clf.save(tmp_path / "clf.npz")
    back = Classifier.load(tmp_path / "clf.npz")
    assert back.get_params()["temperature"] == (0.5, 2.0)
    assert back.get_params()["label"] == "hot"
    with pytest.raises(xpnet.XpnetError, match="temperature"):
        Classifier(temperature=[1.0, -1.0])
    with pytest.raises(xpnet.XpnetError, match="lengths|disagree"):
        Classifier(temperature=[1.0, 2.0], lam=[0.1, 0.2, 0.3])
