"""The optimizers: Adam and AdamW give torch.optim's numbers, every update keeps the state
of some models only (take_models) on every array library, and bad options are one sentence."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import torch_or_skip
from xpnet import Classifier, CyclicalLR, to_numpy
from xpnet.errors import XpnetError
from xpnet.network.network import Network, NetworkConfig
from xpnet.training import DeviceSplit, TrainConfig, train
from xpnet.training.optim import SGD, Adam, AdamUpdate, AdamW

M, STEPS = 2, 5
SHAPES = {"W1": (M, 4, 3), "b1": (M, 1, 3)}


def _problem(seed=0):
    """Initial parameters and one gradient per step, host float64."""
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    grads = [{k: rng.standard_normal(s) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def _torch_model(torch, cls, params, m, lr, l2_decay, weight_decay, options):
    """Model ``m``'s parameters as tensors, under torch.optim ``cls``: the weights in a group
    with the decay, the bias in one without (our decay covers weight matrices only)."""
    tensors = {k: torch.tensor(v[m], dtype=torch.float64, requires_grad=True)
               for k, v in params.items()}
    decay = weight_decay if cls is torch.optim.AdamW else l2_decay
    groups = [{"params": [tensors["W1"]], "weight_decay": decay},
              {"params": [tensors["b1"]], "weight_decay": 0.0}]
    return tensors, cls(groups, lr=lr, betas=(options.beta1, options.beta2), eps=options.eps)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_and_adamw_match_torch_optim_step_by_step(name):
    torch = torch_or_skip()
    params, grads = _problem()
    lam = np.array([0.01, 0.1])
    eta = np.array([1e-2, 3e-3])
    options = Adam(beta1=0.8, beta2=0.99, eps=1e-6) if name == "Adam" else AdamW(
        beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=(0.05, 0.5))
    ours = {k: v.copy() for k, v in params.items()}
    wd = options.weight_decay if name == "AdamW" else None
    update = AdamUpdate(ours, options.beta1, options.beta2, options.eps,
                        decay=(2 * lam)[:, None, None] if name == "Adam" else None,
                        decay_names=["W1"],
                        weight_decay=None if wd is None else np.asarray(wd)[:, None, None])
    cls = getattr(torch.optim, name)
    models = [_torch_model(torch, cls, params, m, eta[m], 2 * lam[m],
                           None if wd is None else wd[m], options) for m in range(M)]
    for g in grads:
        update.step(ours, g, eta[:, None, None])
        for m, (tensors, opt) in enumerate(models):
            for k, t in tensors.items():
                t.grad = torch.tensor(g[k][m], dtype=torch.float64)
            opt.step()
    for m, (tensors, _) in enumerate(models):
        for k, t in tensors.items():
            np.testing.assert_allclose(ours[k][m], t.detach().numpy(), rtol=1e-12, atol=1e-14,
                                       err_msg=f"{name} {k} model {m}")
    assert not np.allclose(ours["W1"], params["W1"])  # the steps did move the weights


OPTIONS = {"sgd": SGD(), "momentum": SGD(momentum=(0.0, 0.5, 0.9)), "adam": Adam(),
           "adamw": AdamW(weight_decay=(0.0, 0.1, 0.3))}


@pytest.mark.parametrize("which", list(OPTIONS))
def test_take_models_continues_as_the_kept_models_of_the_whole(backend, which):
    """Steps 1-2 on three models, keep models 2 and 0, steps 3-4: the kept models end
    where the same four steps of all three leave them."""
    config = NetworkConfig(d_in=5, hidden=(4,), n_classes=3)
    rng = np.random.default_rng(3)
    grads = [{k: rng.standard_normal((3, *s[1:])) for k, s in
              {"W1": (3, 5, 4), "gamma1": (3, 1, 4), "beta1": (3, 1, 4), "W2": (3, 4, 3),
               "b2": (3, 1, 3)}.items()} for _ in range(4)]
    eta = np.array([0.1, 0.05, 0.02])
    keep = np.array([2, 0], dtype=np.int64)

    def step(net, update, g, rows):
        dev = {k: backend.asarray(v[rows], dtype="float64") for k, v in g.items()}
        update.step(net.params, dev, backend.asarray(eta[rows][:, None, None], dtype="float64"))

    whole = Network.create(config, seeds=[0, 1, 2], lam=[0.0, 0.01, 0.1], device=backend,
                           dtype="float64")
    part = Network.create(config, seeds=[0, 1, 2], lam=[0.0, 0.01, 0.1], device=backend,
                          dtype="float64")
    u_whole, u_part = OPTIONS[which].build(whole), OPTIONS[which].build(part)
    all_rows = np.arange(3)
    for g in grads[:2]:
        step(whole, u_whole, g, all_rows)
        step(part, u_part, g, all_rows)
    u_part.take_models(keep)
    idx = backend.asarray(keep)
    part.params = {k: backend.xp.take(v, idx, axis=0) for k, v in part.params.items()}
    for g in grads[2:]:
        step(whole, u_whole, g, all_rows)
        step(part, u_part, g, keep)
    for name, value in whole.params.items():
        np.testing.assert_allclose(to_numpy(part.params[name]), to_numpy(value)[keep],
                                   rtol=1e-12, atol=1e-14, err_msg=name)


def test_adam_trains_through_train_and_the_classifier_alike(tmp_path):
    X = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    y = np.arange(40) % 3
    schedule = CyclicalLR(1e-4, 1e-2, n_s=4, cycles=1)
    options = AdamW(weight_decay=(0.0, 0.2))
    clf = Classifier(hidden=(5,), lam=0.0, seeds=[0, 1], batch_size=10, optimizer=options,
                     train_eval_size=None, schedule=schedule)
    history = clf.fit(X, y).history_
    assert clf.get_params()["optimizer"] == options
    net = Network.create(NetworkConfig(d_in=6, hidden=(5,), n_classes=3), seeds=[0, 1],
                         lam=0.0, device="cpu")
    data = DeviceSplit.from_host(net.backend, X, y, 3, "float32")
    ref = train(net, schedule, data, None,
                TrainConfig(batch_size=10, optimizer=options, train_eval_size=None),
                progress=False)
    np.testing.assert_array_equal(history.metrics["train_loss"], ref.metrics["train_loss"])
    for name, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(clf.network_.params[name]), to_numpy(value))
    clf.save(tmp_path / "adamw.npz")
    assert Classifier.load(tmp_path / "adamw.npz").get_params()["optimizer"] == options


def test_a_stopped_model_does_not_move_under_adam():
    net = Network.create(NetworkConfig(d_in=4, hidden=(3,), n_classes=2), seeds=[0, 1],
                         device="cpu", dtype="float64")
    before = {k: to_numpy(v).copy() for k, v in net.params.items()}
    update = Adam().build(net)
    grads = {k: np.ones_like(v) for k, v in before.items()}
    update.step(net.params, grads, np.array([0.0, 0.1])[:, None, None])
    for name, value in net.params.items():
        np.testing.assert_array_equal(to_numpy(value)[0], before[name][0])
        assert not np.array_equal(to_numpy(value)[1], before[name][1])


def _one_sentence(err) -> str:
    message = str(err.value)
    assert "\n" not in message and message.endswith(".") and ". " not in message, message
    return message


@pytest.mark.parametrize("make, word", [
    (lambda: Adam(beta1=1.0), "beta1"), (lambda: Adam(beta2=-0.1), "beta2"),
    (lambda: Adam(eps=0.0), "eps"), (lambda: Adam(beta1=(0.9, 0.8)), "beta1"),
    (lambda: AdamW(weight_decay=-1.0), "weight_decay"), (lambda: SGD(momentum=1.0), "momentum"),
    (lambda: SGD(momentum="high"), "momentum"),
    (lambda: TrainConfig(momentum=0.9, optimizer=Adam()), "momentum"),
    (lambda: TrainConfig(optimizer="adam"), "optimizer"),
    (lambda: TrainConfig(momentum=0.5, optimizer=SGD(0.9)), "momentum"),
    (lambda: NetworkConfig(norm="layr"), "norm"), (lambda: NetworkConfig(dropout=1.0), "dropout"),
    (lambda: NetworkConfig(activation="swish"), "activation"),
    (lambda: NetworkConfig(bn_eps=(1e-5, 0.0)), "bn_eps"),
    (lambda: NetworkConfig(bn_momentum=(0.9, 0.8)), "bn_momentum"),
    (lambda: Classifier(optimiser=Adam()), "optimiser"),
    (lambda: Classifier(dropout=[0.1, 2.0]), "dropout"),
    (lambda: Classifier(optimizer=Adam(), momentum=0.9), "momentum"),
    (lambda: Classifier(optimizer=AdamW(weight_decay=(0.1, 0.2)), lam=[0.1, 0.2, 0.3]), "lam"),
    (lambda: Network.create(NetworkConfig(d_in=3, hidden=(2,)), drop=0.1), "drop"),
])
def test_bad_options_are_one_sentence(make, word):
    with pytest.raises(XpnetError) as err:
        make()
    assert word in _one_sentence(err)


def test_sgd_as_an_option_is_todays_momentum():
    assert TrainConfig(optimizer=SGD(momentum=0.5)) == TrainConfig(momentum=0.5)
    assert TrainConfig(momentum=(0.0, 0.9)).resolved_optimizer == SGD(momentum=(0.0, 0.9))
    assert TrainConfig(optimizer=AdamW()).momentum == 0.0
