"""Validity gates: a stored adversarial set that passes its checksum but breaks the contract is not trusted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from support import TINY_SUITE, HeardWarnings, flip_a_stored_bit, rbench

from rbench.runner import run_suite
from rbench.store import Store

pytestmark = pytest.mark.slow


def _run(suite, store, run_dir):
    return run_suite(suite, profile=None, store=Store(store), run_dir=run_dir, device="cpu", workers=None,
                     executor="local", console=Console(quiet=True), quiet=True)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("validity")
    suite = root / "tiny.toml"
    suite.write_text(TINY_SUITE)
    outcome = _run(suite, root / "store", root / "run")
    return suite, root, outcome


def _copy_of_store(root, tmp_path):
    """A copy of the module's stored run to tamper with: (its folder, the Store)."""
    import shutil

    shutil.copytree(root / "store", tmp_path / "store")
    return tmp_path / "store", Store(tmp_path / "store")


def _attack_key(outcome, label: str) -> str:
    return next(k for k, r in outcome.job_results.items() if r.label == label)


@pytest.mark.parametrize("tamper", ["flags", "quantized", "over_budget", "out_of_box", "targets"])
def test_tampered_set_is_quarantined_and_recomputed(stored, tmp_path, tamper):
    suite, root, outcome = stored
    store_dir, store = _copy_of_store(root, tmp_path)
    key = _attack_key(outcome, "attack fgsm(eps=0.1) on mlp")
    adv = store.load_advset(key)
    if tamper == "flags":
        adv.success = ~adv.success
    elif tamper == "quantized":
        adv.x_adv = (np.round(adv.x_adv * 255) / 255).astype(np.float64)
    elif tamper == "over_budget":
        adv.distortion["linf"] = adv.distortion["linf"] * 3
    elif tamper == "targets":  # each sample "targeted" at its own label, the flags re-predicted to match:
        adv.targets = adv.labels.copy()  # every correctly classified image would count as fooled
        adv.success = ~adv.success
    else:
        adv.x_adv = adv.x_adv + 0.5
    store.save_advset(key, adv)  # a valid checksum: only the gate can tell
    again = _run(suite, store_dir, tmp_path / "run")
    assert again.job_results[key].status == "done"  # recomputed
    assert all(r.status in ("cached", "done") for r in again.job_results.values())
    assert list((store_dir / "quarantine").iterdir())
    fixed = Store(store_dir).load_advset(key)
    assert fixed.x_adv.dtype == np.float32 and np.array_equal(fixed.success, outcome_success(root, key))
    # the predictions made of the set (here: of the set before the tampering) are judged against the set stored
    # now and recomputed from it, not served as predictions of whatever the key holds
    users = [k for k, r in outcome.job_results.items() if r.label == "eval mlp on fgsm(eps=0.1)@mlp"]
    assert users and all(again.job_results[k].status == "done" for k in users)
    for k in users:
        assert np.array_equal(Store(store_dir).load_predictions(k).logits,
                              Store(root / "store").load_predictions(k).logits)


@pytest.mark.parametrize("tamper", ["all_correct", "float64"])
def test_predictions_edited_with_a_valid_checksum_are_recomputed(stored, tmp_path, tamper):
    """Logits rewritten so that every sample is classified right (the store audit: a table cell went from 80.0 to
    0.0 with no warning), or widened to float64, with the checksum recomputed around them: the gate predicts some
    rows again with the job's model, so the entry is quarantined and recomputed, never served."""
    suite, root, outcome = stored
    store_dir, store = _copy_of_store(root, tmp_path)
    key = _attack_key(outcome, "eval mlp on fgsm(eps=0.1)@mlp")
    pred = store.load_predictions(key)
    original = pred.logits.copy()
    if tamper == "all_correct":
        pred.logits = np.eye(pred.logits.shape[1], dtype=np.float32)[pred.labels] * 10
    else:
        pred.logits = pred.logits.astype(np.float64)
    store.save_predictions(key, pred)  # a valid checksum: only the gate can tell
    out = rbench("run", str(suite), "--store", str(store_dir), "--run-dir", str(tmp_path / "run"), "-q")
    assert out.returncode == 0, out.stderr
    why = "rows checked disagree with the job's model predicting them again" if tamper == "all_correct" else \
        "are float64, not float32"
    err = out.stderr.replace("\n", "")  # rich wraps the warning at the console's width, spaces kept
    assert f"stored predictions {key}" in err and why in err, out.stderr
    assert json.loads((tmp_path / "run" / "results.json").read_text())["jobs"][key]["status"] == "done"
    assert np.array_equal(Store(store_dir).load_predictions(key).logits, original)


