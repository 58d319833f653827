"""The CLI (issue item 7): generated argument combinations never produce a traceback.

``experiments.run.main`` runs in process on argument lists that hypothesis builds from
the real flags, good and bad values, unknown flags and random text.  Every outcome must
be exit 0 (``--list``, ``--help``) or exit 2 with one line ``error: ... .`` on stderr.
Nothing can train: there is no CIFAR-10 anywhere it looks (``--data-dir`` values are
missing or empty folders, ``$XPNET_DATA`` and ``$HOME`` point at empty places), downloads
are stubbed to fail, and a guard fails the test if a run ever starts.
"""

from __future__ import annotations

import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import experiments.run as run
import experiments.suite.context as context
import xpnet.data.cifar10
from experiments.studies import STUDY_NAMES
from xpnet.errors import DownloadError

N_EXAMPLES = 150
STUDIES = list(STUDY_NAMES)

# Free text for values and stray tokens: no NUL (argv cannot hold one), no surrogates,
# no "/" so a relative --out cannot climb out of the test's folder.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
               max_size=12).filter(lambda s: s.strip(".") != "")


def _only_values():
    names = st.sampled_from(STUDIES + ["nope", "GRADCHECK", " lr_bn ", "", ","])
    return st.one_of(st.lists(names, min_size=0, max_size=4).map(",".join), TEXT)


def _seed_values():
    return st.one_of(st.integers(-5, 6).map(str), st.sampled_from(
        ["0", "-1", "1.5", "3e2", "many", "", " 2", "0x10", "１"]), TEXT)


def _out_values():
    return st.sampled_from(["OUT/a", "OUT/a/b c", "OUT/file", "OUT/file/below", "OUT/" + "x" * 300,
                            "OUT/réüs", "OUT/a/../a", "OUT/results.json-dir"])


def _data_values():
    return st.sampled_from(["OUT/missing", "OUT/empty", "OUT/file", "OUT/empty/cifar-10-batches-py",
                            "OUT/" + "d" * 300, "~/nothing", "OUT/half"])


@st.composite
def argument_lists(draw):
    """A shuffled mix of flag/value groups, with stray tokens now and then."""
    groups = st.one_of(
        st.just(["--quick"]), st.just(["--list"]), st.just(["--force"]),
        st.just(["--no-progress"]), st.just(["--download"]), st.just(["--help"]),
        st.tuples(st.just("--device"), st.sampled_from(["cpu", "cuda", "tpu", "CPU", "", "gpu"])
                  ).map(list),
        st.tuples(st.just("--only"), _only_values()).map(list),
        st.tuples(st.just("--seeds"), _seed_values()).map(list),
        st.tuples(st.just("--out"), _out_values()).map(list),
        st.tuples(st.just("--data-dir"), _data_values()).map(list),
        st.sampled_from([["--only"], ["--seeds"], ["--out"], ["--device"], ["--data-dir"]]),
        st.sampled_from([["--bogus"], ["-x"], ["--seeds=2"], ["--only=lr_bn,nope"],
                         ["--dev", "cpu"], ["--d"], ["-"], ["--"], ["--quick=1"],
                         ["--list", "extra"]]),
        TEXT.map(lambda t: [t]),
    )
    parts = draw(st.lists(groups, min_size=0, max_size=6))
    return [token for part in parts for token in part]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A folder with the paths the vocabulary names, and no data anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "OUT").mkdir()
    (tmp_path / "OUT" / "file").write_text("a file")
    (tmp_path / "OUT" / "empty" / "cifar-10-batches-py").mkdir(parents=True)
    (tmp_path / "OUT" / "half").mkdir()
    (tmp_path / "OUT" / "half" / "readme.html").write_text("<html></html>")
    (tmp_path / "OUT" / "results.json-dir" / "results.json").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "no-data-here"))

    def no_download(root, **kwargs):
        raise DownloadError("Download refused in the test sandbox; retry later.")

    def no_training(*args, **kwargs):
        raise AssertionError("a run started training during the CLI fuzz")

    monkeypatch.setattr(xpnet.data.cifar10, "download_cifar", no_download)
    monkeypatch.setattr(context.Context, "submit", no_training)
    old = signal.getsignal(signal.SIGTERM)
    yield tmp_path
    signal.signal(signal.SIGTERM, old)


