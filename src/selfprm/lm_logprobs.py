"""Next-token log-probabilities of token-id sequences under a causal LM (shared by RL and the implicit PRM)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``[B, W]`` ids and attention mask, so positions stay ``0..L-1`` as in SFT."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def next_token_logprobs(model, ids: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log π(y_t | y_<t)`` for t = 1..W-1, shape ``[B, W-1]`` (padding positions hold garbage: mask them)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float() / temperature
    return logprobs_of_next(logits, ids)


def logprobs_of_next(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``log softmax(logits)`` at the token each position predicts: ``logits[..., t, :]`` scores
    ``ids[..., t + 1]``, so ``logits`` holds one position fewer than ``ids``."""
    return torch.gather(F.log_softmax(logits.float(), -1), -1, ids[..., 1:, None]).squeeze(-1)
