"""Your own trained model: the network class from your code, the weights from your file (``plugin = "checkpoint"``).

In a suite::

    [models.mine]
    plugin = "checkpoint"
    params = { module = "nets.py:MyCNN", weights = "mycnn.safetensors", kwargs = { width = 64 } }
    dataset = "mnist"

``module`` is ``"path/to/file.py:Class"`` (a file path, relative to the suite file) or ``"package.module:Class"``
(an importable module); ``kwargs`` are the class's constructor arguments; ``weights`` a ``.safetensors`` file or a
``.pt``/``.pth`` state_dict, read with ``torch.load(weights_only=True)``: a file that needs full unpickling is
refused. ``mean``/``std`` (one value per channel) normalize the input inside the model, so attacks keep working in
[0, 1] pixel space; ``strict`` (default true) requires the state_dict's keys to match the network's exactly.

- **Keyed on bytes, never on paths.** When the suite is read, the paths are resolved and replaced, in the job's
  spec, by the SHA-256 of the weights file and the source of the file defining the class (its text, for a file;
  its digest, for an installed module): changing either recomputes every job of the model, moving or renaming a
  file with the same bytes recomputes nothing.
- **Evaluated as it is.** The model's default trainer is ``none``: its train job stores the given weights. Naming
  a trainer fine-tunes the loaded weights (e.g. adversarial fine-tuning of a given checkpoint).
- **Checked up front** (one line, exit 2, before any work): the module or class not found, the constructor
  failing, the weights file missing or not a state_dict of tensors, the state_dict's keys or shapes not those of
  the network (the first mismatch named), the output not (N, num_classes) logits on an input of the dataset's
  shape.
- A class from a file is rebuilt from the source text recorded in the spec; an installed module is imported, and
  refused if its source changed since (or its code in memory is not its file's: edited after it was imported).
  Helper modules either imports from outside the Python installation and its site-packages (a ``helpers.py`` on
  ``PYTHONPATH``), and an installed module's imports from its own top-level package, are keyed by their bytes too
  (``imports_sha256``), and refused when they changed since the jobs were planned.

``rbench.evaluate(model, ...)`` registers an in-memory model here (``live``): keyed on its state_dict's bytes and
its code and other state (:func:`rbench.plugins.models.code_keys.live_code_digest`: every submodule's class's
source, plain attributes, unsaved buffers, hooks), built (copied) only in the process that holds it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import importlib.util
import inspect
import io
import pickle
import stat
import sys
import types
import uuid
import warnings
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    model_serializer,
    model_validator,
)
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from rbench.contract import logits_problem, repeat_problem
from rbench.errors import RbenchError
from rbench.manager import untrusted
from rbench.model import ModelPlugin
from rbench.plugins.models.code_keys import (
    Unkeyable,
    changed_since_import,
    imports_digest,
    live_code_digest,
    local_modules,
)
from rbench.tomlfile import Unreadable, not_regular, os_problem, read_small_file

#: in-memory models registered by rbench.evaluate in this process: "<source sha256>:<weights sha256>" -> a copy
#: taken when it was registered (so a model trained further afterwards is a new model, not a stale one)
LIVE: dict[str, nn.Module] = {}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]


#: the params validation fills in (from the files a suite names); a suite may not give them
RESOLVED = ("class_name", "import_name", "source", "source_sha256", "imports_sha256", "weights_sha256",
            "weights_format")

class CheckpointParams(BaseModel):
    """The user gives ``module``, ``weights`` (or, through ``rbench.evaluate``, ``live``), ``kwargs``, ``mean``,
    ``std``, ``strict``. Validation fills in what the job key sees instead of the paths -- ``class_name``,
    ``import_name`` ("" for a file), ``source`` (a file's text), ``source_sha256``, ``weights_sha256`` -- and a
    job's stored spec holds only those (the paths are kept on the validated object, for the run that reads them).
    """

    model_config = ConfigDict(extra="forbid")
    module: str | None = Field(None, exclude=True)
    weights: str | None = Field(None, exclude=True)
    live: str | None = None
    kwargs: dict[str, Any] = {}
    mean: Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=1)] | None = None
    std: Annotated[list[Annotated[float, Field(gt=0, allow_inf_nan=False)]], Field(min_length=1)] | None = None
    strict: bool = True
    class_name: str = ""
    import_name: str = ""
    source: str = ""
    source_sha256: str = ""
    #: the local helper modules the class's module imports (:func:`imports_digest`; "" when none)
    imports_sha256: str = ""
    weights_sha256: str = ""
    weights_format: Literal["safetensors", "torch", "live"] = "safetensors"

    @model_serializer(mode="wrap")
    def _keyed_as_before(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Without local helper modules, no ``imports_sha256``: the keys of self-contained files stay as they were."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("imports_sha256"):
            data.pop("imports_sha256", None)
        return data

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> CheckpointParams:
        if (self.mean is None) != (self.std is None) or (self.mean and len(self.mean) != len(self.std or [])):
            raise ValueError("give 'mean' and 'std' together, one value per channel each")
        if self.live is not None:
            if self.live not in LIVE:
                raise ValueError(f"in-memory model {self.live!r} is not held by this process (rbench.evaluate runs "
                                 "it in the process that holds the model)")
            if not self.weights_sha256:  # first validation: fill in what the key sees
                _fill_live(self, self.live)
            return self
        from_suite = "base" in (info.context or {})
        if from_suite:  # what a suite writes: never the fields resolved from the files
            given = [f for f in RESOLVED if f in self.model_fields_set]
            if given:
                raise ValueError(f"{given[0]!r} is filled in by rbench from the files; give 'module' and 'weights'")
        if self.module is None and self.weights is None and not from_suite:  # a job's spec: already resolved
            if not (self.class_name and self.source_sha256 and self.weights_sha256):
                raise ValueError("give 'module' and 'weights'")
            if self.source and sha256(self.source.encode()) != self.source_sha256:
                raise ValueError("the recorded source does not match its SHA-256")
            return self
        if self.module is None or self.weights is None:
            raise ValueError("give both 'module' (\"file.py:Class\" or \"package.module:Class\") and 'weights'")
        base = Path((info.context or {}).get("base", "."))
        _fill_source(self, base)
        _fill_weights(self, base)
        net = instantiate(self)
        check_state(net, read_weights(self), self.strict)
        return self


def _split(module: str) -> tuple[str, str]:
    where, sep, name = module.rpartition(":")
    if not sep or not where or not name:
        raise ValueError(f"module {module!r}: write \"path/to/file.py:Class\" or \"package.module:Class\"")
    return where, name


def _is_file(where: str) -> bool:
    """Whether the part of ``module`` before the colon is a file path (else an importable module's name)."""
    return where.endswith(".py") or "/" in where or "\\" in where


def _fill_source(p: CheckpointParams, base: Path) -> None:
    where, p.class_name = _split(str(p.module))
    if untrusted():
        raise ValueError(f"module {p.module!r}: RBENCH_PLUGINS is empty (built-ins only, for a suite you do not "
                         "trust), so no code the suite names is run; unset RBENCH_PLUGINS to run this model's code")
    if _is_file(where):
        path = (base / where).resolve()
        try:  # a regular file of at most 1 MiB: a FIFO or device named here never blocks or fills memory
            text = read_small_file(path, "module file").decode("utf-8")
        except Unreadable as exc:
            raise ValueError(f"module file {path}: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"module file {path}: {one_line(exc)}") from None
        p.import_name, p.source, p.source_sha256 = "", text, sha256(text.encode())
        p.module = f"{path}:{p.class_name}"
    else:
        p.import_name = where
        p.source_sha256 = sha256(_module_source(where).encode())
    find_class(p, fill=True)  # the class must exist now, not when a job runs


def _module_source(name: str) -> str:
    try:
        module = importlib.import_module(name)
        return inspect.getsource(module)
    except (Exception, SystemExit) as exc:  # ImportError, a failing import, or one calling sys.exit(): user errors
        raise ValueError(f"module {name!r} cannot be imported: {one_line(exc)}") from None


def _fill_weights(p: CheckpointParams, base: Path) -> None:
    path = (base / str(p.weights)).resolve()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ValueError(f"weights file {path}: {os_problem(exc)}") from None
    if not stat.S_ISREG(mode):
        raise ValueError(f"weights file {path}: {not_regular(mode)}")
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(f"weights file {path}: expected .safetensors, .pt or .pth")
    p.weights = str(path)
    p.weights_format = "safetensors" if suffix == ".safetensors" else "torch"
    try:
        p.weights_sha256 = sha256(path.read_bytes())
    except OSError as exc:  # permission denied, an I/O error: one line, as a missing file
        raise ValueError(f"weights file {path}: {os_problem(exc)}") from None


def _fill_live(p: CheckpointParams, live: str) -> None:
    """What the key of the in-memory model registered as ``live`` (:func:`register_live`) sees: its id's two
    digests, and its class's name."""
    cls = type(LIVE[live])
    p.class_name, p.weights_format, p.import_name = cls.__qualname__, "live", cls.__module__
    p.source_sha256, _, p.weights_sha256 = live.partition(":")


@functools.lru_cache(maxsize=32)
def _module_from_source(source: str, origin: str) -> types.ModuleType:
    """The module defined by ``source`` (a file's text), executed once per process under a name of its digest."""
    name = f"rbench_checkpoint_{sha256(source.encode())[:16]}"
    module = types.ModuleType(name)
    module.__file__ = origin
    sys.modules[name] = module
    try:
        exec(compile(source, origin, "exec"), module.__dict__)  # the user's own code, as a plugin's would run
    except (Exception, SystemExit) as exc:  # sys.exit() in a module is its author's error, not rbench's exit
        del sys.modules[name]
        missing = exc.name if isinstance(exc, ModuleNotFoundError) and exc.name else ""
        beside = Path(origin).parent / f"{missing.split('.')[0]}.py" if missing else None
        hint = f" ({beside.name} lies beside it: put {beside.parent} on PYTHONPATH)" \
            if beside is not None and beside.is_file() else ""
        raise ValueError(f"module file {origin}: {one_line(exc)}{hint}") from None
    return module


def find_class(p: CheckpointParams, fill: bool = False) -> type:
    """The class ``p`` names (from the recorded source, or the installed module, checked against its digest), its
    module's local helper modules checked against ``imports_sha256`` (``fill``: recorded there, when the suite is
    read)."""
    where = p.import_name or (p.module.rpartition(":")[0] if p.module else "the model file")
    if p.import_name:
        source = _module_source(p.import_name)
        current = sha256(source.encode())
        if not p.source and current != p.source_sha256:
            raise ValueError(f"module {p.import_name!r} changed since its jobs were planned (source SHA-256 "
                             f"{current[:12]}..., expected {p.source_sha256[:12]}...)")
        module = importlib.import_module(p.import_name)
        package, own = module.__package__, p.import_name.split(".")[0]
        if (stale := changed_since_import(module, source)) is not None:  # the key is the file's, the code is not
            raise ValueError(f"module {p.import_name!r}: {stale}")
    else:
        origin = p.module.rpartition(":")[0] if p.module else f"<checkpoint {p.source_sha256[:12]}>"  # the file
        module = _module_from_source(p.source, origin)
        source, package, own = p.source, None, None
    digest = imports_digest(source, package, own)
    if fill:
        p.imports_sha256 = digest
    elif digest != p.imports_sha256:
        used = ", ".join(sorted(local_modules(source, package, own))) or "none now"
        raise ValueError(f"the local modules {where} imports ({used}) changed since its jobs were planned: run again")
    try:
        cls = functools.reduce(getattr, p.class_name.split("."), module)
    except AttributeError:
        raise ValueError(f"no class {p.class_name!r} in {where}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{p.class_name!r} is not a torch.nn.Module class")
    return cls


def instantiate(p: CheckpointParams) -> nn.Module:
    cls = find_class(p)
    try:
        return cls(**p.kwargs)
    except (Exception, SystemExit) as exc:
        raise ValueError(f"{p.class_name}(**kwargs) failed: {one_line(exc)}") from None


def read_weights(p: CheckpointParams, path: str | None = None) -> dict[str, torch.Tensor]:
    """The state_dict in the weights file (``path`` or the params' own), checked against ``weights_sha256``."""
    path = path or p.weights
    if path is None:
        raise ValueError("no weights file")
    data = Path(path).read_bytes()
    if sha256(data) != p.weights_sha256:
        raise ValueError(f"weights file {path} changed since the suite was read (SHA-256 differs)")
    try:
        if p.weights_format == "safetensors":
            state = load_safetensors(data)
        else:
            with warnings.catch_warnings():  # torch warns about the refused pickle on stderr; our error says it
                warnings.simplefilter("ignore")
                state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError) as exc:
        if p.weights_format == "torch" and (why := _not_torch_save(data)):
            raise ValueError(f"weights file {path} {why}") from None
        if p.weights_format == "torch":
            raise ValueError(f"weights file {path} is not a plain state_dict: loading it needs full unpickling, "
                             "which rbench refuses (save model.state_dict(), or use safetensors)") from None
        raise ValueError(f"weights file {path}: {one_line(exc)}") from None
    except SafetensorError as exc:
        raise ValueError(f"weights file {path} is not a safetensors file: {one_line(exc)}") from None
    except Exception as exc:  # a truncated or foreign file
        why = (_not_torch_save(data) if p.weights_format == "torch" else None) or (
            "is empty" if not data else f"cannot be read: {one_line(exc)}")
        raise ValueError(f"weights file {path} {why}") from None
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} does not hold a state_dict (a mapping of names to tensors) but a "
                         f"{type(state).__name__}")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise ValueError(f"weights file {path} does not hold a state_dict (a mapping of names to tensors): its "
                             f"entry {key!r} is a {type(value).__name__}")
    return state


