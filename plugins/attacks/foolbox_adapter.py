"""Any foolbox 3 attack as an rbench attack plugin (``plugin = "foolbox"``).

In a suite::

    [attacks.deepfool]
    plugin = "foolbox"
    params = { attack = "L2DeepFoolAttack", epsilon = 1.5, kwargs = { steps = 50 } }

``attack`` names a class in ``foolbox.attacks`` (fixed-epsilon or minimization attacks), ``kwargs`` are its
constructor arguments (allow-listed, then validated by constructing it, so a bad one is a suite error), ``epsilon``
the budget.

- **Only allow-listed plain hyperparameters.** A suite is data, never code, and nothing outside the store and the
  run folder is ever written, so ``kwargs`` may only name keywords of :data:`ALLOWED_KWARGS` (an allow-list,
  decided name by name over the constructors of ``foolbox.attacks``: step sizes, step counts, restarts, option
  names...), each with a plain value of its kind (a boolean, an integer, a number, one of the option strings the
  constructor's annotation lists, a list of numbers; ``distance`` as the name of a foolbox distance). Everything
  else is refused at validation, notably ``tensorboard`` (writes TensorBoard logs) and ``init_attack`` (takes an
  attack object).

- **Budget.** The declared budget is ``Budget(norm, epsilon)`` where ``norm`` is the foolbox attack's own
  ``distance`` (``l2`` or ``linf``). Fixed-epsilon attacks stay within it; minimization attacks run with the same
  epsilon, and foolbox clips their results to it (foolbox's ``clipped`` output, which is what is returned), so
  they respect it too. Without ``epsilon`` (minimization attacks only) the unclipped minimal adversarials are
  returned, exactly as foolbox gives them (also where the attack failed, but for the zero-start attacks
  below), and no budget is declared. Attacks
  whose distance is L0 or L1 (``L1PGD``, ``EADAttack``, ``L0FMNAttack``, ...) declare no budget either: the
  engine only checks L2 and Linf balls; foolbox still clips their results to ``epsilon`` in their own norm.
  ``SaltAndPepperNoiseAttack`` is an L2 minimization attack in foolbox 3. ``PointwiseAttack`` is refused: in
  foolbox 3.3.4 it has no distance (its constructor never sets one) and asserts that its salt-and-pepper start
  succeeded on every sample of the batch.
- **Failures of the zero-start attacks come back as the input.** foolbox's ``L2CarliniWagnerAttack`` and
  ``EADAttack`` (:data:`ZERO_START`) keep their best adversarial from all-zero images, so a sample they found no
  adversarial for came back all black, which the model may well misclassify: counted as a success at distance
  ``||x||`` (half of 100 CW outputs at 100 steps were black, 41 of them "successes"). The adapter returns the
  input in place of such a raw output (all zeros for an input that is not), a failure, before foolbox's
  clipping. Their calls carry a ``key_revision`` (:meth:`FoolboxAttack.key_revision`), so their job keys differ
  from those of the sets stored before, and no other attack's key changed.
- **Seeding.** foolbox draws its randomness (random starts, noise) from torch's global RNG (and a few attacks
  from numpy's). ``run`` seeds both from one number drawn from the job's ``generator``, inside a block that
  restores the global states afterwards, so a job is reproducible from its seed and leaves no trace.
- **Success.** Recomputed as the engine does (``model(x_adv).argmax(1) != y`` on the returned tensor, after the
  final float32 cast and [0, 1] clamp); foolbox's own flags come from the same model but may differ where the
  clipping's float rounding moved a sample across the decision boundary.
- **Provenance.** :meth:`FoolboxAttack.provenance` gives the library, its version, the attack and its kwargs;
  ``version`` (part of the cache keys) includes the foolbox version, so a new foolbox recomputes the sets.

foolbox is an optional dependency (``pip install rbench[adapters]``): it is imported on first use, and without it
the plugin stays registered but every use fails validation with an install hint.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import Annotated, Any, Literal, get_args, get_origin

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from rbench.attack import AttackOutput, Budget, FixedBudgetAttack
from rbench.library_answers import Fleeting, library_digest, remembered

try:
    FOOLBOX_VERSION: str | None = importlib.metadata.version("foolbox")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - optional dependency
    FOOLBOX_VERSION = None

#: The foolbox attacks that never differentiate the model (noise, decision-based, search attacks); every other one
#: is taken to use gradients (the safe side: a gradient attack through a non-differentiable defense needs BPDA).
GRADIENT_FREE = frozenset((
    "BinarizationRefinementAttack", "BinarySearchContrastReductionAttack", "BoundaryAttack", "DatasetAttack",
    "GaussianBlurAttack", "GenAttack", "HopSkipJumpAttack", "InversionAttack", "L2AdditiveGaussianNoiseAttack",
    "L2AdditiveUniformNoiseAttack", "L2ClippingAwareAdditiveGaussianNoiseAttack",
    "L2ClippingAwareAdditiveUniformNoiseAttack", "L2ClippingAwareRepeatedAdditiveGaussianNoiseAttack",
    "L2ClippingAwareRepeatedAdditiveUniformNoiseAttack", "L2ContrastReductionAttack",
    "L2RepeatedAdditiveGaussianNoiseAttack", "L2RepeatedAdditiveUniformNoiseAttack",
    "LinearSearchBlendedUniformNoiseAttack", "LinearSearchContrastReductionAttack", "LinfAdditiveUniformNoiseAttack",
    "LinfRepeatedAdditiveUniformNoiseAttack", "PointwiseAttack", "SaltAndPepperNoiseAttack", "SpatialAttack"))

#: The foolbox minimization attacks whose best adversarial starts as an all-zero image, returned as it is for a
#: sample they never found an adversarial for (``best_advs = ep.zeros_like(x)`` in foolbox 3.3.4).
ZERO_START = frozenset(("EADAttack", "L2CarliniWagnerAttack"))

#: Names of foolbox distances accepted as a string ``distance`` kwarg (for attacks that take one, e.g.
#: ``BinarizationRefinementAttack``, ``DatasetAttack``): TOML cannot hold the distance object itself.
DISTANCES = ("l0", "l1", "l2", "linf")

# The keywords a suite may pass to a foolbox attack's constructor, with the kind of plain value each takes. An
# allow-list, decided name by name over the constructors of ``foolbox.attacks`` (foolbox 3.3.4): a name not listed
# is refused, so a keyword a new foolbox adds stays refused until someone decides it is safe. Refused on purpose:
# init_attack (an attack object), tensorboard (a log directory TensorBoard files are written to); the call's own
# arguments (criterion, epsilons, starting_points...) are not constructor keywords at all.
_BOOL, _INT, _NUMBER, _OPTION, _DISTANCE, _NUMBERS = "bool", "int", "number", "option", "distance", "numbers"
ALLOWED_KWARGS: dict[str, str] = {
    **dict.fromkeys(("abort_early", "across_channels", "check_trivial", "l2_binary_search", "random_start"), _BOOL),
    **dict.fromkeys(("binary_search_steps", "candidates", "channel_axis", "directions", "initial_gradient_eval_steps",
                     "lr_num_decay", "max_gradient_eval_steps", "population", "repeats", "steps",
                     "update_stats_every_k"), _INT),
    **dict.fromkeys((
        "abs_stepsize", "adam_beta1", "adam_beta2", "adam_epsilon", "confidence", "gamma", "init_epsilon",
        "initial_const", "initial_stepsize", "lr", "lr_decay", "max_sigma", "max_stepsize", "min_stepsize",
        "momentum", "mutation_probability", "mutation_range", "overshoot", "quantile", "regularization",
        "rel_stepsize", "sampling_temperature", "source_step", "source_step_convergance", "spherical_step",
        "step_adaptation", "stepsize", "target", "threshold", "xi"), _NUMBER),
    # strings naming an option: one of the Literal values of the constructor's annotation
    **dict.fromkeys(("constraint", "decision_rule", "included_in", "loss", "stepsize_search"), _OPTION),
    "distance": _DISTANCE,  # a name of DISTANCES, mapped to the foolbox distance object
    "reduced_dims": _NUMBERS,
}
_KINDS = {_BOOL: "true or false", _INT: "an integer", _NUMBER: "a number", _OPTION: "one of",
          _DISTANCE: "one of " + ", ".join(DISTANCES), _NUMBERS: "a list of numbers"}


@cache
def _foolbox() -> Any:
    try:
        import foolbox
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ValueError("foolbox is not installed (pip install 'rbench[adapters]' or 'foolbox==3.3.4')") from exc
    return foolbox


def _library() -> str | None:
    """The key of what foolbox answers (:func:`rbench.library_answers.library_digest`): its installed files and
    this adapter's source. Its attacks, whether kwargs construct one and its distance are asked through
    :func:`rbench.library_answers.remembered`, so a warm run does not import foolbox (0.35-0.45 s)."""
    return library_digest("foolbox", "foolbox", __file__)


@cache
def attack_names() -> dict[str, str]:
    """The usable attack classes of ``foolbox.attacks``: name -> "fixed" or "minimization"."""

    def names() -> dict[str, str]:
        fb = _foolbox()
        from foolbox.attacks.base import FixedEpsilonAttack, MinimizationAttack

        out = {}
        for name in dir(fb.attacks):
            cls = getattr(fb.attacks, name)
            if inspect.isclass(cls) and not inspect.isabstract(cls):
                if issubclass(cls, FixedEpsilonAttack):
                    out[name] = "fixed"
                elif issubclass(cls, MinimizationAttack):
                    out[name] = "minimization"
        return out

    return dict(remembered(_library(), "attack_names", None, names))


def _built(attack: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What building ``attack`` with ``kwargs`` (allow-listed) gives: ``{"norm": "l2" | "linf" | None}`` (its
    distance's), ``{"unbuilt": why}`` where the constructor fails, ``{"no_distance": why}`` for a
    flexible-distance attack built without one; remembered (see :func:`_library`)."""

    def answer() -> dict[str, Any] | Fleeting:
        try:
            built = foolbox_attack(attack, kwargs)
        except Exception as exc:  # noqa: BLE001 - any constructor failure is a parameter problem
            why = {"unbuilt": f"foolbox.attacks.{attack}(**kwargs) failed: {type(exc).__name__}: {exc}"}
            if isinstance(exc, ImportError):  # a missing package: not kept, nor the refusals made of it
                return Fleeting({**why, "fleeting": True})
            return why
        try:
            _ = built.distance
        except ValueError as exc:  # a flexible-distance attack constructed without one
            return {"no_distance": f"{attack} needs kwargs.distance (one of {', '.join(DISTANCES)}): {exc}"}
        except AttributeError:  # PointwiseAttack: a flexible-distance attack whose constructor never sets one
            return {"no_distance": f"foolbox.attacks.{attack} is not supported: in foolbox {FOOLBOX_VERSION} it "
                    "has no distance (its constructor sets none, so no epsilon can clip it) and fails "
                    "(AssertionError) on any batch where its salt-and-pepper start missed a sample"}
        return {"norm": distance_norm(built)}

    return dict(remembered(_library(), "built", [attack, kwargs], answer))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _options(annotation: Any) -> tuple[str, ...]:
    """The string values of the ``Literal`` types in a constructor annotation (empty if it names none)."""
    if get_origin(annotation) is Literal:
        return tuple(a for a in get_args(annotation) if isinstance(a, str))
    return tuple(o for a in get_args(annotation) for o in _options(a))


