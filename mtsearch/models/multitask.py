"""One shared encoder, one pooling and one head per task."""

from __future__ import annotations

import torch
from torch import nn

from mtsearch.config import RunConfig
from mtsearch.heads import HEADS
from mtsearch.pooling import POOLING
from mtsearch.tasks import TASKS


class MultitaskModel(nn.Module):
    def __init__(self, encoder: nn.Module, config: RunConfig):
        super().__init__()
        self.encoder = encoder
        self.tasks = list(config.tasks)
        hidden = encoder.config.hidden_size
        self.pooling = nn.ModuleDict(
            {
                t: POOLING.create(config.pooling, config.args("pooling"), hidden_size=hidden)
                for t in self.tasks
            }
        )
        self.heads = nn.ModuleDict()
        for t in self.tasks:
            spec = TASKS[t]
            self.heads[t] = HEADS.create(
                config.head,
                config.args("head"),
                in_dim=self.pooling[t].out_dim,
                out_dim=spec.num_labels,
                dropout=config.head_dropout,
            )

    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            token_type_ids=inputs["token_type_ids"],
        )
        return out.last_hidden_state

    def forward(self, task: str, inputs: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Raw task output: [B, C] logits for classes, [B] logit or score otherwise."""
        seg = inputs[0]
        hidden = self.encode(seg)
        pooled = self.pooling[task](hidden, seg["attention_mask"])
        out = self.heads[task](pooled)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def task_loss(task: str, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    kind = TASKS[task].kind
    output = output.float()
    if kind == "class":
        return nn.functional.cross_entropy(output, labels.long())
    if kind == "binary":
        return nn.functional.binary_cross_entropy_with_logits(output, labels.float())
    return nn.functional.mse_loss(output, labels.float())


def predictions(task: str, output: torch.Tensor) -> torch.Tensor:
    """Labels for classification tasks, scores for regression (what the metric compares)."""
    kind = TASKS[task].kind
    output = output.float()
    if kind == "class":
        return output.argmax(-1)
    if kind == "binary":
        return (output > 0).long()
    return output