def _not_torch_save(data: bytes) -> str | None:
    """Why the bytes of a .pt/.pth file that torch.load refused are no state_dict torch.save wrote (a phrase after
    the file's name), or None where they look like one (then it is a pickle of something else)."""
    if not data:
        return "is empty"
    if data.startswith(b"\x80"):  # the legacy format: a pickle (protocol 2+)
        return None
    if not data.startswith(b"PK\x03\x04"):  # torch.save writes a zip archive
        return "is not a file torch.save wrote (neither a zip archive nor a pickle)"
    import zipfile

    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except zipfile.BadZipFile:
        return "is a damaged or truncated zip archive (torch.save's format): save it again"
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        return ("is a TorchScript archive (torch.jit.save): rbench loads the weights of a Python class; save "
                "model.state_dict() with torch.save, or use safetensors")
    return None


def check_state(net: nn.Module, state: dict[str, torch.Tensor], strict: bool) -> None:
    """Raise ValueError naming the first key whose presence or shape does not match the network's."""
    own = net.state_dict()
    for key in own:
        if key not in state:
            if strict:
                prefixed = next((k for k in state if k.endswith("." + key)), None)
                hint = "" if prefixed is None else (
                    f"; the file has {prefixed!r}: its names carry the prefix {prefixed[:-len(key)]!r} (a "
                    "DataParallel wrapper's 'module.', say): save the inner model's state_dict, or strip it")
                raise ValueError(f"the weights lack {key!r}, which the network has (strict = true){hint}")
        elif tuple(state[key].shape) != tuple(own[key].shape):
            raise ValueError(f"weights {key!r} have shape {tuple(state[key].shape)}; the network's is "
                             f"{tuple(own[key].shape)}")
        elif own[key].is_floating_point() and not state[key].is_floating_point():
            # float16/bfloat16/float64 are converted on loading (exactly, or rounded to the network's float32);
            # integers or booleans where the network has floats are a wrong file, never converted silently
            raise ValueError(f"weights {key!r} are {str(state[key].dtype).removeprefix('torch.')}; the network's "
                             f"are {str(own[key].dtype).removeprefix('torch.')} (integer weights are not converted)")
    extra = [k for k in state if k not in own]
    if extra and strict:
        raise ValueError(f"the weights have {extra[0]!r}, which the network lacks (strict = true)")


