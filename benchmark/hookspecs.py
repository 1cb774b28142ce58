"""The rbench hook specifications: the whole public plugin contract of the engine.

A plugin is any module or object with functions decorated by :data:`rbench.hookimpl` whose names are the
hooks below. Distributions expose plugins through the entry-point group ``rbench``; the built-in plugins are
registered through that same group (see ``pyproject.toml``), so they have no privileges a third party lacks.

Registration hooks return a list of plugin *objects*. Every plugin object has

- ``name``: unique within its kind (a clash is an error naming both distributions),
- ``Params``: a pydantic model; a suite's parameters for the plugin are validated against it before any work,
- optionally ``version``: a string that enters cache keys (defaults to the distribution's version).

The base classes that document what each kind implements are in :mod:`rbench.dataset`, :mod:`rbench.model`,
:mod:`rbench.attack`, :mod:`rbench.transform`, :mod:`rbench.defense`, :mod:`rbench.metric`, :mod:`rbench.probe`,
:mod:`rbench.report.reporters` and :mod:`rbench.executors` (trainers: :class:`rbench.model.Trainer`).
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("rbench")


@hookspec
def rbench_datasets() -> list[Any]:
    """Return dataset plugins (:class:`rbench.dataset.Dataset` subclasses' instances).

    A dataset loads a named split as float32 images in [0, 1], shaped (N, C, H, W), and int64 labels.
    """


@hookspec
def rbench_models() -> list[Any]:
    """Return model plugins (:class:`rbench.model.ModelPlugin` instances).

    ``build(params) -> torch.nn.Module``: a fresh, untrained network that maps (N, C, H, W) float32 inputs in
    [0, 1] to logits (N, num_classes).
    """


@hookspec
def rbench_trainers() -> list[Any]:
    """Return trainer plugins (:class:`rbench.model.Trainer` instances).

    A trainer is a training recipe (standard ERM, adversarial training, outlier exposure, autoencoder
    pretraining ...). ``train(model, data, params, *, generator, device, progress)`` trains ``model`` in place.
    """


@hookspec
def rbench_attacks() -> list[Any]:
    """Return attack plugins (:class:`rbench.attack.Attack` instances).

    ``run(model, x, y, params, *, generator=None) -> rbench.AttackOutput``. Fixed-budget attacks declare
    their norm and budget through ``budget(params)``; minimal-distortion attacks return ``None`` there and
    report their smallest adversarial found. Generators (:class:`rbench.attack.GeneratorAttack`, e.g. fooling
    images) make inputs from nothing: ``run(model, targets, params, *, shape, generator=None)``.
    """


@hookspec
def rbench_transforms() -> list[Any]:
    """Return transform plugins (:class:`rbench.transform.Transform` instances).

    A transform derives a new adversarial set from a stored one (e.g. amplifying each perturbation to a given
    RMS size): ``apply(x, x_adv, params, *, generator=None) -> x_adv'``, float32 in [0, 1].
    """


@hookspec
def rbench_defenses() -> list[Any]:
    """Return defense plugins (:class:`rbench.defense.Defense` instances): input transforms (possibly randomized,
    possibly not differentiable), trained components (their own train job) or aggregations of trained models
    (committees), which a suite composes with trained models into defended models (``[defenses.x]`` and
    ``[models.y] base = ..., defenses = [...]``). Training recipes (adversarial training) are trainers. See
    :mod:`rbench.defense` for the contract; ``rbench.testing.check_defense`` checks a plugin against it.
    """


@hookspec
def rbench_metrics() -> list[Any]:
    """Return metric plugins (:class:`rbench.metric.Metric` instances).

    A metric is a pure function of stored job outputs (an adversarial set, predictions) to one number.
    """


@hookspec
def rbench_probes() -> list[Any]:
    """Return probe plugins (:class:`rbench.probe.Probe` instances).

    A probe measures a model on data while it trains: ``measure(model, x, y, params, *, generator) -> dict``
    of JSON-able finite numbers (or lists of them). A suite's ``monitor`` on a model runs its probes after
    every epoch; the measurements are stored with the checkpoint (``CellData.training``), not recomputed.
    """


@hookspec
def rbench_executors() -> list[Any]:
    """Return executor plugins (:class:`rbench.executors.Executor` instances) that run a job graph.

    An executor computes the jobs the runner hands it (the runner has already decided which stored outputs to
    trust) through :func:`rbench.execution.compute`, which applies the engine's per-job policy; see
    :mod:`rbench.executors` for the contract.
    """


@hookspec
def rbench_reporters() -> list[Any]:
    """Return reporter plugins (:class:`rbench.report.reporters.Reporter` instances).

    A reporter renders result tables to text in one format (``md``, ``csv``, ``json`` ...): ``suffix`` and
    ``render(results) -> str``; or, with ``suffix = None``, writes files such as figures itself:
    ``write(results, run_dir, store) -> list[Path]`` (the ``reliability`` diagrams). See
    :mod:`rbench.report.reporters`.
    """


@hookspec
def rbench_job_started(job: Any, device: str) -> None:
    """Observer: called in the coordinating process when ``job`` (a :class:`rbench.plan.Job`) starts computing
    on ``device`` (``cpu``, ``cuda:0``, or a Ray node's device). Fired by the runner's :class:`rbench.events.RunEvents`
    for every executor; an implementation may take only the arguments it needs (``job``)."""


@hookspec
def rbench_job_progress(key: str, completed: float, total: float, text: str) -> None:
    """Observer: the running job ``key`` has done ``completed`` of ``total`` units (steps, batches); ``text`` is
    a short note (a loss, an epoch)."""


@hookspec
def rbench_job_finished(job: Any, result: Any) -> None:
    """Observer: called in the coordinating process when ``job`` ends, also for jobs read from the store.

    ``result`` is a :class:`rbench.executors.JobResult` (status ``done``, ``cached``, ``failed`` or ``skipped``,
    seconds, device, one-line error).
    """


@hookspec
def rbench_warning(message: str, job: Any) -> None:
    """Observer: something the user should know that does not stop the run, e.g. a stored entry that failed its
    checks and is computed again. ``job`` is the :class:`rbench.plan.Job` concerned, or None."""