def outcome_success(root, key):
    return Store(root / "store").load_advset(key).success


@pytest.mark.parametrize("victim", ["eval mlp on clean mnist/test", "train cnn"])
def test_bit_flipped_entry_is_reported_once_and_regenerated(stored, tmp_path, victim):
    import shutil

    from rbench.results import RunResults

    suite, root, outcome = stored
    store_dir = tmp_path / "store"
    shutil.copytree(root / "store", store_dir)
    key = _attack_key(outcome, victim)
    flip_a_stored_bit(max(Store(store_dir).paths(key), key=lambda p: p.stat().st_size))  # data, not the sidecar

    out = rbench("run", str(suite), "--store", str(store_dir), "--run-dir", str(tmp_path / "run"), "-q")
    assert out.returncode == 0, out.stderr
    # reported once, with its key (the warning also names the quarantine path, which holds the key again), on
    # stderr with the run's live log
    assert out.stderr.count(f"store entry {key}") == 1 and out.stderr.count("is corrupt") == 1
    again = RunResults.read(tmp_path / "run")
    assert again.jobs[key]["status"] == "done"
    first = RunResults.read(root / "run")
    assert [c.value for t in again.tables for c in t.cells] == [c.value for t in first.tables for c in t.cells]


@pytest.mark.parametrize("mode", ["inline", "worker process"])
def test_an_entry_found_corrupt_when_its_job_runs_is_reported_and_recomputed(stored, tmp_path, mode):
    """The runner checks stored entries before it hands jobs to an executor; one that turns corrupt after that
    check, or whose lock another process held then, is met by the job itself under its lock
    (``execution.compute``): quarantined, recomputed and reported as the runner's check reports one, whether the
    executor runs the job in its own process or in a worker process."""
    from rbench.executors.local import LocalExecutor
    from rbench.plan import build_plan
    from rbench.suite import load_suite

    suite, root, outcome = stored
    store_dir = tmp_path / "store"
    import shutil

    shutil.copytree(root / "store", store_dir)
    key = _attack_key(outcome, "eval mlp on clean mnist/test")
    flip_a_stored_bit(Store(store_dir).paths(key)[0])
    plan = build_plan(load_suite(suite))
    heard = HeardWarnings()
    results = LocalExecutor().run(plan, Store(store_dir), [plan.jobs[key]], devices=["cpu"], workers=1,
                                  observer=heard, job_timeout=None if mode == "inline" else 600)
    assert results[key].status == "done"
    [(message, about)] = heard.warnings
    assert about == key and message.startswith(f"store entry {key} is corrupt (") and "moved to " in message
    assert message.endswith("; recomputing")
    assert Store(store_dir).load_predictions(key).logits.dtype == np.float32  # the recomputed entry loads


def test_outputs_made_from_an_input_that_changed_are_not_trusted(stored, tmp_path):
    """The user of an input is bound to the very bytes it was made from: predictions made from a set that failed
    its gate (out of the [0, 1] box, valid checksum) are recomputed with the set, in the same run; the run after
    serves everything from the store; predictions whose set was replaced by other (valid) bytes are refused."""
    import shutil

    suite, root, outcome = stored
    store_dir = tmp_path / "store"
    shutil.copytree(root / "store", store_dir)
    store = Store(store_dir)
    key = _attack_key(outcome, "attack fgsm(eps=0.1) on mlp")
    users = [k for k, r in outcome.job_results.items() if r.label == "eval mlp on fgsm(eps=0.1)@mlp"]
    adv = store.load_advset(key)
    adv.x_adv = np.clip(adv.x_adv + 0.5, 0, 2).astype(np.float32)
    store.save_advset(key, adv)
    for k in users:  # predictions made from the bad set, bound to it as a run would have stored them
        pred = store.load_predictions(k)
        pred.logits = pred.logits + 1.0
        pred.meta["inputs"] = {dep: store.checksum(dep) for dep in pred.meta["inputs"]}
        store.save_predictions(k, pred)
    again = _run(suite, store_dir, tmp_path / "run")
    assert again.job_results[key].status == "done" and all(again.job_results[k].status == "done" for k in users)
    original = Store(root / "store")
    for k in users:
        assert np.array_equal(Store(store_dir).load_predictions(k).logits, original.load_predictions(k).logits)
    third = _run(suite, store_dir, tmp_path / "run3")
    assert {r.status for r in third.job_results.values()} == {"cached"}

    # a set replaced by other valid bytes (recomputed elsewhere, copied in): its predictions are stale
    other = Store(store_dir).load_advset(key)
    other.meta["provenance"]["host"] = "elsewhere"
    Store(store_dir).save_advset(key, other)
    out = rbench("run", str(suite), "--store", str(store_dir), "--run-dir", str(tmp_path / "run4"), "-q")
    assert out.returncode == 0, out.stderr
    jobs = json.loads((tmp_path / "run4" / "results.json").read_text())["jobs"]
    assert jobs[key]["status"] == "cached" and all(jobs[k]["status"] == "done" for k in users)
    flat = " ".join(out.stderr.split())
    assert f"stored entry {users[0]} was made from other contents of its input {key}" in flat


