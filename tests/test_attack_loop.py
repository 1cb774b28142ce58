"""The batched attack loop: a batch that does not fit in GPU memory is split instead of failing the job.

No GPU here: the plugin below raises ``torch.cuda.OutOfMemoryError`` itself for batches above a size, after
drawing from the job's generator, as a real one would part-way through."""

from __future__ import annotations

import pytest
import torch

from rbench.attack import AttackOutput
from rbench.attack_loop import BatchTooLarge, attack_in_batches

N = 10


def _plugin(fits: int, generator: torch.Generator, calls: list[tuple[int, int]]):
    x = torch.arange(N, dtype=torch.float32)

    def one_batch(start: int, stop: int) -> AttackOutput:
        calls.append((start, stop))
        noise = torch.rand(stop - start, generator=generator)
        if stop - start > fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return AttackOutput(x[start:stop] + noise, noise > 0.5, {"steps": torch.full((stop - start,), start)})

    return one_batch


def _run(step: int, fits: int, **kwargs):
    generator = torch.Generator().manual_seed(0)
    calls: list[tuple[int, int]] = []
    done = attack_in_batches(N, step, _plugin(fits, generator, calls), generator=generator, **kwargs)
    return done, calls


def test_a_batch_that_does_not_fit_is_halved_and_the_rest_runs_at_the_size_that_fit():
    done, calls = _run(step=8, fits=3)
    assert calls == [(0, 8), (0, 4), (0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
    assert done.batch == 2
    # the generator is put back before each retry: the outputs are those of a run at batch 2 from the start
    reference, _ = _run(step=2, fits=2)
    assert torch.equal(done.x_adv, reference.x_adv) and torch.equal(done.success, reference.success)
    assert torch.equal(done.extras["steps"], reference.extras["steps"])
    untouched, calls = _run(step=8, fits=8)
    assert untouched.batch == 8 and calls == [(0, 8), (8, 10)]


def test_halving_keeps_whole_granules_and_gives_up_below_one():
    done, calls = _run(step=10, fits=5, granule=5)
    assert done.batch == 5 and calls == [(0, 10), (0, 5), (5, 10)]
    with pytest.raises(BatchTooLarge, match="a batch of 5 inputs does not fit in GPU memory and it cannot be "
                                            "split below 5"):
        _run(step=10, fits=4, granule=5)


def test_batches_a_randomized_models_draws_follow_are_never_split():
    with pytest.raises(BatchTooLarge, match=r"draws \(a randomized model's, or the attack's\) follow the batches: "
                                            "lower the evaluation's batch_size"):
        _run(step=8, fits=3, splittable=False)


def test_on_a_gpu_attack_jobs_start_whole_only_where_the_suite_leaves_the_batch_size(tmp_path):
    from pathlib import Path

    from support import TINY_SUITE

    from rbench.attack_loop import first_batch
    from rbench.runner import suite_plan
    from rbench.suite import load_suite

    root = Path(__file__).resolve().parent.parent
    ulicny = suite_plan(load_suite(root / "suites" / "ulicny2016.toml", "quick"), None)  # no batch_size set
    attacks = [job for job in ulicny.jobs.values() if job.kind == "attack"]
    drawn = [job for job in attacks if job.spec.batch_size is not None]  # a randomized source's: keyed batches
    assert drawn and not any("fit_gpu_batch" in job.options for job in drawn)
    assert all(job.options.get("fit_gpu_batch") is True for job in attacks if job.spec.batch_size is None)
    tiny = tmp_path / "tiny.toml"
    tiny.write_text(TINY_SUITE)  # batch_size = 25 given
    assert not any("fit_gpu_batch" in job.options for job in suite_plan(load_suite(tiny), None).jobs.values())

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert first_batch(1000, 250, True, cuda) == 1000
    assert first_batch(1000, 250, True, cpu) == first_batch(1000, 250, False, cuda) == 250


def _counted_mlp() -> tuple[torch.nn.Module, list[int]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval().requires_grad_(False)
    passes: list[int] = []
    model.register_forward_hook(lambda _m, inputs, _o: passes.append(len(inputs[0])))
    return model, passes


def _fgsm_in_batches(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, step: int, **kwargs):
    from rbench.attack_loop import slice_batches
    from rbench.manager import get_plugin

    fgsm = get_plugin("attack", "fgsm")
    generator = torch.Generator().manual_seed(0)
    one_batch = slice_batches(fgsm, fgsm.Params(eps=0.2), model, model, x, y, device="cpu", generator=generator,
                              **kwargs)
    return attack_in_batches(len(x), step, one_batch, generator=generator)


def test_flags_an_attack_leaves_to_the_engine_cost_one_pass_per_batch_and_are_the_models_prediction():
    """FGSM returns ``success=None``: the engine's prediction is both its flags and the check (one forward pass
    for the gradient and one for the flags, per batch; flags a plugin returns are re-predicted, a third)."""
    model, passes = _counted_mlp()
    x, y = torch.rand(30, 1, 28, 28), torch.randint(0, 10, (30,))
    done = _fgsm_in_batches(model, x, y, step=10)
    assert passes == [10, 10] * 3
    with torch.no_grad():
        assert torch.equal(done.success, model(done.x_adv).argmax(1) != y) and done.success.dtype == torch.bool
    passes.clear()
    _fgsm_in_batches(model, x, y, step=10, check_success=False)  # a randomized model: flags decided later
    assert passes == [10, 10] * 3  # still one pass: the one the attack would have made (its draws stay the same)


def test_flags_left_to_the_engine_hit_the_targets_of_a_targeted_attack():
    from rbench.contract import check_attack_output

    model, _ = _counted_mlp()
    x = torch.rand(20, 1, 28, 28)
    with torch.no_grad():
        predicted = model(x).argmax(1)
    y, targets = (predicted + 1) % 10, predicted.clone()
    targets[::2] = (predicted[::2] + 2) % 10  # half the targets missed
    out = AttackOutput(x, extras={"targets": targets})
    success = check_attack_output("t", out, x, None, model, y, 0, targeted=True)
    assert torch.equal(success, torch.arange(20) % 2 == 1)
    assert torch.equal(out.success_on(model, y), success)
    wrong = AttackOutput(x, torch.zeros(20, dtype=torch.bool), {"targets": targets})
    with pytest.raises(Exception, match="10 success flags disagree"):
        check_attack_output("t", wrong, x, None, model, y, 0, targeted=True)


class _WritesItsInput:
    """An FGSM that writes its step into the batch it is given (``zero``: scribbles zeros there, returning a
    fresh, correct adversarial), or returns a bare tensor (``bare``)."""

    name = "writes_input"

    def __init__(self, how: str):
        self.how = how

    def budget(self, params):
        from rbench.attack import Budget

        return Budget("linf", 0.1)

    def uses_gradients(self, params):
        return True

    def targeted(self, params):
        return False

    def run(self, model, x, y, params, *, generator=None):
        x1 = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x1), y), x1)
        adv = (x + 0.3 * g.sign()).clamp(0, 1)  # three times its budget
        if self.how == "bare":
            return adv
        if self.how == "zero":
            x.zero_()
            return AttackOutput((x1.detach() + 0.1 * g.sign()).clamp(0, 1))
        x.copy_(adv)
        return AttackOutput(x)


