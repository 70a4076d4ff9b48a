"""A continuous-bag-of-words text tower (CLIP's bag-of-words baseline): mean token embedding, then a projection."""
from __future__ import annotations

import torch
from torch import nn


class CBOWText(nn.Module):
    """Mean of a caption's token embeddings, projected to the joint space.

    Tokens come from open_clip's ``SimpleTokenizer``: start token, words, end
    token, zero padding. The mean runs over the positions up to and including the
    end token (so it is defined for every caption, the empty one included). The
    end token has the largest id, so ``argmax`` finds it, as in open_clip's own
    text pooling; padding is found by position because "!" also has id 0.

    Attributes:
        token_embedding: (vocab_size, width).
        proj: linear map width -> output_dim (no bias), the projection head.
    """

    def __init__(self, vocab_size: int, width: int, output_dim: int, context_length: int):
        super().__init__()
        self.vocab_size, self.context_length, self.output_dim = vocab_size, context_length, output_dim
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.proj = nn.Linear(width, output_dim, bias=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)  # CLIP's text-embedding initialisation
        nn.init.normal_(self.proj.weight, std=width**-0.5)

    @staticmethod
    def lengths(tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B,) number of positions up to and including the end token."""
        return tokens.argmax(dim=-1) + 1

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, width) mean token embedding of each caption."""
        keep = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < self.lengths(tokens)[:, None]
        keep = keep.to(self.token_embedding.weight.dtype)
        summed = (self.token_embedding(tokens) * keep[..., None]).sum(dim=1)
        return summed / keep.sum(dim=1, keepdim=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, output_dim) unnormalised features."""
        return self.proj(self.pool(tokens))

    def lock(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """Freeze the embeddings (the tower's only layer) unless ``unlocked_layers`` >= 1; the projection stays trainable."""
        self.token_embedding.weight.requires_grad_(unlocked_layers > 0)
