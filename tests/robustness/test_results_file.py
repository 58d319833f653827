"""A ``results.json`` the suite did not write, or one edited into another shape.

Both readers of the file, the suite resuming a folder and ``xpnet-results``, check it
against its structure (:mod:`experiments.suite.schema`) first: another tool's JSON is
refused, never replaced, and a wrong-typed, ragged or missing entry is named by its place
in the file, in one sentence; nothing is dropped or miscounted.  The fuzz below takes a
real file (a sandbox run, written by the suite's own store) and breaks it every way it
can at every place, deterministically.
"""

from __future__ import annotations

import copy
import json
import signal
from pathlib import Path

import pytest

from experiments.suite import schema
from experiments.suite.store import ResultStore
from xpnet.errors import OutputError

pd = pytest.importorskip("pandas")


@pytest.fixture(autouse=True)
def restore_sigterm():
    old = signal.getsignal(signal.SIGTERM)  # main() installs its own handlers
    old_int = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGTERM, old)
    signal.signal(signal.SIGINT, old_int)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() if p.is_file() else None
            for p in folder.rglob("*")}


def run_main(args, capsys):
    from experiments.run import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------- another tool's file
FOREIGN = [
    pytest.param("[]", id="empty-list"),
    pytest.param("[1, 2, 3]", id="list"),
    pytest.param('"results"', id="string"),
    pytest.param("42", id="number"),
    pytest.param("null", id="null"),
    pytest.param("{}", id="empty-object"),
    pytest.param('{"accuracy": 0.53, "runs": [1, 2]}', id="another-tools-dict"),
    pytest.param('{"format": 1, "meta": {}, "studies": [["lr_bn", {}]]}', id="studies-a-list"),
    pytest.param('{"studies": {"lr_bn": []}}', id="study-a-list"),
    pytest.param('{"studies": {"lr_bn": {"runs": "oops"}}}', id="runs-a-string"),
    pytest.param('{"format": 7, "studies": {}}', id="newer-format"),
]


@pytest.mark.parametrize("content", FOREIGN)
def test_a_results_file_that_is_not_the_suites_is_refused_and_left_alone(
        tiny_data, tmp_path, capsys, one_sentence, content):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(content)
    before = snapshot(out)
    code, stdout, err = run_main(["--quick", "--only", "lr_bn", "--seeds", 1, "--no-progress",
                                  "--workers", 1, "--data-dir", tiny_data, "--out", out],
                                 capsys)
    assert code == 2, err
    assert stdout == "" and len(err.splitlines()) == 1, err
    one_sentence(err.strip(), f"{out / 'results.json'} is not a results file of this suite (",
                 "move it away or choose another --out")
    assert snapshot(out) == before  # byte for byte, and nothing added


# ------------------------------------------------------------ a real file, broken
@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    """A folder with a real results.json: one training run of 2 models (a per-model rate,
    so ``eta`` holds one value per model) and one run of another kind."""
    from experiments.suite.sandbox import sandbox
    from xpnet import ConstantLR

    folder = tmp_path_factory.mktemp("real")
    ctx = sandbox(folder, study="demo", seeds=1)
    schedule = ConstantLR(eta=(0.01, 0.1), steps=20, cycle_length=10)
    ctx.submit_train("train", seeds=[0, 1], hidden=(8,), schedule=schedule).result()
    ctx.submit("other", {"n": 1}, count_images).result()
    return folder


def count_images(env, spec, callbacks):
    return {"images": len(env.data.y_train), "per_layer": [[1, 2], [3]]}


WRONG = ("oops", 3, None, [], {}, True)


