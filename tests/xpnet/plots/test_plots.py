"""Figures read at page width: sizes and aspect, bands inside the data, shared ranges."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

import xpnet.plots as plots
from experiments.studies import depth_bn, gradcheck, init_sensitivity
from experiments.studies.kit import Grid
from xpnet.plots import (
    BarPanel,
    Curve,
    DotPanel,
    Panel,
    Ref,
    plot_bars,
    plot_dot_rows,
    plot_heatmaps,
    plot_panels,
    plot_xy,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_WIDTH = 1800  # px: a markdown page shows ~900, so at most 2x is sharp and readable


def png_size(path) -> tuple[int, int]:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path
    return struct.unpack(">II", data[16:24])


class FakeContext:
    """What the studies' figure code asks of a context."""

    def __init__(self, out: Path, study: str, seeds: int = 3):
        self.out_dir, self.study_name = out, study
        self.seeds = list(range(seeds))
        self.data = types.SimpleNamespace(n_classes=10)

    def figure_path(self, name: str):
        rel = f"figures/{self.study_name}_{name}.png"
        return self.out_dir / rel, rel


@pytest.fixture
def captured(monkeypatch):
    """The figures the plotting functions save (to their paths), kept open for inspection."""
    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)  # what save_figure calls last
    yield figures
    for fig in figures:
        close(fig)


def _gradcheck_params(k: int, bn: bool, rng) -> list[dict]:
    params = []
    for layer in range(1, k + 1):
        kinds = ("W", "gamma", "beta") if bn and layer < k else ("W", "b")
        params += [{"name": f"{kind}{layer}", "shape": [1, 4, 4], "max_abs_error": 1e-12,
                    "max_rel_error": float(10 ** rng.uniform(-11, -7)),
                    "mean_rel_error": 1e-12, "share_below": 1.0} for kind in kinds]
    return params


@pytest.mark.parametrize("k", [2, 3, 4, 9])
def test_gradcheck_figure_keeps_a_page_aspect(tmp_path, k):
    rng = np.random.default_rng(k)
    results = {(k, bn, lam): _gradcheck_params(k, bn, rng)
               for bn in (True, False) for lam in (0.0, 0.01)}
    rel = gradcheck.figure(FakeContext(tmp_path, "gradcheck"), k, results)
    width, height = png_size(tmp_path / rel)
    assert width <= MAX_WIDTH and width / height < 2.5, (width, height)


def test_gradcheck_rows_are_in_network_order_with_reference_lines(tmp_path, captured):
    rng = np.random.default_rng(0)
    results = {(3, False, 0.0): _gradcheck_params(3, False, rng)[::-1]}  # shuffled order
    gradcheck.figure(FakeContext(tmp_path, "gradcheck"), 3, results)
    (fig,) = captured
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["layer 1", "layer 2",
                                                            "layer 3 (output)"]
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # layer 1 on top
    refs = {float(line.get_xdata()[0]) for line in ax.lines if line.get_linestyle() == "--"}
    assert refs == {1e-6, 7e-3}
    # Every marker lies strictly inside the axes: nothing touches the top or bottom.
    lo, hi = sorted(ax.get_ylim())
    ys = np.concatenate([line.get_ydata() for line in ax.lines if line.get_marker() != "None"])
    assert lo < ys.min() and ys.max() < hi
    assert [p["name"] for p in sorted(results[3, False, 0.0],
                                      key=lambda p: gradcheck.network_order(p["name"]))] == [
        "W1", "b1", "W2", "b2", "W3", "b3"]


def test_band_never_leaves_the_range_of_the_data(captured, tmp_path):
    steps = np.arange(4)
    values = np.array([[2.3, 2.3, 2.3], [2.3, 1.5, 1.2], [2.3, 1.0, 0.8], [2.3, 0.7, 0.5]])
    plot_panels(tmp_path / "x.png", "t", [Panel("loss", "loss", [Curve("a", steps, values)])])
    ax = captured[0].axes[0]
    (band,) = ax.collections
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() >= values.min() - 1e-12 and ys.max() <= values.max() + 1e-12
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), np.median(values, axis=1))


def test_split_seeds_are_drawn_one_thin_line_each(captured, tmp_path):
    steps = np.arange(3)
    values = np.array([[2.3, 2.3, 2.3], [2.3, 1.5, 1.4], [2.3, 1.0, 0.9]])
    plot_panels(tmp_path / "x.png", "t",
                [Panel("loss", "loss", [Curve("a", steps, values, seeds="thin")],
                       refs=[(math.log(10), "chance")])])
    ax = captured[0].axes[0]
    assert not ax.collections  # no band
    seed_lines = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert len(seed_lines) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (each seed)", "chance"]


def _history(values_by_metric: dict, n_points: int) -> dict:
    return {"steps": list(range(0, 10 * n_points, 10)), "metrics": {
        key: np.asarray(v).tolist() for key, v in values_by_metric.items()}}


