"""What jobs read: the data slice a spec names, and trained models rebuilt from the store.

Shared by the job runners (:mod:`rbench.jobs`) and the validity gates (:mod:`rbench.gates`). A model's outputs
are checked here too: non-finite logits fail whoever asked for them, naming the model plugin.
"""

from __future__ import annotations

import json
import platform
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from rbench.data import ABSENT, disjoint_splits, subset_indices
from rbench.defense import DefendedModel, Stage
from rbench.errors import DataError, PluginContractError, PluginError
from rbench.keys import canonical
from rbench.manager import BUILTIN_DISTRIBUTION, call_version, get_registry
from rbench.specs import Call, DataSlice
from rbench.store import Store


def plugin_params(kind: str, spec: Call | dict[str, Any]) -> tuple[Any, Any]:
    """The plugin a spec names (a job spec's :class:`Call`, or a call inside a model spec's JSON tree) and its
    params, validated strictly. The plugin must be the version (and distribution) the spec's key names, else
    :class:`PluginError`: a cluster node with another version installed than the driver's computed under the
    driver's key, and the store then served that result as the driver's version's."""
    call = spec if isinstance(spec, Call) else Call(spec["plugin"], spec.get("version", ""), spec["params"],
                                                     spec.get("distribution"))
    info = get_registry().get(kind, call.plugin)
    params = info.obj.Params.model_validate(call.params, strict=True)
    if call.version:
        try:  # the version these params are keyed with (a revision of some of the plugin's calls included)
            version = call_version(info.obj, info.version, params)
        except ValueError as exc:
            raise PluginError(f"{kind} {call.plugin!r}: {exc}") from None
        if version != call.version or (call.distribution or BUILTIN_DISTRIBUTION) != info.distribution:
            raise PluginError(f"{kind} {call.plugin!r}: this process (on {platform.node()}) has version "
                              f"{version} from {info.distribution!r}, but the job's key names {call.version} from "
                              f"{call.distribution or BUILTIN_DISTRIBUTION!r}: install the same version wherever "
                              "the run's jobs run (the driver and every cluster node)")
    return info.obj, params