def _invoke(argv):
    """``main(argv)`` as the process would exit: argparse's --help raises SystemExit(0)."""
    try:
        return run.main(argv)
    except SystemExit as exc:
        return exc.code


def check_outcome(argv, code, out, err):
    where = f"argv={argv!r}\nstdout={out[-500:]!r}\nstderr={err!r}"
    assert code in (0, 2), where
    assert "Traceback" not in out + err, where
    if code == 2:
        # One line, unless the user's own tokens carried newlines into the echoed value.
        assert err.startswith("error: ") and err.endswith(".\n"), where
        assert err.count("\n") <= 1 + sum(a.count("\n") for a in argv), where
        assert err.count("error:") == 1 and len(err) < 1200, where
    else:
        assert err == "", where
        assert "--list" in argv or "--help" in argv or any(
            "--help".startswith(a) and len(a) > 3 for a in argv), where


def run_and_check(sandbox, capsys, argv) -> None:
    """Run the CLI in-process on ``argv`` (``OUT`` = a path in the sandbox) and check it."""
    argv = [a.replace("OUT", str(sandbox / "OUT"), 1) if a.startswith("OUT") else a
            for a in argv]
    capsys.readouterr()
    code = _invoke(argv)
    captured = capsys.readouterr()
    check_outcome(argv, code, captured.out, captured.err)


@settings(max_examples=N_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=argument_lists())
def test_generated_arguments_exit_0_or_2_with_one_line(sandbox, capsys, argv):
    run_and_check(sandbox, capsys, argv)


# Hand-picked combinations the generator reaches only by luck.
EDGE_CASES = [
    ["--seeds", "99999999999999999999999"],
    ["--seeds", "-0"],
    ["--seeds", "+3", "--only", "lr_bn"],
    ["--only", "lr_bn,lr_bn,,"],
    ["--only", "lr_bn", "--only", "nope"],
    ["--download", "--data-dir", "OUT/file"],
    ["--download", "--data-dir", "OUT/file/below"],
    ["--download", "--data-dir", "OUT/" + "d" * 300],
    ["--data-dir", "OUT/" + "d" * 300],
    ["--out", "OUT/results.json-dir"],
    ["--out", "OUT/file"],
    ["--out", ""],
    ["--device", "cuda", "--out", "OUT/file"],
    ["--list", "--only", "nope", "--seeds", "x"],
    ["--help", "--bogus"],
]


@pytest.mark.parametrize("argv", EDGE_CASES, ids=[" ".join(a)[:40] for a in EDGE_CASES])
def test_edge_case_arguments_exit_0_or_2_with_one_line(sandbox, capsys, argv):
    run_and_check(sandbox, capsys, argv)


@pytest.mark.parametrize("argv, reason", [
    (["--download", "--data-dir", "OUT/file"], "File exists"),
    (["--download", "--data-dir", "OUT/file/below"], "Not a directory"),
    (["--data-dir", "OUT/" + "d" * 300], "File name too long"),
    (["--download", "--data-dir", "OUT/" + "d" * 300], "File name too long"),
], ids=["download-into-a-file", "download-below-a-file", "name-too-long",
        "download-name-too-long"])
def test_unusable_data_folder_is_named_not_blamed_on_the_output(sandbox, capsys, one_sentence,
                                                                argv, reason):
    """An OSError about --data-dir names that folder, not --out (nor "free some space")."""
    argv = [a.replace("OUT", str(sandbox / "OUT"), 1) if a.startswith("OUT") else a
            for a in argv]
    out = sandbox / "OUT" / "out"
    code = _invoke([*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    one_sentence(err, "data folder", reason, "--data-dir")
    assert argv[-1][:60] in err
    assert str(out) not in err and "free some space" not in err
