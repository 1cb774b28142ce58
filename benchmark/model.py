"""The model and trainer contracts.

A model plugin builds an untrained ``torch.nn.Module`` mapping float32 (N, C, H, W) inputs in [0, 1] to logits.
A module may define ``param_groups() -> list[dict]`` (torch optimizer groups, e.g. with per-layer
``weight_decay``); trainers use it when present, and train every trainable parameter it leaves out too, with the
trainer's own decay (:func:`param_groups`): a part kept from training is frozen (``requires_grad_(False)``), not
left out of the groups.

A trainer plugin trains a module in place on the data it is given and returns statistics (JSON-able numbers)
that are stored in the checkpoint's sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel

#: progress(completed, total, description) -- called by long-running plugin code; cheap to call often.
Progress = Callable[[float, float, str], None]


def no_progress(completed: float, total: float, description: str = "") -> None:
    """A :data:`Progress` that ignores everything."""


#: observer(epoch, model) -- called by a trainer that ``observes`` after each epoch (counted from 1), with the
#: model in eval mode; the trainer puts it back in train mode afterwards. It must not change the model.
EpochObserver = Callable[[int, torch.nn.Module], None]


class ModelPlugin:
    """Base of every model plugin: ``build(params) -> nn.Module`` (logits out).

    A plugin composed of other trained models (an ensemble, a committee) implements
    ``compose(members: list[nn.Module], params) -> nn.Module`` instead, returning a module whose ``members``
    attribute holds the given members in order; the engine loads each member's trained weights into it, and
    a suite lists the members (``members = ["a", "b"]``)."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]]
    version: ClassVar[str | None] = None
    #: the trainer a suite's model of this plugin gets when it names none ("none": evaluated as it is)
    default_trainer: ClassVar[str] = "standard"
    #: True if ``build`` only makes torch modules from its params (reads no file, runs no user code, imports
    #: nothing that makes tensors): the suite's validation then builds it on torch's ``meta`` device to count
    #: its weights, and refuses a model that outgrows the machine's memory (:func:`weights_bytes`)
    sized_on_meta: ClassVar[bool] = False
    #: for a composed plugin: how many members ``compose`` takes (None: any number); the suite is refused otherwise,
    #: before any work (a count only the training job checked failed it after the members had trained)
    members_count: ClassVar[int | None] = None

    def build(self, params: Any) -> torch.nn.Module:
        raise NotImplementedError

    # Optional hooks:
    # - ``check(params, input_shape, num_classes)``: raise ValueError if the model cannot serve the dataset (called
    #   when the suite is read, so the problem is one line before any work);
    # - ``weights_file(params) -> str | None`` and ``load_weights(model, params, path)``: weights the train job
    #   loads from a file of the user's before training (the file's bytes must be in the params, hence the key);
    # - ``absolute_params(params: dict, base: Path) -> dict``: the params as a suite in folder ``base`` wrote them,
    #   with their file paths made absolute (``rbench.flatten``).


@dataclass
class TrainData:
    """Training inputs: ``x`` float32 (N, C, H, W) in [0, 1] and ``y`` int64 (N,), on the CPU."""

    x: torch.Tensor
    y: torch.Tensor


class Trainer:
    """Base of every trainer plugin.

    A model may start from another model's trained weights (``init = "other"`` in the suite: same plugin and
    params). A trainer with ``uses_lineage = True`` then also receives ``lineage``: the trained models of that
    ``init`` chain, oldest first (the last is the one the model started from), in eval mode with frozen
    parameters, on ``device`` -- e.g. to craft adversarial examples with earlier snapshots (staged adversarial
    training)."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]]
    version: ClassVar[str | None] = None
    #: train() takes ``lineage`` (see the class docstring)
    uses_lineage: ClassVar[bool] = False
    #: train() takes ``observer`` (an :data:`EpochObserver`) and calls it after every epoch: the suite may
    #: ``monitor`` the model (per-epoch measurements by probe plugins, :mod:`rbench.probe`)
    observes: ClassVar[bool] = False
    #: train() reads the model's training data; False (the ``none`` trainer: a loaded or composed model used as
    #: it is) gets empty data, and the run neither needs nor loads the training split for it
    reads_data: ClassVar[bool] = True

    def train(
        self,
        model: torch.nn.Module,
        data: TrainData,
        params: Any,
        *,
        generator: torch.Generator,
        device: torch.device,
        progress: Progress = no_progress,
    ) -> dict[str, Any]:
        """Train ``model`` (already on ``device``) in place; return JSON-able statistics (e.g. final loss).
        A trainer with ``uses_lineage`` takes the keyword ``lineage: list[nn.Module]`` too, one that ``observes``
        the keyword ``observer: EpochObserver | None``."""
        raise NotImplementedError

    def extra_data(self, params: Any) -> list[tuple[str, str]]:
        """(dataset plugin, split) pairs the trainer loads itself besides the model's own data (e.g. outliers),
        so that a run checks (or downloads) them before any job starts, and the content of those whose dataset
        gives a fingerprint enters the training job's key (``TrainSpec.extra_content``). None by default."""
        return []


def param_groups(model: torch.nn.Module, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """The module's own ``param_groups()`` if it defines one, and every trainable parameter they leave out in one
    more group with ``weight_decay``; else one group of them all with ``weight_decay``. (A model whose groups named
    only its softmax layer, ``ae_softmax``'s, was trained by every trainer with its encoder frozen at its random
    start.)"""
    own = getattr(model, "param_groups", None)
    groups: list[dict[str, Any]] = []
    if callable(own):  # a group's params may be one tensor or any iterable, as torch's optimizers take them
        groups = [{**g, "params": [g["params"]] if isinstance(g["params"], torch.Tensor) else list(g["params"])}
                  for g in own()]
    covered = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in covered]
    return groups + ([{"params": rest, "weight_decay": weight_decay}] if rest or not groups else [])


def weights_bytes(plugin: Any, params: BaseModel) -> int | None:
    """The bytes of the parameters and buffers of the network ``plugin`` builds from ``params``, counted on
    torch's ``meta`` device (shapes only, no memory, no values); None for a plugin that does not declare
    ``sized_on_meta`` (building elsewhere than it expects could leave meta tensors in what it imports) or that
    cannot build there."""
    if not getattr(plugin, "sized_on_meta", False):
        return None
    try:
        with torch.device("meta"):
            net = plugin.build(params)
        tensors = [*net.parameters(), *net.buffers()]
    except Exception:  # e.g. a plugin reading a file or calling a kernel meta tensors lack: not checked
        return None
    return sum(t.numel() * t.element_size() for t in tensors)


def machine_memory() -> int | None:
    """This machine's physical memory in bytes, where the OS says (``sysconf``)."""
    import os

    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
