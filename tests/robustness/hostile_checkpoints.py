"""Hostile checkpoint files, each built from a valid one, for the checkpoint tests and tallies.

A :class:`Case` builds one file (or path) in a folder and says how a correct loader
answers: it refuses it in one :class:`~xpnet.errors.CheckpointError` sentence that names
the file (and ``words``, such as the member), or, where the file is legitimately valid
(``valid=True``), loads it with arrays equal to those the file holds; ``valid=None``: either
answer is right (a flipped byte that may not matter), but a load must give the source's
arrays.  The sources are the
pinned checkpoints under ``tests/data/checkpoints`` (written by the code before issue 34).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

PINNED = Path(__file__).parent.parent / "data" / "checkpoints"
NETWORK = PINNED / "network_batch_v1.npz"  # M = 2, float64, batch norm, hidden (3,)
CLASSIFIER = PINNED / "classifier_v1.npz"  # M = 1, float32, classes cat/dog/emu


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile (or valid) file: ``build(folder) -> path``, loaded by ``loader``."""

    name: str
    build: Callable[[Path], Path]
    valid: bool = False
    words: tuple[str, ...] = ()
    loader: str = "network"  # "network" or "classifier"


# ---------------------------------------------------------------- file helpers
def arrays(path) -> dict[str, np.ndarray]:
    """Every member of a (trusted) ``.npz`` file, by name."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def write(path: Path, state: dict) -> Path:
    """``state`` as an ``.npz`` file at ``path`` (object arrays pickled, as NumPy does)."""
    with open(path, "wb") as f:
        np.savez(f, **state)
    return path


def meta(state: dict) -> dict:
    return json.loads(str(state["meta"]))


def with_meta(state: dict, **changes) -> dict:
    """``state`` with meta's entries changed (a value ``DROP`` removes the entry)."""
    m = {k: v for k, v in {**meta(state), **changes}.items() if v is not DROP}
    return {**state, "meta": np.array(json.dumps(m))}


def with_config(state: dict, **changes) -> dict:
    config = {k: v for k, v in {**meta(state)["config"], **changes}.items() if v is not DROP}
    return with_meta(state, config=config)


DROP = object()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=True)
    return buffer.getvalue()


def npy_header(shape: tuple, descr: str, fortran: bool = False) -> bytes:
    """A version 1.0 ``.npy`` header that declares ``shape`` and ``descr``, no data."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"shape": shape, "fortran_order": fortran, "descr": descr})
    return buffer.getvalue()


def zip_members(path) -> list[tuple[str, bytes]]:
    """The raw (uncompressed) bytes of each zip member, in order."""
    with zipfile.ZipFile(path) as z:
        return [(info.filename, z.read(info)) for info in z.infolist()]


def write_zip(path: Path, members, compression=zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as z, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a name twice is what some cases want
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), data,
                       compress_type=compression)
    return path


def replace_member(source: Path, path: Path, name: str, data: bytes,
                   compression=zipfile.ZIP_STORED) -> Path:
    members = [(n, data if n == name else d) for n, d in zip_members(source)]
    return write_zip(path, members, compression)


# Central directory entry: flags at 8, method at 10, crc at 16, sizes at 20 / 24, name at 46.
CENTRAL = {"flags": (8, "<H"), "method": (10, "<H"), "crc": (16, "<I"),
           "compress_size": (20, "<I"), "file_size": (24, "<I")}


def patch_central(data: bytes, name: str, **fields) -> bytes:
    """``data`` (a zip) with fields of ``name``'s central directory entry replaced."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        n = struct.unpack_from("<H", out, at + 28)[0]
        if bytes(out[at + 46: at + 46 + n]).decode() == name:
            for field, value in fields.items():
                offset, fmt = CENTRAL[field]
                struct.pack_into(fmt, out, at + offset, value)
            return bytes(out)
        at = out.find(b"PK\x01\x02", at + 4)
    raise KeyError(name)