def variants(data):
    """``(what, variant)``: ``data`` with one entry replaced by each wrong kind, removed,
    one entry shorter and one longer, at every place (of a long array: its first and last
    entries)."""
    def places(node, path=()):
        yield path, node
        children = (node.items() if isinstance(node, dict) else
                    [(i, node[i]) for i in sorted({0, len(node) - 1})]
                    if isinstance(node, list) and node else [])
        for key, child in children:
            yield from places(child, (*path, key))

    def at(node, path):
        for key in path:
            node = node[key]
        return node

    for path, node in places(data):
        if not path:
            continue
        for wrong in WRONG:
            if wrong != node or type(wrong) is not type(node):
                v = copy.deepcopy(data)
                at(v, path[:-1])[path[-1]] = copy.deepcopy(wrong)
                yield (path, f"= {wrong!r}"), v
        if isinstance(at(data, path[:-1]), dict):
            v = copy.deepcopy(data)
            del at(v, path[:-1])[path[-1]]
            yield (path, "removed"), v
        if isinstance(node, list) and node:
            v = copy.deepcopy(data)
            at(v, path).pop()
            yield (path, "shorter"), v
            v = copy.deepcopy(data)
            at(v, path).append(copy.deepcopy(node[-1]))
            yield (path, "longer"), v


def training_records(data) -> dict:
    return {(study, key): record for study, entry in data["studies"].items()
            for key, record in entry["runs"].items()
            if "models" in record.get("spec", {}) or "history" in record}


def read_completely(models, curves, data) -> None:
    """Every training run of ``data`` has one row per model and every point of every
    curve: nothing dropped, nothing counted twice."""
    runs = training_records(data)
    assert set(zip(models["study"], models["key"], strict=True)) == set(runs)
    for (study, key), record in runs.items():
        M = len(record["spec"]["models"]["seeds"])
        mine = (models["study"] == study) & (models["key"] == key)
        assert mine.sum() == M
        history = record.get("history")  # none: a run of a training spec that trains not
        series = [*history["metrics"], "eta"] if history else []
        counts = curves[(curves["study"] == study) & (curves["key"] == key)].groupby(
            "metric").size().to_dict()
        assert counts == {metric: len(history["steps"]) * M for metric in series}


def test_every_broken_variant_of_a_real_file_is_refused_by_place_or_read_whole(real, tmp_path):
    """Both readers, on hundreds of variants: a refusal names where the file breaks its
    structure; a variant they accept is read whole."""
    from experiments.results import ResultsError, load

    original = json.loads((real / "results.json").read_text())
    assert schema.problem(original) is None
    models, curves = load(real)
    read_completely(models, curves, original)
    tally = {"refused": 0, "read whole": 0}
    folder = tmp_path / "variant"
    folder.mkdir()
    for (path, how), variant in variants(original):
        case = f"{schema.where(path)} {how}"
        (folder / "results.json").write_text(json.dumps(variant))
        what = schema.problem(variant)
        if what is None:
            models, curves = load(folder)
            read_completely(models, curves, variant)
            ResultStore(folder)
            tally["read whole"] += 1
            continue
        assert what.startswith(("the top level", "studies", "format", "meta")), (case, what)
        with pytest.raises(ResultsError) as results_error:
            load(folder)
        with pytest.raises(OutputError) as store_error:
            ResultStore(folder)
        for message in (str(results_error.value), str(store_error.value)):
            assert what in message and "\n" not in message and message.endswith("."), case
        tally["refused"] += 1
    assert tally["refused"] > 300 and tally["read whole"] > 20, tally


