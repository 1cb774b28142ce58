"""The plugin output contract: what the engine accepts from a plugin before anything is stored.

An attack's or transform's inputs are float32, finite, of the inputs' shape, inside [0, 1], within the budget the
plugin declares (with one tolerance, :data:`BUDGET_RTOL` / :data:`BUDGET_ATOL`, that the validity gates in
:mod:`rbench.gates` apply to stored sets too), and an attack's success flags agree with a re-prediction; a
trainer leaves finite weights and a model that maps images to finite logits; a probe returns finite numbers.
A violation raises :class:`rbench.errors.PluginContractError` naming the plugin and the worst sample.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from rbench.attack import AttackOutput, Budget
from rbench.defense import DefendedModel, defense_modules
from rbench.estimate import interval_holds
from rbench.inputs import PluginContractError, finite_logits, memory_format, model_name, predicted_success
from rbench.probe import MEASURED_KEYS
from rbench.results import BOUNDS

#: Float tolerance on a declared budget (the ball's radius may be hit exactly, up to float32 rounding).
BUDGET_RTOL, BUDGET_ATOL = 1e-5, 1e-5


def over_budget(size: np.ndarray | torch.Tensor, budget: Budget) -> int | None:
    """The index of the sample furthest over ``budget`` (with the engine's tolerance), or None."""
    limit = budget.eps * (1 + BUDGET_RTOL) + BUDGET_ATOL
    if len(size) == 0 or float(size.max()) <= limit:
        return None
    return int(size.argmax())


def targets_problem(targets: np.ndarray | torch.Tensor | None, labels: np.ndarray | torch.Tensor,
                    targeted: bool) -> str | None:
    """What is wrong with the targets of a set crafted on labelled inputs, or None: an untargeted attack's are
    absent or all -1; a targeted attack's are one class per input, never the input's label (a "target" equal to
    the label would count a correctly classified input as a success). Checked on an attack's output and again on
    the stored set (:func:`rbench.gates.gate_advset`), where editing the targets would otherwise pass: the success
    flags are re-predicted against them."""
    if targets is None:
        return "returned no extras['targets'] though it declares itself targeted" if targeted else None
    t, y = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in (targets, labels))
    if t.dtype.kind not in "iu":
        return f"has targets of dtype {t.dtype}, not integer classes"
    if t.shape != y.shape:
        return f"has targets of shape {t.shape}, not one per input {y.shape}"
    if not targeted:
        return "has targets other than -1, though the attack is untargeted (Attack.targeted)" if (t != -1).any() \
            else None
    if len(missing := np.flatnonzero(t < 0)):
        return f"has no target for sample {int(missing[0])}, though the attack is targeted"
    if len(same := np.flatnonzero(t == y)):
        return f"targets sample {int(same[0])}'s own label"
    return None


