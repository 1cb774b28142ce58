"""The executors' shared bookkeeping (rbench.executors.Scheduler): which jobs are ready, in which order, and what
a failure skips. Pinned against the plain definition (a reference written the obvious, quadratic way), on small
hand-made graphs and on random ones, so that a faster implementation cannot change the order or the skipping."""

from __future__ import annotations

import random
from types import SimpleNamespace

from rbench.executors import JobResult, Scheduler
from rbench.plan import Job, Plan

OK = ("done", "cached")


def job(key: str, *deps: str, kind: str = "train") -> Job:
    # the scheduler reads a job's key, deps and label only; the spec just has to name the job's kind
    return Job(key, kind, SimpleNamespace(kind=kind), tuple(deps), f"job {key}")  # type: ignore[arg-type]


def plan_of(jobs: list[Job]) -> Plan:
    return Plan(suite=None, jobs={j.key: j for j in jobs})  # type: ignore[arg-type]


class Recorder:
    """An observer that keeps every finished() call, in order."""

    def __init__(self):
        self.finished_calls: list[tuple[str, str, str | None]] = []

    def started(self, job, device):
        pass

    def progress(self, key, completed, total, text):
        pass

    def finished(self, job, result):
        self.finished_calls.append((job.key, result.status, result.error))

    def warning(self, message, job=None):
        pass


class Reference:
    """The definition: ready = not taken, not finished, every dependency in ``jobs`` done or cached, in the order of
    ``jobs``; a failed job's dependents in the plan (directly or not, in plan order) that are in ``jobs`` and not
    finished are skipped."""

    def __init__(self, plan, jobs, observer):
        self.plan, self.observer = plan, observer
        self.todo = {j.key: j for j in jobs}
        self.waiting = list(jobs)
        self.results = {}

    def ready(self):
        self.waiting = [j for j in self.waiting if j.key not in self.results]
        return [j for j in self.waiting if all(
            d not in self.todo or (d in self.results and self.results[d].status in OK) for d in j.deps)]

    def take(self, job):
        self.waiting.remove(job)

    def finish(self, job, result):
        self.results[job.key] = result
        self.observer.finished(job, result)
        if result.status == "failed":
            frontier = {job.key}
            for other in self.plan.jobs.values():
                if frontier & set(other.deps):
                    frontier.add(other.key)
                    if other.key in self.todo and other.key not in self.results:
                        self.results[other.key] = JobResult(other.key, other.label, "skipped",
                                                            error=f"not run: needs {job.label}, which failed")
                        self.observer.finished(other, self.results[other.key])

    @property
    def finished(self):
        return len(self.results) == len(self.todo)


def keys(jobs: list[Job]) -> list[str]:
    return [j.key for j in jobs]


def fan_out() -> list[Job]:
    """Two models, each trained, attacked twice and evaluated on each attack and clean (plan order: the mlp's jobs,
    then the cnn's, so that the plan's order is not the alphabetical one)."""
    jobs = []
    for m in ("mlp", "cnn"):
        jobs += [job(f"{m}.train"), job(f"{m}.a1", f"{m}.train", kind="attack"),
                 job(f"{m}.a2", f"{m}.train", kind="attack"), job(f"{m}.clean", f"{m}.train", kind="eval"),
                 job(f"{m}.e1", f"{m}.train", f"{m}.a1", kind="eval"),
                 job(f"{m}.e2", f"{m}.train", f"{m}.a2", kind="eval")]
    return jobs


def test_ready_jobs_come_in_plan_order_once_their_inputs_are_done():
    jobs = fan_out()
    s = Scheduler(plan_of(jobs), jobs, Recorder())
    assert keys(s.ready()) == ["mlp.train", "cnn.train"]
    s.take(jobs[0])
    assert keys(s.ready()) == ["cnn.train"]  # taken: no longer offered
    s.finish(jobs[0], JobResult("mlp.train", "", "done"))
    # the mlp's attacks and clean evaluation come before the cnn's training: the plan's order, not the order in
    # which jobs became ready
    assert keys(s.ready()) == ["mlp.a1", "mlp.a2", "mlp.clean", "cnn.train"]
    a1 = jobs[1]
    s.take(a1)
    s.finish(a1, JobResult(a1.key, "", "cached"))  # cached satisfies a dependency like done
    assert keys(s.ready()) == ["mlp.a2", "mlp.clean", "mlp.e1", "cnn.train"]
    assert not s.finished


