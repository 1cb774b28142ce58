"""The attack contract: what an attack plugin implements and returns.

An attack plugin is an instance of a subclass of :class:`FixedBudgetAttack` or :class:`MinimizationAttack` (or,
making inputs from nothing, :class:`GeneratorAttack`: below) with a unique ``name`` and a pydantic ``Params``
model, returned from the ``rbench_attacks`` hook.

``run(model, x, y, params, *, generator=None) -> AttackOutput``

- ``model``: a ``torch.nn.Module`` in eval mode returning logits, with its parameters frozen
  (``requires_grad=False``) so that attacks compute input gradients only;
- ``x``: float32 in [0, 1], shape (N, C, H, W), on the model's device; ``y``: int64 labels (N,);
- ``params``: a validated instance of ``Params``;
- ``generator``: a seeded ``torch.Generator`` on the same device as ``x`` (or None); all randomness must be
  drawn from it so that a job is reproducible from its seed.

The engine calls ``run`` on batches and checks the output: ``x_adv`` float32, same shape, in [0, 1]; a
fixed-budget attack within its declared budget; ``success`` equal to a re-prediction by ``model``.

Generators (:class:`GeneratorAttack`) make inputs from nothing -- noise, an evolved population -- for given target
classes (Nguyen et al. 2015's fooling images), instead of perturbing test inputs:

``run(model, targets, params, *, shape, generator=None) -> AttackOutput``

- ``targets``: int64 (N,) on the model's device, the class each input must be classified as. The engine owns the
  layout: an evaluation's ``per_class`` rounds of every class (0, 1, ..., C-1, 0, 1, ...), handed over in batches
  of whole rounds, so a generator that evolves every class at once (MAP-Elites) serves a round from one run;
- ``shape``: the (C, H, W) of one input (the evaluation's dataset);
- ``x_adv``: float32 (N, *shape) in [0, 1]; ``success``: True where ``model`` predicts ``targets`` (the engine
  re-predicts it, as for any attack); ``extras`` as above (e.g. a per-sample trace of the confidence). A
  ``targets`` extra, if returned, must equal the given targets.

The stored set is gated like any adversarial set (float32, the box, finite, success re-predicted by the source
model); its ``targets`` are the given classes, its ``labels`` and ``indices`` are -1 (no true class, no image of
the dataset: every prediction on it is an error), and it has no distortions (there is no clean input to measure
them from). A generator declares no budget; transforms, which derive a set from its clean inputs, do not take one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel

from rbench.errors import PluginContractError

Norm = Literal["linf", "l2"]


@dataclass
class AttackOutput:
    """What an attack returns for one batch.

    ``x_adv``: float32 (N, C, H, W) in [0, 1]. ``success``: bool (N,), True where the model misclassifies
    ``x_adv`` (or predicts the target, for targeted attacks); or None (the default): the engine predicts the
    flags itself with one pass of the model the attack was given, under the job's precision. An attack that
    would compute the flags only to return them should leave them None: the engine re-predicts flags it is
    given to check them, so computing them costs a second pass. ``extras``: optional per-sample tensors with a
    leading dimension N (e.g. ``targets``, ``steps``, ``queries``), stored with the adversarial set.
    """

    x_adv: torch.Tensor
    success: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def success_on(self, model: torch.nn.Module, y: torch.Tensor) -> torch.Tensor:
        """The success flags (bool (N,), on the CPU) for a caller running an attack outside the engine: the
        attack's own, or where it left them None, ``model``'s prediction on ``x_adv`` (the model the attack was
        given), as the engine makes them: the target hit where ``extras["targets"]`` sets one (>= 0), else
        misclassified."""
        if self.success is not None:
            return self.success.detach().to("cpu", torch.bool)
        from rbench.inputs import predicted_success  # on use: it pulls in the store and the plugin manager

        targets = self.extras.get("targets", torch.full_like(y, -1))
        return predicted_success(model, self.x_adv, y, targets)


@dataclass(frozen=True)
class Budget:
    """A declared perturbation budget: ``norm`` in {"linf", "l2"} and its radius ``eps``."""

    norm: Norm
    eps: float


class Attack:
    """Base of every attack plugin. Subclass :class:`FixedBudgetAttack` or :class:`MinimizationAttack`."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]]
    #: Enters the cache keys of adversarial sets; bump it when a change alters the outputs.
    version: ClassVar[str | None] = None

    def budget(self, params: Any) -> Budget | None:
        """The declared norm budget for ``params``, or None for a minimal-distortion attack."""
        return None

    def uses_gradients(self, params: Any) -> bool:
        """Whether the attack differentiates the model (True by default; noise and decision-based attacks say
        False). A gradient attack through a non-differentiable defense needs BPDA: the suite says so up front."""
        return True

    def batch_invariant(self, params: Any) -> bool:
        """Whether the attack's result is the same however the engine splits its inputs into batches (True by
        default: the conformance kit, :func:`rbench.testing.check_attack`, checks it). An attack whose random draws
        follow the batches says False (the foolbox and ART adapters seed their library once per batch): its batch
        size then enters its job key, as a randomized model's does, and its job runs at that batch size only (no
        larger batch on a GPU, no halving of one that does not fit), so a store never serves it computed at
        another batch size."""
        return True

    def targeted(self, params: Any) -> bool:
        """Whether the attack picks a target class for each input (False by default). A targeted attack returns
        the targets it aimed at as ``extras["targets"]`` (int64, never the input's label) and its ``success`` is
        True where the model predicts them; an untargeted one returns no ``targets`` (its stored targets are -1).
        The engine checks both when the attack runs and again whenever the stored set is read."""
        return False

    def gradient_loss(self, params: Any) -> str | None:
        """The loss whose input gradient the attack follows, where the engine should check it does not vanish
        before the attack runs: ``"ce"`` (the cross-entropy, whose gradient underflows to 0 when the softmax
        saturates) or None (by default: only the logits' gradients are checked,
        :func:`rbench.contract.check_input_gradients`)."""
        return None

    def resolved_params(self, params: Any) -> dict[str, Any]:
        """What the attack computes, from the others, for parameters left unset (None), by name: pgd's
        ``step_size`` is ``2.5 * eps / steps`` then. Reports print these values beside the parameters as written
        (which alone enter the job key) and results.json keeps them as the attack's ``resolved``, so a table says
        the step it ran with, not ``step_size=null``. Only unset parameters, with JSON numbers, strings or
        booleans (the conformance kit checks it); none by default."""
        return {}

    # Optional: ``provenance(params) -> dict`` (JSON-able). Adapters of other libraries return the library's
    # name and version; the engine stores it in every adversarial set's provenance (``meta.provenance.library``).

    def run(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        params: Any,
        *,
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        raise NotImplementedError


class FixedBudgetAttack(Attack):
    """An attack that searches within a fixed norm ball; ``Params`` must have ``norm`` (or the class attribute
    ``norm``) and ``eps``. The engine rejects outputs outside ``eps`` (up to float rounding:
    :func:`rbench.contract.over_budget`, relative and absolute 1e-5)."""

    norm: ClassVar[Norm | None] = None

    def budget(self, params: Any) -> Budget | None:
        norm = getattr(params, "norm", None) or self.norm
        if norm is None:  # else the budget checks would measure it as an l2 ball
            raise TypeError(f"{type(self).__name__}: a fixed-budget attack needs params.norm or a class attribute norm")
        return Budget(norm=norm, eps=float(params.eps))


class MinimizationAttack(Attack):
    """An attack that returns its smallest adversarial; metrics threshold it by distortion."""


class GeneratorAttack(Attack):
    """An attack that generates inputs for target classes from nothing (see the module docstring): ``run`` gets
    the ``targets`` and the input ``shape`` instead of clean inputs and labels. No budget: nothing is perturbed."""

    def run(  # type: ignore[override]
        self,
        model: torch.nn.Module,
        targets: torch.Tensor,
        params: Any,
        *,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
    ) -> AttackOutput:
        raise NotImplementedError


def attack_problem(attack: object, params: Any) -> str | None:
    """Why an attack plugin cannot state its budget for ``params`` (every job asks it first), or what breaks the
    contract of the parameters it resolves (:func:`resolved_problem`; the reports print them), or None: what a
    suite refuses when it loads and the conformance kit alike, before any work."""
    budget = getattr(attack, "budget", None)
    try:
        if budget is not None:
            budget(params)
    except Exception as exc:  # noqa: BLE001 - a plugin bug of any kind, reported as one line
        return f"cannot state its budget: {type(exc).__name__}: {exc}"
    method = getattr(attack, "resolved_params", None)
    try:
        problem = None if method is None else resolved_problem(method(params), params)
    except Exception as exc:  # noqa: BLE001 - as above
        return f"cannot resolve its parameters: {type(exc).__name__}: {exc}"
    return None if problem is None else f"resolved_params {problem}"


def resolved_params(attack: object, params: Any) -> dict[str, Any]:
    """``attack.resolved_params(params)`` (:meth:`Attack.resolved_params`; none for an object without it), or
    PluginContractError naming the attack and what breaks the contract (:func:`resolved_problem`)."""
    method = getattr(attack, "resolved_params", None)
    resolved = method(params) if method is not None else {}
    problem = resolved_problem(resolved, params)
    if problem is not None:
        raise PluginContractError(f"attack {getattr(attack, 'name', type(attack).__name__)!r}: resolved_params "
                                  f"{problem}")
    return {key: _scalar(value) for key, value in resolved.items()}


def _scalar(value: Any) -> Any:
    """A numpy scalar as the Python number (or bool) it holds, so results.json can write it; others as they are."""
    return value.item() if isinstance(value, np.generic) else value


def resolved_problem(resolved: object, params: BaseModel) -> str | None:
    """What in ``resolved`` breaks :meth:`Attack.resolved_params`' contract for ``params``, or None: not a dict,
    a name that is not an unset parameter, a value that is not a finite number, a string or a boolean (numpy's
    scalars count as the Python values they hold)."""
    if not isinstance(resolved, dict):
        return f"returned {type(resolved).__name__}, not a dict"
    for key, given in resolved.items():
        value = _scalar(given)
        if key not in type(params).model_fields or getattr(params, key) is not None:
            return f"names {key!r}, which is not an unset parameter"
        if not isinstance(value, str | bool | int | float) or (isinstance(value, float) and not math.isfinite(value)):
            return f"gives {key} = {value!r}, not a finite number, a string or a boolean"
    return None


def is_generator(attack: object) -> bool:
    """Whether ``attack`` (a plugin object) generates inputs for target classes (:class:`GeneratorAttack`)."""
    return isinstance(attack, GeneratorAttack)


@torch.no_grad()
def misclassified(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bool (N,): True where ``model`` does not predict ``y`` on ``x``."""
    return model(x).argmax(dim=1) != y
