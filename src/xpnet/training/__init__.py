"""Training: the loop, what it records, the optimizers and the schedules.

- :mod:`~xpnet.training.loop`: :func:`train` and :class:`TrainingRun`;
- :mod:`~xpnet.training.config`: :class:`TrainConfig`; :mod:`~xpnet.training.batches`:
  :class:`DeviceSplit`, batch orders and the batch gather;
- :mod:`~xpnet.training.history`: :class:`History`, the :class:`Callback` hooks,
  :class:`ProgressBar`;
- :mod:`~xpnet.training.optim`: SGD, Adam, AdamW (options and updates);
- :mod:`~xpnet.training.schedules`: learning-rate schedules;
- :mod:`~xpnet.training.population`: what a population schedule (halving, PBT) answers at
  a record point, which the loop applies to the model axis;
- :mod:`~xpnet.training.syncs`: counting host syncs inside the step (design rule 6).

Imports: :mod:`xpnet.network`, :mod:`xpnet.backend`, :mod:`xpnet.step`, :mod:`xpnet.nn`,
:mod:`xpnet.base`, :mod:`xpnet.errors`.
"""

from xpnet.training.batches import DeviceSplit, batch_orders, gather
from xpnet.training.config import TrainConfig
from xpnet.training.history import Callback, History, ProgressBar
from xpnet.training.loop import TrainingRun, record_steps, train

__all__ = ["Callback", "DeviceSplit", "History", "ProgressBar", "TrainConfig", "TrainingRun",
           "batch_orders", "gather", "record_steps", "train"]
