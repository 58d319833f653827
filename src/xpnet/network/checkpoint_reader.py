"""Reading a checkpoint without trusting it: every member's header, shape and values checked
against its ``meta`` before anything is built (see :mod:`xpnet.network.checkpoint`)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from xpnet.base.npz import NpzReader, refusal
from xpnet.errors import CheckpointError, XpnetError
from xpnet.network import config as network_config
from xpnet.nn import options, registry

#: The format :func:`~xpnet.network.checkpoint.save` writes, and those :func:`read` reads.
FORMAT = 2
FORMATS = (1, 2)
#: Characters a JSON member (``meta``, ``classifier``, ``search``) may hold.
MAX_TEXT = 1 << 20
#: Members an estimator's file adds beside the network's (see :mod:`xpnet.estimators.files`).
EXTRAS = ("classifier", "classes", "search")
#: Ranges of normalization buffers beyond finiteness, by the registry's buffer name.
BUFFER_RULES = {"var": ("negative values (a variance is at least 0)", lambda a: a >= 0)}
_META_KEYS = {1: {"config", "seeds", "format"}, 2: {"config", "seeds", "format", "members"}}
#: The per-model members of format-1 files, oldest first: none, ``bn_eps`` alone, then one
#: per per-model field of the config (when ``dropout`` and ``leaky_slope`` came).
_FORMAT1_PER_MODEL = ((), ("bn_eps",), ("leaky_slope", "dropout", "bn_eps"))
_REMEDY = "pass a file written by Network.save"


@dataclasses.dataclass
class Contents:
    """A checked checkpoint: everything :class:`~xpnet.network.network.Network` needs, on the host.

    ``lam`` and each ``per_model`` entry are float64 ``(M,)``; ``params`` and ``buffers``
    hold the arrays :func:`shapes` lists (in its order), of one floating dtype;
    ``extras`` the estimator members asked for and present: ``classes`` as an array
    (its header checked, its values not), ``classifier`` and ``search`` as parsed JSON;
    ``path`` and ``remedy`` make :meth:`error`'s sentence.
    """

    config: object
    seeds: list[int] | None
    lam: np.ndarray
    per_model: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    extras: dict
    path: object
    remedy: str

    @property
    def n_models(self) -> int:
        return int(self.lam.shape[0])

    def error(self, member: str | None, problem: str) -> CheckpointError:
        """The one sentence for a problem found after reading (an estimator's checks)."""
        return refusal(self.path, member, problem, self.remedy)


# ------------------------------------------------------------------------ layout
def shapes(config, n_models: int) -> dict[str, tuple[int, ...]]:
    """``{"param/W1": (M, d_0, d_1), ...}``: every array :meth:`Network.create
    <xpnet.network.network.Network.create>` makes for ``config`` and M models, in its order,
    computed without allocating any."""
    norm = registry.normalization(config.norm)
    sizes = config.sizes
    out = {}
    for l in range(1, config.n_layers + 1):
        out[f"param/W{l}"] = (n_models, sizes[l - 1], sizes[l])
        if config.has_bias(l):
            out[f"param/b{l}"] = (n_models, 1, sizes[l])
        if config.has_norm(l):
            for kind, names in (("param", norm.params), ("buffer", norm.buffers)):
                for name in names:
                    out[f"{kind}/{name}{l}"] = (n_models, 1, sizes[l])
    return out


class Reader:
    """One checkpoint being read: meta first, then every header, then the data."""

    def __init__(self, f: NpzReader):
        self.f = f

    def fail(self, member, problem: str) -> CheckpointError:
        return self.f.error(member, problem)

    def read(self, extras) -> Contents:
        f = self.f
        meta = self.meta()
        fmt = meta["format"]
        config = self.config(meta["config"])
        names = set(f.names)
        if "lam" not in names:
            raise self.fail(None, "it has no 'lam' member")
        lam_header = f.header("lam")
        if len(lam_header.shape) != 1 or lam_header.shape[0] < 1:
            raise self.fail("lam", f"has shape {lam_header.shape}, not one value per model")
        M = lam_header.shape[0]
        seeds = self.seeds(meta.get("seeds"), M)
        arrays = shapes(config, M)
        per_model = options.per_model_names(type(config))
        self.members(meta, fmt, names, arrays, per_model)
        # every header before any data: dtypes and shapes as the config implies
        floating = None
        for name, shape in arrays.items():
            header = self.check_header(name, shape, "its config implies")
            if floating is None:
                floating = header.dtype
            elif header.dtype != floating:
                raise self.fail(name, f"is {header.dtype} while {next(iter(arrays))} is "
                                f"{floating}")
        for name in ("lam", *per_model):
            if name in names:
                self.check_header(name, (M,), f"{M} models (its lam) need")
        for name in EXTRAS:
            if name in names:
                check_extra_header(f, name, config.n_classes)
        values = {name: f.read(name) for name in (*arrays, "lam", *per_model) if name in names}
        check_values(values, self.fail, config)
        return Contents(
            config=config, seeds=seeds, lam=values["lam"].astype(np.float64),
            per_model={n: values[n].astype(np.float64) for n in per_model if n in values},
            params={n[6:]: values[n] for n in arrays if n.startswith("param/")},
            buffers={n[7:]: values[n] for n in arrays if n.startswith("buffer/")},
            extras={n: (f.read(n) if n == "classes" else read_json(f, n))
                    for n in extras if n in names},
            path=f.path, remedy=f.remedy)

    # ----------------------------------------------------------------- meta
    def meta(self) -> dict:
        if "meta" not in self.f.names:
            raise self.fail(None, "it has no 'meta' member")
        meta = read_json(self.f, "meta")
        if not isinstance(meta, dict):
            raise self.fail("meta", f"is a JSON {json_kind(meta)}, not an object")
        fmt = meta.get("format")
        if type(fmt) is not int or fmt not in FORMATS:
            raise self.fail("meta", f"names format {short(fmt)}, which this xpnet does not "
                            f"read (it reads {' and '.join(map(str, FORMATS))}; a newer one may)")
        unknown = sorted(set(meta) - _META_KEYS[fmt])
        missing = sorted(_META_KEYS[fmt] - set(meta))
        if unknown:
            raise self.fail("meta", f"has an unknown entry {unknown[0]!r}")
        if missing:
            raise self.fail("meta", f"has no {missing[0]!r} entry")
        return meta

    def config(self, d):
        """The NetworkConfig ``d`` describes, each field of the type its default has."""
        cls = network_config.NetworkConfig
        if not isinstance(d, dict):
            raise self.fail("meta", f"has a config that is a JSON {json_kind(d)}, not an "
                            "object")
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for name, value in d.items():
            default = defaults.get(name)
            whole = isinstance(default, int) and not isinstance(default, bool)
            if whole and not is_int(value):
                raise self.fail("meta", f"has config {name}={short(value)}, not a whole "
                                "number")
            if isinstance(default, tuple) and not (
                    isinstance(value, list) and all(is_int(v) for v in value)):
                raise self.fail("meta", f"has config {name}={short(value)}, not a list of "
                                "whole numbers")
            if name == "batch_norm" and not isinstance(value, bool):
                raise self.fail("meta", f"has config batch_norm={short(value)}, not true or "
                                "false")
        if "batch_norm" in d and "norm" in d:  # the legacy name of norm, never beside it
            raise self.fail("meta", "has a config with both norm and the older batch_norm")
        try:
            return cls.from_dict(d)
        except XpnetError as exc:
            raise self.fail("meta", f"has a config xpnet refuses: {clause(exc)}") from None

    def seeds(self, seeds, M: int):
        if seeds is None:
            return None
        if not (isinstance(seeds, list) and len(seeds) == M
                and all(is_int(s) and 0 <= s < 2**63 for s in seeds)):
            raise self.fail("meta", f"has seeds {short(seeds)}, not {M} whole numbers from 0 "
                            "up (one per model) or null")
        return seeds

    def members(self, meta, fmt, names, arrays, per_model) -> None:
        """No unknown member, none missing (format 2: exactly those ``meta`` lists; format 1:
        the per-model members of a file of its age)."""
        known = {"meta", "lam", *arrays, *per_model, *EXTRAS}
        unknown = sorted(names - known)
        if unknown:
            raise self.fail(unknown[0], "is not part of a checkpoint of this config")
        missing = [n for n in arrays if n not in names]
        if missing:
            raise self.fail(None, f"its config implies a member {missing[0]!r}, which it lacks")
        if fmt >= 2:
            listed = meta["members"]
            if not (isinstance(listed, list) and all(isinstance(n, str) for n in listed)):
                raise self.fail("meta", "has a members entry that is not a list of names")
            lost = sorted(set(listed) - names)
            if lost:
                raise self.fail(None, f"its meta lists a member {lost[0]!r}, which it lacks")
            extra = sorted(names - set(listed) - {"meta"})
            if extra:
                raise self.fail(extra[0], "is not among the members its meta lists")
        else:
            self.format1_per_model(meta["config"], names)
        if fmt == 1 and ("classes" in names) != ("classifier" in names):  # a Classifier's
            has, lacks = ("classes", "classifier") if "classes" in names else (
                "classifier", "classes")
            raise self.fail(has, f"comes without the Classifier's {lacks!r} member")
        if "search" in names and "classes" not in names:
            raise self.fail("search", "comes without the classifier it searched")

    def format1_per_model(self, config: dict, names) -> None:
        """A format-1 file's per-model members are one of ``_FORMAT1_PER_MODEL``, all
        of them where its config lists ``dropout`` or ``leaky_slope`` (a file that new)."""
        present = tuple(n for n in _FORMAT1_PER_MODEL[-1] if n in names)
        newest = any(n in config for n in _FORMAT1_PER_MODEL[-1] if n != "bn_eps")
        allowed = _FORMAT1_PER_MODEL[-1:] if newest else _FORMAT1_PER_MODEL[:2]
        if present not in allowed:
            odd = [n for n in present if n not in allowed[-1]]
            if odd:
                raise self.fail(odd[0], "is one that a file with this config never holds")
            lacking = [n for n in allowed[-1] if n not in names]
            raise self.fail(None, f"it lacks the member {lacking[0]!r} that a file with this "
                            "config holds")

    def check_header(self, name: str, shape, basis: str):
        """Member ``name`` is float32 or float64 of ``shape`` (what ``basis`` implies)."""
        header = self.f.header(name)
        if header.dtype.kind != "f" or header.dtype.itemsize not in (4, 8):
            raise self.fail(name, f"has dtype {header.dtype}, not float32 or float64")
        if header.shape != tuple(shape):
            raise self.fail(name, f"has shape {header.shape} where {basis} {tuple(shape)}")
        return header


def check_extra_header(f: NpzReader, name: str, n_classes: int) -> None:
    """An estimator member's header: ``classes`` ``(C,)`` of numbers, booleans or text of
    at most 1024 characters; ``classifier`` and ``search`` JSON text."""
    header = f.header(name)
    if name == "classes":
        dtype = header.dtype
        if dtype.kind not in "biufU" or (dtype.kind == "U" and dtype.itemsize > 4 * 1024):
            raise f.error(name, f"has dtype {dtype}, not numbers or text labels")
        if header.shape != (n_classes,):
            raise f.error(name, f"has shape {header.shape}, not one label for each of the "
                          f"{n_classes} outputs of its config")
    else:
        _check_text_header(f, name)


def read_json(f: NpzReader, name: str):
    """The JSON value of text member ``name`` (at most :data:`MAX_TEXT` characters)."""
    _check_text_header(f, name)
    text = f.read(name).item()
    try:
        text.encode("utf-8")
        return json.loads(text)
    except (ValueError, UnicodeError):
        raise f.error(name, "is not valid JSON text") from None
    except RecursionError:
        raise f.error(name, "is JSON nested too deeply") from None


def _check_text_header(f: NpzReader, name: str) -> None:
    header = f.header(name)
    if header.dtype.kind != "U" or header.shape != ():
        raise f.error(name, f"is {header.dtype} of shape {header.shape}, not one JSON text")
    if header.dtype.itemsize > 4 * MAX_TEXT:
        raise f.error(name, f"declares {header.dtype.itemsize // 4} characters, more than the "
                      f"{MAX_TEXT} xpnet reads")


# ------------------------------------------------------------------------ values
def check_values(values: dict[str, np.ndarray], fail, config=None) -> None:
    """Every value in its range, else ``fail(member, problem)`` is raised: parameters and
    buffers finite (running variances at least 0), ``lam`` finite and at least 0, each
    per-model option within its field's rule."""
    rules = {}
    if config is None:
        meta = json.loads(str(values["meta"]))
        config = network_config.NetworkConfig.from_dict(meta["config"])
    fields = {f.name: f for f in dataclasses.fields(type(config))}
    for name in options.per_model_names(type(config)):
        rules[name] = fields[name].metadata["valid"]
    for name, value in values.items():
        if name == "meta" or name in EXTRAS:
            continue
        arr = np.asarray(value)
        if not np.all(np.isfinite(arr)):
            raise fail(name, "holds NaN or infinite values")
        base = name.rpartition("/")[2].rstrip("0123456789")
        if name.startswith("buffer/") and base in BUFFER_RULES:
            problem, test = BUFFER_RULES[base]
            if not np.all(test(arr)):
                raise fail(name, f"holds {problem}")
        if name == "lam" and np.any(arr < 0):
            raise fail(name, "holds negative values (an L2 strength is at least 0)")
        if name in rules:
            rule, test = rules[name]
            if not np.all(test(arr.astype(np.float64))):
                raise fail(name, f"holds values not {rule}")


def json_kind(value) -> str:
    """The JSON name of a parsed value's type (``object``, ``array``, ``string``, ...)."""
    kinds = ((bool, "true or false"), (dict, "object"), (list, "array"), (str, "string"),
             ((int, float), "number"), (type(None), "null"))
    return next(name for cls, name in kinds if isinstance(value, cls))


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def clause(exc: BaseException) -> str:
    """An error's sentence as a clause (no full stop, first sentence only)."""
    return str(exc).split(". ")[0].rstrip(".")
