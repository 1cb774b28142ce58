"""Adapter for the Adversarial Robustness Toolbox (ART): any evasion attack of ``art.attacks.evasion``.

In a suite::

    [attacks.art_pgd]
    plugin = "art"
    params = { attack = "ProjectedGradientDescent", kwargs = { eps = 0.1, eps_step = 0.01, max_iter = 20 } }

``attack`` names a class of ``art.attacks.evasion`` (an ``EvasionAttack``); ``kwargs`` are its constructor
arguments, checked against the adapter's allow-list (below), the class's own ``attack_params`` and its own
``_check_params`` (the attack is built on a tiny dummy classifier during validation, so a bad value is a suite
error before any work starts).
``norm`` may be given as ``"inf"`` (TOML has no infinity), ``np.inf`` or ``2``. ``batch_size`` is ART's internal
batch size (pass it here, not in ``kwargs``). AutoAttack's ``attacks`` may be a list of ``{attack, kwargs}``
tables, built on the same classifier (its default list, with 5000-query Square restarts, is slow on a CPU).

Attacks with ``eps`` and ``norm`` (PGD, FGM, AutoAttack, Square...) declare that Linf or L2 budget; the others
(DeepFool, Carlini-Wagner...) are minimal-distortion attacks without one. ``Wasserstein`` declares the ball it
projects onto (``ball``, not its step's ``norm``), and only where its eps never grows (``eps_iter >= max_iter``:
ART multiplies eps by ``eps_factor`` > 1 every ``eps_iter`` iterations).

**Untargeted only.** The adapter hands ART the true labels as ``y``, which a targeted attack aims at: it would
return its inputs unchanged. ``targeted = true`` is refused (except for AutoAttack, whose targeted runs still
serve an untargeted goal); an attack whose constructor defaults to ``targeted=True`` (BoundaryAttack,
SignOPTAttack, the adversarial patches) is built with ``targeted = false``, written into its validated kwargs
(so into its job key: a set stored while it ran targeted is never served); an attack that cannot be made
untargeted (LowProFool, TargetedUniversalPerturbation, SaliencyMapMethod, which reads ``y`` as its targets) is
refused at validation.

The model is handed to ART behind a module that casts its input to the model's floating dtype: ART's
decision-based attacks (BoundaryAttack, HopSkipJump...) feed it float64 arrays, which a float32 network refuses.

**Only allow-listed plain hyperparameters.** A suite is data, never code, and nothing outside the store and the run
folder is ever written, so ``kwargs`` may only name keywords of :data:`ALLOWED_KWARGS` (an allow-list, decided
name by name over ART's evasion attacks: step sizes, budgets, iteration counts, option names...), each with a plain
value of its kind (a boolean, an integer, a number, a string, a list of numbers; AutoAttack's ``attacks`` as
``{attack, kwargs}`` tables, checked the same way). Everything else is refused at validation: keywords that write
files (``summary_writer``), print (``verbose``: the adapter sets it), take objects, callables, arrays or other
attacks' kwargs (``loss``, ``optimizer``, ``attacker_params``, ``estimator_orig``...), or tune the host rather
than the attack (``use_amp``, ``opt_level``).

ART is imported lazily: rbench works without it, and the plugin's params fail validation with a hint to install
``adversarial-robustness-toolbox``.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata
import inspect
import math
import os
import random
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypeGuard
from unittest import mock

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from rbench.attack import Attack, AttackOutput, Budget
from rbench.library_answers import CACHE_VARIABLE, Fleeting, library_digest, remembered

DIST = "adversarial-robustness-toolbox"


def _dist_version() -> str | None:
    try:
        return importlib.metadata.version(DIST)
    except importlib.metadata.PackageNotFoundError:
        return None


ART_VERSION = _dist_version()


def _evasion() -> Any:
    """The ``art.attacks.evasion`` module (a one-line ValueError if ART is missing: a validation error); every
    import of ART goes through here first. ART's first import writes ``~/.art/config.json`` and makes
    ``~/.art/data`` (its config module does, and reads no variable but HOME): where rbench named a library-cache
    folder in the store (``RBENCH_LIBRARY_CACHE``, set by the CLI), HOME points into it for that import, so ART's
    folder is made there, not in the user's home."""
    cache = os.environ.get(CACHE_VARIABLE)
    home = {}
    if cache is not None and "art" not in sys.modules:
        home = {"HOME": str(Path(cache) / "art")}
        Path(home["HOME"]).mkdir(parents=True, exist_ok=True)  # ART falls back to /tmp/.art for a home it cannot write
    try:
        with mock.patch.dict(os.environ, home):  # HOME as it was afterwards
            import art.attacks.evasion as evasion
    except ImportError as exc:
        raise ValueError(f"the 'art' attack plugin needs ART: pip install {DIST} ({exc})") from None
    return evasion