def test_dependencies_outside_the_jobs_to_run_are_stored_already():
    stored, todo = job("t"), [job("a", "t"), job("e", "t", "a")]
    s = Scheduler(plan_of([stored, *todo]), todo, Recorder())
    assert keys(s.ready()) == ["a"]  # t is not to be run: it is stored and trusted


def test_a_failed_job_skips_its_dependents_and_reports_each_once_in_plan_order():
    jobs = fan_out()
    rec = Recorder()
    s = Scheduler(plan_of(jobs), jobs, rec)
    s.take(jobs[0])
    s.finish(jobs[0], JobResult("mlp.train", "job mlp.train", "failed", error="boom"))
    assert rec.finished_calls == [("mlp.train", "failed", "boom")] + [
        (k, "skipped", "not run: needs job mlp.train, which failed")
        for k in ("mlp.a1", "mlp.a2", "mlp.clean", "mlp.e1", "mlp.e2")]
    assert keys(s.ready()) == ["cnn.train"]  # the other model goes on
    while not s.finished:
        ready = s.ready()
        s.take(ready[0])
        s.finish(ready[0], JobResult(ready[0].key, "", "done"))
    assert [k for k, r in s.results.items() if r.status == "done"] == [j.key for j in jobs if j.key.startswith("cnn")]
    assert len(rec.finished_calls) == len(jobs)


def test_a_failure_also_skips_what_depends_on_it_through_a_stored_job():
    # x is stored (not to run) but made from t: what reads x is skipped with t, as the plan's dependents say
    t, x, y, z = job("t"), job("x", "t", kind="attack"), job("y", "x", kind="eval"), job("z")
    rec = Recorder()
    s = Scheduler(plan_of([t, x, y, z]), [t, y, z], rec)
    assert keys(s.ready()) == ["t", "y", "z"]
    s.take(t)
    s.finish(t, JobResult("t", "job t", "failed", error="boom"))
    assert rec.finished_calls[1] == ("y", "skipped", "not run: needs job t, which failed")
    assert keys(s.ready()) == ["z"]


def test_a_job_finished_without_being_taken_is_no_longer_offered():
    a, b = job("a"), job("b", "a")
    s = Scheduler(plan_of([a, b]), [a, b], Recorder())
    s.finish(a, JobResult("a", "", "done"))  # e.g. an executor's time limit ended it
    assert keys(s.ready()) == ["b"]


def random_graph(rng: random.Random, n: int) -> list[Job]:
    jobs: list[Job] = []
    for i in range(n):
        deps = rng.sample([j.key for j in jobs], k=min(len(jobs), rng.choice([0, 0, 1, 1, 2, 3])))
        jobs.append(job(f"j{i}", *deps))
    return jobs


def drive(s, rng: random.Random, fail: set[str], stored: set[str]) -> list[list[str]]:
    """Run everything the way an executor does (taking any ready job, up to 3 at once, finishing them in any
    order); the ready lists seen along the way."""
    seen, running = [], []
    while not s.finished:
        ready = s.ready()
        seen.append(keys(ready))
        while ready and len(running) < 3:
            picked = ready.pop(rng.randrange(len(ready)) if rng.random() < 0.5 else 0)
            s.take(picked)
            running.append(picked)
        if not running:
            break
        done = running.pop(rng.randrange(len(running)))
        status = "failed" if done.key in fail else "cached" if done.key in stored else "done"
        s.finish(done, JobResult(done.key, done.label, status))
    return seen


def test_the_scheduler_agrees_with_the_definition_on_random_graphs():
    for seed in range(40):
        rng = random.Random(seed)
        jobs = random_graph(rng, rng.randint(1, 60))
        todo = [j for j in jobs if rng.random() < 0.85]  # the rest are stored already
        fail = {j.key for j in todo if rng.random() < 0.1}
        stored = {j.key for j in todo if rng.random() < 0.2}
        runs = []
        for impl in (Reference, Scheduler):
            rec = Recorder()
            s = impl(plan_of(jobs), todo, rec)
            seen = drive(s, random.Random(seed), fail, stored)
            runs.append((seen, rec.finished_calls, {k: (r.status, r.error) for k, r in s.results.items()},
                         s.finished))
        assert runs[1] == runs[0], f"seed {seed}"