@lru_cache(maxsize=4)
def _load_split(dataset_spec: str, split: str, content: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A whole split, cached per process (keyed by the canonical JSON of the dataset's spec and the content its
    fingerprint names, so replaced local files are read again)."""
    spec = json.loads(dataset_spec)
    plugin, params = plugin_params("dataset", spec)
    return checked_split(plugin, split, params)


def checked_split(plugin: Any, split: str, params: Any) -> tuple[np.ndarray, np.ndarray]:
    """``plugin.load(split, params)`` as float32 images and int64 labels, checked against the dataset contract
    (:func:`split_problem`; PluginContractError naming the dataset): how every split is read, a trainer's own
    extra data too (outlier exposure's outliers skipped the check)."""
    x, y = plugin.load(split, params)
    problem = split_problem(x, y, tuple(plugin.input_shape), int(plugin.num_classes))
    if problem is not None:
        raise PluginContractError(f"dataset {plugin.name!r} loaded a {split} split that breaks the dataset contract: "
                                  f"{problem}", plugin=f"dataset {plugin.name!r}")
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)


def split_problem(x: Any, y: Any, input_shape: tuple[int, ...], num_classes: int) -> str | None:
    """What makes ``(x, y)`` no split of a dataset of ``input_shape`` and ``num_classes`` (:mod:`rbench.dataset`),
    or None: images of another shape than (N, *input_shape), non-finite or outside [0, 1]; labels not one integer
    class in [0, num_classes) per image. Each was blamed on another plugin, or on none: pixels in [0, 255] as an
    attack over its budget, images flattened to (N, 784) as a corrupt stored set, a label 10 of 10 classes as the
    trainer's IndexError, NaN pixels as the model's non-finite logits."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != len(input_shape) + 1 or tuple(x.shape[1:]) != tuple(input_shape):
        return f"images of shape {tuple(x.shape)}, not (N, {', '.join(map(str, input_shape))}) as its input_shape says"
    if x.dtype.kind not in "fiu" or y.dtype.kind not in "iu" or y.shape != (len(x),):
        return f"images of dtype {x.dtype} and labels of dtype {y.dtype} and shape {tuple(y.shape)}: expected " \
               f"float32 images and one integer label per image ({len(x)})"
    if len(x):
        low, high = float(np.min(x)), float(np.max(x))  # a NaN makes both NaN
        if not (0.0 <= low and high <= 1.0):
            return ("non-finite pixels" if not (np.isfinite(low) and np.isfinite(high)) else
                    f"pixels in [{low:g}, {high:g}], not in [0, 1]")
        if int(y.min()) < 0 or int(y.max()) >= num_classes:
            return f"labels in [{int(y.min())}, {int(y.max())}], not classes in [0, {num_classes - 1}]"
    return None


def load_slice(data: DataSlice) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The data slice a job spec names: (x float32 (N, C, H, W), y int64, indices into the split). A slice whose
    key names the split's content (``content``) is refused (DataError) when the files hold other content now."""
    if data.content is not None:
        check_content(data.dataset, data.split, data.content)
    x, y = _load_split(canonical(data.dataset.to_dict()), data.split, data.content)
    if data.parts:
        part = disjoint_splits(len(x), list(data.parts), data.subset_seed)[data.part]
        idx = part[subset_indices(len(part), data.n, data.subset_seed)]
    else:
        idx = subset_indices(len(x), data.n, data.subset_seed)
    return torch.from_numpy(x[idx]), torch.from_numpy(y[idx]), idx


def check_content(dataset: Call | dict[str, Any], split: str, content: str) -> None:
    """Refuse (DataError) a split whose files no longer hold the ``content`` (fingerprint) a job's key names."""
    plugin, params = plugin_params("dataset", dataset)
    now = plugin.fingerprint(split, params)
    if now != content:
        raise DataError(f"the {plugin.name} {split} data changed since the job was planned (its fingerprint is "
                        f"{now}, the job's key names {content}): run again" if now != ABSENT else
                        f"the {plugin.name} {split} data files are missing here (check RBENCH_DATA on this machine)")


def build_model(spec: dict[str, Any]) -> torch.nn.Module:
    """A fresh network from a model spec: a composed model is composed of its freshly built members, a defended
    model of its defenses' modules in front of its freshly built base (or aggregated members)."""
    if "defended" in spec:
        model = build_defended(spec)
        setattr(model, "rbench_plugin", " -> ".join([d["plugin"] for d in spec["defended"]] + ["model"]))  # noqa: B010
        return model
    plugin, params = plugin_params("model", spec)
    if "members" in spec:
        model = plugin.compose([build_model(member) for member in spec["members"]], params)
    else:
        model = plugin.build(params)
    model.rbench_plugin = spec["plugin"]  # so errors about its outputs can name it
    return model


def build_defense(spec: dict[str, Any]) -> Stage:
    """One defense of a chain, as the engine runs it (with what BPDA and EOT need to know)."""
    plugin, params = plugin_params("defense", spec)
    module = plugin.build(params)
    module.rbench_plugin = spec["plugin"]
    return Stage(module, name=spec["plugin"], differentiable=bool(plugin.is_differentiable(params)),
                 randomized=bool(plugin.is_randomized(params)), trained=bool(getattr(plugin, "trained", False)),
                 approximation=plugin.approximation(params))


def build_defended(spec: dict[str, Any]) -> DefendedModel:
    """A defended model from its spec: ``defended`` (the defenses' calls, from the input) and ``members`` (the
    base, or the members an aggregating last defense combines)."""
    chain = spec["defended"]
    members = [build_model(member) for member in spec["members"]]
    last, params = plugin_params("defense", chain[-1])
    if getattr(last, "aggregates", False):
        return DefendedModel([build_defense(d) for d in chain[:-1]], last.compose(members, params), members)
    return DefendedModel([build_defense(d) for d in chain], members[0], members)


def model_name(model: torch.nn.Module) -> str:
    """``model 'mlp'``: how errors name a model built by :func:`build_model`."""
    return f"model {getattr(model, 'rbench_plugin', type(model).__name__)!r}"


def memory_format(model: torch.nn.Module) -> torch.memory_format:
    """``channels_last`` for models with 2-D convolutions (``make bench``: PGD on LeNet 1.47x faster on a
    2-core CPU), the default layout otherwise. Inputs are converted to the model's format batch by batch."""
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return torch.channels_last if has_conv else torch.contiguous_format


def load_model(store: Store, key: str, device: torch.device | str) -> torch.nn.Module:
    """The trained model (or trained defense component) stored under ``key``: on ``device`` in its
    :func:`memory_format`, in eval mode, parameters frozen. Weights that do not fit the network the sidecar's
    spec builds make the entry corrupt (quarantined, :class:`rbench.store.CorruptEntry`)."""
    # a checkpoint another process stored anew after it was read (EntryReplaced from model_of_checkpoint): read again
    return store.reread(key, lambda k, _: model_of_checkpoint(store, k, *store.load_checkpoint(k), device))


def model_of_checkpoint(store: Store, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any],
                        device: torch.device | str) -> torch.nn.Module:
    """:func:`load_model` of the checkpoint ``(state, meta)`` already read from ``store`` under ``key``."""
    try:
        spec = meta["spec"]
        model = build_defense(spec["defense"]).module if "defense" in spec else build_model(spec["model"])
        model.load_state_dict(state)
    except PluginError:  # the plugin is missing here or another version than the key's: the entry is not at fault
        raise
    except Exception as exc:  # the stored weights are not this network's
        reason = " ".join(str(exc).split())[:300]
        raise store.quarantine(key, f"its weights do not load into its model: {type(exc).__name__}: {reason}",
                               str(meta.get("sha256"))) from None
    # torch's stubs lack Module.to's memory_format keyword, which torch accepts
    model.to(device, memory_format=memory_format(model)).eval().requires_grad_(False)  # type: ignore[call-overload]
    return model


def finite_logits(model: torch.nn.Module, logits: torch.Tensor, what: str, offset: int = 0) -> torch.Tensor:
    """``logits``, after checking they are finite (else :class:`PluginContractError` naming the model plugin,
    ``what`` the inputs were, and the first bad sample at ``offset`` + its row)."""
    ok = torch.isfinite(logits).flatten(1).all(1) if logits.dim() > 1 else torch.isfinite(logits)
    if not bool(ok.all()):
        bad = (~ok).nonzero().flatten()
        raise PluginContractError(f"{model_name(model)} returned non-finite logits on {len(bad)} of {len(ok)} "
                                  f"{what} (first: sample {offset + int(bad[0])})", plugin=model_name(model))
    return logits


def predicted_success(model: torch.nn.Module, x_adv: torch.Tensor, y: torch.Tensor, targets: torch.Tensor,
                      batch_size: int = 1000) -> torch.Tensor:
    """Success of each sample on ``model``: hits its target where one is set (>= 0), else misclassified.
    Non-finite logits raise :class:`PluginContractError`."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x_adv), batch_size):
            logits = finite_logits(model, model(x_adv[start:start + batch_size]), "adversarial inputs", start)
            pred = logits.argmax(1)
            t = targets[start:start + batch_size].to(pred.device)
            yy = y[start:start + batch_size].to(pred.device)
            out.append(torch.where(t >= 0, pred == t, pred != yy).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)
