"""Validity gates: is a stored entry the output that the job asking for it should have produced?

The store already checked that the entry is bound to the job's key (its recorded key and spec), that its bytes
match their checksum, and that it is well formed and finite. The gates check its content against the job
itself, never against what the file says about itself:

- a checkpoint must load into the network its spec builds (:func:`rbench.inputs.load_model`);
- an adversarial set must be float32, inside [0, 1], within the budget the job's attack (or transform) declares
  for the job's params (with the output contract's tolerance, :func:`rbench.contract.over_budget`), hold the
  job's number of samples, and -- memoized, see below -- hold exactly the job's data slice (indices, labels,
  and the distortions recomputed from the clean images), the targets its attack declares (-1 untargeted) or its
  input set holds (a transform's), and success flags equal to a re-prediction by the job's source model; a
  generated set (a generator attack's job, see :mod:`rbench.generate`) instead holds exactly the job's targets,
  labels and indices -1 and no distortions;
- predictions must hold one row per input, float32 logits and -- memoized -- the indices and labels of the job's
  input (the adversarial set or the clean slice it names), and 64 rows drawn at random must be what the job's
  model predicts for them again (a randomized model's excepted: its draws follow the job's batches).

Before any of these, every entry (a checkpoint too) must have been made from the entries the store holds now
under its job's ``deps``: its metadata records their checksums as the job read them (``inputs``,
:func:`rbench.provenance.job_meta`), and one recomputed since (other bytes) makes it stale -- an adversarial set
crafted on an earlier model, predictions of an earlier set, a defended model assembled from earlier parts -- so
it is not trusted (:func:`check_inputs`). While an input is not stored (it is recomputed in this run) the entry
is not judged yet (:class:`InputPending`). An entry stored before rbench recorded its inputs is compared with
what its gate memo recorded at its last pass; with no memo, it passes and its inputs are taken as its own.

The memoized checks read the data and models, so they are recorded in ``gates/<key>.json`` together with the
checksums they depended on (the entry's, and the source checkpoint's or input set's); they are redone whenever
any of those bytes change. A failure raises :class:`rbench.errors.PluginContractError`.

The memo also records the SHA-256 of the entry's file bytes (``file``, with the ``key`` they were checked for)
as they were when every check passed: the store's checks, the gates and the memoized ones, all functions of those
bytes and of the job (which the key names). An HDF5 entry whose file is byte for byte that file
(:func:`verified_copy`) has therefore passed every check of its job without being parsed again, as long as what
the memo depended on (``on``) is unchanged. Hashing a small file takes microseconds; opening it with HDF5 and
checking it a millisecond or more, which made a warm check of 10^4 stored jobs take 31 s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rbench.artifacts import AdvSet, distortions
from rbench.attack import Budget
from rbench.contract import over_budget, targets_problem
from rbench.defense import randomized, seed_randomness
from rbench.inputs import (
    PluginContractError,
    load_model,
    load_slice,
    model_of_checkpoint,
    plugin_params,
    predicted_success,
)
from rbench.keys import canonical
from rbench.plan import NO_CLASS, Job, generated_targets
from rbench.precision import autocast, precision_of
from rbench.specs import ATTACK_BATCH, AttackSpec, EvalSpec, TransformSpec
from rbench.store import EntryMissing, Store

#: Bump when the gates check more: every memo is redone.
GATE_VERSION = 3


class InputPending(EntryMissing):
    """A stored entry whose job's input is not in the store: it cannot be judged before that input is recomputed."""

    def __init__(self, key: str, dep: str):
        Exception.__init__(self, f"stored entry {key} waits for its input {dep}, which is not in the store")
        self.key, self.dep = key, dep

    def __reduce__(self) -> tuple[type[InputPending], tuple[str, str]]:
        return InputPending, (self.key, self.dep)


class Unverifiable(EntryMissing):
    """A stored entry from before rbench recorded inputs whose inputs nothing recorded either: recomputed, not
    quarantined (it is not known to be wrong)."""

    def __init__(self, key: str):
        Exception.__init__(self, f"stored entry {key} records none of its inputs: recomputed")
        self.key = key

    def __reduce__(self) -> tuple[type[Unverifiable], tuple[str]]:
        return Unverifiable, (self.key,)


