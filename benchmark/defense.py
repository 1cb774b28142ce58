"""The defense contract, and the defended pipeline the engine builds from it.

A defense plugin (returned from the ``rbench_defenses`` hook) composes with trained models into a *defended
model*: a model of the suite like any other, so every attack, metric, table and transfer matrix works on it
unchanged. In a suite (README "Defenses")::

    [defenses.lowpass5]
    plugin = "lowpass"
    params = { size = 5, variance = 1.3 }

    [models.lenet_lowpass]
    base = "lenet"                      # a trained model of the suite ...
    defenses = ["noise", "lowpass5"]    # ... behind these input defenses, applied in order from the input

A defense is one of:

- an **input transform** (:meth:`Defense.build` returns a module mapping inputs to inputs of the same shape in
  [0, 1]: low-pass filter, bit-depth reduction, median filter, noise injection), possibly **randomized**
  (``randomized = True``: the module draws its randomness from :meth:`DefenseModule.normal` /
  :meth:`DefenseModule.uniform`, seeded by the engine from the job's key, so re-runs give the same stored
  results; the draws follow the batches, so the attack batch size enters the key of attacks on a randomized
  model) and possibly **not differentiable** (``differentiable = False``: a white-box gradient attack through
  it needs BPDA, which uses the identity, or the module :meth:`Defense.approximation` returns, on the backward
  pass);
- a **trained component** (``trained = True``, e.g. a denoising autoencoder): the suite gives it ``dataset``,
  ``n_train`` and a ``trainer``; it is trained once by its own job, stored, and reused by every defended model
  that lists it;
- an **aggregation** of several trained models (``aggregates = True``, a committee): last in a chain; the
  defended model lists ``members`` instead of a ``base``, and :meth:`Defense.compose` combines them;
- a **training recipe** is not a defense plugin but a trainer (adversarial training): the suite labels the model
  it trains as a defense row.

A defended model's key changes with each defense's plugin, version and params, and with the keys (hence the
trained weights) of its base, members and trained components.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from rbench.dataset import NoParams
from rbench.errors import PluginContractError
from rbench.specs import View


class DefenseModule(nn.Module):
    """Base of the modules a defense builds. A randomized one draws every random number through
    :meth:`normal` or :meth:`uniform` (from :attr:`generator`, a CPU generator the engine seeds from the job's key
    before each use, so the draws are the same on every device and every re-run)."""

    def __init__(self) -> None:
        super().__init__()
        self.generator: torch.Generator = torch.Generator().manual_seed(0)

    def normal(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped and placed like ``like``."""
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)

    def uniform(self, like: torch.Tensor) -> torch.Tensor:
        """Uniform [0, 1) noise shaped and placed like ``like``."""
        return torch.rand(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)


class Defense:
    """Base of every defense plugin (see the module docstring for the kinds).

    ``build(params)`` returns the input transform (an ``nn.Module``, ideally a :class:`DefenseModule`); an
    aggregating defense implements ``compose(members, params)`` instead. ``differentiable`` and ``randomized``
    must be declared truthfully: the conformance kit (:func:`rbench.testing.check_defense`) checks them."""

    name: ClassVar[str]
    #: the pydantic params model; methods get a validated instance (typed Any here: each plugin annotates its own)
    Params: ClassVar[type[BaseModel]] = NoParams
    version: ClassVar[str | None] = None
    #: gradients through the module are meaningful (False: a white-box gradient attack needs BPDA)
    differentiable: ClassVar[bool] = True
    #: the module draws random numbers (an adaptive attack may average gradients over draws: EOT)
    randomized: ClassVar[bool] = False
    #: the module has weights trained by its own job (the suite gives ``dataset``, ``n_train``, ``trainer``)
    trained: ClassVar[bool] = False
    #: combines several trained models (a committee): last in a chain, the defended model lists ``members``
    aggregates: ClassVar[bool] = False

    def build(self, params: Any) -> nn.Module:
        raise NotImplementedError

    def is_differentiable(self, params: Any) -> bool:
        """Whether gradients through the module built with ``params`` are meaningful (default:
        :attr:`differentiable`); override when it depends on the params."""
        return self.differentiable

    def is_randomized(self, params: Any) -> bool:
        """Whether the module built with ``params`` draws random numbers (default: :attr:`randomized`); override
        when it depends on the params (e.g. optional noise injection)."""
        return self.randomized

    def approximation(self, params: Any) -> nn.Module | None:
        """BPDA's differentiable stand-in for this defense on the backward pass (None: the identity)."""
        return None

    def compose(self, members: list[nn.Module], params: Any) -> nn.Module:
        raise NotImplementedError


