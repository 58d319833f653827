"""Divergence (issue item 6): eta = 0.8 without batch norm, or sigma = 10, marks the model
diverged at its step with its last finite figures, and the rest of the study goes on.

Library level: :func:`xpnet.train.train` on the tiny CIFAR-10 look-alike (3072 inputs, the
quick suite's 500 / 500 split), checking the exact step, the figures up to it, and that
the other models of the same lockstep Network train exactly as they would alone.
Estimator level (issue 34): a diverged model is never a winner and never answers as if
it had trained: Classifier and ClassifierCV say so, on tiny blobs.
Study level: the ``lr_bn`` study and a sigma = 10 run through the suite's own
:class:`experiments.suite.context.Context`.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.problems import blobs
from xpnet import (
    Classifier,
    ClassifierCV,
    ConstantLR,
    Network,
    NetworkConfig,
    get_backend,
    to_numpy,
)
from xpnet.data import load_cifar10
from xpnet.errors import DivergedError, DivergenceWarning
from xpnet.training import DeviceSplit, TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
STEPS = 40  # eight epochs of five steps


def strict_json(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def splits(tiny_data):
    data = load_cifar10(tiny_data, limit=1000, n_val=500, progress=False)  # as --quick
    be = get_backend("cpu")
    return be, tuple(DeviceSplit.from_host(be, getattr(data, f"X_{s}"), getattr(data, f"y_{s}"),
                                           10, "float32") for s in ("train", "val"))


def fit(splits, *, steps=STEPS, eta=0.8, momentum=0.8, batch_norm=False, init="he", seeds=0,
        lam=0.0, sigma=None):
    be, (tr, va) = splits
    config = NetworkConfig(d_in=3072, hidden=(50,), n_classes=10,
                           norm="batch" if batch_norm else None, init=init)
    net = Network.create(config, seeds=seeds, lam=lam, sigma=sigma, device=be)
    with np.errstate(all="ignore"):  # a diverging model overflows by design
        history = train(net, ConstantLR(eta, steps=steps, cycle_length=5), tr, va,
                        TrainConfig(momentum=momentum, evals_per_cycle=5), progress=False)
    return net, history


def model_params(net, m: int) -> dict:
    return {name: to_numpy(p)[m] for name, p in net.params.items()}


def check_diverged(history, m: int):
    """Model ``m`` diverged at a step; its figures stop there and the last ones are finite."""
    step = int(history.diverged_step[m])
    assert step >= 0
    steps = np.array(history.steps)
    for key, values in history.metrics.items():
        assert np.all(np.isnan(values[steps > step, m])), key
        assert np.all(np.isfinite(values[steps <= step, m])), key
        assert np.isfinite(history.last_finite(key)[m]), key
    strict_json(json.dumps(history.to_dict(), allow_nan=False))  # None, never NaN
    return step


# ------------------------------------------------------------------ library level
def test_eta_0_8_without_bn_diverges_at_a_definite_step(splits):
    _, history = fit(splits)
    step = check_diverged(history, 0)
    assert 0 < step < STEPS - 1  # not at once and not at the end: a real trajectory

    # The step is the first whose batch loss explodes: a schedule that stops just before
    # it sees no divergence and the same figures, one step more diverges at that step.
    _, before = fit(splits, steps=step)
    assert list(before.diverged_step) == [-1]
    np.testing.assert_array_equal(before.metrics["train_loss"][:, 0],
                                  history.metrics["train_loss"][:len(before.steps), 0])
    _, at = fit(splits, steps=step + 1)
    assert list(at.diverged_step) == [step]

    _, with_bn = fit(splits, batch_norm=True)  # the same rate is fine with batch norm
    assert list(with_bn.diverged_step) == [-1]
    assert np.all(np.isfinite(with_bn.metrics["val_accuracy"]))


def test_sigma_10_diverges_at_step_0_by_the_loss_threshold(splits):
    net, history = fit(splits, init="normal", sigma=10.0, eta=0.01, momentum=0.0)
    assert check_diverged(history, 0) == 0
    assert history.metrics["train_loss"][0, 0] > 1e4  # finite but hopeless at the start
    assert np.all(np.isnan(history.metrics["val_accuracy"][1:, 0]))


@pytest.mark.parametrize("momentum", [0.0, 0.8], ids=["plain", "momentum"])
def test_sigma_10_in_lockstep_leaves_the_other_models_exactly_as_alone(splits, momentum):
    sigmas = [0.1, 10.0, 0.01]
    net, history = fit(splits, init="normal", sigma=sigmas, seeds=[0, 1, 2], eta=0.05,
                       momentum=momentum)
    assert list(history.diverged_step) == [-1, 0, -1]
    check_diverged(history, 1)
    for m in (0, 2):
        alone, solo = fit(splits, init="normal", sigma=sigmas[m], seeds=m, eta=0.05,
                          momentum=momentum)
        assert list(solo.diverged_step) == [-1]
        for key, values in solo.metrics.items():
            np.testing.assert_allclose(history.metrics[key][:, m], values[:, 0], rtol=1e-6,
                                       atol=1e-7, err_msg=key)
        for name, p in model_params(alone, 0).items():
            assert np.all(np.isfinite(model_params(net, m)[name]))
            np.testing.assert_allclose(model_params(net, m)[name], p, rtol=1e-5, atol=1e-7,
                                       err_msg=name)


def test_eta_0_8_in_lockstep_each_seed_diverges_at_its_own_step(splits):
    """Seeds trained together diverge where each would alone, not when the first one does."""
    _, history = fit(splits, seeds=[0, 1, 2])
    steps = [check_diverged(history, m) for m in range(3)]
    for m in range(3):
        _, solo = fit(splits, seeds=m)
        assert int(solo.diverged_step[0]) == steps[m]
        np.testing.assert_allclose(history.last_finite("val_accuracy")[m],
                                   solo.last_finite("val_accuracy")[0], rtol=1e-6)


def test_mid_run_divergence_in_lockstep_spares_the_survivor(splits):
    """lam = 30 at eta = 0.05 makes weight decay overshoot: divergence after some steps."""
    net, history = fit(splits, lam=[0.0, 30.0], eta=0.05, momentum=0.0)
    assert history.diverged_step[0] == -1
    assert check_diverged(history, 1) > 0
    alone, solo = fit(splits, lam=0.0, eta=0.05, momentum=0.0)
    for name, p in model_params(alone, 0).items():
        np.testing.assert_allclose(model_params(net, 0)[name], p, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(history.metrics["val_accuracy"][:, 0],
                               solo.metrics["val_accuracy"][:, 0])


# ---------------------------------------------------------------- estimator level
BLOBS = blobs(60, 6, 3, seed=0, spread=3.0)
TAME, WILD = 0.05, 50.0  # eta 50 without batch norm diverges at step 1 on these blobs


def estimator(**kwargs) -> Classifier:
    return Classifier(**{"hidden": (4,), "batch_size": 10, "norm": None, **kwargs})


def rates(*etas) -> ConstantLR:
    return ConstantLR(eta=etas if len(etas) > 1 else etas[0], steps=12, cycle_length=6)


def test_a_diverged_classifier_says_so_at_fit_and_has_no_answer(one_sentence):
    X, y = BLOBS
    with pytest.warns(DivergenceWarning) as caught:
        clf = estimator(schedule=rates(WILD)).fit(X, y)
    assert len(caught) == 1
    one_sentence(str(caught[0].message), "diverged at step 1", "lower learning rate")
    assert list(clf.history_.diverged_step) == [1]
    for answer in (clf.predict, clf.predict_proba, lambda X: clf.score(X, y)):
        with pytest.raises(DivergedError) as err:
            answer(X)
        one_sentence(str(err.value), "diverged in training at step 1", "lower learning rate")


def test_lockstep_models_that_diverged_answer_nan_and_the_others_as_alone(one_sentence):
    X, y = BLOBS
    with pytest.warns(DivergenceWarning, match=r"Models 1 \(step 1\), 2 \(step 1\) of 3"):
        clf = estimator(seeds=[0, 1, 2], schedule=rates(TAME, WILD, WILD)).fit(X, y)
    assert list(clf.diverged_step_) == [-1, 1, 1]
    alone = estimator(schedule=rates(TAME)).fit(X, y)
    with pytest.warns(DivergenceWarning, match="score_all answers NaN"):
        scores = clf.score_all(X, y)
    assert scores[0] == alone.score(X, y) and np.all(np.isnan(scores[1:]))
    with pytest.warns(DivergenceWarning, match="predict_proba_all answers NaN"):
        proba = clf.predict_proba_all(X)
    np.testing.assert_array_equal(proba[0], alone.predict_proba(X))
    assert np.all(np.isnan(proba[1:]))
    with pytest.raises(DivergedError) as err:  # a label cannot say "no answer"
        clf.predict_all(X)
    one_sentence(str(err.value), "Models 1 (step 1), 2 (step 1)", "predict_proba_all")


def test_a_diverged_model_is_not_saved_as_if_it_answered(tmp_path, one_sentence):
    """sigma = 1e4 diverges at step 0 by the loss threshold with finite weights: a file
    would restore it as a model that answers, so save refuses before writing."""
    X, y = BLOBS
    with pytest.warns(DivergenceWarning):
        clf = estimator(init="normal", sigma=[0.1, 1e4], schedule=rates(TAME)).fit(X, y)
    assert list(clf.history_.diverged_step) == [-1, 0]
    assert np.all(np.isfinite(to_numpy(clf.network_.params["W1"])))
    with pytest.raises(DivergedError) as err:
        clf.save(tmp_path / "wild.npz")
    one_sentence(str(err.value), "Model 1 (step 0)", "lower learning rate")
    assert not (tmp_path / "wild.npz").exists()


def sigma_search(*sigmas, **kwargs) -> ClassifierCV:
    """sigma = 1e4 with init "normal" diverges at step 0 by the loss threshold."""
    return ClassifierCV(**{"hidden": (4,), "batch_size": 10, "norm": None, "init": "normal",
                           "schedule": rates(TAME), "lams": (1e-3,), "seeds": (0, 1),
                           "param_grid": {"sigma": sigmas}, **kwargs})


def test_classifier_cv_ranks_a_diverged_candidate_last_and_names_it(one_sentence, tmp_path):
    """lam = 1e3 at eta = 0.05 makes weight decay overshoot: both its seeds diverge."""
    X, y = BLOBS
    with pytest.warns(DivergenceWarning) as caught:
        search = ClassifierCV(hidden=(4,), batch_size=10, norm=None, schedule=rates(TAME),
                              lams=(1e3, 1e-3), seeds=(0, 1)).fit(X, y)
    one_sentence(str(caught[0].message), "1 of 2 candidates diverged", "rank last",
                 "{'lam': 1000.0} (seed 0 at step 2, seed 1 at step 2)")
    results = search.cv_results_
    assert np.isnan(results["mean_test_score"][0]) and list(results["rank_test_score"]) == [2, 1]
    assert search.best_params_ == {"lam": 1e-3} and search.best_index_ == 1
    assert np.isfinite(search.best_score_) and search.best_model_index_ in (2, 3)
    assert np.all(np.isnan(search.val_scores_[:2]))
    assert search.predict(X).shape == (60,)
    # The diverged models left the network, as halving's dropped ones do: what remains
    # answers, and the search saves and loads.
    assert list(search.survivors_) == [2, 3]
    assert list(search.classifier_.diverged_step_) == [-1, -1]
    assert search.predict_all(X).shape == (2, 60)
    search.save(tmp_path / "search.npz")
    back = ClassifierCV.load(tmp_path / "search.npz")
    np.testing.assert_array_equal(back.predict(X), search.predict(X))


def test_classifier_cv_where_every_candidate_diverged_raises_and_keeps_the_figures(
        one_sentence):
    X, y = BLOBS
    with pytest.raises(DivergedError) as err, pytest.warns(DivergenceWarning):
        search = sigma_search(1e4, 2e4)
        search.fit(X, y)
    one_sentence(str(err.value), "Every candidate diverged", "lower the learning rate")
    assert np.all(np.isnan(search.cv_results_["mean_test_score"]))  # kept, readable
    assert search.classifier_.history_.diverged_step.tolist() == [0, 0, 0, 0]
    assert not hasattr(search, "best_score_")
    for answer in (search.predict, lambda X: search.score(X, y)):
        with pytest.raises(DivergedError) as err:
            answer(X)
        one_sentence(str(err.value), "Every candidate of the last fit diverged")


def test_grid_search_cv_never_picks_a_diverged_classifier():
    """Through scikit-learn: a diverged model's score raises, GridSearchCV scores it NaN
    (its error_score) and ranks it last."""
    sklearn_search = pytest.importorskip("sklearn.model_selection")
    X, y = BLOBS
    grid = sklearn_search.GridSearchCV(
        estimator(init="normal", sigma=0.1, schedule=rates(TAME)),
        {"sigma": [1e4, 0.1]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's own about the failed scores
        grid.fit(X, y)
    assert np.isnan(grid.cv_results_["mean_test_score"][0])
    assert grid.best_params_ == {"sigma": 0.1}


# -------------------------------------------------------------------- study level
@pytest.fixture(scope="module")
def lr_bn_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("lr-bn") / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.run", "--quick", "--only", "lr_bn", "--seeds", "2",
         "--no-progress", "--data-dir", str(tiny_data), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=180)
    return proc, out


def test_lr_bn_study_marks_the_no_bn_eta_0_8_run_diverged_and_goes_on(lr_bn_run):
    proc, out = lr_bn_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    results = strict_json((out / "results.json").read_text(encoding="utf-8"))
    study = results["studies"]["lr_bn"]
    assert study["status"] == "done"
    runs = study["runs"]
    assert set(runs) == {"bn", "nobn"}  # one lockstep run per BN setting: 3 rates x 2 seeds
    nobn = runs["nobn"]
    wild = [4, 5]  # model i * 2 + s has rate ETAS[i]; eta 0.8 is i = 2
    assert all(nobn["diverged_step"][m] >= 0 for m in wild)
    assert [nobn["test_accuracy"][m] for m in wild] == [None, None]
    assert [nobn["test_loss"][m] for m in wild] == [None, None]
    assert all(isinstance(nobn["last_val_accuracy"][m], float)
               and math.isfinite(nobn["last_val_accuracy"][m]) for m in wild)
    hist = nobn["history"]
    for m in wild:
        after = [row[m]
                 for s, row in zip(hist["steps"], hist["metrics"]["val_accuracy"], strict=True)
                 if s > nobn["diverged_step"][m]]
        assert after and all(v is None for v in after)
    # The other models of the run trained on: divergence stops a model, not its run.
    for key, rec in runs.items():
        tame = [m for m in range(6) if key == "bn" or m not in wild]
        assert all(rec["diverged_step"][m] == -1 for m in tame), key
        assert all(isinstance(rec["test_accuracy"][m], float)
                   and 0.0 <= rec["test_accuracy"][m] <= 1.0 for m in tame), key

    report = (out / "report.md").read_text(encoding="utf-8")
    first = min(nobn["diverged_step"][m] for m in wild)
    assert re.search(rf"\| 2-layer, no BN, eta 0\.8 \| diverged at step {first} \(last finite: "
                     r"\d+\.\d( ± \d+\.\d)? %\)", report), report
    assert "1 of 6 settings diverged" in proc.stdout
    for rel in study["figures"]:
        assert (out / rel).stat().st_size > 1000


def test_sigma_10_run_in_a_study_is_recorded_and_the_next_run_goes_on(tiny_data, tmp_path):
    from experiments.studies.kit import ARCHS, test_cell
    from experiments.suite import tasks as runs
    from experiments.suite.context import Context, Settings
    from experiments.suite.dispatch import Immediate
    from experiments.suite.executor import InProcess
    from experiments.suite.progress import Reporter
    from experiments.suite.store import ResultStore

    store = ResultStore(tmp_path)
    data = runs.DataSettings(str(tiny_data), quick=True)
    reporter = Reporter(enabled=False)
    ctx = Context(Settings(quick=True, seeds=2, data_dir=str(tiny_data), progress=False),
                  store, tmp_path, Immediate(InProcess(), reporter, data), "sigma", data,
                  reporter)
    rec = ctx.submit_train("sigma-mix", hidden=ARCHS["3-layer"], seeds=[0, 1],
                           sigma=[0.1, 10.0], init="normal", batch_norm=False).result()
    after = ctx.submit_train("he", hidden=ARCHS["3-layer"], seeds=[0, 1],
                             batch_norm=False).result()

    saved = strict_json((tmp_path / "results.json").read_text(encoding="utf-8"))
    stored = saved["studies"]["sigma"]["runs"]
    assert set(stored) == {"sigma-mix", "he"}
    assert stored["sigma-mix"]["diverged_step"] == [-1, 0]
    assert stored["sigma-mix"]["test_accuracy"][1] is None
    assert isinstance(stored["sigma-mix"]["test_accuracy"][0], float)
    assert math.isfinite(stored["sigma-mix"]["last_val_accuracy"][1])
    assert test_cell(rec).endswith("(1/2 diverged at step 0)")
    assert test_cell(rec, [1]).startswith("diverged at step 0 (last finite: ")
    assert after["diverged_step"] == [-1, -1]
    assert all(0.0 <= v <= 1.0 for v in after["test_accuracy"])
