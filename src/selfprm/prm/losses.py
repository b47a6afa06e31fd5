"""PRM losses: BCE on hard labels, BCE on soft labels, and MetaStone-S1's SPR loss.

All take step logits ``z [B, S]``, targets ``y [B, S]`` and a mask ``m [B, S]`` of the steps
that count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean BCE over the masked steps: ``-Σ m_i [y_i log σ(z_i) + (1-y_i) log(1-σ(z_i))] / Σ m_i``.

    The same formula is the *soft-label* BCE when ``y_i`` is a share in [0, 1] (Math-Shepherd's
    soft estimate), so both losses are this function.
    """
    w = mask.float() if weights is None else mask.float() * weights
    per = F.binary_cross_entropy_with_logits(logits, targets.float(), reduction="none")
    return (per * w).sum() / w.sum().clamp_min(1e-8)


def class_balanced_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BCE with each class weighted by the other's share (the SPR warm start: no filter yet)."""
    return spr_loss(logits, targets, mask, filter_by_prediction=False).loss


@dataclass
class SPRLossOutput:
    loss: torch.Tensor
    kept_pos: int  # positive-labelled steps the filter kept
    kept_neg: int
    total_pos: int
    total_neg: int


def spr_loss(
    logits: torch.Tensor,
    pseudo_labels: torch.Tensor,
    mask: torch.Tensor,
    pos_factor: float = 1.5,
    filter_by_prediction: bool = True,
) -> SPRLossOutput:
    """MetaStone-S1's self-supervised process reward loss (arXiv 2507.01951, Eq. 3-4).

        L_SPR = Σ_i w_i · BCE(σ(z_i), y_i) / Σ_i w_i
        w_i   = 1[(z_i > 0 ∧ y_i = 1) ∨ (z_i < 0 ∧ y_i = 0)] · c(y_i)

    ``y_i`` is the final outcome broadcast to every step. The indicator is the dynamic filter: a
    step counts only while the head's current prediction agrees with its pseudo-label, so a step
    whose prediction disagrees contributes nothing. ``c`` balances the classes among the kept
    steps as the public code does (``dp_actor.py``): with K+ and K- the kept counts (each +1),
    c(1) = pos_factor · K-/(K+ + K-), c(0) = K+/(K+ + K-), pos_factor = 1.5 there.

    The filter can collapse: once the head leans to one class, the other class's steps are all
    filtered out and nothing pulls it back. ``kept_pos`` / ``kept_neg`` let training log that.
    """
    y = pseudo_labels.float()
    m = mask.bool()
    if filter_by_prediction:
        agree = ((logits > 0) & (y > 0.5)) | ((logits < 0) & (y <= 0.5))
        keep = m & agree
    else:
        keep = m
    pos = (keep & (y > 0.5)).float()
    neg = (keep & (y <= 0.5)).float()
    k_pos = pos.sum().detach() + 1
    k_neg = neg.sum().detach() + 1
    total = k_pos + k_neg
    w = pos_factor * pos * (k_neg / total) + neg * (k_pos / total)
    per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    loss = (per * w).sum() / (w.sum() + 1e-5)
    return SPRLossOutput(
        loss=loss,
        kept_pos=int(pos.sum()),
        kept_neg=int(neg.sum()),
        total_pos=int((m & (y > 0.5)).sum()),
        total_neg=int((m & (y <= 0.5)).sum()),
    )
