"""The trainer that trains nothing: a composed model (an ensemble of trained members) used as it is."""

from __future__ import annotations

from typing import Any

import torch

from rbench.dataset import NoParams
from rbench.model import Progress, TrainData, Trainer, no_progress


class NoTraining(Trainer):
    name = "none"
    Params = NoParams
    reads_data = False  # a pretrained model evaluated with rbench eval needs no training files

    def train(self, model: torch.nn.Module, data: TrainData, params: NoParams, *, generator: torch.Generator,
              device: torch.device, progress: Progress = no_progress) -> dict[str, Any]:
        return {"epochs": 0}
