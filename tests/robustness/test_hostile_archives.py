"""Item 2: hostile tar archives are refused and nothing is written outside (or inside) dest."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from xpnet.data import BATCH_FOLDER, DataError, UnsafeFileError, safe_extract_tar


def _file(name: str, data: bytes = b"evil\n") -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, io.BytesIO(data)


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _write_tar(path: Path, members, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, data)
    return path


def _snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (files, folders and links), relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def layout(tmp_path):
    """``tmp_path/archives`` for archives, ``tmp_path/work/dest`` as the (absent) target."""
    (tmp_path / "archives").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path, tmp_path / "work" / "dest"


def _hostile_members(tmp_path: Path):
    outside = tmp_path / "work" / "escaped.txt"
    return {
        "dot-dot": [_file(f"{BATCH_FOLDER}/ok.txt", b"ok"), _file("../escaped.txt")],
        "dot-dot inside": [_file(f"{BATCH_FOLDER}/../../escaped.txt")],
        "backslash dot-dot": [_file("..\\escaped.txt")],
        "absolute": [_file(str(outside))],
        "symlink": [_special("link", tarfile.SYMTYPE, str(tmp_path / "work")),
                    _file("link/escaped.txt")],
        "relative symlink": [_special("link", tarfile.SYMTYPE, ".."), _file("link/escaped.txt")],
        "hardlink": [_special("hard", tarfile.LNKTYPE, str(tmp_path / "archives" / "target.txt"))],
        "char device": [_special("dev", tarfile.CHRTYPE)],
        "block device": [_special("blk", tarfile.BLKTYPE)],
        "fifo": [_special("pipe", tarfile.FIFOTYPE)],
    }


CASES = [
    "dot-dot", "dot-dot inside", "backslash dot-dot", "absolute", "symlink",
    "relative symlink", "hardlink", "char device", "block device", "fifo",
]


@pytest.mark.parametrize("mode", ["w", "w:gz"])
@pytest.mark.parametrize("case", CASES)
def test_hostile_member_is_refused_and_nothing_is_written(layout, one_sentence, case, mode):
    tmp_path, dest = layout
    (tmp_path / "archives" / "target.txt").write_text("target")
    archive = _write_tar(tmp_path / "archives" / "evil.tar", _hostile_members(tmp_path)[case], mode)
    before = _snapshot(tmp_path)

    with pytest.raises(UnsafeFileError) as info:
        safe_extract_tar(archive, dest)

    one_sentence(str(info.value), str(archive), "Refused")
    assert _snapshot(tmp_path) == before  # validated before writing: nothing at all, anywhere
    assert not (tmp_path / "work" / "escaped.txt").exists()


def test_oversized_member_is_refused(layout, one_sentence):
    tmp_path, dest = layout
    archive = _write_tar(tmp_path / "archives" / "big.tar",
                         [_file("small", b"x"), _file("big", b"x" * 2000)])
    before = _snapshot(tmp_path)

    with pytest.raises(UnsafeFileError) as info:
        safe_extract_tar(archive, dest, max_member_bytes=1000)

    one_sentence(str(info.value), str(archive), "'big'", "2,000")
    assert _snapshot(tmp_path) == before


def test_default_limit_refuses_a_member_larger_than_cifar_could_be(layout, one_sentence):
    tmp_path, dest = layout
    info = tarfile.TarInfo("huge")
    info.size = 250_000_000  # the largest real member is about 31 MB
    archive = tmp_path / "archives" / "huge.tar"
    with open(archive, "wb") as out:
        out.write(info.tobuf(format=tarfile.GNU_FORMAT))
        # Sparse zero data plus the two end-of-archive blocks: no real disk use.
        out.truncate(512 + -(-info.size // 512) * 512 + 1024)
    before = _snapshot(tmp_path)

    with pytest.raises(UnsafeFileError) as info_:
        safe_extract_tar(archive, dest)

    one_sentence(str(info_.value), str(archive), "'huge'", "200,000,000")
    assert _snapshot(tmp_path) == before


def test_safe_archive_extracts_inside_dest(layout):
    tmp_path, dest = layout
    members = [
        _special(f"./{BATCH_FOLDER}", tarfile.DIRTYPE),
        _file(f"./{BATCH_FOLDER}/data_batch_1", b"one"),
        _file(f"{BATCH_FOLDER}/sub/readme.txt", b"two"),
    ]
    archive = _write_tar(tmp_path / "archives" / "good.tar.gz", members, "w:gz")

    safe_extract_tar(archive, dest)

    assert (dest / BATCH_FOLDER / "data_batch_1").read_bytes() == b"one"
    assert (dest / BATCH_FOLDER / "sub" / "readme.txt").read_bytes() == b"two"
    assert _snapshot(tmp_path / "work") == {
        "dest", f"dest/{BATCH_FOLDER}", f"dest/{BATCH_FOLDER}/data_batch_1",
        f"dest/{BATCH_FOLDER}/sub", f"dest/{BATCH_FOLDER}/sub/readme.txt",
    }


def test_archive_permissions_are_not_applied(layout):
    tmp_path, dest = layout
    info, data = _file("setuid", b"x")
    info.mode = 0o4777
    archive = _write_tar(tmp_path / "archives" / "mode.tar", [(info, data)])
    safe_extract_tar(archive, dest)
    assert not os.stat(dest / "setuid").st_mode & 0o4000


@pytest.mark.parametrize(
    "content", [b"", b"not a tar archive at all\n" * 50, b"\x1f\x8b\x08" + b"\x00" * 40]
)
def test_corrupt_archive_is_a_data_error(layout, one_sentence, content):
    tmp_path, dest = layout
    archive = tmp_path / "archives" / "broken.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(DataError) as info:
        safe_extract_tar(archive, dest)
    assert not isinstance(info.value, UnsafeFileError)
    one_sentence(str(info.value), str(archive))


def test_truncated_gzip_archive_is_a_data_error(layout, one_sentence):
    tmp_path, dest = layout
    good = _write_tar(tmp_path / "archives" / "good.tar.gz", [_file("a", os.urandom(50_000))],
                      "w:gz")
    archive = tmp_path / "archives" / "cut.tar.gz"
    archive.write_bytes(good.read_bytes()[:20_000])
    with pytest.raises(DataError) as info:
        safe_extract_tar(archive, dest)
    one_sentence(str(info.value), str(archive))
