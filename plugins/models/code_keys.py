"""What a model's key holds besides its weights: the code that computes it.

- A model file's **helper modules** (:func:`imports_digest`): the modules it imports by name, transitively, from
  outside the Python installation (a ``helpers.py`` on ``PYTHONPATH``), by their bytes.
- An installed module's **own package** (``rbench eval package.module:Class``): the modules of its top-level
  package it imports, transitively, by their bytes, though they lie in site-packages (a reinstall that changes a
  helper of the package under the same version).
- An **in-memory model** (``rbench.evaluate``, :func:`live_code_digest`): the source of the module of every class
  in it (each submodule's, not only the outer one's: an ``nn.Sequential`` of a user's layer has torch's source
  outside), those modules' helper modules, and every submodule's state that is not in its state_dict: plain
  attributes (``self.mean = 0.1307``), buffers not saved with it, hooks, and the functions and objects these refer
  to (a function by its source and its closure's values). For the classes and functions of a user's modules (not
  from the Python installation) also what they are in memory: their code objects (:func:`_shape`), default
  arguments, class attributes, and the globals their code reads (plain data by value: numbers, strings, tensors,
  arrays and containers of them, such as ``SCALE = float(os.environ["SCALE"])`` at import; users' functions and
  classes reached from there in their turn). And a check that a user's module's code in memory is what its file
  holds now: a module edited on disk after it was imported runs its old code, so such a model is
  :class:`Unkeyable` (computed, never read back) until the module is imported again. Code objects differ between
  Python versions: an in-memory model is keyed anew under another Python.

Hand-written: no library turns a live ``nn.Module`` into a digest of what it computes (``pickle`` names functions
by reference, so an edited function would keep its key, and tensors' pickles are not byte-stable across versions).
"""

from __future__ import annotations

import ast
import dis
import enum
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import re
import site
import sys
import sysconfig
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

#: at most this many local modules are followed from a model's module (a bound on the walk, not a limit users meet)
MAX_LOCAL_MODULES = 256


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    """Folders whose modules come with Python or an installed distribution (stdlib, site-packages)."""
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
    return tuple(str(Path(r).resolve()) for r in roots if r)


