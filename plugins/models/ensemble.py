"""Ensembles of trained models: the mean of the members' softmax outputs."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from rbench.model import ModelPlugin


class EnsembleParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    combine: Literal["mean_softmax", "mean_logits"] = "mean_softmax"


class EnsembleNet(nn.Module):
    """Logits whose softmax is the members' mean softmax (``log`` of the mean probabilities), or the members'
    mean logits."""

    def __init__(self, members: list[nn.Module], combine: str):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.combine = combine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = torch.stack([m(x) for m in self.members])
        if self.combine == "mean_logits":
            return outs.mean(0)
        return torch.logsumexp(torch.log_softmax(outs, dim=-1), dim=0) - torch.log(torch.tensor(float(len(outs))))


class Ensemble(ModelPlugin):
    """An ensemble of the suite's trained ``members`` (each trained once, and reused by every ensemble)."""

    name = "ensemble"
    Params = EnsembleParams

    def build(self, params: EnsembleParams) -> nn.Module:
        raise TypeError("an ensemble is composed of trained members, not built")

    def compose(self, members: list[nn.Module], params: EnsembleParams) -> nn.Module:
        return EnsembleNet(members, params.combine)
