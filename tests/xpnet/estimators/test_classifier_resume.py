"""Classifier.fit(checkpoint=): a long fit stopped mid-way goes on from its last checkpoint
to the same numbers as a fit that never stopped."""

from __future__ import annotations

import numpy as np
import pytest

from tests.xpnet.estimators.test_classifier import TEST, TRAIN, VAL
from xpnet import Classifier, CyclicalLR, Halving
from xpnet.training import Callback


class Steps(Callback):
    """Counts the steps a fit takes."""

    def __init__(self):
        self.steps = []

    def on_step_begin(self, step):
        self.steps.append(step)


class Kill(Callback):
    """Stands for a SIGKILL at step ``at``."""

    def __init__(self, at: int):
        self.at = at

    def on_step_begin(self, step):
        if step == self.at:
            raise KeyboardInterrupt


def test_a_fit_stopped_and_fitted_again_with_its_checkpoint_ends_as_one_that_never_stopped(
        tmp_path):
    path = tmp_path / "fit.npz"
    halving = Halving(rungs=(1,), eta=3, unit="epochs")

    def clf():
        return Classifier(hidden=(8,), batch_size=10, lam=[0.0, 1e-3, 1e-2], dropout=0.1,
                          schedule=CyclicalLR(1e-3, 1e-1, n_s_epochs=1, cycles=2))

    whole = clf().fit(*TRAIN, val=VAL, halving=halving)
    with pytest.raises(KeyboardInterrupt):
        clf().fit(*TRAIN, val=VAL, halving=halving, callbacks=[Kill(15)], checkpoint=path,
                  checkpoint_every=1e-9)
    assert path.exists()
    steps = Steps()
    resumed = clf().fit(*TRAIN, val=VAL, halving=halving, checkpoint=path, callbacks=[steps])
    assert steps.steps[0] == 15 and steps.steps[-1] == 23  # from the last save on
    assert not path.exists()
    assert resumed.history_.to_dict() == whole.history_.to_dict()
    np.testing.assert_array_equal(resumed.predict_proba_all(TEST[0]),
                                  whole.predict_proba_all(TEST[0]))