@cache
def allowed_kwargs(attack: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The allow-listed keywords foolbox's ``attack`` takes: name -> (kind, option strings for an option kind)."""
    signature = inspect.signature(getattr(_foolbox().attacks, attack).__init__).parameters
    return {k: (ALLOWED_KWARGS[k], _options(p.annotation)) for k, p in signature.items() if k in ALLOWED_KWARGS}


def _plain(value: Any, kind: str, options: tuple[str, ...]) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if kind == _NUMBER:
        return _is_number(value)
    if kind == _OPTION:
        return isinstance(value, str) and value in options
    if kind == _DISTANCE:
        return isinstance(value, str) and value in DISTANCES
    return isinstance(value, (list, tuple)) and all(_is_number(v) for v in value)  # _NUMBERS


def check_kwargs(attack: str, kwargs: dict[str, Any]) -> None:
    """Refuse (ValueError) any keyword not allow-listed for ``attack``, or a value that is not plain of its kind."""
    allowed = allowed_kwargs(attack)
    for key, value in kwargs.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=2, cutoff=0.75)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise ValueError(
                f"{key!r} is not an allowed keyword: the foolbox adapter passes foolbox only plain hyperparameters "
                f"from its allow-list (a suite is data: it must never make an attack write files or run code); "
                f"{hint}allowed for foolbox.attacks.{attack}: {', '.join(allowed) or 'none'}")
        kind, options = allowed[key]
        if not _plain(value, kind, options):
            what = f"one of {', '.join(options)}" if kind == _OPTION else _KINDS[kind]
            raise ValueError(f"kwargs.{key} must be {what} for foolbox.attacks.{attack} (got {value!r})")