def _record(test_accuracy, n_points: int = 6, stuck=()) -> dict:
    """A run record whose models train (loss falls) except the ``stuck`` ones."""
    m = len(test_accuracy)
    t = np.linspace(0, 1, n_points)[:, None]
    loss = np.log(10) - 1.2 * t * np.ones((1, m))
    acc = 0.1 + 0.4 * t * np.ones((1, m))
    for j in stuck:
        loss[:, j], acc[:, j] = np.log(10), 0.1
    metrics = {f"{split}_{name}": v for split in ("train", "val")
               for name, v in (("loss", loss), ("cost", loss + 0.1), ("accuracy", acc))}
    return {"history": _history(metrics, n_points), "test_accuracy": list(test_accuracy),
            "diverged_step": [-1] * m, "last_val_accuracy": list(test_accuracy)}


def test_init_sensitivity_is_one_figure_on_one_y_range_with_chance(tmp_path, captured):
    n = 3
    recs = {}
    for arch in ("3-layer", "9-layer"):
        for bn in (True, False):
            acc = [0.5] * (3 * n)
            stuck = []
            if not bn and arch == "3-layer":  # sigma 1e-3 splits: one seed stuck
                acc[n:2 * n] = [0.100, 0.446, 0.508]
                stuck = [n]
            if arch == "9-layer" and bn:  # sigma 1e-4 stuck at chance
                acc[2 * n:] = [0.1] * n
                stuck = list(range(2 * n, 3 * n))
            recs[arch, bn] = _record(acc, stuck=stuck)
    grid = Grid(range(n), sigma=init_sensitivity.SIGMAS)
    init_sensitivity.figure(FakeContext(tmp_path, "init_sensitivity", n), recs, grid, 2)
    (fig,) = captured
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6
    limits = {ax.get_ylim() for ax in axes}
    assert len(limits) == 1
    lo, hi = limits.pop()
    assert lo <= math.log(10) <= hi
    split_panel = axes[1]  # 3-layer, sigma 1e-3
    labels = [line.get_label() for line in split_panel.lines]
    assert labels.count("no BN, training (each seed)") == 1
    assert sum(1 for line in split_panel.lines if line.get_color() == plots.PALETTE[1]) == 2 * n


def test_init_sensitivity_names_its_surprises():
    chance = np.full(3, 0.1)
    assert "eps" in init_sensitivity.difference("9-layer", 1e-4, True, chance)["cause"]
    split = init_sensitivity.difference("3-layer", 1e-3, False, np.array([0.1, 0.446, 0.508]))
    assert "seed" in split["cause"] and split["reports"] == "10 % (stays at chance)"
    assert init_sensitivity.difference("3-layer", 1e-3, False, chance) is None
    assert init_sensitivity.difference("3-layer", 1e-1, True, np.full(3, 0.52)) is None


def test_depth_bn_is_one_figure_with_shared_axes(tmp_path, captured):
    recs = {(arch, bn): _record([0.5, 0.5, 0.5]) for arch, bn in depth_bn.settings()}
    rel = depth_bn.figure(FakeContext(tmp_path, "depth_bn"), recs, 2)
    assert rel == "figures/depth_bn_curves.png"
    (fig,) = captured
    loss_3, loss_9, acc_3, acc_9 = fig.axes[:4]
    assert loss_3.get_ylim() == loss_9.get_ylim() and acc_3.get_ylim() == acc_9.get_ylim()
    assert loss_3.get_xlim() == acc_9.get_xlim()
    assert acc_3.get_ylim()[0] <= 10 <= acc_3.get_ylim()[1]  # percent, chance included
    assert max(acc_9.lines[0].get_ydata()) == pytest.approx(50.0)


def test_figures_are_page_width_pngs(tmp_path):
    steps = np.arange(5) * 10
    values = np.linspace(2, 1, 5)[:, None] + np.array([[0.0, 0.1, np.nan]])
    p1 = plot_panels(tmp_path / "curves.png", "Curves",
                     [Panel("loss", "loss", [Curve("training", steps, values),
                                             Curve("validation", steps, values[:, 0], "--")])],
                     caption="Line: median; band: min-max.")
    p2 = plot_dot_rows(tmp_path / "dots.png", "Dots", ["layer 1", "layer 2"],
                       [DotPanel("BN", {"W": [1e-9, np.nan], "b": [0.0, 1e-12]})],
                       "max relative error", refs=[(1e-6, "target")])
    p3 = plot_xy(tmp_path / "xy.png", "Search", "log10(lambda)", "accuracy (%)",
                 {"coarse": ([-5, -3, -1], [40, 50, 30])}, marks=[(-3, 50, "chosen")])
    for path in (p1, p2, p3):
        width, height = png_size(path)
        assert 600 <= width <= 1000 and width / height < 3, (path, width, height)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "dots.png", "xy.png"]