def inputs_now(store: Store, job: Job) -> dict[str, str | None]:
    """The checksums of ``job``'s inputs (its ``deps``) as the store holds them now (None: not stored)."""
    return {dep: store.checksum(dep) for dep in job.deps}


Inputs = dict[str, str | None]


def check_inputs(store: Store, job: Job, meta: dict[str, Any]) -> Inputs:
    """``job``'s stored output, of metadata ``meta``, was made from the entries the store holds now under its deps'
    keys (see the module): else :class:`InputPending` when one is not stored, :class:`PluginContractError` when
    one has other bytes than the output recorded. Returns the checksums it compared (what a memo of the pass
    records: those, not the inputs as read again later, which another process may have replaced meanwhile).

    An entry stored before rbench recorded its inputs is compared with what its gate memo recorded at its last pass
    (this key's memo, of any gate version: the checksums of all its inputs, or of the one input the memoized checks
    read, ``on``). A clean evaluation's memo without ``inputs`` says nothing of its model (its ``on`` is its data
    slice): such an entry is recomputed (:class:`Unverifiable`; one forward pass). With no memo at all there is
    nothing to compare, and the inputs it passes with are taken as its own."""
    for dep in job.deps:
        if not store.has(dep):
            raise InputPending(job.key, dep)
    now = inputs_now(store, job)
    recorded = meta.get("inputs")
    if recorded is None:
        memo = store.gate_stamp(job.key)
        if memo is not None and memo.get("key") in (None, job.key):
            recorded = memo.get("inputs")
            clean = isinstance(job.spec, EvalSpec) and job.spec.clean is not None
            if recorded is None and clean:
                raise Unverifiable(job.key)
            if recorded is None and job.kind != "train" and memo.get("on") != _depends_on(store, job):
                raise PluginContractError(f"stored entry {job.key} (from before rbench recorded inputs) last passed "
                                          "its checks against other contents of its input than the store holds now")
    if recorded is None:
        return now
    changed = [dep for dep in job.deps if not isinstance(recorded, dict) or recorded.get(dep) != now[dep]]
    if changed:
        raise PluginContractError(f"stored entry {job.key} was made from other contents of its input {changed[0]} "
                                  "than the store holds now (that input was recomputed since)")
    return {dep: now[dep] for dep in job.deps}


def declared_budget(job: Job) -> Budget | None:
    """The budget the job's own attack or transform declares for the job's params (None: no budget)."""
    spec = job.spec
    if isinstance(spec, AttackSpec):
        plugin, params = plugin_params("attack", spec.attack)
    else:
        assert isinstance(spec, TransformSpec)
        plugin, params = plugin_params("transform", spec.transform)
    budget = getattr(plugin, "budget", None)
    return budget(params) if callable(budget) else None


def verified_copy(store: Store, job: Job) -> bool:
    """True when ``job``'s stored HDF5 entry is byte for byte the file that last passed every check of this job
    (store and gates) and what those checks depended on is unchanged: it needs no other check. False says
    nothing: :func:`check_stored` decides."""
    if job.kind == "train":
        return False
    memo = store.gate_stamp(job.key)
    if memo is None or memo.get("gate") != GATE_VERSION or memo.get("key") != job.key \
            or not isinstance(memo.get("file"), str):
        return False
    if not store.vouch(job.key, memo["file"], str(memo.get("entry"))):
        return False
    return _depends_on(store, job) == memo.get("on") and memo.get("inputs") == inputs_now(store, job)


def check_stored(store: Store, job: Job) -> None:
    """Run the gate of ``job``'s stored output (raises CorruptEntry, EntryMissing or PluginContractError)."""
    if verified_copy(store, job):
        return
    if job.kind == "train":
        state, meta = store.load_checkpoint(job.key)
        model_of_checkpoint(store, job.key, state, meta, "cpu")
        check_inputs(store, job, meta)  # a checkpoint has no memo: nothing to record
    elif job.kind in ("attack", "transform"):
        gate_advset(store, job)
    else:
        gate_predictions(store, job)