def streamed_member(path: Path, members, name: str, head: bytes, zeros: int,
                    method=zipfile.ZIP_DEFLATED, declare: int | None = None) -> Path:
    """A zip of ``members`` (stored) and ``name``: ``head`` then ``zeros`` zero bytes,
    compressed with ``method`` as a stream (never whole in memory).  With ``declare``, the
    zip entry of ``name`` says it holds the first ``declare`` bytes only (size and CRC)."""
    block = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, compresslevel=1) as z:
        for n, d in members:
            z.writestr(n, d)
        info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
        info.compress_type = method
        with z.open(info, "w") as out:
            out.write(head)
            for _ in range(zeros // len(block)):
                out.write(block)
            out.write(bytes(zeros % len(block)))
    if declare is None:
        return path
    prefix = (head + bytes(max(0, declare - len(head))))[:declare]
    path.write_bytes(patch_central(path.read_bytes(), name, file_size=declare,
                                   crc=zlib.crc32(prefix)))
    return path


def bomb_cases() -> list[Case]:
    """Members that inflate to hundreds of MiB from a small file: each must be refused or
    read within its declared size, never inflated whole (the tests bound the memory)."""
    members = [(n, d) for n, d in zip_members(NETWORK) if n != "param/W1.npy"]
    w1 = dict(zip_members(NETWORK))["param/W1.npy"]
    big = 1 << 26  # 64 MiB

    def declared_huge(f):  # header and zip entry agree on 64 MiB; the config says 192 B
        head = npy_header((2, 4, big // 64), "<f8")
        return streamed_member(f / "bomb.npz", members, "param/W1.npy", head, big)

    def small_entry(crc_whole: bool):  # the entry declares W1's real size; 64 MiB follow
        def build(f):
            if not crc_whole:  # and the CRC of W1's bytes: a reader stops there, rightly
                return streamed_member(f / "tail.npz", members, "param/W1.npy", w1, big,
                                       declare=len(w1))
            path = streamed_member(f / "tail.npz", members, "param/W1.npy", w1, big)
            path.write_bytes(patch_central(path.read_bytes(), "param/W1.npy",
                                           file_size=len(w1)))
            return path
        return build

    def bzip2(f):  # the entry declares W1's real size; 64 MiB of zeros follow in ~100 B
        return streamed_member(f / "bz.npz", members, "param/W1.npy", w1, big,
                               zipfile.ZIP_BZIP2, declare=len(w1))

    return [Case("deflate bomb: W1 declares 64 MiB", declared_huge, words=("param/W1",)),
            Case("W1's entry declares its size, 64 MiB more inflate, CRC of its bytes",
                 small_entry(False), valid=True),
            Case("W1's entry declares its size, 64 MiB more inflate, CRC of all",
                 small_entry(True), words=("param/W1",)),
            Case("bzip2 bomb: W1's entry declares its size, 64 MiB inflate", bzip2,
                 words=("param/W1", "bzip2"))]


# ---------------------------------------------------------------------- cases
def _state_case(name, change, *, valid=False, words=(), source=NETWORK, loader=None):
    """A case that rewrites the source's arrays with ``change(state) -> state``."""
    def build(folder: Path) -> Path:
        return write(folder / "hostile.npz", change(arrays(source)))
    return Case(name, build, valid, words,
                loader or ("classifier" if source == CLASSIFIER else "network"))


def _set(key, value):
    return lambda s: {**s, key: value}


def _drop(key):
    return lambda s: {k: v for k, v in s.items() if k != key}


def _poke(key, index, value):
    def change(s):
        a = s[key].copy()
        a[index] = value
        return {**s, key: a}
    return change


def path_cases() -> list[Case]:
    def missing(f):
        return f / "no-such.npz"

    def directory(f):
        (f / "dir.npz").mkdir()
        return f / "dir.npz"

    def below_file(f):
        (f / "file").write_bytes(b"x")
        return f / "file" / "x.npz"

    def empty(f):
        (f / "empty.npz").write_bytes(b"")
        return f / "empty.npz"

    def text(f):
        (f / "text.npz").write_text("hello, not a zip\n")
        return f / "text.npz"

    def npy_file(f):
        with open(f / "array.npz", "wb") as out:
            np.save(out, np.zeros(3))
        return f / "array.npz"

    def pickle_file(f):
        (f / "pickle.npz").write_bytes(pickle.dumps(arrays(NETWORK)))
        return f / "pickle.npz"

    def empty_zip(f):
        return write_zip(f / "nothing.npz", [])

    def symlink(f):
        os.symlink(NETWORK.resolve(), f / "link.npz")
        return f / "link.npz"

    def odd_name(f):
        path = f / "a b é;.npz"
        path.write_bytes(NETWORK.read_bytes())
        return path

    def long_name(f):
        return f / ("x" * 300 + ".npz")

    return [Case("missing path", missing, words=("does not exist",)),
            Case("a folder", directory, words=("folder",)),
            Case("a path below a file", below_file),
            Case("/dev/null", lambda f: Path("/dev/null"), words=("not a regular file",)),
            Case("empty file", empty, words=("empty",)),
            Case("text file", text),
            Case("a .npy file", npy_file),
            Case("a pickle", pickle_file),
            Case("an empty zip", empty_zip, words=("meta",)),
            Case("a name too long", long_name),
            Case("a symlink to a valid file", symlink, valid=True),
            Case("an odd file name", odd_name, valid=True)]


def zip_cases() -> list[Case]:
    cases = []
    size = NETWORK.stat().st_size
    for cut in sorted({*range(0, size, 97), size - 1, size - 2, size - 22, size - 23}):
        def truncated(f, cut=cut):
            (f / "cut.npz").write_bytes(NETWORK.read_bytes()[:cut])
            return f / "cut.npz"
        cases.append(Case(f"truncated at {cut} of {size} bytes", truncated))
    for at in range(0, size, 29):
        def flipped(f, at=at):
            data = bytearray(NETWORK.read_bytes())
            data[at] ^= 0xFF
            (f / "flipped.npz").write_bytes(bytes(data))
            return f / "flipped.npz"
        # some bytes (timestamps, attributes) do not matter: such a file loads unchanged
        cases.append(Case(f"byte {at} flipped", flipped, valid=None))

    def bad_crc(f):
        data = patch_central(NETWORK.read_bytes(), "param/W1.npy", crc=12345)
        (f / "crc.npz").write_bytes(data)
        return f / "crc.npz"

    def duplicate(f):
        members = zip_members(NETWORK)
        w2 = dict(members)["param/W2.npy"]
        return write_zip(f / "dup.npz", [*members, ("param/W2.npy", w2)])

    def non_npy(f):
        return write_zip(f / "txt.npz", [*zip_members(NETWORK), ("notes.txt", b"hi")])

    def folder_entry(f):
        return write_zip(f / "folder.npz", [("param/", b""), *zip_members(NETWORK)])

    def encrypted(f):
        data = patch_central(NETWORK.read_bytes(), "lam.npy", flags=1)
        (f / "enc.npz").write_bytes(data)
        return f / "enc.npz"

    def method(kind):
        def build(f):
            return write_zip(f / f"{kind}.npz", zip_members(NETWORK), kind)
        return build

    def past_end(f):
        data = patch_central(NETWORK.read_bytes(), "meta.npy", compress_size=10**9,
                             file_size=10**9)
        (f / "past.npz").write_bytes(data)
        return f / "past.npz"

    def sizes_disagree(f):
        members = dict(zip_members(NETWORK))
        data = patch_central(NETWORK.read_bytes(), "lam.npy",
                             file_size=len(members["lam.npy"]) + 8)
        (f / "sizes.npz").write_bytes(data)
        return f / "sizes.npz"

    def local_name(f):
        data = bytearray(NETWORK.read_bytes())
        at = data.find(b"PK\x03\x04")
        data[at + 30] = ord("q")  # the first member's name in its local header
        (f / "local.npz").write_bytes(bytes(data))
        return f / "local.npz"

    def trailing_garbage(f):
        (f / "trail.npz").write_bytes(NETWORK.read_bytes() + b"\0" * 100)
        return f / "trail.npz"

    def prefixed(f):
        (f / "prefix.npz").write_bytes(b"\0" * 100 + NETWORK.read_bytes())
        return f / "prefix.npz"

    cases += [Case("central CRC changed", bad_crc, words=("param/W1",)),
              Case("a member twice", duplicate, words=("param/W2",)),
              Case("a member that is not .npy", non_npy, words=("notes.txt",)),
              Case("a folder entry", folder_entry, words=("param/",)),
              Case("an encrypted member", encrypted, words=("lam",)),
              Case("deflated members (savez_compressed)", method(zipfile.ZIP_DEFLATED),
                   valid=True),
              # sound, but a bomb's way past the declared sizes (bomb_cases): refused
              Case("bzip2 members", method(zipfile.ZIP_BZIP2), valid=None),
              Case("lzma members", method(zipfile.ZIP_LZMA), valid=None),
              Case("a member past the end", past_end, words=("meta",)),
              Case("sizes that disagree", sizes_disagree, words=("lam",)),
              Case("a local name that differs", local_name),
              Case("trailing bytes", trailing_garbage, valid=None),
              Case("leading bytes", prefixed, valid=None)]
    return cases


def member_cases() -> list[Case]:
    names = list(arrays(NETWORK))
    per_model = ("leaky_slope", "dropout", "bn_eps")
    cases = []
    for name in names:
        cases.append(_state_case(f"{name} removed", _drop(name),
                                 words=() if name == "meta" else (name,)))
        cases.append(_state_case(
            f"{name} renamed", lambda s, n=name: {("x" + n if k == n else k): v
                                                  for k, v in s.items()},
            words=("x" + name,) if name in per_model else ()))
    for extra in ("param/W3", "buffer/var2", "evil", "param/W1/x"):
        cases.append(_state_case(f"{extra} added", _set(extra, np.zeros(3)), words=(extra,)))
    return cases


DTYPES = {"object": lambda a: a.astype(object), "int64": lambda a: a.astype(np.int64),
          "complex": lambda a: a.astype(np.complex128), "bool": lambda a: a.astype(bool),
          "float16": lambda a: a.astype(np.float16), "text": lambda a: a.astype(str),
          "bytes": lambda a: a.astype("S8"),
          "structured": lambda a: np.zeros(a.shape, [("x", "<f8")])}


def dtype_cases() -> list[Case]:
    cases = []
    for name in ("param/W1", "param/gamma1", "buffer/var1", "lam", "bn_eps", "dropout"):
        for kind, cast in DTYPES.items():
            cases.append(_state_case(f"{name} as {kind}",
                                     lambda s, n=name, c=cast: {**s, n: c(s[n])},
                                     words=() if kind == "object" else (name,)))
    big_endian = {k: (v.astype(v.dtype.newbyteorder(">")) if v.dtype.kind in "fU" else v)
                  for k, v in arrays(NETWORK).items()}
    cases += [
        _state_case("meta as bytes", lambda s: {**s, "meta": s["meta"].astype(bytes)},
                    words=("meta",)),
        _state_case("meta as object", lambda s: {**s, "meta": s["meta"].astype(object)}),
        _state_case("W1 alone float32", lambda s: {**s, "param/W1": s["param/W1"].astype(
            np.float32)}, words=("float32",)),
        _state_case("every param and buffer float32", lambda s: {
            k: (v.astype(np.float32) if "/" in k else v) for k, v in s.items()}, valid=True),
        _state_case("lam float32", lambda s: {**s, "lam": s["lam"].astype(np.float32)},
                    valid=True),
        _state_case("big-endian arrays", lambda s: big_endian, valid=True),
        _state_case("Fortran-ordered W1", lambda s: {**s, "param/W1": np.asfortranarray(
            s["param/W1"])}, valid=True)]
    return cases


def shape_cases() -> list[Case]:
    def reshape(name, shape_of):
        return lambda s: {**s, name: np.zeros(shape_of(s[name].shape))}
    return [
        _state_case("W1 transposed", lambda s: {**s, "param/W1": s["param/W1"].transpose(
            0, 2, 1).copy()}, words=("param/W1",)),
        _state_case("W1 without the model axis", reshape("param/W1", lambda sh: sh[1:]),
                    words=("param/W1",)),
        _state_case("W1 for 3 models", reshape("param/W1", lambda sh: (3, *sh[1:])),
                    words=("param/W1",)),
        _state_case("W1 with an extra axis", reshape("param/W1", lambda sh: (*sh, 1)),
                    words=("param/W1",)),
        _state_case("gamma1 2-D", reshape("param/gamma1", lambda sh: (2, 3)),
                    words=("param/gamma1",)),
        _state_case("var1 too wide", reshape("buffer/var1", lambda sh: (2, 1, 4)),
                    words=("buffer/var1",)),
        _state_case("mean1 empty", reshape("buffer/mean1", lambda sh: (2, 1, 0)),
                    words=("buffer/mean1",)),
        _state_case("lam 2-D", lambda s: {**s, "lam": s["lam"][:, None]}, words=("lam",)),
        _state_case("lam a scalar", _set("lam", np.array(0.0)), words=("lam",)),
        _state_case("lam empty", _set("lam", np.zeros(0)), words=("lam",)),
        _state_case("lam for 3 models", _set("lam", np.zeros(3))),
        _state_case("bn_eps for 3 models", _set("bn_eps", np.full(3, 1e-5)),
                    words=("bn_eps",)),
        _state_case("meta 1-D", lambda s: {**s, "meta": s["meta"][None]}, words=("meta",)),
    ]


def value_cases() -> list[Case]:
    cases = []
    for name, index, value in [
            ("param/W1", (0, 0, 0), np.nan), ("param/W2", (1, 2, 2), np.inf),
            ("param/gamma1", (0, 0, 1), np.nan), ("param/beta1", (1, 0, 0), -np.inf),
            ("param/b2", (0, 0, 0), np.nan), ("buffer/mean1", (0, 0, 2), np.nan),
            ("buffer/var1", (1, 0, 0), -1.0), ("buffer/var1", (0, 0, 0), np.nan),
            ("buffer/var1", (0, 0, 1), np.inf), ("lam", 0, -1e-3), ("lam", 1, np.nan),
            ("lam", 0, np.inf), ("bn_eps", 0, 0.0), ("bn_eps", 1, -1e-5),
            ("bn_eps", 0, np.nan), ("dropout", 0, 1.0), ("dropout", 1, -0.1),
            ("leaky_slope", 0, -1.0), ("leaky_slope", 1, np.inf)]:
        cases.append(_state_case(f"{name}[{index}] = {value}", _poke(name, index, value),
                                 words=(name,)))
    cases += [_state_case("var1 zero", _poke("buffer/var1", (0, 0, 0), 0.0), valid=True),
              _state_case("W1 subnormal", _poke("param/W1", (0, 0, 0), 5e-324), valid=True),
              _state_case("W1 huge but finite", _poke("param/W1", (0, 0, 0), 1e308),
                          valid=True),
              _state_case("lam zero everywhere", _set("lam", np.zeros(2)), valid=True)]
    return cases


def huge_cases() -> list[Case]:
    """Members whose headers declare far more than the file holds (no bomb: small files)."""
    def declared(name, shape, descr):
        def build(f):
            return replace_member(NETWORK, f / "huge.npz", f"{name}.npy",
                                  npy_header(shape, descr) + b"\0" * 64)
        return build
    return [Case("W1 declares 10**12 floats", declared("param/W1", (2, 4, 10**12), "<f8"),
                 words=("param/W1",)),
            Case("W1 declares a negative shape", declared("param/W1", (-2, -4, 3), "<f8"),
                 words=("param/W1",)),
            Case("meta declares 10**9 characters", declared("meta", (), "<U1000000000"),
                 words=("meta",)),
            Case("lam declares 2**62 models", declared("lam", (2**62,), "<f8"),
                 words=("lam",)),
            Case("a header of 60000 bytes", lambda f: replace_member(
                NETWORK, f / "long.npz", "lam.npy",
                b"\x93NUMPY\x01\x00" + struct.pack("<H", 60000) + b" " * 60000),
                words=("lam",)),
            Case("a version 2 header of 4 GB", lambda f: replace_member(
                NETWORK, f / "v2.npz", "lam.npy",
                b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b" " * 100),
                words=("lam",)),
            Case("a version 9 header", lambda f: replace_member(
                NETWORK, f / "v9.npz", "lam.npy", b"\x93NUMPY\x09\x00" + b" " * 100),
                words=("lam",)),
            Case("not a .npy member", lambda f: replace_member(
                NETWORK, f / "raw.npz", "lam.npy", b"just bytes"), words=("lam",))]


def older(state: dict) -> dict:
    """``state`` as a file of before ``norm``, ``activation``, ``dropout`` and
    ``leaky_slope`` existed would hold it: its config has ``batch_norm`` and six fields."""
    config = meta(state)["config"]
    first = {k: config[k] for k in ("d_in", "hidden", "n_classes", "init", "bn_momentum",
                                    "bn_eps")}
    return with_meta(state, config={**first, "batch_norm": config["norm"] == "batch"})


def meta_cases() -> list[Case]:
    def text(value):
        return _set("meta", np.array(value))
    cases = [
        _state_case("meta not JSON", text("{"), words=("meta",)),
        _state_case("meta a list", text("[]"), words=("meta",)),
        _state_case("meta a string", text('"x"'), words=("meta",)),
        _state_case("meta null", text("null"), words=("meta",)),
        _state_case("meta empty object", text("{}"), words=("meta",)),
        _state_case("meta NaN", text("NaN"), words=("meta",)),
        _state_case("meta deeply nested", text("[" * 100000 + "]" * 100000), words=("meta",)),
        _state_case("meta with a 5000-digit number", text('{"format": ' + "9" * 5000 + "}"),
                    words=("meta",)),
        _state_case("meta of 2 MB", text(json.dumps({"pad": "x" * 2_000_000})),
                    words=("meta",)),
        _state_case("meta with an invalid code point", lambda s: {
            **s, "meta": np.frombuffer(struct.pack("<3I", 0x7B, 0x110000, 0x7D),
                                       dtype="<U3").reshape(())}, words=("meta",)),
        _state_case("meta with a lone surrogate", lambda s: with_config(
            s, activation="relu\ud800"), words=("activation",)),
        _state_case("meta with an unknown key", lambda s: with_meta(s, evil=1),
                    words=("evil",)),
        _state_case("meta without config", lambda s: with_meta(s, config=DROP),
                    words=("config",)),
        _state_case("meta without format", lambda s: with_meta(s, format=DROP),
                    words=("format",)),
        _state_case("meta without seeds", lambda s: with_meta(s, seeds=DROP),
                    words=("seeds",)),
    ]
    for fmt in (0, 3, "1", True, 1.5, None, 2):
        cases.append(_state_case(f"format {fmt!r}", lambda s, v=fmt: with_meta(s, format=v),
                                 words=("format",) if fmt != 2 else ()))
    for seeds in ([0], ["a", 1], [-1, 0], [1.5, 0], [True, False], [2**70, 0], "0", {"a": 1}):
        cases.append(_state_case(f"seeds {seeds!r}", lambda s, v=seeds: with_meta(s, seeds=v),
                                 words=("seeds",)))
    cases.append(_state_case("seeds null", lambda s: with_meta(s, seeds=None), valid=True))
    for config in ("x", [], None, 7):
        cases.append(_state_case(f"config {config!r}", lambda s, v=config: with_meta(
            s, config=v), words=("config",)))
    for field, value in [("foo", 1), ("hidden", "abc"), ("hidden", [3.5]), ("hidden", [-3]),
                         ("hidden", [3, "x"]), ("hidden", 3), ("d_in", "4"), ("d_in", True),
                         ("d_in", 4.5), ("d_in", 4.0), ("d_in", 5), ("d_in", 10**12),
                         ("hidden", [10**12]), ("n_classes", 1), ("n_classes", 4),
                         ("norm", "evil"), ("norm", None), ("activation", "evil"),
                         ("activation", 5), ("init", 7), ("bn_momentum", 2),
                         ("bn_momentum", float("nan")), ("bn_eps", -1), ("dropout", 1),
                         ("batch_norm", False), ("batch_norm", True), ("batch_norm", 1),
                         ("d_in", DROP)]:
        cases.append(_state_case(f"config {field}={value!r}",
                                 lambda s, k=field, v=value: with_config(s, **{k: v}),
                                 words=("config",) if field != "norm" else ()))
    cases += [
        _state_case("config with the legacy batch_norm", lambda s: with_config(
            s, norm=DROP, batch_norm=True), valid=True),
        _state_case("config without activation (older file)", lambda s: with_config(
            s, activation=DROP), valid=True),
        _state_case("an older file without per-model members", lambda s: {
            k: v for k, v in older(s).items() if k not in ("leaky_slope", "dropout", "bn_eps")},
            valid=True),
        _state_case("an older file with bn_eps alone", lambda s: {
            k: v for k, v in older(s).items() if k not in ("leaky_slope", "dropout")},
            valid=True),
        _state_case("an older file with dropout", lambda s: {
            k: v for k, v in older(s).items() if k not in ("leaky_slope", "bn_eps")},
            words=("dropout",)),
        _state_case("a newer file without any per-model member", lambda s: {
            k: v for k, v in s.items() if k not in ("leaky_slope", "dropout", "bn_eps")},
            words=("leaky_slope",)),
    ]
    return cases


def classifier_cases() -> list[Case]:
    def settings(**changes):
        def change(s):
            d = json.loads(str(s["classifier"]))
            d = {k: v for k, v in {**d, **changes}.items() if v is not DROP}
            return {**s, "classifier": np.array(json.dumps(d))}
        return change

    def cls(name, change, valid=False, words=()):
        return _state_case(name, change, valid=valid, words=words, source=CLASSIFIER)

    cases = [
        cls("classes 2-D", lambda s: {**s, "classes": s["classes"][:, None]},
            words=("classes",)),
        cls("classes duplicated", _set("classes", np.array(["cat", "cat", "emu"])),
            words=("classes",)),
        cls("classes unsorted", _set("classes", np.array(["dog", "cat", "emu"])),
            words=("classes",)),
        cls("two classes for three outputs", _set("classes", np.array(["cat", "dog"])),
            words=("classes",)),
        cls("four classes for three outputs", _set("classes", np.array(list("abcd"))),
            words=("classes",)),
        cls("classes as objects", _set("classes", np.array(["a", 1, None], dtype=object))),
        cls("classes complex", _set("classes", np.array([0, 1, 2], dtype=complex)),
            words=("classes",)),
        cls("classes with NaN", _set("classes", np.array([0.5, 1.5, np.nan])),
            words=("classes",)),
        cls("classes as bytes", _set("classes", np.array([b"a", b"b", b"c"])),
            words=("classes",)),
        cls("classes bool", _set("classes", np.array([False, True, True])),
            words=("classes",)),
        cls("classes empty", _set("classes", np.array([], dtype="<U3")), words=("classes",)),
        cls("classes ints", _set("classes", np.array([0, 1, 2])), valid=True),
        cls("classes floats", _set("classes", np.array([0.5, 1.5, 2.5])), valid=True),
        cls("classes removed", _drop("classes"), words=("classes",)),
        cls("settings removed", _drop("classifier"), words=("classifier",)),
        cls("classes and settings removed (a Network file)", lambda s: {
            k: v for k, v in s.items() if k not in ("classes", "classifier")}, valid=True),
        cls("classes declaring 10**8 characters", lambda s: s, words=("classes",)),
        cls("settings not JSON", _set("classifier", np.array("{")), words=("classifier",)),
        cls("settings a list", _set("classifier", np.array("[]")), words=("classifier",)),
        cls("settings as bytes", lambda s: {**s, "classifier": s["classifier"].astype(bytes)},
            words=("classifier",)),
        cls("settings 2 MB", _set("classifier", np.array(json.dumps({"x": "y" * 2_000_000}))),
            words=("classifier",)),
    ]
    for key, value in [("evil", 1), ("batch_size", -1), ("batch_size", "x"),
                       ("dtype", "float16"), ("dtype", "float64"), ("n_classes", 5),
                       ("momentum", 2), ("evals_per_cycle", 0),
                       ("train_eval_size", "x"), ("optimizer", {"type": "Evil"}),
                       ("optimizer", {"type": "Adam", "evil": 1}), ("optimizer", "adam"),
                       ("optimizer", {"type": "Adam", "beta1": 2})]:
        cases.append(cls(f"settings {key}={value!r}", settings(**{key: value}),
                         words=("classifier",)))
    cases.append(cls("settings without batch_size (defaults)", settings(batch_size=DROP),
                     valid=True))
    # Classifier(sigma=-1) is refused by the constructor (issue 34), so by the loader too
    cases.append(cls("settings sigma=-1", settings(sigma=-1), words=("classifier", "sigma")))
    # the huge-classes case rewrites the member's header in the zip
    cases = [c for c in cases if c.name != "classes declaring 10**8 characters"]
    cases.append(Case("classes declaring 10**8 characters", lambda f: replace_member(
        CLASSIFIER, f / "huge.npz", "classes.npy",
        npy_header((3,), "<U100000000") + b"\0" * 64), words=("classes",),
        loader="classifier"))
    return cases


def all_cases() -> list[Case]:
    return [*path_cases(), *zip_cases(), *member_cases(), *dtype_cases(), *shape_cases(),
            *value_cases(), *huge_cases(), *meta_cases(), *classifier_cases()]