def _library() -> str | None:
    """The key of what ART answers (:func:`rbench.library_answers.library_digest`): its installed files and this
    adapter's source. Validation, budgets and gradient needs are asked through
    :func:`rbench.library_answers.remembered`, so a warm run does not import ART (1.5-3 s)."""
    return library_digest(DIST, "art", __file__)


@cache
def attack_names() -> tuple[str, ...]:
    """The names of the ``EvasionAttack`` classes in ``art.attacks.evasion``."""

    def names() -> list[str]:
        evasion = _evasion()
        from art.attacks.attack import EvasionAttack

        return sorted(n for n in dir(evasion) if inspect.isclass(cls := getattr(evasion, n))
                      and issubclass(cls, EvasionAttack))

    return tuple(remembered(_library(), "attack_names", None, names))


def _budget_norm(value: Any) -> str | None:
    """"linf" / "l2" for an ART norm value (ART takes "inf" or np.inf; Wasserstein "2"), None for others."""
    if isinstance(value, str):
        return {"inf": "linf", "2": "l2"}.get(value)
    if _is_number(value):
        return "linf" if value == np.inf else "l2" if value == 2 else None
    return None


def _is_number(value: Any) -> TypeGuard[float | np.integer | np.floating]:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


#: ART attacks that never differentiate the model (decision- and score-based, search and evolutionary attacks,
#: finite differences); every other attack is taken to use gradients (the safe side: a gradient attack through a
#: non-differentiable defense needs BPDA, and one declared gradient-free fails as soon as it takes gradients).
#: Each name is a class of ART 1.20.1's ``art.attacks.evasion`` (a test checks), decided from its source.
GRADIENT_FREE = frozenset((
    "BoundaryAttack", "DecisionTreeAttack", "GRAPHITEBlackbox", "GeoDA", "HopSkipJump", "LaserAttack",
    "PixelAttack", "SignOPTAttack", "SimBA", "SpatialTransformation", "SquareAttack", "ThresholdAttack",
    "VirtualAdversarialMethod", "ZooAttack"))

#: ART attacks that read ``y`` as the classes to aim at whatever their ``targeted`` says: given the true labels
#: they aim at them and leave the inputs as they are, so they are refused.
AIMS_AT_Y = frozenset(("SaliencyMapMethod",))


def _constraint(attack: str, instance: Any) -> Any:
    """The norm of the ball an attack with ``eps`` and ``norm`` keeps its result in: ``norm`` for all but
    Wasserstein, whose ``norm`` is its step's and ``ball`` its projection's."""
    return instance.ball if attack == "Wasserstein" else instance.norm