def _expected_rows(job: Job) -> int | None:
    spec = job.spec
    if isinstance(spec, AttackSpec) and spec.generate is not None:
        return len(generated_targets(spec.generate))
    slices = spec.slices()
    return slices[0].n if slices else None


def check_generated(job: Job, adv: AdvSet) -> None:
    """A generator job's set holds exactly the job's targets, labels and indices -1 and inputs of the job's shape,
    and no distortions; a set made from a data slice has its distortions (else :class:`PluginContractError`)."""
    generate = job.spec.generate if isinstance(job.spec, AttackSpec) else None
    if generate is None:
        if adv.generated:
            raise PluginContractError(f"stored set {job.key} has no distortions; its job attacks a data slice")
        return
    if not adv.generated:
        raise PluginContractError(f"stored set {job.key} holds distortions; its job generates inputs from nothing")
    shape = generate.shape
    if tuple(adv.x_adv.shape[1:]) != shape:
        raise PluginContractError(f"stored set {job.key} holds inputs of shape {tuple(adv.x_adv.shape[1:])}; its "
                                  f"job generates {shape}")
    if not np.array_equal(adv.targets, generated_targets(generate)):
        raise PluginContractError(f"stored set {job.key} holds other targets than its job generates")
    if (adv.labels != NO_CLASS).any() or (adv.indices != NO_CLASS).any():
        raise PluginContractError(f"stored set {job.key}: a generated set's labels and indices must be {NO_CLASS}")


def gate_advset(store: Store, job: Job) -> None:
    adv = store.load_advset(job.key)
    inputs = check_inputs(store, job, adv.meta)
    x = adv.x_adv
    if x.dtype != np.float32:
        raise PluginContractError(f"stored set {job.key} is {x.dtype}, not float32")
    if x.size and (x.min() < 0 or x.max() > 1):
        raise PluginContractError(f"stored set {job.key} leaves the [0, 1] box")
    n = _expected_rows(job)
    if n is not None and len(x) != n:
        raise PluginContractError(f"stored set {job.key} holds {len(x)} samples; its job asks for {n}")
    check_generated(job, adv)
    budget = declared_budget(job)
    if budget is not None:
        worst = over_budget(adv.distortion[budget.norm], budget)
        if worst is not None:
            raise PluginContractError(f"stored set {job.key} exceeds the {budget.norm} budget {budget.eps} of its "
                                      f"job (sample {worst}: {float(adv.distortion[budget.norm][worst]):.6g})")
    stamp = _stamp(store, job)
    if _memo_holds(store, job, stamp, inputs):
        return
    spec = job.spec
    assert isinstance(spec, AttackSpec | TransformSpec)
    if spec.data is None:  # generated: the layout was checked above; the flags are re-predicted below
        _repredict(store, job, adv, stamp, inputs)
        return
    x_clean, y, idx = load_slice(spec.data)
    if not np.array_equal(adv.indices, idx) or not np.array_equal(adv.labels, y.numpy()):
        raise PluginContractError(f"stored set {job.key} holds other samples than its job's data slice")
    check_targets(store, job, adv)
    recomputed = distortions(x_clean.numpy(), x)
    for norm, values in recomputed.items():
        # the stored sizes against the same sizes computed again (float32 sums in another order), not a budget
        if not np.allclose(adv.distortion[norm], values, rtol=1e-5, atol=1e-6):
            raise PluginContractError(f"stored set {job.key}: its {norm} distortions are not those of its inputs")
    if budget is not None and (worst := over_budget(recomputed[budget.norm], budget)) is not None:
        raise PluginContractError(f"stored set {job.key} exceeds the {budget.norm} budget {budget.eps} of its job "
                                  f"(sample {worst})")
    _repredict(store, job, adv, stamp, inputs)


