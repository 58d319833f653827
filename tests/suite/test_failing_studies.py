"""A study that fails says where: one line naming the study's file and line, the full
traceback in ``OUT/errors/NAME.txt``, every saved run kept, the other studies finished,
the report written with the study marked failed, exit status 1.

The CLI runs as real processes (:mod:`tests.processes`) on the tiny generated data, in
process and on a local cluster of two workers.
"""

from __future__ import annotations

import json
import types

import pytest

from experiments.suite import failures
from experiments.suite.folder_lock import LOCK_NAME
from tests.processes import load, run_cli

QUICK = ["--quick", "--no-progress", "--seeds", "1"]

#: Trains one run, then its own code raises deep inside the json module.
RAISES = '''\
"""Parses its settings badly."""
import json

NAME = "raises"


def parse_settings(text):
    return json.loads(text)


def run(ctx):
    ctx.submit_train("first", hidden=(10,), seeds=0).result()
    parse_settings("{oops")
    return {"summary": "never"}
'''

#: One of its runs raises, in a run function of the file (on a worker, with --workers 2).
RUN_RAISES = '''\
"""One run divides by zero."""
NAME = "run_raises"


def divide(env, spec, callbacks):
    return {"value": spec["a"] / spec["b"]}


def run(ctx):
    ok = ctx.submit("ok", {"a": 1, "b": 2}, divide)
    zero = ctx.submit("zero", {"a": 1, "b": 0}, divide)
    return {"summary": f"{ok.result()['value']}, {zero.result()['value']}"}
'''


