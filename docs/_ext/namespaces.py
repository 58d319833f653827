"""Cross-references that mean what the name means in Python, for the reference.

Docstrings name things as the module they sit in sees them: ``:class:`TrainConfig``` in a
module that imports it, ``:class:`xpnet.Halving``` through the package that re-exports it,
``:meth:`train_config``` on a class that inherits it.  Sphinx looks names up only where
they are documented (each object once, in the module that defines it), so this extension
resolves a reference Sphinx could not by following Python's own namespaces to the object's
home, and links there if that home is documented.  A name Python cannot find either stays
unresolved, and ``-n`` reports it.

Also: napoleon reads Google-style sections in functions and classes only (our attribute
and property docstrings are prose, which it would misread as ``type: description``), and
private base classes are left out of a class's "Bases" (their members are documented
on each public class that inherits them), and members inherited from other libraries' classes
are left to those libraries.
"""

from __future__ import annotations

import importlib
import inspect
import re

from sphinx.ext.napoleon import _process_docstring
from sphinx.util.nodes import make_refnode

#: What a name means where no module is current.
DEFAULT_NAMESPACE = "xpnet"
#: Our packages: members other classes bring in (Dask's plugins, say) are not documented.
OURS = ("xpnet", "experiments")


def _import_prefix(parts: list[str]):
    """The longest importable module prefix of ``parts``: ``(module, remaining parts)``."""
    for i in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:i])), parts[i:]
        except ImportError:
            continue
    return None, parts


def _home_of(owner, owner_home: str, name: str):
    """``(object, home)`` of attribute ``name`` seen from ``owner`` (a module or class)."""
    if inspect.isclass(owner):
        for klass in owner.__mro__:
            if name in vars(klass):
                return vars(klass)[name], f"{klass.__module__}.{klass.__qualname__}.{name}"
        return None, None
    if not hasattr(owner, name):
        return None, None
    obj = getattr(owner, name)
    if inspect.ismodule(obj):
        return obj, obj.__name__
    if inspect.isclass(obj) or inspect.isfunction(obj):
        return obj, f"{obj.__module__}.{obj.__qualname__}"
    return obj, f"{owner_home}.{name}"


def python_home(target: str, modname: str | None, clsname: str | None) -> list[str]:
    """Where ``target`` lives, as seen from inside ``modname.clsname``: candidate homes."""
    starts = []
    if modname:
        scope = [modname, *(clsname.split(".") if clsname else [])]
        starts += [scope[:i] for i in range(len(scope), 0, -1)]
    starts.append([])
    homes = []
    for start in starts:
        module, rest = _import_prefix(start + target.split("."))
        if module is None or (start and not module.__name__.startswith(start[0])):
            continue
        obj, home = module, module.__name__
        for part in rest:
            obj, home = _home_of(obj, home, part)
            if obj is None:
                break
        if obj is not None:
            homes.append(home)
    return homes


def nearest_home(objects, target: str, modname: str | None) -> str | None:
    """The one documented object named ``target`` closest below ``modname``'s packages.

    A summary line in a package's table of submodules is read in the package's context,
    though written in the submodule's; so look in the package's subtree, then its
    parent's, up to the top-level package, and take a unique match.
    """
    parts = (modname or "").split(".")
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth]) + "."
        found = [name for name in objects
                 if name.startswith(prefix) and name.endswith("." + target)]
        if len(found) == 1:
            return found[0]
        if found:
            return None
    return None


def instance_attribute_home(target: str, modname: str | None, clsname: str | None):
    """The class whose ``__init__`` sets ``self.<target>``: its page describes it."""
    if not (modname and clsname) or "." in target:
        return None
    homes = python_home(clsname, modname, None)
    module = importlib.import_module(modname)
    cls = getattr(module, clsname.split(".")[0], None)
    init = getattr(cls, "__init__", None)
    if not homes or not inspect.isfunction(init):
        return None
    source = inspect.getsource(init)
    return homes[0] if re.search(rf"\bself\.{re.escape(target)}\s*(:[^=]*)?=", source) else None


def resolve_through_python(app, env, node, contnode):
    """``missing-reference``: link a Python name to its documented home, if it has one."""
    if node.get("refdomain") != "py":
        return None
    objects = env.get_domain("py").objects
    target = node["reftarget"].lstrip(".~")
    modname, clsname = node.get("py:module"), node.get("py:class")
    # Outside any module (the short API's table), names mean what they mean in xpnet.
    homes = python_home(target, modname or DEFAULT_NAMESPACE, clsname)
    homes.append(nearest_home(objects, target, modname))
    if node.get("reftype") == "attr":
        homes.append(instance_attribute_home(target, modname, clsname))
    for home in homes:
        entry = objects.get(home)
        if entry is not None:
            return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id,
                                contnode, home)
    return None


def napoleon_for_callables(app, what, name, obj, options, lines):
    """napoleon's docstring processing, for modules, classes, functions and methods only."""
    if what not in ("attribute", "data", "property"):
        _process_docstring(app, what, name, obj, options, lines)


def public_bases(app, name, obj, options, bases):
    """A class's bases without private ones (``_Schedule``): users cannot name those."""
    bases[:] = [b for b in bases if not getattr(b, "__name__", "").startswith("_")]


def skip_foreign_members(app, what, name, obj, skip, options):
    """A class's members inherited from other libraries (an exception's ``args``, a Dask
    plugin's hooks) are documented there, not here."""
    if what not in ("class", "exception"):
        return None
    owner = getattr(obj, "__objclass__", None)
    module = (owner.__module__ if owner is not None
              else getattr(getattr(obj, "fget", obj), "__module__", None))
    if isinstance(module, str) and module.split(".")[0] not in OURS:
        return True
    return None


def setup(app):
    for listener in list(app.events.listeners.get("autodoc-process-docstring", [])):
        if listener.handler is _process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", napoleon_for_callables)
    app.connect("autodoc-process-bases", public_bases)
    app.connect("autodoc-skip-member", skip_foreign_members)
    app.connect("missing-reference", resolve_through_python)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
