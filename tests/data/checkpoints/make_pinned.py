"""How the pinned checkpoints beside this file were written (run once, by the code of
main at b48cf32, before issue 34's checks): ``python tests/data/checkpoints/make_pinned.py``.

They are committed, not regenerated: ``tests/robustness/test_checkpoints.py`` checks that
files written by that code keep loading with equal arrays.
"""

from pathlib import Path

import numpy as np

from xpnet import Classifier
from xpnet.network.network import Network, NetworkConfig, one_hot
from xpnet.training.schedules import ConstantLR

HERE = Path(__file__).parent


def main() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 4))
    y = rng.integers(0, 3, 12)
    for norm in ("batch", "layer", None):
        config = NetworkConfig(d_in=4, hidden=(3,), n_classes=3, norm=norm, dropout=0.1)
        net = Network.create(config, seeds=[0, 1], lam=[1e-3, 0.0], bn_eps=[1e-5, 1e-3],
                             dtype="float64")
        net.loss_and_gradients(X, one_hot(y, 3))  # moves the running averages
        net.save(HERE / f"network_{norm or 'none'}_v1.npz")
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = Classifier(hidden=(3,), lam=1e-3, batch_size=4, dtype="float32",
                     schedule=ConstantLR(0.05, steps=6, cycle_length=3))
    clf.fit(X, labels).save(HERE / "classifier_v1.npz")


if __name__ == "__main__":
    main()