def test_import_xpnet_leaves_matplotlib_unloaded():
    """``xpnet.plots`` is imported on demand: the short API never pays for matplotlib."""
    code = ("import sys, xpnet; assert 'matplotlib' not in sys.modules, 'matplotlib loaded'; "
            "import xpnet.plots; assert 'matplotlib' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_library_has_no_chance_constant(tmp_path, captured):
    """Chance comes from n_classes or from the caller: a bar panel has none by default."""
    assert not hasattr(plots, "CHANCE")
    assert plots.chance_refs("accuracy", 4) == [(25.0, "chance (25 %)")]
    series = {"a": ([[40.0, 42.0]], [[False, False]], [[40.0, 42.0]])}
    plot_bars(tmp_path / "none.png", "t", [BarPanel("", "acc (%)", ["g"], series)])
    plot_bars(tmp_path / "ten.png", "t", [BarPanel("", "acc (%)", ["g"], series, chance=10.0)])
    without, with_chance = (fig.axes[0] for fig in captured)
    assert not [line for line in without.lines if line.get_linestyle() == ":"]
    (chance,) = [line for line in with_chance.lines if line.get_linestyle() == ":"]
    assert chance.get_label() == "chance (10 %)" and list(chance.get_ydata()) == [10.0, 10.0]


def test_each_seed_lines_end_where_a_seed_diverged(tmp_path, captured):
    """``seeds="each"``: one line per seed through its finite points, an x and a note."""
    steps = np.arange(5) * 10.0
    values = np.array([[10, 10], [20, 30], [30, np.nan], [40, np.nan], [50, np.nan]], float)
    plot_panels(tmp_path / "x.png", "t",
                [Panel("acc", "acc (%)", [Curve("BN", steps, values, seeds="each",
                                                diverged=[-1, 20])],
                       refs=[Ref(10.0, "chance", "grey", width=1.0),
                             Ref(25.0, "target", axis="x")])])
    ax = captured[0].axes[0]
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert [len(line.get_xdata()) for line in solid] == [5, 2]
    assert [line.get_label() for line in solid][0] == "BN"
    (x_mark,) = [line for line in ax.lines if line.get_marker() == "x"]
    assert (x_mark.get_xdata(), x_mark.get_ydata()) == (10.0, 30.0)
    (note,) = ax.texts
    assert note.get_text() == "1/2 diverged (step 20)"
    refs = {line.get_label(): line for line in ax.lines if line.get_linestyle() == ":"}
    assert list(refs["chance"].get_ydata()) == [10.0, 10.0]
    assert list(refs["target"].get_xdata()) == [25.0, 25.0]
    assert refs["chance"].get_linewidth() == 1.0 and refs["target"].get_linewidth() == 1.2
    with pytest.raises(ValueError, match="seeds"):
        Curve("a", steps, values, seeds="median")


def test_panel_options_log_x_spans_ticks_and_one_legend(tmp_path, captured):
    eta = np.logspace(-5, 0, 6)
    panels = [Panel(f"p{i}", "loss", [Curve("sweep", eta, np.linspace(2, 1, 6), seeds="each")],
                    xlabel="eta", logx=True, spans=[(1e-5, 0.1, "range", "grey")],
                    xticks=([1e-4, 1e-2], ["a", "b"]), ylim=(0, 4)) for i in range(2)]
    plot_panels(tmp_path / "x.png", "t", panels, ncols=2, legend=0)
    first, second = captured[0].axes[:2]
    assert first.get_xscale() == "log" and first.get_ylim() == (0, 4)
    assert [t.get_text() for t in first.get_xticklabels()] == ["a", "b"]
    assert len(first.patches) == 1  # the span
    assert first.get_legend() is not None and second.get_legend() is None


def test_heatmaps_and_bars_are_page_width_pngs(tmp_path):
    matrix = 10.0 ** np.arange(12).reshape(3, 4)
    p1 = plot_heatmaps(tmp_path / "heat.png", "Heat",
                       [("a", matrix, [0, 1, 2, 3], ["1", "2", "3"], "step")] * 2,
                       caption="colour: log10", cbar_label="log10")
    series = {"x": ([[50.0, np.nan], [30.0, 31.0]], [[False, True], [False, False]],
                    [[50.0, 40.0], [30.0, 31.0]]),
              "y": ([[np.nan, np.nan], [20.0, 25.0]], [[True, True], [False, False]],
                    [[12.0, 14.0], [20.0, 25.0]])}
    p2 = plot_bars(tmp_path / "bars.png", "Bars",
                   [BarPanel("", "acc (%)", ["g1", "g2"], series, chance=10.0)] * 2,
                   caption="bars", ncols=2, ymax=75)
    for path in (p1, p2):
        width, height = png_size(path)
        assert 900 <= width <= 1100 and width / 3 <= height <= width, (path, width, height)