def _normalize(mean: list[float], std: list[float]) -> Any:
    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        shape = (1, len(mean)) + (1,) * (x.dim() - 2)
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(shape)
        return ((x - m) / s, *args[1:])

    return hook




class Checkpoint(ModelPlugin):
    """A network class of your own with weights from your file (see the module docstring)."""

    name = "checkpoint"
    Params = CheckpointParams
    #: a loaded model is evaluated as it is; naming a trainer fine-tunes it
    default_trainer: ClassVar[str] = "none"

    def build(self, params: CheckpointParams) -> nn.Module:
        if params.live is not None:
            if params.live not in LIVE:
                raise ValueError(f"in-memory model {params.live!r} is not held by this process")
            net = copy.deepcopy(LIVE[params.live])
        else:
            net = instantiate(params)
        if params.mean is not None and params.std is not None:  # in the model: attacks stay in [0, 1] pixels
            net.register_forward_pre_hook(_normalize(params.mean, params.std))
        return net

    def register_live(self, model: nn.Module) -> str:
        """Hold a copy of the in-memory ``model`` for this process's runs: see :func:`register_live`."""
        return register_live(model)

    def absolute_params(self, params: dict[str, Any], base: Path) -> dict[str, Any]:
        """``params`` as written in a suite whose folder is ``base``, with the file paths made absolute."""
        module, weights = params.get("module"), params.get("weights")
        if isinstance(module, str) and ":" in module:
            where, _, name = module.rpartition(":")
            if _is_file(where):
                params["module"] = f"{(base / where).resolve()}:{name}"
        if isinstance(weights, str):
            params["weights"] = str((base / weights).resolve())
        return params

    def weights_file(self, params: CheckpointParams) -> str | None:
        """The file the train job reads the starting weights from (None: the network already holds them)."""
        return params.weights

    def load_weights(self, model: nn.Module, params: CheckpointParams, path: str) -> None:
        model.load_state_dict(read_weights(params, path), strict=params.strict)

    def check(self, params: CheckpointParams, input_shape: tuple[int, ...], num_classes: int) -> None:
        """The network, with its weights, maps a batch of inputs of the dataset's shape to (N, num_classes) finite
        logits (a batch of two grey images and one of noise: a network that drops or mixes the batch dimension
        fails too), the same on a second pass (noise scaled by an image's spread shows on the noise image), and
        for an image alone as in the batch (up to float rounding)."""
        net = self.build(params)
        if params.weights is not None:
            self.load_weights(net, params, params.weights)
        net.eval()
        for name, tensor in net.state_dict().items():  # also those the output does not show (unused, buffers)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"the network's {name!r} holds non-finite values (with the weights loaded)")
        noise = torch.rand(input_shape, generator=torch.Generator().manual_seed(0))
        batch = torch.stack([torch.full(input_shape, 0.25), torch.full(input_shape, 0.75), noise])
        try:
            with torch.no_grad():
                out = net(batch)
        except (Exception, SystemExit) as exc:
            raise ValueError(f"the network fails on inputs of shape {tuple(batch.shape)}: {one_line(exc)}") from None
        problem = logits_problem(out, len(batch), num_classes)
        if problem is not None:
            raise ValueError(f"the network's {problem}")
        problem = repeat_problem(net, batch, out)
        if problem is not None:
            raise ValueError(f"the network's {problem}")


