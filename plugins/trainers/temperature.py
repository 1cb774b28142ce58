"""Fitting the temperature of a temperature-scaled model: minimum NLL on the train job's (held-out) data."""

from __future__ import annotations

from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from rbench.model import Progress, TrainData, Trainer, no_progress
from rbench.plugins.models.temperature import TemperatureScaledNet


class TemperatureParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_iter: Annotated[int, Field(ge=1, le=100_000)] = 100


class TemperatureFit(Trainer):
    """Only ``log_temperature`` is fitted (L-BFGS on the NLL of the frozen base model's logits); give the model
    a validation split the base model was not trained on (e.g. ``parts = [55000, 5000]``, ``part = 1``)."""

    name = "temperature"
    Params = TemperatureParams

    def train(self, model: torch.nn.Module, data: TrainData, params: TemperatureParams, *,
              generator: torch.Generator, device: torch.device, progress: Progress = no_progress
              ) -> dict[str, Any]:
        if not isinstance(model, TemperatureScaledNet):
            raise TypeError("trainer 'temperature' needs a model with a 'log_temperature' (plugin "
                            "'temperature_scaled')")
        base = model.members[0].eval()
        with torch.no_grad():
            logits = torch.cat([base(data.x[i:i + 1000].to(device)) for i in range(0, len(data.x), 1000)])
        y = data.y.to(device)
        before = float(F.cross_entropy(logits, y))
        opt = torch.optim.LBFGS([model.log_temperature], lr=0.1, max_iter=params.max_iter)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(logits / model.log_temperature.exp(), y)
            loss.backward()
            return loss

        opt.step(closure)
        progress(1, 1, "temperature fitted")
        with torch.no_grad():
            temperature = model.log_temperature.exp()
            after = float(F.cross_entropy(logits / temperature, y))
        return {"temperature": float(temperature), "nll_before": before, "nll_after": after}
