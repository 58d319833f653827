"""What a study sees besides its runs: the CLI's :class:`Settings`, the data, the reports'
schedule and batch size, and where its figures go (:class:`StudyView`, the base of
:class:`~experiments.suite.context.Context`, which adds the runs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments.suite import tasks
from xpnet import CyclicalLR, TrainConfig

#: The reports' batch size.
BATCH = 100

@dataclasses.dataclass
class Settings:
    """The CLI choices that every study sees."""

    quick: bool = False
    seeds: int = 3
    data_dir: str | None = None
    download: bool = False
    force: bool = False
    progress: bool = True

    def scale(self) -> dict:
        """What makes results of one invocation comparable with another's."""
        return {"quick": self.quick, "seeds": self.seeds}


class StudyView:
    """The data, schedules and figure paths of one study; ``settings``, ``out_dir``,
    ``study_name`` and ``data_settings`` are set by :class:`~experiments.suite.context.Context`."""

    settings: Settings
    out_dir: Path
    study_name: str

    # ------------------------------------------------------------------ data
    @property
    def quick(self) -> bool:
        """Whether the suite runs with ``--quick`` (small data and schedules).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> sandbox(tempfile.mkdtemp(), quick=True).quick
        True
        """
        return self.settings.quick

    @property
    def seeds(self) -> list[int]:
        """The seeds of every setting: ``[0, ..., N - 1]`` for ``--seeds N`` (default 3).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> sandbox(tempfile.mkdtemp(), seeds=3).seeds
        [0, 1, 2]
        """
        return list(range(self.settings.seeds))

    @property
    def env(self):
        """This process's data and backend (:class:`experiments.suite.tasks.RunEnv`).

        ``env.data`` is the host data set, ``env.split("train")`` (``"val"``,
        ``"test"``) its split on the device, ``env.backend`` the array backend.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> env = sandbox(tempfile.mkdtemp()).env
        >>> env.split("val").X.shape, env.backend.name
        ((500, 3072), 'cpu')
        """
        return tasks.env_for(self.data_settings)

    @property
    def data(self):
        """The host :class:`xpnet.data.Dataset` (loaded once; smaller with --quick).

        ``X_train``, ``X_val``, ``X_test`` are standardised float32 ``(n, 3072)``;
        ``y_*`` int labels ``(n,)``; ``n_classes``; ``mean``, ``std`` the training
        statistics.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> data = sandbox(tempfile.mkdtemp()).data
        >>> data.X_train.shape, data.y_test.shape, data.n_classes
        ((500, 3072), (200,), 10)
        """
        return self.env.data

    def data_sizes(self) -> dict:
        """The data's split sizes and a fingerprint of its training statistics.

        Returns:
            ``{"train": int, "val": int, "test": int, "train_stats": str}``: part of
            every training spec, so other data means other runs.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> sizes = sandbox(tempfile.mkdtemp()).data_sizes()
        >>> sizes["train"], sizes["val"], sizes["test"], len(sizes["train_stats"])
        (500, 500, 200, 16)
        """
        return self.env.data_sizes()

    def train_config(self, **changes) -> TrainConfig:
        """The reports' training settings (batch 100), with ``changes`` applied.

        Training metrics are measured on 10,000 training images (all of them with --quick).

        Args:
            **changes: fields of :class:`xpnet.TrainConfig` (``batch_size``,
                ``momentum`` (a float, or a tuple of M), ``evals_per_cycle``,
                ``train_eval_size``, ``divergence_loss``).

        Returns:
            A :class:`xpnet.TrainConfig`, for ``submit_train(train=...)``.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> config = sandbox(tempfile.mkdtemp()).train_config(momentum=0.9)
        >>> config.batch_size, config.momentum
        (100, 0.9)
        """
        settings = dict(batch_size=BATCH, train_eval_size=None if self.quick else 10000)
        return TrainConfig(**{**settings, **changes})

    def cyclical(self, cycles: int, n_train: int | None = None) -> CyclicalLR:
        """The reports' schedule: eta 1e-5..1e-1, n_s = 5 epochs of batch 100.

        Args:
            cycles: the number of cycles (each ``2 * n_s`` update steps).
            n_train: the training images an epoch has; default all of :attr:`data`'s.

        Returns:
            A :class:`xpnet.CyclicalLR`, for ``submit_train(schedule=...)``.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp())  # 500 training images: n_s = 25
        >>> ctx.cyclical(2)
        CyclicalLR(eta_min=1e-05, eta_max=0.1, n_s=25, cycles=2)
        >>> ctx.cyclical(1, n_train=100).total_steps
        10
        """
        n = n_train or len(self.data.y_train)
        return CyclicalLR(1e-5, 1e-1, n_s=max(1, 5 * n // BATCH), cycles=cycles)

    # --------------------------------------------------------------- figures
    def figure_path_and_link(self, name: str) -> tuple[Path, str]:
        """Where to save figure ``<study>_<name>.png``, and its link for the report.

        Args:
            name: the figure's name within the study (no extension).

        Returns:
            ``(path, link)``: the absolute :class:`~pathlib.Path` to save to (pass it to
            an ``xpnet.plots`` function) and the report-relative link (put it in the
            study's ``"figures"``).

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> ctx = sandbox(tempfile.mkdtemp(), study="demo")
        >>> path, link = ctx.figure_path_and_link("curves")
        >>> link, path == ctx.out_dir / link
        ('figures/demo_curves.png', True)
        """
        rel = f"figures/{self.study_name}_{name}.png"
        return self.out_dir / rel, rel

    def figure_path(self, name: str) -> tuple[Path, str]:
        """The older name of :meth:`figure_path_and_link`: returns the pair ``(path, link)``.

        Args:
            name: the figure's name within the study (no extension).

        Returns:
            ``(path, link)``: where to save the figure, and its link for the report.

        >>> import tempfile
        >>> from experiments.suite.sandbox import sandbox
        >>> path, link = sandbox(tempfile.mkdtemp(), study="demo").figure_path("curves")
        >>> path.name, link
        ('demo_curves.png', 'figures/demo_curves.png')
        """
        return self.figure_path_and_link(name)