def register_live(model: nn.Module) -> str:
    """Hold a copy of ``model`` (as it is now) for this process's runs; returns its id: the digest of its code and
    of the state its state_dict does not hold (:func:`rbench.plugins.models.code_keys.live_code_digest`), then that
    of its state_dict's bytes, so the same model gets the same keys in any process (for ``params = { live = id
    }``). A model with a part no text can stand for (:class:`Unkeyable`) gets an id of its own, never reused, and a
    warning saying why."""
    try:
        code = live_code_digest(model)
    except Unkeyable as exc:
        warnings.warn(f"{type(model).__name__} cannot be keyed across calls ({exc}): its results are computed on "
                      "every rbench.evaluate call, never read back from the store", UserWarning, stacklevel=4)
        code = sha256(uuid.uuid4().bytes)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}  # clone: no sharing
    key = f"{code}:{sha256(save_safetensors(state))}"
    if key not in LIVE:
        try:
            LIVE[key] = copy.deepcopy(model).cpu()
        except Exception as exc:
            raise RbenchError(
                f"evaluate: the model cannot be copied ({_uncopyable(model)}: {type(exc).__name__}: {exc}); rbench "
                "evaluates a copy, so that changing the model afterwards cannot change its results: keep such an "
                "object outside the model, or give its class a __deepcopy__") from None
    return key


def _uncopyable(model: nn.Module) -> str:
    """Where in ``model`` the first attribute that :func:`copy.deepcopy` refuses is (``body.1.guard``), for the
    error message; ``the model`` if no single attribute is to blame."""
    torch_state = {"_parameters", "_buffers", "_modules"}
    for path, module in model.named_modules():
        for name, value in vars(module).items():
            if name in torch_state:
                continue
            try:
                copy.deepcopy(value)
            except Exception:
                return f"at {'.'.join(filter(None, (path, name)))}"
    return "the model"