class Stage(nn.Module):
    """One defense of a chain: its module, and what the engine needs to attack through it."""

    def __init__(self, module: nn.Module, *, name: str, differentiable: bool, randomized: bool, trained: bool,
                 approximation: nn.Module | None):
        super().__init__()
        self.module = module
        self.name, self.differentiable, self.randomized, self.trained = name, differentiable, randomized, trained
        self.approximation = approximation
        self.bpda = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bpda:
            return self._checked(self._defend(x), x)
        stand_in = x if self.approximation is None else self.approximation(x)
        with torch.no_grad():  # the defense's own graph is never used: BPDA's backward is the stand-in's
            defended = self._checked(self._defend(x), x)
        # forward: exactly the defense's output (stand_in - stand_in.detach() is exactly 0, where the usual
        # stand_in + (defended - stand_in).detach() rounds it); backward: the stand-in's
        return defended + (stand_in - stand_in.detach())

    def _defend(self, x: torch.Tensor) -> Any:
        """The defense's module on ``x``; one that writes into ``x`` (seen by its version counter) is a
        :class:`PluginContractError` naming it: the images an attack measures its distortion from, or an evaluation
        keeps, would change under it (a noise set was stored at 5x its budget), and an attack's input requiring
        gradients failed with torch's error, blamed on the attack."""
        before = None if x.is_inference() else x._version
        try:
            out = self.module(x)
        except RuntimeError as exc:
            if "in-place operation" not in str(exc):
                raise
            raise self._in_place(f" (or a tensor autograd needs): {' '.join(str(exc).split())}") from exc
        if before is not None and x._version != before:
            raise self._in_place("")
        return out

    def _in_place(self, detail: str) -> PluginContractError:
        return PluginContractError(f"defense {self.name!r} modified its input in place{detail}: a defense returns "
                                   "new tensors and leaves its input as it is", plugin=f"defense {self.name!r}")

    def _checked(self, out: Any, x: torch.Tensor) -> torch.Tensor:
        """``out`` if it is what an input defense must give: inputs of ``x``'s shape, finite, in [0, 1] (up to
        rounding in ``out``'s precision); else :class:`PluginContractError` naming the defense (checked on every
        pass: two reductions, against a model's forward)."""
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            got = f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}"
            raise PluginContractError(f"defense {self.name!r} returned {got} for inputs of shape {tuple(x.shape)}",
                                      plugin=f"defense {self.name!r}")
        if out.numel() == 0:  # an empty batch: nothing to check (aminmax has no answer)
            return out
        slack = 4 * torch.finfo(out.dtype).eps if out.is_floating_point() else 0.0
        with torch.no_grad():
            low, high = out.detach().aminmax()
            inside = torch.isfinite(low) & torch.isfinite(high) & (low >= -slack) & (high <= 1 + slack)
        if not bool(inside):  # one wait for the device per pass
            raise PluginContractError(f"defense {self.name!r} maps inputs to values in [{float(low):.4g}, "
                                      f"{float(high):.4g}], not finite values in [0, 1]",
                                      plugin=f"defense {self.name!r}")
        return out


class DefendedModel(nn.Module):
    """``head(stages[-1](... stages[0](x)))``: a chain of input defenses in front of a trained model (or of an
    aggregation of trained members). ``members`` lists, in order, the modules whose weights come from other
    train jobs: the trained stages, then the head's trained parts (the base, or the aggregated members)."""

    def __init__(self, stages: list[Stage], head: nn.Module, head_parts: list[nn.Module]):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = head
        self._trained = [s.module for s in stages if s.trained] + head_parts

    @property
    def members(self) -> list[nn.Module]:
        return list(self._trained)

    @property
    def randomized(self) -> bool:
        return any(s.randomized for s in self.stages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def randomized(model: nn.Module) -> bool:
    """True when ``model`` (or a part of it) draws random numbers at inference."""
    return any(isinstance(m, Stage) and m.randomized for m in model.modules())


def defense_modules(model: nn.Module) -> list[DefenseModule]:
    """Every :class:`DefenseModule` in ``model``, in module order: the holders of the generators the engine seeds."""
    return [m for m in model.modules() if isinstance(m, DefenseModule)]


def seed_randomness(model: nn.Module, seed: int) -> None:
    """Seed every randomized defense of ``model`` from ``seed`` (each its own stream), so its draws are a function
    of the job's key."""
    for i, m in enumerate(defense_modules(model)):
        m.generator = torch.Generator().manual_seed((seed * 1_000_003 + i) % (2**63 - 1))


def use_bpda(model: nn.Module) -> list[str]:
    """Switch every non-differentiable stage of ``model`` to BPDA (forward unchanged; backward through the
    identity or the defense's approximation). Returns the names of the stages switched."""
    switched = []
    for m in model.modules():
        if isinstance(m, Stage) and not m.differentiable:
            m.bpda = True
            switched.append(m.name)
    return switched


class ExpectationOverTransformation(nn.Module):
    """EOT (Athalye et al. 2018): the log of the mean softmax of ``model`` over ``draws`` random draws of its
    randomized defenses, so gradients are averaged over the draws. Returned as logits (log-probabilities): any
    gradient attack uses it as it is. The draws run one after the other on the attack's batch (not as one batch
    of ``draws`` copies: on a CPU a batch that large is slower per image), so k draws cost k times one
    (``make bench``)."""

    def __init__(self, model: nn.Module, draws: int):
        super().__init__()
        self.model, self.draws = model, draws

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logp = torch.stack([torch.log_softmax(self.model(x), dim=-1) for _ in range(self.draws)])
        return torch.logsumexp(logp, dim=0) - torch.log(torch.tensor(float(self.draws), device=x.device))


def attack_view(model: nn.Module, view: View | None) -> nn.Module:
    """What an adaptive attack on ``model`` differentiates: with ``view.bpda`` its non-differentiable stages
    pass gradients through BPDA; with ``view.eot`` > 1 the expectation over that many draws of its randomized
    stages. None: ``model`` itself."""
    if view is None:
        return model
    if view.bpda:
        use_bpda(model)
    draws = view.eot
    return ExpectationOverTransformation(model, draws) if draws > 1 else model