def _constructor_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` as the foolbox constructor takes them (a string ``distance`` becomes the distance object)."""
    out = dict(kwargs)
    if isinstance(out.get("distance"), str):
        if out["distance"] not in DISTANCES:
            raise ValueError(f"kwargs.distance must be one of {', '.join(DISTANCES)} (got {out['distance']!r})")
        out["distance"] = getattr(_foolbox().distances, out["distance"])
    return out


@lru_cache(maxsize=64)
def _instance(attack: str, kwargs_json: str) -> Any:
    """The foolbox attack object (cached on the name and the canonical JSON of the kwargs). The allow-list is
    checked here too, so params that skipped validation cannot pass foolbox anything else."""
    kwargs = json.loads(kwargs_json)
    check_kwargs(attack, kwargs)
    kwargs = _constructor_kwargs(kwargs)
    return getattr(_foolbox().attacks, attack)(**kwargs)


def foolbox_attack(attack: str, kwargs: dict[str, Any]) -> Any:
    return _instance(attack, json.dumps(kwargs, sort_keys=True))


def distance_norm(fb_attack: Any) -> str | None:
    """``"l2"`` or ``"linf"`` for the attack's foolbox distance, None for L0/L1 (or an unknown distance)."""
    try:
        p = fb_attack.distance.p
    except (AttributeError, ValueError):
        return None
    return {2: "l2", math.inf: "linf"}.get(p)


class FoolboxParams(BaseModel):
    """``attack``: a class name in ``foolbox.attacks``; ``epsilon``: the budget in the attack's own norm (may be
    left out for minimization attacks: minimal adversarials, no budget); ``kwargs``: constructor arguments
    (allow-listed plain hyperparameters, see :data:`ALLOWED_KWARGS`);
    ``criterion``: untargeted misclassification (the only one supported)."""

    model_config = ConfigDict(extra="forbid")
    attack: str
    epsilon: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    kwargs: dict[str, Any] = {}
    criterion: Literal["misclassification"] = "misclassification"

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, name: str) -> str:
        names = attack_names()
        if name in names:
            return name
        fb = _foolbox()
        if hasattr(fb.attacks, name):
            raise ValueError(f"foolbox.attacks.{name} is not a fixed-epsilon or minimization attack class")
        by_lower = {n.lower(): n for n in names}
        close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(by_lower[c]) for c in close)}?" if close else ""
        raise ValueError(f"no attack class {name!r} in foolbox.attacks (foolbox {fb.__version__}){hint}")

    @field_validator("kwargs")
    @classmethod
    def _constructible(cls, kwargs: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("attack")
        if name is None:  # the attack name failed validation already
            return kwargs

        def refusal() -> str | Fleeting | None:
            try:
                check_kwargs(name, kwargs)
            except ValueError as exc:
                return str(exc)
            try:
                json.dumps(kwargs)
            except (TypeError, ValueError) as exc:
                return f"kwargs must be plain values (numbers, strings, lists, tables): {exc}"
            built = _built(name, kwargs)
            return Fleeting(built["unbuilt"]) if built.get("fleeting") else built.get("unbuilt")

        refused = remembered(_library(), "kwargs", [name, kwargs], refusal)
        if refused:
            raise ValueError(refused)
        return kwargs

    @model_validator(mode="after")
    def _epsilon_for_fixed_attacks(self) -> FoolboxParams:
        if self.epsilon is None and attack_names()[self.attack] == "fixed":
            raise ValueError(f"epsilon is required: {self.attack} is a fixed-epsilon attack (only minimization "
                             "attacks run without one)")
        built = _built(self.attack, self.kwargs)
        if "no_distance" in built or "unbuilt" in built:
            raise ValueError(built.get("no_distance") or built["unbuilt"])
        return self


@contextmanager
def _seeded(x: torch.Tensor, generator: torch.Generator | None) -> Iterator[None]:
    """torch's (and numpy's) global RNG seeded from ``generator`` inside the block, restored after it."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
    devices = [x.device] if x.device.type == "cuda" else []
    state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """Parameters with ``requires_grad=False`` inside the block (the engine hands models so already)."""
    thawed = [p for p in model.parameters() if p.requires_grad]
    for p in thawed:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in thawed:
            p.requires_grad_(True)


class FoolboxAttack(FixedBudgetAttack):
    """A foolbox 3 attack (``params.attack``, constructed with ``params.kwargs``) run through
    ``foolbox.PyTorchModel(model, bounds=(0, 1))`` at one epsilon; returns foolbox's clipped adversarials.
    The budget is the attack's own L2/Linf ball of radius ``epsilon`` (none for L0/L1 or without epsilon)."""

    name = "foolbox"
    Params = FoolboxParams
    version = f"1+foolbox-{FOOLBOX_VERSION or 'missing'}"

    def budget(self, params: FoolboxParams) -> Budget | None:
        if params.epsilon is None:
            return None
        built = _built(params.attack, params.kwargs)
        if "unbuilt" in built:  # params that skipped validation
            raise ValueError(built["unbuilt"])
        norm = built.get("norm")
        return None if norm is None else Budget(norm, float(params.epsilon))

    def batch_invariant(self, params: FoolboxParams) -> bool:
        """False: the library's global RNG is seeded once per batch the engine hands over (:func:`_seeded`), so a
        random start or a noise draws other numbers at another batch size (the batch size is keyed)."""
        return False

    def uses_gradients(self, params: FoolboxParams) -> bool:
        return params.attack not in GRADIENT_FREE

    def key_revision(self, params: FoolboxParams) -> str | None:
        """Re-keys the zero-start attacks' sets stored while their failures came back black (:data:`ZERO_START`);
        every other attack's key, and stored set, is as it was."""
        return "failures-as-input.2" if params.attack in ZERO_START else None

    def provenance(self, params: FoolboxParams) -> dict[str, Any]:
        """The library behind an adversarial set (for its meta): name, version, attack class and kwargs."""
        return {"library": "foolbox", "version": _foolbox().__version__, "attack": params.attack,
                "kwargs": params.kwargs}

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: FoolboxParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        fb = _foolbox()
        attack = foolbox_attack(params.attack, params.kwargs)
        x, y = x.detach(), y.detach()
        with _frozen(model), _seeded(x, generator):
            fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=x.device)
            raw, clipped, _ = attack(fmodel, x, fb.criteria.Misclassification(y), epsilons=params.epsilon)
        if params.attack in ZERO_START:
            clipped = _failures_as_input(x, raw, clipped)
        x_adv = clipped.detach().to(torch.float32).clamp(0, 1)
        return AttackOutput(x_adv)


def _failures_as_input(x: torch.Tensor, raw: torch.Tensor, clipped: torch.Tensor) -> torch.Tensor:
    """``clipped`` with ``x`` in place of each sample whose ``raw`` output is all zeros while ``x`` is not: what a
    zero-start attack (:data:`ZERO_START`) returns where it found no adversarial, so a failure, not an adversarial
    at distance ``||x||`` (nor, clipped to an epsilon, a step towards black)."""
    failed = (raw.flatten(1) == 0).all(dim=1) & (x.flatten(1) != 0).any(dim=1)
    return torch.where(failed.view(-1, *([1] * (x.dim() - 1))), x.to(clipped.dtype), clipped)
