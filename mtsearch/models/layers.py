"""The encoder seen as a stack: embeddings, then layers 0..L-1, run in parts.

Freezing the lower layers, layer-wise learning rates and the activation cache all need
to address a BERT-like encoder by depth. transformers' ``BertModel`` (and the models
built like it: ``embeddings`` plus ``encoder.layer``) is run here piece by piece exactly
as its own ``forward`` runs it: embeddings, the attention mask in the format of the
configured attention implementation (``create_bidirectional_mask`` picks SDPA's boolean
mask, eager's additive one, ...), then each layer with ``layer(hidden, mask)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mtsearch.errors import ConfigError


@dataclass(frozen=True)
class EncoderParts:
    """The depth-addressable pieces of a BERT-like encoder."""

    embeddings: nn.Module
    layers: nn.ModuleList

    @property
    def depth(self) -> int:
        return len(self.layers)

    def lower(self, k: int) -> list[nn.Module]:
        """The modules that compute the hidden states after layer k: embeddings + layers[:k]."""
        return [self.embeddings, *self.layers[:k]]


def encoder_parts(encoder: nn.Module) -> EncoderParts | None:
    """The embeddings and layer stack of a BERT-like encoder; None for other architectures."""
    embeddings = getattr(encoder, "embeddings", None)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if isinstance(embeddings, nn.Module) and isinstance(layers, nn.ModuleList) and len(layers):
        return EncoderParts(embeddings, layers)
    return None


def require_parts(encoder: nn.Module, why: str) -> EncoderParts:
    """:func:`encoder_parts`, or a ConfigError naming the setting that needs them."""
    parts = encoder_parts(encoder)
    if parts is None:
        raise ConfigError(
            f"{why} needs a BERT-like encoder (embeddings + encoder.layer), and "
            f"{type(encoder).__name__} is not one"
        )
    return parts


def embed(encoder: nn.Module, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
    """The embedding output (word + position + token type, LayerNorm, dropout)."""
    return encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)


def run_layers(
    encoder: nn.Module,
    hidden: torch.Tensor,
    attention_mask: torch.Tensor,
    start: int,
    stop: int | None = None,
) -> torch.Tensor:
    """Layers ``start .. stop-1`` on ``hidden`` [B, S, H] with the 2-D padding mask [B, S].

    The mask is prepared the way ``BertModel.forward`` prepares it, for the attention
    implementation in the encoder's config, so the result equals the full forward's.
    """
    parts = require_parts(encoder, "running the encoder layer by layer")
    layers = parts.layers[start:stop]
    if not len(layers):
        return hidden
    from transformers.masking_utils import create_bidirectional_mask

    mask = create_bidirectional_mask(
        config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
    )
    for layer in layers:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out  # transformers < 5 returned tuples
    return hidden


def hidden_after(encoder: nn.Module, inputs: dict[str, torch.Tensor], k: int) -> torch.Tensor:
    """Hidden states after the embeddings and the lower ``k`` layers (what the cache stores)."""
    hidden = embed(encoder, inputs["input_ids"], inputs.get("token_type_ids"))
    return run_layers(encoder, hidden, inputs["attention_mask"], 0, k)


def forward_from(
    encoder: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor, k: int
) -> torch.Tensor:
    """The encoder's last hidden state, given the hidden states after its lower ``k`` layers."""
    return run_layers(encoder, hidden, attention_mask, k, None)