def check_targets(store: Store, job: Job, adv: AdvSet) -> None:
    """A stored set's targets are what its job makes: an attack's as its plugin declares
    (:func:`rbench.contract.targets_problem`: -1 untargeted, a class other than the label targeted); a
    transform's those of the set it transforms (it keeps them). Else :class:`PluginContractError`."""
    spec = job.spec
    if isinstance(spec, TransformSpec):
        if not np.array_equal(adv.targets, store.load_advset(spec.input).targets):
            raise PluginContractError(f"stored set {job.key} holds other targets than the set it transforms")
        return
    assert isinstance(spec, AttackSpec)
    attack, params = plugin_params("attack", spec.attack)
    if problem := targets_problem(adv.targets, adv.labels, bool(attack.targeted(params))):
        raise PluginContractError(f"stored set {job.key} {problem}")


def _repredict(store: Store, job: Job, adv: AdvSet, stamp: dict[str, Any], inputs: Inputs) -> None:
    """The set's success flags against a re-prediction by the job's source model; the memo is written on a pass."""
    x = adv.x_adv
    assert isinstance(job.spec, AttackSpec | TransformSpec)
    model = load_model(store, job.spec.source, "cpu")
    seed_randomness(model, job.seed)  # a randomized model's flags are one draw seeded from the job's key
    precision = precision_of(job.spec)
    with autocast(precision, "cpu"):  # in the precision the job predicted them in
        fooled = predicted_success(model, torch.tensor(x), torch.tensor(adv.labels), torch.tensor(adv.targets),
                                   _flag_batch(job, model, precision)).numpy()
    mismatch = np.flatnonzero(fooled != adv.success)
    if len(mismatch):
        raise PluginContractError(f"stored set {job.key}: {len(mismatch)} success flags disagree with a "
                                  f"re-prediction by the source model (first: sample {int(mismatch[0])})")
    _record(store, job, stamp, inputs)


def _flag_batch(job: Job, model: torch.nn.Module, precision: str) -> int:
    """The batch size to re-predict a set's flags in: in fp32, :func:`predicted_success`'s; in a reduced
    precision, the batches the job predicted them in (an attack's batches, a generator's whole rounds of classes;
    a transform and a randomized source's draw: :func:`predicted_success`'s), lest a kernel's rounding follow the
    batch size. (Measured on a 2-core AVX2 CPU, torch 2.13: the bf16 and fp16 logits of the MLP and the LeNet are
    the same per row for batches of 7, 250 and 1000 and either memory format of the inputs; a GPU's or another
    CPU's kernels need not be.) A set made on a GPU is still re-predicted on the CPU, as in fp32."""
    default = 1000
    spec = job.spec
    if precision == "fp32" or not isinstance(spec, AttackSpec) or randomized(model):
        return default
    batch = int(job.options.get("batch_size", ATTACK_BATCH))
    if spec.generate is not None:
        from rbench.generate import batch_rounds

        return batch_rounds(batch, spec.generate.classes)
    return batch


def gate_predictions(store: Store, job: Job) -> None:
    pred = store.load_predictions(job.key)
    inputs = check_inputs(store, job, pred.meta)
    n = _expected_rows(job)
    if n is not None and len(pred.logits) != n:
        raise PluginContractError(f"stored predictions {job.key} hold {len(pred.logits)} rows; the job asks for {n}")
    stamp = _stamp(store, job)
    if _memo_holds(store, job, stamp, inputs):
        return
    spec = job.spec
    assert isinstance(spec, EvalSpec)
    if spec.advset is not None:
        adv = store.load_advset(spec.advset)
        x, indices, labels = adv.x_adv, adv.indices, adv.labels
    else:
        assert spec.clean is not None
        x_clean, y, indices = load_slice(spec.clean)
        x, labels = x_clean.numpy(), y.numpy()
    if not np.array_equal(pred.indices, indices) or not np.array_equal(pred.labels, labels):
        raise PluginContractError(f"stored predictions {job.key} are not of the samples of their job's input")
    _spot_check_logits(store, job, pred.logits, x)
    _record(store, job, stamp, inputs)


