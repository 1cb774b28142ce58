"""Temperature scaling (Guo et al. 2017): a trained model's logits divided by one fitted scalar T."""

from __future__ import annotations

import torch
from torch import nn

from rbench.dataset import NoParams
from rbench.model import ModelPlugin


class TemperatureScaledNet(nn.Module):
    def __init__(self, base: nn.Module):
        super().__init__()
        self.members = nn.ModuleList([base])
        self.log_temperature = nn.Parameter(torch.zeros(()))

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.members[0](x) / self.temperature


class TemperatureScaled(ModelPlugin):
    """One member (the model to calibrate); fit T with the ``temperature`` trainer on held-out data."""

    name = "temperature_scaled"
    Params = NoParams
    members_count = 1

    def build(self, params: NoParams) -> nn.Module:
        raise TypeError("a temperature-scaled model is composed of the trained model it calibrates")

    def compose(self, members: list[nn.Module], params: NoParams) -> nn.Module:
        if len(members) != 1:
            raise ValueError(f"temperature scaling takes exactly one member, got {len(members)}")
        return TemperatureScaledNet(members[0])
