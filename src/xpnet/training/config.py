"""How :func:`~xpnet.training.loop.train` runs besides the schedule: :class:`TrainConfig`."""

from __future__ import annotations

import dataclasses

from xpnet.errors import XpnetError
from xpnet.training.optim import OPTIMIZERS, SGD, Adam, AdamW


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How :func:`train` runs, besides the schedule.

    Attributes:
        batch_size: samples per step; an epoch is ``N // batch_size`` steps.
        momentum: SGD momentum in [0, 1) (``torch.optim.SGD`` semantics), one value or
            one per model: shorthand for ``optimizer=SGD(momentum)``.
        evals_per_cycle: record points per schedule cycle (plus one before training).
        train_eval_size: training metrics use the first this-many training samples
            (None: all); keeps recording cheap on 45,000 images.
        divergence_loss: a model whose batch loss is non-finite or above this is marked
            diverged at that step and stops updating.  A cross-entropy of 1e4 means the
            true class scores 1e4 below the best one: such a model is not training, even
            if float32 has not overflowed yet (say, weights drawn with sigma = 10).
        optimizer: the options of :mod:`xpnet.training.optim` (``Adam(...)``, ``AdamW(...)``);
            None is SGD with ``momentum``.  ``SGD(momentum=m)`` is stored as
            ``momentum=m`` with None here, so both spellings are one config.
    """

    batch_size: int = 100
    momentum: float | tuple[float, ...] = 0.0
    evals_per_cycle: int = 10
    train_eval_size: int | None = 10000
    divergence_loss: float = 1e4
    optimizer: SGD | Adam | AdamW | None = None

    def __post_init__(self):
        opt = self.optimizer
        if opt is not None and type(opt) not in OPTIMIZERS.values():
            raise XpnetError(f"optimizer must be one of {', '.join(OPTIMIZERS)} from "
                             f"xpnet (say Adam()), got {type(opt).__name__}.")
        momentum = SGD(self.momentum).momentum  # checked: a float or one per model
        if type(opt) is SGD:
            if momentum != 0.0 and momentum != opt.momentum:
                raise XpnetError("Give SGD's momentum once, as momentum= or as "
                                 "optimizer=SGD(momentum=...).")
            momentum, opt = opt.momentum, None
        elif opt is not None and momentum != 0.0:
            raise XpnetError(f"momentum is SGD's option; {type(opt).__name__} takes beta1 "
                             "instead, so leave momentum at 0.")
        object.__setattr__(self, "momentum", momentum)
        object.__setattr__(self, "optimizer", opt)
        for name in ("batch_size", "evals_per_cycle"):
            if int(getattr(self, name)) < 1:
                raise XpnetError(f"{name} must be at least 1, got {getattr(self, name)!r}.")
        if self.train_eval_size is not None and self.train_eval_size < 1:
            raise XpnetError("train_eval_size must be None or at least 1.")
        if not self.divergence_loss > 0:
            raise XpnetError("divergence_loss must be positive.")

    @property
    def resolved_optimizer(self) -> SGD | Adam | AdamW:
        """The optimizer's options: ``optimizer``, or ``SGD(momentum)`` when it is None."""
        return SGD(self.momentum) if self.optimizer is None else self.optimizer