def test_a_refusal_names_the_first_bad_entry_by_its_path(real):
    data = json.loads((real / "results.json").read_text())
    run = data["studies"]["demo"]["runs"]["train"]
    cases = [
        (("history", "metrics"), [], "studies.demo.runs.train.history.metrics is an array, "
                                     "not an object"),
        (("history", "metrics", "val_loss", 1), [0.5],
         "studies.demo.runs.train.history.metrics.val_loss[1] has 1 entry, not one per "
         "model (2)"),
        (("test_accuracy",), [0.5, 0.5, 0.5],
         "studies.demo.runs.train.test_accuracy has 3 entries, not one per model (2)"),
        (("history", "epochs"), [0.0],
         "studies.demo.runs.train.history.epochs has 1 entry, not one per record point (21)"),
        (("spec", "models", "seeds", 0), "0",
         "studies.demo.runs.train.spec.models.seeds[0] is a string, not a whole number"),
    ]
    for path, value, words in cases:
        broken = copy.deepcopy(data)
        node = broken["studies"]["demo"]["runs"]["train"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        assert schema.problem(broken) == words
    del run["test_accuracy"]
    assert schema.problem(data) == "studies.demo.runs.train.test_accuracy is missing"


# ---------------------------------------------------------------- the two readers
@pytest.fixture(scope="module")
def quick_folder(tiny_data, tmp_path_factory):
    """A folder the suite made: ``--quick --only overfit`` (one run), in this process."""
    from experiments.run import main

    old = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    out = tmp_path_factory.mktemp("quick") / "out"
    try:
        assert main(["--quick", "--only", "overfit", "--seeds", "1", "--no-progress",
                     "--workers", "1", "--data-dir", str(tiny_data), "--out", str(out)]) == 0
    finally:
        signal.signal(signal.SIGTERM, old[0])
        signal.signal(signal.SIGINT, old[1])
    return out


BROKEN = [  # (what to do to the overfit study's entry, the place the refusal names)
    pytest.param(lambda e: e.update(runs="oops"), "studies.overfit.runs", id="runs-a-string"),
    pytest.param(lambda e: e["runs"].update({"4-layer-bn-100": [1, 2]}),
                 "studies.overfit.runs.4-layer-bn-100", id="record-a-list"),
    pytest.param(lambda e: e["runs"]["4-layer-bn-100"].update(wall_s="1 s"),
                 "studies.overfit.runs.4-layer-bn-100.wall_s", id="wall-a-string"),
    pytest.param(lambda e: e["runs"]["4-layer-bn-100"]["history"]["metrics"].update(
        train_loss=[[0.1]]), "studies.overfit.runs.4-layer-bn-100.history.metrics.train_loss",
                 id="ragged-metric"),
    pytest.param(lambda e: e.update(figures="figures/overfit.png"), "studies.overfit.figures",
                 id="figures-a-string"),
    pytest.param(lambda e: e.update(status="finished"), "studies.overfit.status",
                 id="unknown-status"),
]


@pytest.mark.parametrize("breaking, place", BROKEN)
def test_the_suite_refuses_to_resume_a_broken_file_and_leaves_it(
        quick_folder, tiny_data, tmp_path, capsys, one_sentence, breaking, place):
    """Before: "overfit: skipped (already done, 4 runs reused)" for runs "oops", or a
    traceback; now one sentence naming the entry, and the file as it was."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(quick_folder, out)
    data = json.loads((out / "results.json").read_text())
    breaking(data["studies"]["overfit"])
    (out / "results.json").write_text(json.dumps(data, indent=1))
    before = snapshot(out)
    code, stdout, err = run_main(["--quick", "--only", "overfit", "--seeds", 1,
                                  "--no-progress", "--workers", 1, "--data-dir", tiny_data,
                                  "--out", out], capsys)
    assert code == 2, err
    assert stdout == "" and len(err.splitlines()) == 1, err
    one_sentence(err.strip(), f"{out / 'results.json'} is not a results file of this suite (",
                 place, "move it away or choose another --out")
    assert snapshot(out) == before

    from experiments.results import main as results_main

    assert results_main([str(out)]) == 2
    err = capsys.readouterr().err.strip()
    one_sentence(err, f"{out / 'results.json'} is not a results file of the suite (", place,
                 "pass the --out folder of a suite run")


@pytest.mark.slow
def test_every_built_in_studys_file_fits_the_structure_and_is_resumed(tiny_data, tmp_path):
    """The structure is the one the suite writes: a whole ``--quick`` suite's file passes
    it (bn_eps's look at initial weights, halving, per-model rates, probes...), both
    readers take it, and a second invocation reuses every run."""
    import subprocess
    import sys

    from experiments.results import load
    from tests.processes import REPO

    out = tmp_path / "out"
    command = [sys.executable, "-m", "experiments.run", "--quick", "--seeds", "1",
               "--no-progress", "--workers", "1", "--data-dir", str(tiny_data), "--out",
               str(out)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr
    data = json.loads((out / "results.json").read_text())
    assert schema.problem(data) is None
    models, curves = load(out)
    read_completely(models, curves, data)
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    for name, entry in data["studies"].items():
        n = len(entry["runs"])
        assert f"{name}: skipped (already done, {n} runs reused)" in again.stdout, again.stdout