#: rows of stored predictions the gate predicts again, drawn at random each time it runs (its memo spares the
#: same bytes a second check), so that logits edited with a checksum recomputed around them are not served
SPOT_ROWS = 64
#: how far a re-predicted logit may lie from the stored one, relative to 1 + the row's largest logit (a GPU's
#: TF32 convolutions, other batch sizes and kernels move logits by a fraction of the row's scale; an edited
#: prediction moves one by about that scale). Not yet measured on a GPU: no session had one.
SPOT_RTOL = {"fp32": 2e-2}
SPOT_RTOL_REDUCED = 1e-1


def _spot_check_logits(store: Store, job: Job, logits: np.ndarray, x: np.ndarray) -> None:
    """Some rows of a predictions entry against the job's model predicting them again (else
    PluginContractError); a randomized model's draws follow the job's batches, so its rows are not re-predicted."""
    assert isinstance(job.spec, EvalSpec)
    if logits.dtype != np.float32:
        raise PluginContractError(f"stored predictions {job.key} are {logits.dtype}, not float32")
    model = load_model(store, job.spec.model, "cpu")
    if randomized(model) or not len(x):
        return
    rows = np.sort(np.random.default_rng().choice(len(x), size=min(SPOT_ROWS, len(x)), replace=False))
    precision = precision_of(job.spec)
    with torch.no_grad(), autocast(precision, "cpu"):
        again = model(torch.as_tensor(np.ascontiguousarray(x[rows]))).float().numpy()
    tolerance = SPOT_RTOL.get(precision, SPOT_RTOL_REDUCED)
    scale = 1 + np.abs(again).max(axis=1, keepdims=True)
    off = np.flatnonzero((np.abs(again - logits[rows]) > tolerance * scale).any(axis=1))
    if len(off):
        raise PluginContractError(f"stored predictions {job.key}: the logits of {len(off)} of {len(rows)} rows "
                                  f"checked disagree with the job's model predicting them again (first: row "
                                  f"{int(rows[off[0]])})")


def _depends_on(store: Store, job: Job) -> Any:
    """The checksum of what ``job``'s memoized checks read besides the entry: its source model or input set (a
    clean slice's spec for a clean evaluation)."""
    spec = job.spec
    if isinstance(spec, EvalSpec):
        return canonical(spec.clean.to_dict()) if spec.clean is not None else store.checksum(str(spec.advset))
    assert isinstance(spec, AttackSpec | TransformSpec)
    return store.checksum(spec.source)


def _stamp(store: Store, job: Job) -> dict[str, Any]:
    """What a memoized gate pass depended on: the entry's checksum and its source model's or input's."""
    return {"entry": store.checksum(job.key), "on": _depends_on(store, job), "gate": GATE_VERSION}


def _memo_holds(store: Store, job: Job, stamp: dict[str, Any], inputs: Inputs) -> bool:
    """The memoized checks passed on these checksums before; the memo gains the file's digest if it lacks it."""
    memo = store.gate_stamp(job.key)
    if memo is None or {k: v for k, v in memo.items() if k not in ("file", "key", "inputs")} != stamp:
        return False
    _record(store, job, stamp, inputs, memo)
    return True


def _record(store: Store, job: Job, stamp: dict[str, Any], inputs: Inputs, memo: dict[str, Any] | None = None
            ) -> None:
    """Write the memo of a pass: ``stamp``, the checksums of the inputs the entry was checked against (``inputs``),
    and, when the entry's file is the one this process checked (or wrote), its bytes' digest and the key they were
    checked for (:func:`verified_copy`; a memo copied to another key's name does not vouch for anything there; one
    whose inputs were recomputed since vouches for nothing either). Nothing is written when ``memo``, the one
    stored, already says it."""
    stamp = dict(stamp, inputs=inputs)
    digest = store.file_digest(job.key)
    if digest is not None:
        stamp = dict(stamp, key=job.key, file=digest)
    if memo != stamp:
        store.write_gate_stamp(job.key, stamp)


def record_pass(store: Store, job: Job) -> None:
    """Record that ``job``'s output, just made and checked by its runner, passed the memoized checks; its inputs
    are the ones this process read for it (what :func:`rbench.provenance.job_meta` recorded in the entry)."""
    _record(store, job, _stamp(store, job), {dep: store.read_checksum(dep) for dep in job.deps})