# The keywords a suite may pass to an ART attack, with the kind of plain value each takes. An allow-list, decided
# name by name over the ``attack_params`` and constructor signatures of ``art.attacks.evasion`` (ART 1.20.1): a
# name not listed is refused, so a keyword a new ART adds stays refused until someone decides it is safe. Refused
# on purpose: summary_writer (writes TensorBoard files), verbose / verbose_es (output; the adapter sets verbose),
# adv_criterion / loss / optimisation_algorithm (callables), estimator_orig / classifier / image_generator /
# laser_generator / masker / debug (objects), optimizer / optimizer_1 / optimizer_2 (an optimiser class in some
# attacks), attacker_params / optimizer_kwargs / param_dic (tables of further kwargs that would bypass this list),
# embedding_weights / mask (arrays), layer (a model internal, int or str or tuple), use_amp / opt_level (NVIDIA
# apex mixed precision: the host, not the attack), and K / curr_iter / parallel / schedule / xmin / ymin (in
# attack_params but not constructor arguments). batch_size is set next to ``attack``, not in ``kwargs``.
_BOOL, _INT, _NUMBER, _STR, _NORM, _NUMBERS, _ATTACKS = "bool", "int", "number", "str", "norm", "numbers", "attacks"
ALLOWED_KWARGS: dict[str, str] = {
    **dict.fromkeys(("abort_early", "early_stop", "minimal", "random_eps", "random_start", "targeted",
                     "use_importance", "use_resize", "use_sign", "warm_start"), _BOOL),
    **dict.fromkeys((
        "binary_search_steps", "conjugate_sinkhorn_max_iter", "eps_iter", "es", "first_steps", "frame_index",
        "freq_dim", "global_max_length", "hop_length", "init_eval", "init_size", "iterations", "kernel_size",
        "max_doubling", "max_eval", "max_halving", "max_inner_iter", "max_iter", "max_iter_1", "max_iter_2",
        "max_mask_size", "n_fft", "n_steps", "nb_grads", "nb_parallel", "nb_random_init", "nb_restarts", "nb_steps",
        "num_boost_queries", "num_frames", "num_grid", "num_iter_decrease_alpha", "num_iter_decrease_eps",
        "num_iter_increase_alpha", "num_of_iterations", "num_patches_to_remove", "num_random_init", "num_rotations",
        "num_translations", "num_trial", "num_xforms", "num_xforms_boost", "num_xforms_mask", "p", "patch_height",
        "patch_width", "projected_sinkhorn_max_iter", "query_limit", "random_initializations", "sample_size",
        "start_frame_index", "steps", "stride", "sub_dim", "th", "win_length"), _INT),
    **dict.fromkeys((
        "alpha", "beta", "beta_0", "beta_1", "beta_2", "bin_search_tol", "conf", "confidence", "const_factor",
        "decay", "decrease_factor", "decrease_factor_alpha", "decrease_factor_eps", "delta", "distortion_scale_max",
        "eps", "eps_factor", "eps_step", "epsilon", "eta", "eta_decay", "eta_min", "finite_diff", "gamma",
        "increase_factor_alpha", "initial_const", "initial_rescale", "l_0", "l_r", "lambd", "lambda_", "lambda_c",
        "lambda_param", "lambda_s", "lambda_tv", "largest_const", "learning_rate", "learning_rate_1",
        "learning_rate_2", "loss_margin", "loss_theta_min", "max_rotation", "max_translation", "max_val", "min_tr",
        "min_val", "offset", "p_init", "patch_removal_interval", "patch_removal_size", "regularization",
        "rotation_max", "round_samples", "scale_max", "scale_min", "sigma", "step_adapt", "step_size", "theta",
        "threshold", "tr_hi", "tr_lo", "unc_increase", "variable_h"), _NUMBER),
    # strings naming an option: ART maps them through its own fixed tables (attacker: UniversalPerturbation's
    # attack names; importance: LowProFool's "pearson"; a callable or an array is not a string, so refused)
    **dict.fromkeys(("attack", "attacker", "ball", "decision_rule", "heatmap_mode", "importance", "loss_type",
                     "method", "order"), _STR),
    "norm": _NORM,
    **dict.fromkeys((
        "blur_kernels", "bri_epsilon", "brightness_range", "con_epsilon", "crop_percent_range", "crop_range",
        "dist_range", "enabled_attack", "gamma_range", "heat_patch_size", "heat_patch_stride", "hue_epsilon",
        "net_size", "noise_size", "off_x_range", "off_y_range", "patch_location", "patch_shape", "pgd_epsilon",
        "rand_start_epsilon_range", "rot_epsilon", "rotation_range", "rotation_weights", "sat_epsilon"), _NUMBERS),
    "attacks": _ATTACKS,  # AutoAttack's sub-attacks, as {attack, kwargs} tables validated like any ART params
}
_KINDS = {_BOOL: "true or false", _INT: "an integer", _NUMBER: "a number", _STR: "a string",
          _NORM: 'a number or a string (e.g. "inf" or 2)', _NUMBERS: "a list of numbers",
          _ATTACKS: "a list of {attack, kwargs} tables"}