def _plan_job(suite, label: str):
    from rbench.plan import build_plan
    from rbench.suite import load_suite

    return next(j for j in build_plan(load_suite(suite, None)).jobs.values() if j.label == label)


def test_an_entry_from_before_inputs_were_recorded_is_judged_by_its_memo(stored, tmp_path):
    """An entry whose metadata has no ``inputs`` (stored by an older rbench) is compared with what its gate memo
    recorded at its last pass: the input's checksum then (``on``) or all of them (``inputs``)."""
    import shutil

    from rbench import gates
    from rbench.inputs import PluginContractError

    suite, root, _ = stored
    shutil.copytree(root / "store", tmp_path / "store")
    store = Store(tmp_path / "store")
    job = _plan_job(suite, "eval mlp on fgsm(eps=0.1)@mlp")
    meta = {k: v for k, v in store.load_predictions(job.key).meta.items() if k != "inputs"}
    memo = {"entry": store.checksum(job.key), "gate": gates.GATE_VERSION}
    store.write_gate_stamp(job.key, {**memo, "on": store.checksum(job.deps[1])})
    assert gates.check_inputs(store, job, meta) == gates.inputs_now(store, job)  # taken as its own from now on
    store.write_gate_stamp(job.key, {**memo, "on": "0" * 64})  # its set was another one at its last pass
    with pytest.raises(PluginContractError, match="from before rbench recorded inputs"):
        gates.check_inputs(store, job, meta)
    store.write_gate_stamp(job.key, {**memo, "on": store.checksum(job.deps[1]),
                                     "inputs": {**gates.inputs_now(store, job), job.deps[0]: "0" * 64}})
    with pytest.raises(PluginContractError, match=f"other contents of its input {job.deps[0]}"):
        gates.check_inputs(store, job, meta)  # the memo's record of every input counts too
    clean = _plan_job(suite, "eval mlp on clean mnist/test")  # its memo's ``on`` is its data slice, not its model
    clean_meta = {k: v for k, v in store.load_predictions(clean.key).meta.items() if k != "inputs"}
    store.write_gate_stamp(clean.key, {"entry": store.checksum(clean.key), "gate": 1, "on": "slice"})
    with pytest.raises(gates.Unverifiable):  # recomputed (not quarantined): nothing ties it to its model
        gates.check_inputs(store, clean, clean_meta)


def test_a_memo_records_the_inputs_that_were_compared_not_later_ones(stored, tmp_path, monkeypatch):
    """Another process recomputing an input right after an entry's inputs were compared must not make the memo
    vouch for the entry against the new input (it was made from the old one)."""
    import shutil

    from rbench import gates

    suite, root, _ = stored
    shutil.copytree(root / "store", tmp_path / "store")
    job = _plan_job(suite, "eval mlp on fgsm(eps=0.1)@mlp")
    made_from = Store(tmp_path / "store").checksum(job.deps[1])
    (tmp_path / "store" / "gates" / f"{job.key}.json").unlink()
    compare = gates.check_inputs

    def then_replaced(store, checked, meta):
        inputs = compare(store, checked, meta)
        if checked.key == job.key:
            other = Store(tmp_path / "store")
            adv = other.load_advset(job.deps[1])
            adv.meta["provenance"]["host"] = "elsewhere"
            other.save_advset(job.deps[1], adv)
        return inputs

    monkeypatch.setattr(gates, "check_inputs", then_replaced)
    gates.check_stored(Store(tmp_path / "store"), job)
    monkeypatch.setattr(gates, "check_inputs", compare)
    fresh = Store(tmp_path / "store")
    assert fresh.gate_stamp(job.key)["inputs"][job.deps[1]] == made_from != fresh.checksum(job.deps[1])
    assert not gates.verified_copy(fresh, job)
