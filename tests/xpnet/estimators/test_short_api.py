"""The pieces the short API stands on: lengths in epochs, Dataset's named splits, the
device= spelling everywhere, and an `import xpnet` free of Dask, matplotlib and tqdm."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import CyclicalLR, DeviceSplit, NetworkConfig, TrainConfig, XpnetError, load_cifar10
from xpnet.data.synthetic import write_cifar_batches
from xpnet.search.sweep import train_lockstep
from xpnet.training.schedules import ConstantLR, Epochs


# ------------------------------------------------------------------ lengths in epochs
def test_n_s_epochs_resolves_to_the_reports_n_s():
    schedule = CyclicalLR(1e-5, 1e-1, n_s_epochs=5, cycles=2)
    assert schedule.n_s == Epochs(5.0)
    steps = schedule.resolve(45000 // 100)
    assert steps == CyclicalLR(1e-5, 1e-1, n_s=2250, cycles=2)  # the reports' schedule
    assert steps.total_steps == 9000
    np.testing.assert_array_equal(steps.rates(), CyclicalLR(1e-5, 1e-1, 2250, 2).rates())
    assert CyclicalLR(n_s_epochs=0.5).resolve(7).n_s == 4  # rounded
    assert CyclicalLR(n_s_epochs=0.01).resolve(7).n_s == 1  # at least one step
    assert steps.resolve(3) is steps and ConstantLR().resolve(3) == ConstantLR()


def test_schedules_in_steps_keep_their_fields():
    """The suite fingerprints schedules with asdict: the epochs option adds no field."""
    assert dataclasses.asdict(CyclicalLR(1e-5, 1e-1, n_s=900, cycles=3)) == {
        "eta_min": 1e-5, "eta_max": 1e-1, "n_s": 900, "cycles": 3}
    assert [f.name for f in dataclasses.fields(CyclicalLR)] == [
        "eta_min", "eta_max", "n_s", "cycles"]
    per_model = CyclicalLR((1e-5, 1e-4), 0.1, n_s_epochs=2).resolve(10)
    assert per_model.n_models == 2 and per_model.rates().shape == (80, 2)


def test_unresolved_lengths_and_conflicts_are_one_sentence():
    with pytest.raises(XpnetError, match="resolve"):
        CyclicalLR(n_s_epochs=5).rates()
    with pytest.raises(XpnetError, match="not both"):
        CyclicalLR(n_s=100, n_s_epochs=5)
    with pytest.raises(XpnetError, match="positive"):
        CyclicalLR(n_s_epochs=-1)


def test_train_resolves_epochs_from_its_data():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 6)), np.arange(50) % 3
    config = NetworkConfig(d_in=6, hidden=(5,), n_classes=3)
    be = xpnet.get_backend("cpu")
    data = DeviceSplit.from_host(be, X, y, 3, "float32")
    _, history = train_lockstep(config, CyclicalLR(n_s_epochs=2, cycles=1), data,
                                train_config=TrainConfig(batch_size=10), progress=False)
    assert history.steps[-1] == 2 * 2 * 5


# ---------------------------------------------------------------- device= everywhere
def test_sweep_takes_device_and_still_backend():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((20, 4)), np.arange(20) % 2
    config = NetworkConfig(d_in=4, hidden=(3,), n_classes=2)
    data = DeviceSplit.from_host(xpnet.get_backend("cpu"), X, y, 2, "float32")
    schedule = ConstantLR(eta=0.01, steps=2, cycle_length=2)
    config_b = TrainConfig(batch_size=10)
    a, _ = train_lockstep(config, schedule, data, None, config_b, device="cpu", progress=False)
    b, _ = train_lockstep(config, schedule, data, None, config_b, backend="cpu", progress=False)
    assert a.backend.name == b.backend.name == "cpu"
    np.testing.assert_array_equal(a.params["W1"], b.params["W1"])
    with pytest.raises(XpnetError, match="once"):
        train_lockstep(config, schedule, data, device="cpu", backend="strict")


# ------------------------------------------------------------------- named splits
def test_dataset_splits_are_named_pairs(tmp_path):
    write_cifar_batches(tmp_path, n_per_batch=30, seed=0)
    data = load_cifar10(tmp_path, n_val=20)
    for split, X, y in ((data.train, data.X_train, data.y_train),
                        (data.val, data.X_val, data.y_val),
                        (data.test, data.X_test, data.y_test)):
        assert split.X is X and split.y is y
        X2, y2 = split
        assert X2 is X and y2 is y
    assert data.train.X.shape == (130, 3072) and data.val.y.shape == (20,)


# -------------------------------------------------------------------- import cost
def test_import_xpnet_brings_in_neither_dask_nor_matplotlib_nor_tqdm():
    """Importing the library and fitting a model (no progress bar) stays light."""
    code = (
        "import sys, numpy as np\n"
        "from xpnet import Classifier, CyclicalLR, load_cifar10\n"
        "X, y = np.random.default_rng(0).standard_normal((20, 3)), np.arange(20) % 2\n"
        "Classifier(hidden=(4,), batch_size=10, schedule=CyclicalLR(n_s_epochs=1)).fit(X, y)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    src = str(Path(xpnet.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = set(eval(done.stdout.strip().splitlines()[-1]))
    assert "xpnet" in loaded
    assert not loaded & {"dask", "distributed", "matplotlib", "tqdm", "sklearn"}, loaded