def allowed_kwargs(attack: str) -> dict[str, str]:
    """The allow-listed keywords ART's ``attack`` accepts (in its ``attack_params`` and constructor), with kinds."""
    cls = getattr(_evasion(), attack)
    signature = inspect.signature(cls.__init__).parameters
    return {k: ALLOWED_KWARGS[k] for k in cls.attack_params if k in ALLOWED_KWARGS and k in signature}


def _plain(value: Any, kind: str) -> bool:
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _INT:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if kind == _NUMBER:
        return _is_number(value)
    if kind == _STR:
        return isinstance(value, str)
    if kind == _NORM:
        return _is_number(value) or isinstance(value, str)
    if kind == _NUMBERS:
        return isinstance(value, (list, tuple)) and all(_is_number(v) for v in value)
    return isinstance(value, list) and all(isinstance(v, dict) for v in value)  # _ATTACKS


def check_kwargs(attack: str, kwargs: dict[str, Any]) -> None:
    """Refuse (ValueError) any keyword not allow-listed for ``attack``, or a value that is not plain of its kind."""
    allowed = allowed_kwargs(attack)
    for key, value in kwargs.items():
        if key == "batch_size":
            raise ValueError("set batch_size next to attack and kwargs, not in kwargs")
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=2, cutoff=0.75)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise ValueError(
                f"{key!r} is not an allowed keyword: the art adapter passes ART only plain hyperparameters from its "
                f"allow-list (a suite is data: it must never make an attack write files or run code); {hint}"
                f"allowed for ART's {attack}: {', '.join(allowed) or 'none'}")
        if not _plain(value, allowed[key]):
            raise ValueError(f"kwargs.{key} must be {_KINDS[allowed[key]]} for ART's {attack} (got {value!r})")