def line_of(text: str, code: str) -> int:
    """The 1-based line number of ``code`` in ``text``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if code in line)


def failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("study ")]


def test_a_study_whose_code_raises_says_where_and_the_others_finish(procs, tiny_data,
                                                                   tmp_path):
    study = tmp_path / "raises.py"
    study.write_text(RAISES)
    out = tmp_path / "out"
    args = [*QUICK, "--workers", 1, "--only", "gradcheck", "--study", study,
            "--data-dir", tiny_data, "--out", out]
    proc = run_cli(procs, *args)

    assert proc.returncode == 1, proc.stderr
    expected = ("study raises failed: JSONDecodeError: Expecting property name enclosed in "
                f"double quotes: line 1 column 2 (char 1) ({study}:"
                f"{line_of(RAISES, 'return json.loads')} in parse_settings); full traceback "
                f"in {out / 'errors' / 'raises.txt'}")
    assert proc.stderr.splitlines() == [expected]  # that line alone, no traceback
    saved = (out / "errors" / "raises.txt").read_text(encoding="utf-8")
    assert saved.startswith(expected + "\n") and "Traceback (most recent call last)" in saved
    assert "json/decoder.py" in saved  # the whole traceback, past the study's frame
    studies = load(out)["studies"]
    assert studies["raises"]["status"] == "failed" and studies["raises"]["error"] == expected
    assert set(studies["raises"]["runs"]) == {"first"}  # the run it finished is kept
    assert studies["gradcheck"]["status"] == "done" and len(studies["gradcheck"]["runs"]) == 4
    report = (out / "report.md").read_text(encoding="utf-8")
    section = report.split("## raises", 1)[1]
    assert "Status: failed" in section and expected in section
    assert not (out / LOCK_NAME).exists()

    # Again with --traceback: the same line, then the traceback; the run is reused.
    again = run_cli(procs, *args, "--traceback")
    assert again.returncode == 1
    assert again.stderr.splitlines()[0] == expected
    assert "Traceback (most recent call last)" in again.stderr
    assert f'File "{study}", line {line_of(RAISES, "return json.loads")}' in again.stderr
    assert "gradcheck: skipped (already done" in again.stdout

    # Fixed, the study finishes and its error file goes.
    study.write_text(RAISES.replace('parse_settings("{oops")', 'parse_settings("{}")'))
    fixed = run_cli(procs, *args)
    assert fixed.returncode == 0, fixed.stderr
    assert "raises: 1 run (0 trained, 1 reused)" in fixed.stdout
    assert "error" not in load(out)["studies"]["raises"]
    assert not (out / "errors").exists()


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "two-local-workers"])
def test_a_run_that_raises_says_where_in_process_and_on_workers(procs, tiny_data, tmp_path,
                                                               workers):
    study = tmp_path / "run_raises.py"
    study.write_text(RUN_RAISES)
    out = tmp_path / "out"
    proc = run_cli(procs, *QUICK, "--workers", workers, "--study", study,
                   "--data-dir", tiny_data, "--out", out)

    assert proc.returncode == 1, proc.stderr
    where = f"{study}:{line_of(RUN_RAISES, ' / spec')}"
    expected = (f"study run_raises failed: ZeroDivisionError: division by zero ({where} in "
                f"divide, run run_raises/zero); full traceback in "
                f"{out / 'errors' / 'run_raises.txt'}")
    assert failure_lines(proc.stderr) == [expected], proc.stderr
    assert "Traceback" not in proc.stderr
    saved = (out / "errors" / "run_raises.txt").read_text(encoding="utf-8")
    assert f'File "{study}", line {where.rsplit(":", 1)[1]}, in divide' in saved
    if workers == 2:
        assert "The run's traceback, on the worker:" in saved
    entry = load(out)["studies"]["run_raises"]
    assert entry["status"] == "failed" and set(entry["runs"]) == {"ok"}


BAD_RESULTS = {
    "a-list": ('["not", "a", "dict"]', "returned a list, not a dict"),
    "no-summary": ('{"tables": []}', 'returned a dict without a "summary" entry'),
}


def test_a_study_that_returns_no_summary_is_one_sentence(procs, tiny_data, tmp_path):
    args = []
    for name, (value, _) in BAD_RESULTS.items():
        path = tmp_path / f"{name.replace('-', '_')}.py"
        path.write_text(f'"""Returns {name}."""\n\n\ndef run(ctx):\n    return {value}\n')
        args += ["--study", path]
    out = tmp_path / "out"
    proc = run_cli(procs, *QUICK, "--workers", 1, *args, "--data-dir", tiny_data,
                   "--out", out)
    assert proc.returncode == 1, proc.stderr
    lines = failure_lines(proc.stderr)
    assert len(lines) == len(proc.stderr.splitlines()) == 2, proc.stderr
    # One line per study, in the order the studies end (both on one worker, either first).
    by_study = {line.split()[1]: line for line in lines}
    for name, (_, what) in BAD_RESULTS.items():
        study = name.replace("-", "_")
        assert by_study.get(study) == (f"study {study} failed: its run(ctx) {what} "
                        f"({tmp_path / (study + '.py')}:4 in run); return a dict with at "
                        "least a \"summary\" entry (one line on what the study found).")
        assert load(out)["studies"][study]["status"] == "failed"
    assert (out / "report.md").is_file()


@pytest.mark.parametrize("value, what", [
    (None, "returned None, not a dict"),
    ((1, 2), "returned a tuple, not a dict"),
    ({"summary": "fine"}, None),
])
def test_bad_result_names_what_run_returned(value, what):
    module = types.SimpleNamespace(run=lambda ctx: value)
    failure = failures.bad_result("mine", module, value)
    if what is None:
        assert failure is None
    else:
        assert failure.line.startswith(f"study mine failed: its run(ctx) {what} (")
        assert failure.line.count(". ") == 0 and failure.line.endswith(".")


def test_a_worker_error_carries_its_frames_and_traceback_across_pickling():
    """What a worker sends for a run that raised: the frames (a recursion's repeats once)
    and the text, through the pickling Dask uses."""
    import pickle

    from experiments.suite.tasks import RunError, _portable

    def recurse(n):
        return recurse(n + 1)

    try:
        recurse(0)
    except RecursionError as exc:
        sent = pickle.loads(pickle.dumps(_portable(exc, source=None)))
    assert isinstance(sent, RunError) and sent.kind == "RecursionError"
    assert [f[2] for f in sent.frames].count("recurse") == 1
    assert "Traceback (most recent call last)" in sent.text
    assert str(sent).startswith("RecursionError: maximum recursion depth exceeded")
    json.dumps(sent.frames)  # plain data