@pytest.mark.parametrize("how, message", [
    ("copy", "attack 'writes_input' modified the inputs (or labels) it was given in place"),
    ("zero", "attack 'writes_input' modified the inputs (or labels) it was given in place"),
    ("bare", "attack 'writes_input' returned Tensor, not an rbench.AttackOutput")])
def test_an_attack_writing_into_its_inputs_fails_and_the_callers_images_stay(how, message):
    """On the CPU a batch was a view of the job's data: an attack stepping 3 eps in place was measured against its
    own output (distortion 0, within budget) and its set stored; one zeroing its input was reported as over budget.
    The plugin now gets copies, and changing them fails the batch, named; the caller's tensors are as they were."""
    from rbench.attack_loop import slice_batches
    from rbench.errors import PluginContractError

    model, _ = _counted_mlp()
    x, y = torch.rand(12, 1, 28, 28), torch.randint(0, 10, (12,))
    kept = x.clone(), y.clone()
    generator = torch.Generator().manual_seed(0)
    one_batch = slice_batches(_WritesItsInput(how), None, model, model, x, y, device="cpu", generator=generator)
    with pytest.raises(PluginContractError, match=message.replace("(", r"\(").replace(")", r"\)")):
        attack_in_batches(len(x), 6, one_batch, generator=generator)
    assert torch.equal(x, kept[0]) and torch.equal(y, kept[1])


def test_an_attack_whose_draws_follow_the_batches_has_its_batch_keyed_and_its_seed_kept(tmp_path):
    """foolbox and ART seed their library once per batch: a foolbox PGD at batch size 30 is another job than at
    100 (it was served the other's set), never run at another size (no GPU fit, no halving); its seed is the one
    it had before the batch was keyed, so the sets stored then are what it computes. A built-in attack's batch is
    not keyed."""
    import json
    from dataclasses import replace

    from support import TINY_SUITE

    from rbench.keys import content_key
    from rbench.plan import FORMAT
    from rbench.runner import suite_plan
    from rbench.suite import load_suite

    extra = '\n[attacks.fbpgd]\nplugin = "foolbox"\nparams = { attack = "LinfPGD", epsilon = 0.1 }\n'
    jobs = {}
    for batch in (25, 30):
        path = tmp_path / f"b{batch}.toml"
        path.write_text((TINY_SUITE + extra).replace("batch_size = 25", f"batch_size = {batch}")
                        .replace('attacks = ["fgsm", "pgd", "noise"]', 'attacks = ["fgsm", "pgd", "fbpgd"]'))
        jobs[batch] = {job.label: job for job in suite_plan(load_suite(path), None).jobs.values()}
    fb = [label for label in jobs[25] if label.startswith("attack fbpgd")]
    assert fb and all(label in jobs[30] for label in fb)
    for label in fb:
        job = jobs[25][label]
        assert job.spec.batch_size == 25 and jobs[30][label].spec.batch_size == 30
        assert job.key != jobs[30][label].key and "fit_gpu_batch" not in job.options
        unkeyed = {"kind": "attack", "format": FORMAT, **replace(job.spec, batch_size=None).to_dict()}
        old_key = content_key(unkeyed)  # the key the set had before its batch was keyed
        assert job.seed == jobs[30][label].seed == int(old_key[:15], 16)
        made_from = [j for j in jobs[25].values() if job.key in j.deps]
        assert made_from  # the evaluations of the set: seeded as they were then, with the set's old key
        for other in made_from:
            record = {"kind": other.kind, "format": FORMAT, **other.spec.to_dict()}
            then = json.loads(json.dumps(record).replace(job.key, old_key))
            assert other.seed == int(content_key(then)[:15], 16) != int(other.key[:15], 16)
    built_in = [label for label in jobs[25] if label.startswith("attack pgd")]
    assert built_in and all(jobs[25][label].key == jobs[30][label].key for label in built_in)