class ArtParams(BaseModel):
    """``attack``: a class of ``art.attacks.evasion``; ``kwargs``: its constructor arguments (allow-listed plain
    hyperparameters in its ``attack_params``, see :data:`ALLOWED_KWARGS`); ``batch_size``: ART's internal batch
    size."""

    model_config = ConfigDict(extra="forbid")
    attack: str
    batch_size: Annotated[int, Field(ge=1)] = 250
    kwargs: Annotated[dict[str, Any], Field(default_factory=dict, validate_default=True)]

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, value: str) -> str:
        names = attack_names()
        if value not in names:
            lower = {n.lower(): n for n in names}
            close = difflib.get_close_matches(value.lower(), list(lower), n=3, cutoff=0.6)
            hint = (f"; did you mean {' or '.join(repr(lower[c]) for c in close)}?" if close
                    else f"; known: {', '.join(names)}")
            raise ValueError(f"no evasion attack {value!r} in art.attacks.evasion (ART {ART_VERSION}){hint}")
        return value

    @field_validator("kwargs")
    @classmethod
    def _valid_kwargs(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        attack = info.data.get("attack")
        if attack is None:  # the attack name already failed
            return value
        batch_size = info.data.get("batch_size", 250)

        def answer() -> dict[str, Any] | Fleeting:
            try:
                return {"kwargs": normal_kwargs(attack, value, batch_size)}
            except MissingPackage as exc:  # installing the package changes the answer: not kept
                return Fleeting({"error": str(exc)})
            except ValueError as exc:
                return {"error": str(exc)}

        answered = remembered(_library(), "kwargs", [attack, batch_size, value], answer)
        if "error" in answered:
            raise ValueError(answered["error"])
        return dict(answered["kwargs"])


class MissingPackage(ValueError):
    """ART cannot build the attack because a package it imports for it is not installed (torchvision, kornia...)."""


def normal_kwargs(attack: str, value: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """``value``, the kwargs of ART's ``attack``, checked (allow-list, ART's own checks on a dummy classifier, a
    budget rbench can hold) and in their one normal form; a one-line ValueError otherwise."""
    check_kwargs(attack, value)
    kwargs = dict(value)
    norm = kwargs.get("norm")  # one JSON-safe spelling: "inf" (np.inf would serialise as null), 1, 2
    if _is_number(norm) and math.isinf(norm) and norm > 0:
        kwargs["norm"] = "inf"
    elif _is_number(norm) and float(norm).is_integer():
        kwargs["norm"] = int(norm)
    kwargs = _untargeted(attack, kwargs)
    if isinstance(kwargs.get("attacks"), list):  # AutoAttack's sub-attacks as {attack, kwargs} tables
        kwargs["attacks"] = [_sub_attack(a) for a in kwargs["attacks"]]
    try:
        instance = build(attack, kwargs, batch_size, _dummy_classifier())
    except Exception as exc:  # ART's own checks: ValueError, TypeError, EstimatorError...
        why = MissingPackage if isinstance(exc, ImportError) else ValueError
        raise why(f"ART's {attack} rejects these kwargs: {type(exc).__name__}: {exc}") from None
    if attack != "AutoAttack" and (getattr(instance, "targeted", False) or attack in AIMS_AT_Y):
        raise ValueError(f"ART's {attack} is a targeted attack that cannot be made untargeted (it aims at the "
                         "labels it is given, and the adapter gives the true ones); the art adapter runs "
                         "untargeted attacks only")
    if hasattr(instance, "eps") and hasattr(instance, "norm"):
        _check_budget(attack, instance)
    return kwargs


def _untargeted(attack: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``targeted = false`` added where ``attack``'s constructor defaults to ``targeted=True`` and
    the suite left it out (only there, so other attacks keep their job keys); ``targeted = true`` is refused (but
    for AutoAttack), and so is an attack defaulting to targeted that takes no ``targeted`` keyword from a suite."""
    if kwargs.get("targeted") is True and attack != "AutoAttack":
        raise ValueError("targeted ART attacks are not supported by the adapter (kwargs.targeted = true)")
    parameter = inspect.signature(getattr(_evasion(), attack).__init__).parameters.get("targeted")
    if "targeted" in kwargs or parameter is None or parameter.default is not True:
        return kwargs
    if "targeted" not in allowed_kwargs(attack):
        raise ValueError(f"ART's {attack} is targeted by default and takes no targeted keyword (not in its "
                         "attack_params); the art adapter runs untargeted attacks only")
    return {**kwargs, "targeted": False}


def _check_budget(attack: str, instance: Any) -> None:
    """Refuse (ValueError) an attack with ``eps`` and ``norm`` whose result is not held to one Linf or L2 ball of
    radius ``eps``."""
    if _budget_norm(_constraint(attack, instance)) is None:
        what = "ball" if attack == "Wasserstein" else "norm"
        raise ValueError(f"{attack} with {what} {_constraint(attack, instance)!r} bounds a norm rbench cannot "
                         f"budget; rbench budgets are Linf or L2 (use {what} \"inf\" or 2)")
    if not _is_number(instance.eps):
        raise ValueError(f"kwargs.eps must be one number for {attack} (got {instance.eps!r})")
    if attack == "Wasserstein" and instance.eps_iter < instance.max_iter:
        raise ValueError(f"ART's Wasserstein multiplies eps by eps_factor (which it requires > 1) every eps_iter "
                         f"iterations, so its budget would not be eps = {instance.eps}: set eps_iter >= max_iter "
                         f"(got eps_iter = {instance.eps_iter}, max_iter = {instance.max_iter})")


def _sub_attack(spec: Any) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError(f"kwargs.attacks items must be {{attack, kwargs}} tables (got {spec!r})")
    try:
        return ArtParams.model_validate(spec, strict=True).model_dump(exclude_unset=True)
    except ValueError as exc:
        raise ValueError(f"kwargs.attacks: {exc}".replace("\n", " ")) from None


@cache
def _dummy_classifier() -> Any:
    """A tiny PyTorchClassifier (1x4x4 inputs, 10 classes) to instantiate attacks on during validation."""
    _evasion()
    from art.estimators.classification import PyTorchClassifier

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10)).eval().requires_grad_(False)
    return PyTorchClassifier(model=net, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 4, 4), nb_classes=10,
                             clip_values=(0.0, 1.0), device_type="cpu")


def build(attack: str, kwargs: dict[str, Any], batch_size: int, classifier: Any) -> Any:
    """The ART attack ``attack`` on ``classifier``, with ``kwargs`` (as validated) in ART's own forms. The
    allow-list is checked again here, so params that skipped validation cannot pass ART anything else."""
    check_kwargs(attack, kwargs)
    cls = getattr(_evasion(), attack)
    signature = inspect.signature(cls.__init__).parameters
    args = dict(kwargs)  # ART takes norm "inf" as np.inf everywhere
    if isinstance(args.get("attacks"), list):  # AutoAttack: sub-attacks given as {attack, kwargs} tables
        args["attacks"] = [build(a["attack"], a.get("kwargs", {}), a.get("batch_size", batch_size), classifier)
                           if isinstance(a, dict) else a for a in args["attacks"]]
    if "batch_size" in signature:
        args["batch_size"] = batch_size
    if "verbose" in signature and "verbose" not in args:
        args["verbose"] = False  # no progress bars in job logs
    first = next(p for p in signature if p != "self")  # "estimator" or "classifier"
    attack = cls(**{first: classifier}, **args)
    if "attacks" not in kwargs:  # AutoAttack's default sub-attacks: no progress bars either
        for sub in getattr(attack, "attacks", None) or []:
            if hasattr(sub, "verbose"):
                sub.verbose = False
    return attack


class _SeededRandomState(np.random.RandomState):
    """numpy's ``RandomState`` whose instances made without a seed take one from numpy's global RNG (seeded by
    :func:`seeded`): BoundaryAttack, HopSkipJump and BrendelBethgeAttack draw their starting points from a
    ``np.random.RandomState()``, seeded by the OS, so their jobs were not reproducible from their seeds."""

    def __init__(self, seed: Any = None) -> None:
        super().__init__(np.random.randint(0, 2**31 - 1) if seed is None else seed)


@contextlib.contextmanager
def seeded(generator: torch.Generator | None) -> Iterator[None]:
    """Seed numpy's, Python's and torch's global RNGs (which ART draws from) from ``generator``, and the
    ``RandomState`` instances ART makes without a seed from numpy's (:class:`_SeededRandomState`), restoring
    their states afterwards. Without a generator, leave them alone."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))
    np_state, py_state = np.random.get_state(), random.getstate()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        unseeded = mock.patch.object(np.random, "RandomState", _SeededRandomState)
        with torch.random.fork_rng(devices=devices), unseeded:
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


class CastInput(torch.nn.Module):
    """``model`` behind a cast of its input to ``dtype`` (the engine's float32): ART's decision-based attacks
    (BoundaryAttack, HopSkipJump) pass float64 arrays, which a float32 network refuses ("mat1 and mat2 must have
    the same dtype"). A no-op for float32 input, so the attacks that ran before give what they gave."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype
        self.train(model.training)  # a new module is in training mode; ART sets the mode of both anyway

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.dtype))


class ArtAttack(Attack):
    """Any evasion attack of the Adversarial Robustness Toolbox, run through ART's ``PyTorchClassifier``
    (cross-entropy loss, clip values (0, 1)). See the module docstring for the params."""

    name = "art"
    Params = ArtParams
    version = f"1+art{ART_VERSION or '-missing'}"

    def budget(self, params: ArtParams) -> Budget | None:
        def answer() -> list[Any] | None:
            instance = build(params.attack, params.kwargs, params.batch_size, _dummy_classifier())
            if not (hasattr(instance, "eps") and hasattr(instance, "norm")):
                return None
            return [_budget_norm(_constraint(params.attack, instance)), float(instance.eps)]

        found = remembered(_library(), "budget", [params.attack, params.batch_size, params.kwargs], answer)
        return None if found is None else Budget(norm=found[0], eps=float(found[1]))

    def batch_invariant(self, params: ArtParams) -> bool:
        """False: the library's global RNG is seeded once per batch the engine hands over (:func:`seeded`), so a
        random start or a noise draws other numbers at another batch size (the batch size is keyed)."""
        return False

    def uses_gradients(self, params: ArtParams) -> bool:
        """False for the attacks of :data:`GRADIENT_FREE`, True for every other (ART's ``_estimator_requirements``
        do not say: UniversalPerturbation's name none, yet its sub-attack differentiates the model); AutoAttack
        runs APGD unless its ``attacks`` are given, then it uses gradients if any of them does."""
        if params.attack == "AutoAttack":
            subs = params.kwargs.get("attacks")
            return not isinstance(subs, list) or any(
                self.uses_gradients(ArtParams.model_validate(sub)) for sub in subs)
        return params.attack not in GRADIENT_FREE

    def key_revision(self, params: ArtParams) -> str | None:
        """Re-keys Wasserstein's sets stored while its budget was read from its step's ``norm`` rather than its
        ``ball`` (projected onto the wrong ball where the two differ); every other attack's key is as it was."""
        return "ball-budget.2" if params.attack == "Wasserstein" else None

    def provenance(self, params: ArtParams) -> dict[str, Any]:
        _evasion()
        import art

        return {"library": DIST, "version": art.__version__, "attack": params.attack,
                "kwargs": params.model_dump(mode="json")["kwargs"]}

    def run(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, params: ArtParams, *,
            generator: torch.Generator | None = None) -> AttackOutput:
        _evasion()
        from art.estimators.classification import PyTorchClassifier

        x = x.detach()
        with torch.no_grad():
            nb_classes = int(model(x[:1]).shape[-1])
        classifier = PyTorchClassifier(
            model=CastInput(model, x.dtype), loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
            nb_classes=nb_classes, clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu")
        if classifier._device != x.device:  # ART picks cuda:0; keep the model where the engine put it
            classifier._device = x.device
            model.to(x.device)
        attack = build(params.attack, params.kwargs, params.batch_size, classifier)
        with seeded(generator):
            x_adv = attack.generate(x=x.cpu().numpy(), y=y.cpu().numpy())
        x_adv = torch.from_numpy(np.asarray(x_adv, dtype=np.float32)).to(x.device).reshape(x.shape)
        x_adv = torch.where(torch.isfinite(x_adv), x_adv, x).clamp(0, 1)
        budget = self.budget(params)
        if budget is not None:  # ART's own checks allow a relative 1e-4 over eps (AutoAttack); project exactly
            d = x_adv - x
            if budget.norm == "linf":
                d = d.clamp(-budget.eps, budget.eps)
            else:
                norms = d.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
                d = d * torch.clamp(budget.eps / norms.clamp_min(1e-12), max=1.0)
            x_adv = (x + d).clamp(0, 1)
        return AttackOutput(x_adv.contiguous())