def _imported(source: str, package: str | None) -> list[str]:
    """The module names ``source`` imports (every ``import`` statement, run or not), with their parent packages;
    for ``from a import b``, ``a.b`` too (a submodule, if it is one). Relative imports resolve against
    ``package``."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                if not package:
                    continue
                base = importlib.util.resolve_name("." * node.level + base, package)
            names += [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return [".".join(name.split(".")[:i]) for name in names for i in range(1, name.count(".") + 2)]


def local_modules(source: str, package: str | None, own: str | None = None) -> dict[str, Path]:
    """The modules the code ``source`` imports by name, transitively, whose ``.py`` file lies outside the Python
    installation and its site-packages, rbench's own excepted: the user's helper files (on ``PYTHONPATH``) that a
    job's result depends on like the model file itself; and those of the top-level package ``own`` wherever they
    lie (an installed package's helpers). Read from the import statements, so the answer depends on the files
    alone, not on what else the process imported. Name -> file."""
    installed = _installed_roots()
    found: dict[str, Path] = {}
    todo = [(source, package)]
    seen: set[str] = set()
    while todo and len(found) < MAX_LOCAL_MODULES:
        code, pkg = todo.pop(0)
        for name in _imported(code, pkg):
            if name in seen or name.split(".")[0] == "rbench":
                continue
            seen.add(name)
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):  # not a module (``from a import function``) or not importable here
                continue
            origin = getattr(spec, "origin", None)
            if not isinstance(origin, str) or not origin.endswith(".py"):
                continue
            path = Path(origin).resolve()
            if not str(path).startswith(installed) or own is not None and name.split(".")[0] == own:
                found[name] = path
                todo.append((path.read_text(errors="replace"), name if path.name == "__init__.py"
                             else name.rpartition(".")[0]))
    return found


def imports_digest(source: str, package: str | None, own: str | None = None) -> str:
    """SHA-256 over the local modules ``source`` imports (:func:`local_modules`, ``own`` its own package's too):
    their names and bytes; "" for none (a self-contained file keeps the key it always had)."""
    used = local_modules(source, package, own)
    if not used:
        return ""
    h = hashlib.sha256()
    for name in sorted(used):
        h.update(name.encode() + b"\0" + used[name].read_bytes() + b"\0")
    return h.hexdigest()


# -- in-memory models ------------------------------------------------------------------------------------------

#: torch's own bookkeeping in every module's ``__dict__`` (parameters, buffers, submodules, hooks, mode), read
#: apart from the attributes a layer or a user sets
_MODULE_INTERNALS = frozenset(vars(nn.Module()))
_HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_pre_hooks", "_backward_hooks")
#: how deep :class:`_Describer` follows containers and objects before giving up on a value (a bound, not a limit a
#: model meets)
_MAX_DEPTH = 24


class Unkeyable(Exception):
    """A part of an in-memory model that no text can stand for across processes (an object without a ``__dict__``,
    a function without source)."""


class _Describer:
    """Text standing for a live model's code and state, the same in every process where they are the same."""

    def __init__(self) -> None:
        self.modules: dict[str, str] = {}  # the Python modules the model's code comes from -> their source
        self.members: dict[str, str] = {}  # a user's class or function ("module:qualname") -> what it is in memory
        self.seen: set[int] = set()  # ids of the users' functions described (the model holds them meanwhile)
        self.whole: set[str] = set()  # users' modules described whole (used other than as ``module.attribute``)
        self.sourceless: dict[str, str] = {}  # "module:qualname" -> the source of a class or function whose module
        # has none (a notebook's)
        self.path: list[int] = []  # ids of the containers and objects being described (a cycle refers back)

    def module(self, m: nn.Module, depth: int = 0) -> str:
        """A module's class and everything of it that its state_dict does not hold (its submodules apart)."""
        state = vars(m)
        own = {k: self.value(v, depth + 1) for k, v in sorted(state.items()) if k not in _MODULE_INTERNALS}
        unsaved = {k: self.value(b, depth + 1) for k, b in sorted(m._buffers.items())
                   if k in m._non_persistent_buffers_set and b is not None}
        hooks = {h: [self.value(f, depth + 1) for f in state.get(h, {}).values()] for h in _HOOKS}
        return f"{self.code(type(m))} own={own} unsaved={unsaved} hooks={hooks}"

    def code(self, obj: type | types.FunctionType) -> str:
        """A class or function by name, its module's source recorded (or, where the module has none, as in a
        notebook, its own source)."""
        name = getattr(obj, "__module__", None) or "?"
        module = sys.modules.get(name)
        if name in self.modules:  # its source is recorded already
            self.in_memory(obj, module)
            return f"{name}:{obj.__qualname__}"
        source = None if module is None else _module_source(module)
        if module is not None and source is not None:
            self.record(module, source)
            self.in_memory(obj, module)
        elif name != "__main__" and (module is None or _installed(module)):
            pass  # compiled library code (int, torch.Generator): named; it changes with its library's version
        elif isinstance(obj, type):
            for cls in obj.__mro__:  # a notebook's class: its own source and its bases'
                if cls.__module__ == name:
                    self.sourceless[f"{name}:{cls.__qualname__}"] = _own_source(cls, obj)
        else:
            self.sourceless[f"{name}:{obj.__qualname__}"] = _own_source(obj, obj)
        return f"{name}:{obj.__qualname__}"

    def record(self, module: types.ModuleType, source: str) -> None:
        """Record ``module``'s source (its file's text now); for a user's module, after checking that its code in
        memory is that source's (:func:`changed_since_import`)."""
        self.modules[module.__name__] = source
        if not _installed(module) and (stale := changed_since_import(module, source)) is not None:
            raise Unkeyable(f"module {module.__name__!r}: {stale}")

    def in_memory(self, obj: Any, module: types.ModuleType | None) -> None:
        """For a class or function of a user's module (not from the Python installation): record what it is in
        memory, beyond its file's text: a class's members (its methods as :meth:`function` describes them, its
        plain class attributes, for its bases from users' modules too), a function's code and the values it reads.
        So a default argument, a class attribute or a value computed at import (``SCALE = float(os.environ[...])``)
        is keyed as it is, whatever the file says now."""
        if module is None or _installed(module) or not isinstance(obj, (type, types.FunctionType)):
            return
        label = f"{obj.__module__}:{obj.__qualname__}"
        if isinstance(obj, types.FunctionType):  # two closures of one factory, two lambdas: one qualname, both kept
            if id(obj) in self.seen:
                return
            self.seen.add(id(obj))
            while label in self.members:
                label += "+"
            self.members[label] = "..."
            self.members[label] = self.function(obj)
            return
        if label in self.members:
            return
        self.members[label] = "..."  # being described: a reference back to it stops there
        described = []
        for cls in obj.__mro__:
            if cls is not obj and cls.__module__ in sys.modules and not _installed(sys.modules[cls.__module__]):
                self.code(cls)  # a base of the user's: described under its own label
            if cls is not obj:
                continue
            for key, member in sorted(vars(cls).items()):
                if key in ("__dict__", "__weakref__", "__module__", "__qualname__", "__firstlineno__"):
                    continue
                described.append(f"{key}={self.member(member)}")
        self.members[label] = "; ".join(described)

    def member(self, v: Any) -> str:
        """One entry of a user's class's ``__dict__``."""
        if isinstance(v, (staticmethod, classmethod)):
            return f"{type(v).__name__}({self.member(v.__func__)})"
        if isinstance(v, property):
            return f"property({', '.join(self.member(f) for f in (v.fget, v.fset, v.fdel) if f is not None)})"
        wrapped = getattr(v, "__wrapped__", None) if callable(v) else None
        if isinstance(v, types.FunctionType):  # a method, or a decorator's wrapper and the function it wraps
            return self.function(v) + ("" if wrapped is None else f" wraps {self.member(wrapped)}")
        if wrapped is not None:  # a wrapper object (functools.cache): the function it wraps
            return f"{type(v).__qualname__} of {self.member(wrapped)}"
        if isinstance(v, functools.cached_property):
            return f"cached_property({self.member(v.func)})"
        return self.reachable(v)

    def function(self, fn: types.FunctionType) -> str:
        """What a user's function computes, as it is in memory: its code (:func:`_shape`), default arguments and
        closure's values, and the globals its code reads (:meth:`reachable`: plain data by value, users' classes
        and functions described in their turn, containers of them walked; ``helpers.SCALE`` of a user's module
        ``helpers`` as that attribute, a user's module used otherwise, ``getattr(helpers, name)``, whole)."""
        closure = [self.reachable(c.cell_contents) if _assigned(c) else "unassigned" for c in fn.__closure__ or ()]
        read: dict[str, str] = {}
        for name, attributes in _globals_read(fn.__code__).items():
            if name not in fn.__globals__:
                continue
            g = fn.__globals__[name]
            if isinstance(g, types.ModuleType) and not _installed(g) and "" not in attributes:
                read[name] = repr({a: self.reachable(getattr(g, a)) for a in sorted(attributes) if hasattr(g, a)})
            elif not isinstance(g, types.ModuleType) or not _installed(g):
                read[name] = self.reachable(g)
        return (f"code={_shape(fn.__code__)!r} defaults={self.reachable(fn.__defaults__)} "
                f"kw={self.reachable(fn.__kwdefaults__)} closure={closure} reads={read}")

    def reachable(self, v: Any, depth: int = 0) -> str:
        """A value a user's code reaches (a global it reads, a default argument, a class attribute, a closure's
        cell): plain data by value (not a ``torch.device``: the device is not part of a key), a user's class or
        function described (:meth:`code`), containers, ``functools.partial`` and bound methods walked, a user's
        module described whole (its functions and classes, and its plain data), library functions by name; any
        other object by its type alone (a logger, a client: their state is not keyed)."""
        if isinstance(v, torch.device):
            return "device"
        if _plain(v):
            return self.value(v, 1)
        if depth > _MAX_DEPTH:
            return "deep"
        if isinstance(v, (type, types.FunctionType)) and getattr(v, "__module__", None) in sys.modules:
            return self.code(v)
        if (walked := _container(v, lambda x: self.reachable(x, depth + 1))) is not None:
            return walked
        if isinstance(v, functools.partial):
            return (f"partial:{self.reachable(v.func, depth + 1)}:{self.reachable(v.args, depth + 1)}:"
                    f"{self.reachable(v.keywords, depth + 1)}")
        if isinstance(v, types.MethodType):
            return f"method:{self.reachable(v.__func__, depth + 1)}"
        if isinstance(v, types.ModuleType):
            if not _installed(v) and v.__name__ not in self.whole:
                self.whole.add(v.__name__)
                if v.__name__ not in self.modules and (source := _module_source(v)) is not None:
                    self.record(v, source)
                for key, x in sorted(vars(v).items()):
                    if key.startswith("__"):
                        continue
                    if isinstance(x, (type, types.FunctionType)) and getattr(x, "__module__", None) == v.__name__:
                        self.code(x)
                    elif _plain(x) and not isinstance(x, torch.device):
                        self.members[f"{v.__name__}.{key}"] = self.value(x, 1)
            return f"pymodule:{v.__name__}"
        if isinstance(v, (types.BuiltinFunctionType, types.BuiltinMethodType)) or callable(v) \
                and type(v).__module__ in ("builtins", "torch", "torch._C", "torch._ops"):
            return f"builtin:{getattr(v, '__module__', None)}:{getattr(v, '__qualname__', getattr(v, '__name__', v))}"
        return f"{type(v).__module__}.{type(v).__qualname__}"

    def value(self, v: Any, depth: int) -> str:
        if v is None or isinstance(v, (bool, int, float, complex, str, bytes, range, slice, type(...))):
            return f"{type(v).__name__}:{v!r}"
        if isinstance(v, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
            return f"{type(v).__name__}:{v}"
        if isinstance(v, torch.Generator):  # a randomized layer's stream: where it stands now
            return f"generator:{v.device}:{hashlib.sha256(v.get_state().numpy().tobytes()).hexdigest()}"
        if depth > _MAX_DEPTH:
            raise Unkeyable(f"a value nested more than {_MAX_DEPTH} deep")
        if id(v) in self.path:  # e.g. a layer holding its parent: the reference, not the parent again
            return f"cycle:{len(self.path) - self.path.index(id(v))}"
        self.path.append(id(v))
        try:
            return self._composite(v, depth)
        finally:
            self.path.pop()

    def _composite(self, v: Any, depth: int) -> str:  # noqa: C901 -- one case per kind of value, flat
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            if t.is_quantized or t.is_sparse:
                raise Unkeyable(f"a {t.layout} tensor")
            data = t.resolve_conj().resolve_neg().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            return f"tensor:{t.dtype}:{tuple(t.shape)}:{hashlib.sha256(data).hexdigest()}"
        if isinstance(v, (np.ndarray, np.generic)):
            a = np.ascontiguousarray(v)
            if a.dtype.hasobject:
                return f"ndarray:{a.shape}:[{','.join(self.value(x, depth + 1) for x in a.ravel())}]"
            return f"ndarray:{a.dtype.str}:{a.shape}:{hashlib.sha256(a.tobytes()).hexdigest()}"
        if isinstance(v, enum.Enum):
            return f"enum:{self.code(type(v))}.{v.name}"
        if (walked := _container(v, lambda x: self.value(x, depth + 1))) is not None:
            return walked
        if isinstance(v, nn.Module):  # one held outside the module tree (a plain attribute): all of it
            inner = [f"{k}={self.value(p, depth + 1)}" for k, p in v.state_dict(keep_vars=False).items()]
            subs = [f"{k}={self.module(s, depth + 1)}" for k, s in v.named_modules() if k]
            return f"module[{self.module(v, depth + 1)} state={inner} subs={subs}]"
        if isinstance(v, types.MethodType):
            owner = "module" if isinstance(v.__self__, nn.Module) else self.value(v.__self__, depth + 1)
            return f"method:{self.value(v.__func__, depth + 1)}@{owner}"
        if isinstance(v, functools.partial):
            return (f"partial:{self.value(v.func, depth + 1)}:{self.value(v.args, depth + 1)}:"
                    f"{self.value(v.keywords, depth + 1)}")
        if isinstance(v, types.FunctionType):
            closure = [self.value(c.cell_contents, depth + 1) if _assigned(c) else "unassigned"
                       for c in v.__closure__ or ()]
            own = _own_source(v, v) if _has_source(v) else f"code={_shape(v.__code__)!r}"  # a dataclass's __repr__
            return (f"function:{self.code(v)}:{own}:closure={closure}:"
                    f"defaults={self.value(v.__defaults__, depth + 1)}:kw={self.value(v.__kwdefaults__, depth + 1)}")
        if isinstance(v, type):
            return f"class:{self.code(v)}"
        if isinstance(v, types.ModuleType):
            if v.__name__ not in self.modules and (source := _module_source(v)) is not None:
                self.record(v, source)
            return f"pymodule:{v.__name__}"
        if isinstance(v, (types.BuiltinFunctionType, types.BuiltinMethodType)) or callable(v) \
                and type(v).__module__ in ("builtins", "torch", "torch._C", "torch._ops"):
            # compiled code (torch.relu, math.exp, torch.ops): named; it changes with its library's version
            return f"builtin:{getattr(v, '__module__', None)}:{getattr(v, '__qualname__', getattr(v, '__name__', v))}"
        state = getattr(v, "__dict__", None)
        slots = [s for cls in type(v).__mro__ for s in getattr(cls, "__slots__", ())]
        if state is None and not slots:
            raise Unkeyable(f"an object of type {type(v).__module__}.{type(v).__qualname__}")
        fields = dict(state or {}) | {s: getattr(v, s) for s in slots if hasattr(v, s)}
        return f"object:{self.code(type(v))}:{self.value(fields, depth + 1)}"


#: the types of module-level values whose contents a model's key holds when its code reads them (with lists,
#: tuples, sets and dicts of them); other objects (a logger, a client) are not described
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, np.ndarray, np.generic, enum.Enum,
          torch.dtype, torch.device)


def _plain(v: Any, depth: int = 0) -> bool:
    """Whether ``v`` is data a model's key describes by its contents (:data:`_PLAIN`, nested up to 8 deep)."""
    if isinstance(v, _PLAIN):
        return True
    if depth >= 8:
        return False
    if isinstance(v, (list, tuple, set, frozenset)):
        return all(_plain(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(_plain(k, depth + 1) and _plain(x, depth + 1) for k, x in v.items())
    return False


@functools.lru_cache(maxsize=64)
def _compiled(source: str, filename: str) -> types.CodeType | None:
    """``source`` compiled as Python compiles a module's file (None where it no longer compiles)."""
    try:
        return compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None


def _globals_read(code: types.CodeType) -> dict[str, set[str]]:
    """The global names ``code`` (and the code nested in it) reads, each with the attributes read from it right
    away (``helpers.SCALE``: ``{"helpers": {"SCALE"}}``), and ``""`` where it is used otherwise."""
    read: dict[str, set[str]] = {}
    for one in [code, *_nested_codes(code)]:
        instructions = list(dis.get_instructions(one))
        for at, ins in enumerate(instructions):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
                attributes = read.setdefault(ins.argval, set())
                after = instructions[at + 1] if at + 1 < len(instructions) else None
                name = after.argval if after is not None and after.opname in ("LOAD_ATTR", "LOAD_METHOD") else None
                attributes.add(name if isinstance(name, str) else "")
    return read


def _nested_codes(code: types.CodeType | None) -> list[types.CodeType]:
    """The code objects inside ``code`` (functions, classes, lambdas, comprehensions), all the way down."""
    found: list[types.CodeType] = []
    todo = [] if code is None else [code]
    while todo:
        inner = [c for c in todo.pop().co_consts if isinstance(c, types.CodeType)]
        found += inner
        todo += inner
    return found


def _shape(code: types.CodeType) -> tuple[Any, ...]:
    """What a code object computes, apart from where it lies in its file (its line numbers): byte code, names,
    constants, nested code objects by their shape."""
    consts = tuple(_shape(c) if isinstance(c, types.CodeType) else ("frozenset", tuple(sorted(map(repr, c))))
                   if isinstance(c, frozenset) else (type(c).__name__, repr(c)) for c in code.co_consts)
    return code.co_code, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars, consts


def changed_since_import(module: types.ModuleType, source: str) -> str | None:
    """What says that ``module``'s code in memory is not ``source`` (its file's text now), or None: a module edited
    on disk after it was imported runs its old code, while a key made from the file would name the new. Every
    function and method defined in the module's file, at its top level or in its classes, is compared with the
    file's, compiled, by :func:`_shape` (an edit of comments or blank lines alone is no change). Only for a module
    Python compiled from its file itself (its source loader, or a script run as ``python file.py``): an import
    hook's code (pytest's assertion rewriting) differs from the file's by design, and is not judged."""
    spec = getattr(module, "__spec__", None)
    if not (type(getattr(spec, "loader", None)) is importlib.machinery.SourceFileLoader
            or spec is None and module.__name__ == "__main__"):  # a script run as `python file.py`
        return None  # compiled otherwise than from its file as it was (an import hook: pytest rewrites asserts)
    compiled = _compiled(source, getattr(module, "__file__", None) or module.__name__)
    if compiled is None:
        return "its file changed after it was imported and no longer compiles (import it again, or restart)"
    on_disk: dict[str, set[tuple[Any, ...]]] = {}
    for code in _nested_codes(compiled):
        on_disk.setdefault(code.co_qualname, set()).add(_shape(code))
    filename = compiled.co_filename
    todo, seen = list(vars(module).values()), set()
    while todo:
        v = todo.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, (staticmethod, classmethod)):
            todo.append(v.__func__)
        elif isinstance(v, property):
            todo += [f for f in (v.fget, v.fset, v.fdel) if f is not None]
        elif isinstance(v, functools.cached_property):
            todo.append(v.func)
        elif isinstance(v, type) and v.__module__ == module.__name__:
            todo += list(vars(v).values())
        elif callable(v) and hasattr(v, "__wrapped__") and inspect.unwrap(v) is not v:
            todo.append(inspect.unwrap(v))  # a decorated function (functools.cache, torch.no_grad()): the one wrapped
        elif isinstance(v, types.FunctionType) and v.__code__.co_filename == filename:  # not a decorator's wrapper
            if _shape(v.__code__) not in on_disk.get(v.__code__.co_qualname, set()):
                return (f"its file changed after it was imported: {v.__qualname__} runs code the file no longer "
                        "holds (import it again, or restart)")
    return None


def _assigned(cell: types.CellType) -> bool:
    """Whether a closure's cell holds a value (a name its enclosing function had not assigned yet holds none)."""
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True


def _installed(module: types.ModuleType) -> bool:
    """Whether ``module`` comes with Python or an installed distribution (compiled, or under their folders)."""
    file = getattr(module, "__file__", None)
    return file is None or str(Path(file).resolve()).startswith(_installed_roots())


def _module_source(module: types.ModuleType) -> str | None:
    try:
        return inspect.getsource(module)
    except (OSError, TypeError):
        return None


def _container(v: Any, describe: Any) -> str | None:
    """A list, tuple, set or dict as text, each element by ``describe`` (sets and dicts in sorted order); None for
    anything else."""
    if isinstance(v, (list, tuple)):
        return f"{type(v).__name__}[{','.join(describe(x) for x in v)}]"
    if isinstance(v, (set, frozenset)):
        return f"{type(v).__name__}{{{','.join(sorted(describe(x) for x in v))}}}"
    if isinstance(v, dict):
        items = sorted((describe(k), describe(x)) for k, x in v.items())
        return f"{type(v).__name__}{{{','.join(f'{k}={x}' for k, x in items)}}}"
    return None


def _has_source(fn: types.FunctionType) -> bool:
    """Whether ``fn`` comes from a file (not ``exec``'d text, as a dataclass's generated methods are)."""
    filename = fn.__code__.co_filename
    return not (filename.startswith("<") and filename.endswith(">"))


def _own_source(obj: Any, named: Any) -> str:
    """``obj``'s own source (:class:`Unkeyable` naming ``named`` where there is none: a class or function made by
    ``exec`` or typed at the interactive prompt)."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        raise Unkeyable(f"{getattr(named, '__qualname__', named)!r}, whose source cannot be read") from None


def live_code_digest(model: nn.Module) -> str:
    """SHA-256 of what, besides its state_dict, decides what the in-memory ``model`` computes (see the module):
    the same in every process for the same code and state. :class:`Unkeyable` naming the part where no text can
    stand for it."""
    describer = _Describer()
    layers = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(model))  # an extra_repr naming a function: not its address
    parts = [layers] + [f"{name}: {describer.module(m)}" for name, m in model.named_modules()]
    for name, source in sorted(describer.modules.items()):
        parts.append(f"module {name}\n{source}")
        module = sys.modules[name]
        if not _installed(module):  # a user's: its helper modules too
            parts.append(f"imports {imports_digest(source, module.__package__)}")
    parts += [f"memory {label}\n{text}" for label, text in sorted(describer.members.items())]
    parts += [f"source {name}\n{text}" for name, text in sorted(describer.sourceless.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
