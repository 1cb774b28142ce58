"""MAP-Elites with a direct pixel encoding: Nguyen, Yosinski & Clune 2015's fooling images for MNIST.

The authors' configuration (sferes2): an archive with one cell per class holding its elite, the image with the
highest softmax probability for that class seen so far. A random population (``population`` = 200 images of
uniform noise in [0, 1]) seeds the archive; each generation draws ``pairs`` = 100 parent pairs uniformly from the
archive's elites, crosses each pair by SBX (probability ``crossover_rate`` = 0.5, distribution index
``crossover_eta`` = 10), mutates every pixel with probability ``mutation_rate`` = 0.1 by polynomial mutation
(``mutation_eta`` = 15; the rate halves every ``halve_every`` = 1000 generations, as in the paper), and a child
replaces the elite of every class cell where its softmax probability is higher. ``generations`` = 1000.

Every population (the initial one, then the 2 x ``pairs`` children of a generation) is classified in one batched
forward pass; the operators (:mod:`rbench.plugins.attacks.evolution`) work on the whole population too. Each round
of target classes the engine hands over is one independent run, evolved for all its classes at once; runs are
evolved one after the other from the job's generator, so the result does not depend on how the engine batches
rounds. Extras: ``trace`` (N, generations + 1), the elite's confidence for the target class after each
generation (0: the initial population), non-decreasing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from rbench.attack import AttackOutput, GeneratorAttack
from rbench.plugins.attacks.evolution import polynomial_mutation, sbx


class MapElitesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    generations: Annotated[int, Field(ge=0, le=100_000)] = 1000
    population: Annotated[int, Field(ge=1, le=100_000)] = 200
    pairs: Annotated[int, Field(ge=1, le=50_000)] = 100
    mutation_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    mutation_eta: Annotated[float, Field(gt=0, le=1000)] = 15.0
    crossover_rate: Annotated[float, Field(ge=0, le=1)] = 0.5
    crossover_eta: Annotated[float, Field(gt=0, le=1000)] = 10.0
    halve_every: Annotated[int, Field(ge=1)] = 1000


@dataclass
class Archive:
    """One run's archive: for each of ``classes`` its elite (flattened image) and the elite's confidence."""

    classes: torch.Tensor
    elites: torch.Tensor
    confidence: torch.Tensor

    def offer(self, images: torch.Tensor, probs: torch.Tensor) -> None:
        """Each image replaces the elite of every class cell where its probability is higher (per cell, the best
        of the batch competes)."""
        best, which = probs[:, self.classes].max(dim=0)
        better = best > self.confidence
        self.elites[better] = images[which[better]]
        self.confidence[better] = best[better]


def probabilities(model: torch.nn.Module, flat: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Softmax outputs (P, classes) of ``model`` on the flattened images ``flat`` (P, D): one forward pass."""
    with torch.no_grad():
        return torch.softmax(model(flat.view(len(flat), *shape)).float(), dim=1)


def evolve(model: torch.nn.Module, classes: torch.Tensor, shape: tuple[int, ...], params: MapElitesParams,
           generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One MAP-Elites run for ``classes`` (distinct, int64): (elites (K, *shape), trace (K, generations + 1))."""
    device = classes.device
    dims = math.prod(shape)
    population = torch.rand(params.population, dims, generator=generator, device=device)
    probs = probabilities(model, population, shape)
    archive = Archive(classes, torch.empty(len(classes), dims, device=device),
                      torch.full((len(classes),), -1.0, device=device))
    archive.offer(population, probs)
    trace = [archive.confidence.clone()]
    for generation in range(1, params.generations + 1):
        parents = torch.randint(len(classes), (2, params.pairs), generator=generator, device=device)
        c1, c2 = sbx(archive.elites.index_select(0, parents[0]), archive.elites.index_select(0, parents[1]),
                     eta=params.crossover_eta, rate=params.crossover_rate, generator=generator)
        rate = params.mutation_rate * 0.5 ** ((generation - 1) // params.halve_every)
        children = polynomial_mutation(torch.cat([c1, c2]), eta=params.mutation_eta, rate=rate, generator=generator)
        archive.offer(children, probabilities(model, children, shape))
        trace.append(archive.confidence.clone())
    return archive.elites.view(len(classes), *shape), torch.stack(trace, dim=1)


def runs_of(targets: torch.Tensor) -> torch.Tensor:
    """For each target, the run it belongs to: its occurrence number among equal targets (0 for the first)."""
    run = torch.zeros_like(targets)
    for i in range(1, len(targets)):
        run[i] = int((targets[:i] == targets[i]).sum())
    return run


class MapElites(GeneratorAttack):
    """Fooling images evolved by MAP-Elites (direct encoding), one archive cell per class (see the module)."""

    name = "map_elites"
    Params = MapElitesParams

    def uses_gradients(self, params: BaseModel) -> bool:
        return False

    def run(self, model: torch.nn.Module, targets: torch.Tensor, params: MapElitesParams, *,  # type: ignore[override]
            shape: tuple[int, ...], generator: torch.Generator | None = None) -> AttackOutput:
        n = len(targets)
        x = torch.empty(n, *shape, device=targets.device)
        trace = torch.empty(n, params.generations + 1, device=targets.device)
        run = runs_of(targets)
        for r in range(int(run.max()) + 1 if n else 0):
            mine = (run == r).nonzero().flatten()
            x[mine], trace[mine] = evolve(model, targets[mine], shape, params, generator)
        with torch.no_grad():
            success = model(x).argmax(dim=1) == targets
        return AttackOutput(x.contiguous(), success, {"trace": trace})
