"""A committee: the average prediction of several trained models (the ensemble machinery, as a defense)."""

from __future__ import annotations

from torch import nn

from rbench.defense import Defense
from rbench.plugins.models.ensemble import EnsembleNet, EnsembleParams


class Committee(Defense):
    """The committee's prediction is the average of its members' (each trained by its own job): logits whose
    softmax is the members' mean softmax (``combine = "mean_softmax"``, default), or the members' mean logits
    (``"mean_logits"``). Built by the model plugin ``ensemble``'s :class:`EnsembleNet`, so a committee
    defense and an ``ensemble`` model of the same members give the same outputs.

    Params: ``combine`` ("mean_softmax" or "mean_logits").

    Aggregates: last in a defense chain; the defended model lists ``members`` instead of a ``base``.
    Differentiable (a mean of differentiable members), deterministic; not trained itself (its members are)."""

    name = "committee"
    Params = EnsembleParams
    aggregates = True

    def build(self, params: EnsembleParams) -> nn.Module:
        raise TypeError("a committee is composed of trained members, not built")

    def compose(self, members: list[nn.Module], params: EnsembleParams) -> EnsembleNet:
        return EnsembleNet(members, params.combine)