def perturbation_sizes(x_adv: torch.Tensor, x: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of ``x_adv - x`` in ``norm`` (``linf`` or ``l2``)."""
    d = (x_adv - x).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


def check_attack_output(name: str, out: AttackOutput, x: torch.Tensor, budget: Budget | None,
                        model: torch.nn.Module, y: torch.Tensor, offset: int, check_success: bool = True,
                        targeted: bool | None = None, seen_by: torch.nn.Module | None = None) -> torch.Tensor:
    """Raise :class:`PluginContractError` naming ``name`` and the worst sample if ``out`` breaks the contract;
    return the batch's success flags: the attack's own, checked, or where it returned None, the prediction of
    ``seen_by`` (the model as the attack saw it, ``model`` by default) in one pass of the whole batch, as the
    attack would have made it (a randomized model draws the same way). ``check_success=False``: the flags are not
    compared with a re-prediction (the engine decides them itself, for a randomized model). ``targeted``: what
    the attack declares (:meth:`rbench.attack.Attack.targeted`), checked against its ``targets`` extra
    (:func:`targets_problem`); None where the engine gave the targets (a generator's)."""
    xa = out.x_adv
    if not isinstance(xa, torch.Tensor) or xa.dtype != torch.float32 or xa.shape != x.shape:
        got = f"{getattr(xa, 'dtype', type(xa).__name__)} {tuple(getattr(xa, 'shape', ()))}"
        raise PluginContractError(f"attack {name!r} returned x_adv {got}; expected float32 {tuple(x.shape)}")
    lo, hi = torch.aminmax(xa) if xa.numel() else (torch.zeros(()), torch.zeros(()))
    if not (bool(lo >= 0) and bool(hi <= 1)):  # one pass (a NaN makes both NaN): 25 us, isfinite 290 us (250 images)
        if not torch.isfinite(xa).all():
            worst = int((~torch.isfinite(xa)).flatten(1).any(1).nonzero()[0])
            raise PluginContractError(f"attack {name!r} returned non-finite x_adv (first: sample {offset + worst})")
        worst = int((xa - xa.clamp(0, 1)).abs().flatten(1).amax(1).argmax())
        raise PluginContractError(f"attack {name!r}: x_adv leaves the [0, 1] box (worst sample {offset + worst})")
    if budget is not None:
        size = perturbation_sizes(xa, x, budget.norm)
        over = over_budget(size, budget)
        if over is not None:
            raise PluginContractError(
                f"attack {name!r} exceeds its declared {budget.norm} budget {budget.eps}: sample "
                f"{offset + over} has {budget.norm} distortion {float(size[over]):.6g}")
    if out.success is not None and (not isinstance(out.success, torch.Tensor) or out.success.shape != (len(x),)):
        raise PluginContractError(f"attack {name!r} returned success {_described(out.success)}; expected None or "
                                  f"a tensor of shape ({len(x)},)")
    for key, value in out.extras.items():
        if not isinstance(value, torch.Tensor) or value.ndim == 0 or len(value) != len(x):
            raise PluginContractError(f"attack {name!r} returned extras[{key!r}] {_described(value)}; expected a "
                                      f"tensor with one row per sample ({len(x)})")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise PluginContractError(f"attack {name!r} returned non-finite extras[{key!r}]")
    if targeted is not None and (problem := targets_problem(out.extras.get("targets"), y, targeted)):
        raise PluginContractError(f"attack {name!r} {problem} (batch at sample {offset})")
    targets = out.extras.get("targets", torch.full_like(y, -1))
    seen_by = model if seen_by is None else seen_by
    if out.success is None:
        success = predicted_success(seen_by, xa, y, targets, batch_size=max(1, len(xa)))
        if seen_by is model or not check_success:  # the engine's own prediction: nothing to compare
            return success
    else:
        success = out.success.to(torch.bool)
    if not check_success:
        return success
    fooled = predicted_success(model, xa, y, targets)
    mismatch = (success.cpu() != fooled).nonzero().flatten()
    if len(mismatch):
        # a defended model re-predicts through its defenses: one drawing randomness it does not declare (outside
        # DefenseModule.normal/uniform) changes its answer between two passes, whatever the attack did
        hint = "; or a defense of the model is randomized without declaring it (rbench.testing.check_defense " \
               "finds that)" if getattr(model, "stages", None) else ""
        flags = "success flags" if out.success is not None else "predictions of the model as it saw it"
        raise PluginContractError(
            f"attack {name!r}: {len(mismatch)} {flags} disagree with the model's prediction "
            f"(first: sample {offset + int(mismatch[0])}){hint}")
    return success


def _described(value: Any) -> str:
    """``"Tensor (3, 2)"``, ``"list"``: what a plugin returned, for a message."""
    shape = getattr(value, "shape", None)
    return type(value).__name__ + ("" if shape is None else f" of shape {tuple(shape)}")


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` hold the same bits (so a NaN buffer left as it was is unchanged, which ``torch.equal`` would
    deny)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.is_quantized != b.is_quantized:
        return False
    if a.is_quantized:  # its integers and how they map to values (a byte view of one crashes torch)
        return a.qscheme() == b.qscheme() and _same_bits(a.int_repr(), b.int_repr()) and (
            (a.q_scale(), a.q_zero_point()) == (b.q_scale(), b.q_zero_point())
            if a.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric) else
            a.q_per_channel_axis() == b.q_per_channel_axis()
            and _same_bits(a.q_per_channel_scales(), b.q_per_channel_scales())
            and _same_bits(a.q_per_channel_zero_points(), b.q_per_channel_zero_points()))
    a, b = a.resolve_conj().resolve_neg(), b.resolve_conj().resolve_neg()  # lazy views cannot be viewed as bits
    if a.numel() == 0 or a.dtype == torch.bool:
        return torch.equal(a, b)
    bits = _SAME_SIZE_INT.get(a.element_size(), torch.uint8)  # compared as one word per element: 4x a byte view
    flat_a, flat_b = a.reshape(-1).contiguous(), b.reshape(-1).contiguous()
    if bits == torch.uint8 or a.is_complex():
        return torch.equal(flat_a.view(torch.uint8), flat_b.view(torch.uint8))
    return torch.equal(flat_a.view(bits), flat_b.view(bits))


_SAME_SIZE_INT = {2: torch.int16, 4: torch.int32, 8: torch.int64}


class ModelGuard:
    """A copy of a model's weights, buffers and train/eval modes, taken before a plugin gets the model, so that a
    plugin changing the model in place is caught: the engine re-predicts an attack's success flags with the same
    model object, so a changed model would vouch for whatever the plugin claims (and every later batch would be
    attacked on another model)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.modes = [m.training for m in model.modules()]

    def changed(self) -> str | None:
        """What changed since the copy was taken (``"'1.weight' and 2 more tensors"``, ``"train/eval mode"``), or
        None."""
        now = self.model.state_dict()
        changed = [k for k, v in self.state.items() if k not in now or not _same_bits(now[k].detach(), v)]
        if changed or now.keys() != self.state.keys():
            first = changed[0] if changed else sorted(now.keys() ^ self.state.keys())[0]
            return f"{first!r} and {max(len(changed), 1) - 1} more tensors"
        if [m.training for m in self.model.modules()] != self.modes:
            return MODES_CHANGED
        return None

    def check(self, plugin: str) -> None:
        """Raise :class:`PluginContractError` naming ``plugin`` (``"attack 'x'"``) if the model changed."""
        what = self.changed()
        if what == MODES_CHANGED:
            raise PluginContractError(f"{plugin} left the model it attacks in another train/eval mode: a plugin "
                                      "must leave the model as it got it")
        if what is not None:
            raise PluginContractError(f"{plugin} changed the model it attacks ({what}): a plugin must leave the "
                                      f"model as it got it (or, where the plugin writes nothing to it, "
                                      f"{model_name(self.model)} changes itself when run: {SELF_CHANGING})")

    def check_unchanged_by_itself(self) -> None:
        """After the model's own passes (an evaluation): raise :class:`PluginContractError` naming the model if it
        changed itself."""
        what = self.changed()
        if what is not None:
            name = model_name(self.model)
            raise PluginContractError(f"{name} changed itself while it was evaluated ({what}): {SELF_CHANGING}",
                                      plugin=name)


#: what :meth:`ModelGuard.changed` says where only the modules' train/eval modes changed
MODES_CHANGED = "train/eval mode"
#: why a model that changes itself cannot be evaluated, and what does it
SELF_CHANGING = ("rbench evaluates a model that stays as it is, and a BatchNorm in training mode or a buffer "
                 "updated in forward changes it with every batch")


@contextlib.contextmanager
def no_gradients_declared(model: torch.nn.Module, plugin: str) -> Iterator[None]:
    """While an attack that declares it takes no gradients (``uses_gradients`` False) runs: a pass of ``model`` on
    inputs that require gradients raises :class:`PluginContractError` naming ``plugin``. The declaration exempts
    the attack from BPDA through a non-differentiable defense, so a gradient attack making it would be shown the
    defense's zero gradients and report false robustness."""

    def refuse(_: torch.nn.Module, inputs: tuple[Any, ...]) -> None:
        if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs):
            raise PluginContractError(f"{plugin} declares it takes no gradients (uses_gradients() is False) but "
                                      "passed inputs that require gradients to the model: through a "
                                      "non-differentiable defense it would see masked gradients, so declare it "
                                      "True", plugin=plugin)

    handle = model.register_forward_pre_hook(refuse)
    try:
        yield
    finally:
        handle.remove()


def check_transform_output(name: str, x_adv: Any, x: torch.Tensor, budget: Budget | None) -> None:
    """A transform returns finite float32 inputs in [0, 1] of the inputs' shape, within the budget it declares."""
    if (not isinstance(x_adv, torch.Tensor) or x_adv.dtype != torch.float32 or x_adv.shape != x.shape
            or not torch.isfinite(x_adv).all() or x_adv.min() < 0 or x_adv.max() > 1):
        got = f"{getattr(x_adv, 'dtype', type(x_adv).__name__)} {tuple(getattr(x_adv, 'shape', ()))}"
        raise PluginContractError(f"transform {name!r} returned {got}, not finite float32 in [0, 1] of "
                                  "the input's shape")
    if budget is not None:
        worst = over_budget(perturbation_sizes(x_adv, x, budget.norm), budget)
        if worst is not None:
            raise PluginContractError(f"transform {name!r} exceeds its declared {budget.norm} budget "
                                      f"{budget.eps} (sample {worst})")


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and bool(np.isfinite(v))


def _measurement_ok(v: Any) -> bool:
    """A finite number, None, or a measurement with its interval (:func:`rbench.probe.measured`): a finite value,
    a count n >= 1, and either no interval (both ends None, no method) or finite ends holding the value, named by
    its method and within the range a quantity of that method lies in (:data:`rbench.results.BOUNDS`, which
    results.json's reader holds it to as well)."""
    if v is None or _finite(v):
        return True
    if not isinstance(v, dict) or set(v) != MEASURED_KEYS:
        return False
    value, n, low, high, method = v["value"], v["n"], v["low"], v["high"], v["interval"]
    if not (_finite(value) and isinstance(n, int) and not isinstance(n, bool) and n >= 1 and isinstance(method, str)):
        return False
    if (low, high) == (None, None):
        return not method
    if not (method and _finite(low) and _finite(high) and interval_holds(low, value, high)):
        return False
    least, most = BOUNDS.get(method, (-np.inf, np.inf))
    return bool(least <= low and high <= most)


def check_measurements(probe: str, label: str, values: Any) -> None:
    """A probe returns a dict of measurements -- finite numbers, measurements with their interval
    (``rbench.probe.measured``), None marking an undefined one -- or lists of them (else
    :class:`PluginContractError` naming the probe)."""
    if not isinstance(values, dict):
        raise PluginContractError(f"probe {probe!r} ({label}) returned {type(values).__name__}, not a dict")
    for key, value in values.items():
        items = value if isinstance(value, list) else [value]
        if not isinstance(key, str) or not all(_measurement_ok(v) for v in items):
            raise PluginContractError(f"probe {probe!r} ({label}) returned {key!r} = {value!r}: measurements "
                                      "must be finite numbers (or None), measurements with an interval "
                                      "(rbench.probe.measured), or lists of them")


def logits_problem(out: Any, n: int, num_classes: int, finite: bool = True) -> str | None:
    """Why a network's output ``out`` on a batch of ``n`` inputs is not the logits rbench works with (a phrase to
    follow "the network's"), or None: not a tensor of shape (n, num_classes), not floating-point, not finite, or
    probabilities (non-negative rows summing to 1: the attacks' cross-entropy would take a softmax of them, whose
    gradients nearly vanish, and report the masking as robustness). ``finite`` False: finiteness is the caller's
    to check."""
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n, num_classes):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        return f"output on {n} inputs is {got}, not logits of shape (N, {num_classes}) = ({n}, {num_classes})"
    if not out.is_floating_point():
        return f"output is {str(out.dtype).removeprefix('torch.')}, not floating-point logits (attacks " \
               "differentiate them)"
    if finite and not bool(torch.isfinite(out).all()):
        return "output on valid inputs is not finite"
    if n and bool((out >= 0).all()) and bool(torch.allclose(out.double().sum(1), torch.ones(n, dtype=torch.float64),
                                                             atol=1e-4)):
        return "outputs look like probabilities (non-negative, each row summing to 1): rbench expects " \
               "logits; return the scores before the softmax (or log-probabilities)"
    return None


#: how far an image's logits may move between two passes over the same inputs, or alone against in a batch,
#: relative to the logits' scale: float rounding of batched kernels (1e-6 or so), not randomness at inference or a
#: network that normalizes over its batch
CONSISTENCY_TOLERANCE = 1e-3
#: the inputs of a job's data :func:`check_consistent` runs the model on
CONSISTENCY_PROBE = 4


def repeat_problem(net: torch.nn.Module, batch: torch.Tensor, out: torch.Tensor) -> str | None:
    """Why ``net`` (in eval mode), whose output on ``batch`` was ``out``, cannot be evaluated image by image in
    batches (a phrase to follow "the network's"), or None: a second pass over ``batch`` gives other outputs (it
    draws randomness at inference: an attack's success would be one unchecked draw), or its last image alone
    fails, gives no logits, or other logits than in the batch (it normalizes over its batch: each image's result
    would depend on its neighbours). Up to :data:`CONSISTENCY_TOLERANCE`; the caller's random streams are left
    as they were."""
    devices = _forked(batch.device)
    scale = CONSISTENCY_TOLERANCE * (1 + float(out.detach().abs().max())) if out.numel() else 0.0
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        again = net(batch)
        if not isinstance(again, torch.Tensor) or again.shape != out.shape or \
                not float((again - out).abs().max()) <= scale:
            return ("outputs differ between two passes on the same inputs (in eval mode): rbench evaluates "
                    "deterministic networks (an attack's success would be one random draw, unchecked); put the "
                    "randomness in a suite defense that declares it (noise_injection) and attack it with eot")
        try:  # a batch of one: a slice's last batch may be one image
            with warnings.catch_warnings():  # a statistic over a batch of one warns as it fails
                warnings.simplefilter("ignore")
                alone = net(batch[-1:])
        except (Exception, SystemExit) as exc:
            return f"forward pass fails on a batch of one image: {type(exc).__name__}: {' '.join(str(exc).split())}"
    problem = logits_problem(alone, 1, int(out.shape[-1]))
    if problem is not None:
        return f"{problem} (it gives logits for a batch of {len(batch)})"
    gap = float((alone - out[-1:]).abs().max())
    if not gap <= scale:
        return (f"output for an image depends on the other images in its batch (its logits alone and in a batch of "
                f"{len(batch)} differ by up to {gap:.3g}): rbench's attacks and evaluations batch images as they "
                "go, so each image's result would depend on its neighbours; evaluate a network that classifies "
                "each image on its own")
    return None


def _twice(stage: Any, h: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two passes of the defense ``stage`` (a :class:`rbench.defense.Stage`) over ``h``, each from a different seed
    of torch's own generator and, where it declares randomness, from the same state of every generator its modules
    hold (:class:`rbench.defense.DefenseModule`'s; a composite holds several): the outputs differ only where it
    draws from anything else, or draws undeclared (the caller forks torch's generators; the stage's own are left
    as they were)."""
    own = [m.generator for m in defense_modules(stage)] if stage.randomized else []
    states = [g.get_state() for g in own]
    outputs = []
    for seed in (1, 2):
        for generator, state in zip(own, states, strict=True):
            generator.set_state(state)
        torch.random.default_generator.manual_seed(seed)
        for index in _forked(device):  # the device's own generator, which the caller forked
            torch.cuda.default_generators[index].manual_seed(seed)
        outputs.append(stage(h))
    for generator, state in zip(own, states, strict=True):
        generator.set_state(state)
    return outputs[0], outputs[1]


def _forked(device: torch.device) -> list[int]:
    """The CUDA devices whose generators :func:`check_consistent` forks: ``device``'s (the current one for a bare
    ``cuda``)."""
    return [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []


def check_consistent(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> None:
    """Before an attack or evaluation job uses ``model`` on its inputs ``x``: each defense of a defended model gives
    the same images on two passes whatever torch's own generator holds (one that declares randomness from the same
    states of its own generators, :func:`_twice`), and the network behind them gives logits and passes
    :func:`repeat_problem` on the first :data:`CONSISTENCY_PROBE` inputs (a model plugin with dropout left on, or
    batch statistics at inference, and a defense drawing from torch's global generator undeclared, ran silently:
    FGSM through such a defense read 37% against the undefended model's 62%, and the stored set vouched for itself);
    else :class:`PluginContractError` naming the defense or the model. Torch's generators are left as they were."""
    if not len(x):
        return
    h = x[:CONSISTENCY_PROBE].to(device).contiguous(memory_format=memory_format(model))
    with torch.no_grad(), torch.random.fork_rng(devices=_forked(device)):
        for stage in model.stages if isinstance(model, DefendedModel) else ():
            out, again = _twice(stage, h, device)
            if not float((again - out).abs().max()) <= CONSISTENCY_TOLERANCE:
                raise PluginContractError(f"defense {stage.name!r} " + (
                    "declares its randomness but draws outside its own generators (DefenseModule.normal / "
                    "uniform): the job's seed does not fix its draws, so a rerun, or the engine's re-prediction of "
                    "an attack's success, draws others" if stage.randomized else
                    "gives other images on a second pass over the same inputs: a defense that draws randomness "
                    "declares it (is_randomized), so that attacks average over its draws (eot) and the engine "
                    "decides their success"), plugin=f"defense {stage.name!r}")
            h = out
        head = model.head if isinstance(model, DefendedModel) else model
        out = head(h)
        name = model_name(head)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(h):
            got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
            raise PluginContractError(f"{name} is no classifier: its output on {len(h)} inputs is {got}, not logits "
                                      f"of shape ({len(h)}, classes)", plugin=name)
        finite_logits(head, out, "inputs")  # NaN logits read as "outputs differ between two passes"
        problem = repeat_problem(head, h, out)  # inside the fork: its pass draws on from where this one ended
    if problem is not None:
        raise PluginContractError(f"{name} cannot be evaluated image by image: its {problem}", plugin=name)


def check_eval_logits(model: torch.nn.Module, out: torch.Tensor, n: int, classes: int) -> None:
    """An eval job's batch of logits: shape (n, ``classes``), the width the model gives two inputs (what the
    checks before any work saw), and not probabilities (:func:`logits_problem`); else
    :class:`PluginContractError` naming the model. Those checks ran on two inputs: a network whose output differs
    for larger batches was tabulated ("5.0 ±18.6" from 5 of 10 classes)."""
    problem = logits_problem(out, n, classes, finite=False)
    if problem is not None:
        raise PluginContractError(f"{model_name(model)} is no classifier of this dataset: its {problem}",
                                  plugin=model_name(model))


def check_untrained(model: torch.nn.Module, x: torch.Tensor, num_classes: int, device: torch.device,
                    probe: int = 8) -> None:
    """Before a model is trained: its outputs on the first ``probe`` training images ``x`` are logits over the
    dataset's ``num_classes`` classes (:func:`logits_problem`), else :class:`PluginContractError` naming the model
    plugin (a model with 7 outputs failed in the trainer's loss, blamed on the trainer; one returning
    probabilities was trained and tabulated)."""
    batch = x[:probe].to(device)
    modes = [(m, m.training) for m in model.modules()]
    devices = [device.index or 0] if device.type == "cuda" else []
    try:  # in eval mode (no batch statistics updated), leaving the random streams training draws from untouched
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            out = model.eval()(batch)
    finally:
        for m, training in modes:
            m.training = training
    problem = logits_problem(out, len(batch), num_classes, finite=False)
    if problem is not None:
        raise PluginContractError(f"{model_name(model)} is no classifier of this dataset: its {problem}",
                                  plugin=model_name(model))
    finite_logits(model, out, "training images")  # the message every other pass gives


def check_trained(model: torch.nn.Module, trainer: str, x: torch.Tensor | None, device: torch.device,
                  probe: int = 256, component: bool = False) -> None:
    """Nothing non-finite is stored: the trained weights, and the outputs on the first ``probe`` training images
    ``x`` (a model's logits; a defense component's images, which must also stay in [0, 1]), must be finite (else
    :class:`PluginContractError` naming the trainer and the plugin). ``x`` None (a trainer that reads no data):
    the weights only."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise PluginContractError(f"trainer {trainer!r} left non-finite weights in {model_name(model)} "
                                  f"({len(bad)} tensors, first {bad[0]!r})")
    if x is None:
        return
    with torch.no_grad():
        out = model(x[:probe].to(device))
    if not component:
        finite_logits(model, out, "training images")
    elif not torch.isfinite(out).all() or out.min() < 0 or out.max() > 1 or out.shape != x[:probe].shape:
        raise PluginContractError(f"defense {model_name(model)} trained by {trainer!r} maps images to "
                                  "non-finite values or outside [0, 1] or another shape")


def check_reloadable(trained: torch.nn.Module, fresh: tuple[torch.nn.Module, ...], trainer: str,
                     x: torch.Tensor | None, device: torch.device, probe: int = 256, component: bool = False) -> None:
    """What a train job stores is ``trained``'s state_dict, which every later job loads into a network its plugin builds
    afresh: ``fresh`` (two such networks, built from the same spec; one where ``x`` is None) must take it (the same
    keys and shapes) and then compute what ``trained`` computes on the first ``probe`` training images ``x`` (a
    model's logits, up to :data:`CONSISTENCY_TOLERANCE` of their scale; a defense component, whose draws may differ,
    is only loaded); else :class:`PluginContractError` naming the trainer, or the model where its two fresh networks
    already differ (a random projection drawn at build and not saved: the state_dict does not determine the network).
    A trainer that widened a layer or added a buffer had its checkpoint stored, then called corrupt by every job
    reading it, on every run; one that swapped an activation or left a hook had the original network evaluated under
    its weights, silently."""
    try:
        for network in fresh:
            network.load_state_dict(trained.state_dict())
    except RuntimeError as exc:
        first = " ".join(str(exc).split("\n\t", 2)[1:2]) or " ".join(str(exc).split())[:200]
        raise PluginContractError(
            f"trainer {trainer!r} changed the parameters or buffers of {model_name(trained)} ({first}): what is "
            "stored is its state_dict, loaded into the network its plugin builds; a trainer changes the weights "
            "only", plugin=f"trainer {trainer!r}") from None
    if x is None or component or not len(x) or len(fresh) < 2:
        return
    with torch.no_grad(), torch.random.fork_rng(devices=_forked(device)):
        batch = x[:probe].to(device)
        want, again = trained(batch), trained(batch)
        got, other = (network.to(device).eval()(batch) for network in fresh)
    scale = CONSISTENCY_TOLERANCE * (1 + float(want.abs().max()))
    if float((want - again).abs().max()) > scale:
        return  # the model's own randomness (dropout left on): every attack and eval job's check names the model
    if got.shape != other.shape or float((got - other).abs().max()) > scale:
        raise PluginContractError(
            f"{model_name(trained)}'s network is not determined by its weights: two networks its plugin builds, the "
            "same weights loaded into both, compute different outputs (something drawn when it is built and not "
            "in its state_dict, such as a buffer registered with persistent=False)", plugin=model_name(trained))
    if want.shape != got.shape or float((want - got).abs().max()) > scale:
        raise PluginContractError(
            f"trainer {trainer!r} changed {model_name(trained)} beyond its weights (its layers, hooks or other "
            "state): the network its plugin builds, with the trained weights loaded, computes other outputs, and "
            "that is what every later job would use", plugin=f"trainer {trainer!r}")


def _torch_settings() -> dict[str, Any]:
    return {"default dtype": torch.get_default_dtype(), "grad mode": torch.is_grad_enabled(),
            "threads": torch.get_num_threads(),
            "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic warn-only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "anomaly detection": torch.is_anomaly_enabled()}


@contextlib.contextmanager
def torch_settings_kept() -> Iterator[list[str]]:
    """Within the block, torch's process-wide settings a plugin may change (the default dtype, grad mode, thread
    count, deterministic algorithms, anomaly detection) are put back as they were when it ends; the list it yields
    then names each one the block changed (``"default dtype torch.float32 -> torch.float64"``). A trainer calling
    ``torch.set_default_dtype(torch.float64)`` or ``set_grad_enabled(False)`` made every later job of its worker
    fail, blamed on their plugins; ``set_num_threads(1)`` changed their last bits silently."""
    before = _torch_settings()
    changed: list[str] = []
    try:
        yield changed
    finally:
        after = _torch_settings()
        changed += [f"{name} {before[name]} -> {after[name]}" for name in before if after[name] != before[name]]
        if changed:
            torch.set_default_dtype(before["default dtype"])
            torch.set_grad_enabled(before["grad mode"])
            torch.set_num_threads(before["threads"])
            torch.use_deterministic_algorithms(before["deterministic algorithms"],
                                               warn_only=before["deterministic warn-only"])
            torch.autograd.set_detect_anomaly(before["anomaly detection"])


#: how many of an attack's inputs the defense gradient check differentiates through
GRADIENT_PROBE = 16


@contextlib.contextmanager
def defense_streams_kept(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, the randomized defenses of ``model`` may draw: their random streams are put back as they
    were afterwards, so a check's forward passes leave the job's draws as they would be without it."""
    from rbench.defense import DefenseModule

    streams = [(m, m.generator.get_state()) for m in model.modules() if isinstance(m, DefenseModule)]
    try:
        yield
    finally:
        for module, state in streams:
            module.generator.set_state(state)


def check_defense_gradients(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Every defense of ``model`` that declares itself differentiable (and is not attacked through BPDA) passes
    gradients to its input: on the first :data:`GRADIENT_PROBE` of ``x`` (as each stage receives them), a random
    projection of the stage's output back-propagates finite gradients, not all zero. Else
    :class:`PluginContractError` naming the defense: a stage whose backward pass is cut (``detach``, rounding)
    shows a gradient attack nothing, and the defended model's robustness would be gradient masking presented as a
    result. Called by the attack job before a gradient attack; the defenses' random streams are left as they were
    (the check draws nothing the attack would otherwise draw)."""
    from rbench.defense import Stage

    stages = [m for m in model.modules() if isinstance(m, Stage) and m.differentiable and not m.bpda]
    if not stages:
        return
    seen: dict[torch.nn.Module, torch.Tensor] = {}
    hooks = [s.register_forward_pre_hook(lambda stage, args: seen.setdefault(stage, args[0].detach()))
             for s in stages]
    with defense_streams_kept(model):
        try:
            with torch.no_grad():
                model(x[:GRADIENT_PROBE])
            for stage in (s for s in stages if s in seen):  # a stage the probe pass did not run is not judged
                inputs = seen[stage].clone().requires_grad_(True)
                with torch.enable_grad():
                    out = stage.module(inputs)
                    grad = None
                    if isinstance(out, torch.Tensor) and out.requires_grad:
                        projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
                        (grad,) = torch.autograd.grad((out * projection).sum(), inputs, allow_unused=True)
                if grad is None or not bool(torch.isfinite(grad).all()) or not bool(grad.abs().sum() > 0):
                    why = "no gradient reaches its input" if grad is None else (
                        "its input gradients are not finite" if not bool(torch.isfinite(grad).all()) else
                        "its input gradients are all zero")
                    raise PluginContractError(
                        f"defense {stage.name!r} declares itself differentiable, but {why} (on {len(inputs)} "
                        "inputs): a gradient attack through it would see nothing and report gradient masking as "
                        "robustness; "
                        "declare differentiable = False (attacks then need bpda = true) or fix its backward pass "
                        "(rbench.testing.check_defense checks it)", plugin=f"defense {stage.name!r}")
        finally:
            for h in hooks:
                h.remove()


#: how many of an attack's inputs the gradient-masking probe differentiates (:func:`check_input_gradients`)
MASKING_PROBE = 64


def _dead_rows(grad: torch.Tensor | None, n: int) -> torch.Tensor:
    """Per sample: its input gradient is missing, exactly zero or not finite."""
    if grad is None:
        return torch.ones(n, dtype=torch.bool)
    # one pass: a row's largest |g| is NaN (amax propagates it), inf or 0 exactly when the row is dead
    largest = grad.detach().flatten(1).abs().amax(1).cpu()
    return ~((largest > 0) & (largest < float("inf")))


def check_input_gradients(target: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, what: str,
                          loss: str | None, precision: str = "fp32") -> None:
    """A gradient attack on ``target`` (the model as the attack differentiates it: BPDA, EOT) would see something:
    on the first :data:`MASKING_PROBE` inputs ``x`` (labels ``y``), in the attack's ``precision``, a random
    projection of the logits must pass a finite, non-zero gradient to more than half of the inputs, and where the
    attack follows the cross-entropy (``loss == "ce"``, :meth:`rbench.attack.Attack.gradient_loss`) so must the
    cross-entropy. Else :class:`PluginContractError` naming ``what`` (the model): a network that rounds or
    thresholds its input, or whose logits are so large that the softmax saturates to exactly 0 and 1, gives gradient
    attacks nothing, and the robustness the table would show is gradient masking (Athalye et al. 2018). Half, not
    all: a sample or two with a saturated softmax is a confident model, not masking. The randomized stages' streams
    are left as they were (:func:`defense_streams_kept`)."""
    from rbench.precision import autocast

    inputs = x[:MASKING_PROBE].detach().clone().requires_grad_(True)
    labels = y[:MASKING_PROBE].to(inputs.device)
    n = len(inputs)
    ce_grad = logits_grad = None
    with defense_streams_kept(target), autocast(precision, inputs.device):  # what the attack differentiates
        with torch.enable_grad():
            out = target(inputs).float()
            if loss == "ce" and out.requires_grad:
                # A row's cross-entropy gradient is J^T (softmax - onehot): finite and non-zero, J is too, and so
                # (almost surely) is the random projection's J^T r; non-finite Jacobian entries reach it as NaN
                # (times 0 included). So where it is alive on more than half the inputs the logits check would
                # pass, and its backward pass (a third of the probe's time) is skipped.
                ce = torch.nn.functional.cross_entropy(out, labels, reduction="sum")
                ce_grad = torch.autograd.grad(ce, inputs, retain_graph=True, allow_unused=True)[0]
                if not _masked(_dead_rows(ce_grad, n), n):
                    return
            if out.requires_grad:
                projection = torch.randn(out.shape, generator=torch.Generator().manual_seed(0)).to(out)
                logits_grad = torch.autograd.grad((out * projection).sum(), inputs, allow_unused=True)[0]
    checked = [("logits", logits_grad)] + ([("cross-entropy", ce_grad)] if loss == "ce" else [])
    for of, grad in checked:
        dead_rows = _dead_rows(grad, n)
        if _masked(dead_rows, n):
            why = ("its logits do not depend differentiably on the input (rounding, thresholds, detach): put that "
                   "part in a suite defense with differentiable = false and attack with bpda = true, or use "
                   "gradient-free attacks") if of == "logits" else (
                   "its softmax saturates (logits too large: the cross-entropy's gradient underflows to 0); attack "
                   "a margin loss (pgd with loss = \"margin\") or scale the logits down")
            raise PluginContractError(
                f"gradient masking in {what}: the input gradient of its {of} is zero, missing or not finite on "
                f"{int(dead_rows.sum())} of {n} inputs, so a gradient attack would see nothing there and report it "
                f"as robustness; {why}", plugin=what)


def _masked(dead_rows: torch.Tensor, n: int) -> bool:
    """Half the probe's inputs or more have a dead gradient (:func:`check_input_gradients`: why half)."""
    return bool(n) and 2 * int(dead_rows.sum()) >= n
