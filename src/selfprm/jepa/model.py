"""Video encoder, predictor and EMA target for UI-JEPA (arXiv 2409.04081).

The encoder follows V-JEPA (Bardes et al., 2024) at toy scale: each frame is
cut into 4x4-pixel patches, embedded and pooled into one token per frame by a
small convolutional stem, and a transformer mixes the frame tokens over time.
Because a token is a whole frame, masking a token hides the whole frame: the
context encoder is only ever given the pixels of visible frames.

The target encoder is an exponential moving average of the context encoder
(I-JEPA, Assran et al. 2023; V-JEPA) and never receives gradients:

    θ̄ ← m θ̄ + (1 − m) θ
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class EncoderConfig:
    frame_size: int = 32
    num_frames: int = 16
    dim: int = 96
    depth: int = 2
    heads: int = 4
    predictor_dim: int = 64
    predictor_depth: int = 2


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Make module initialisation repeatable without touching the caller's RNG.

    ``nn.Module`` constructors draw from torch's global generator; forking it
    keeps library code free of global seeding side effects.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _transformer(dim: int, depth: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def gather_frames(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b]]`` for ``x`` of shape [B, T, ...] and ``idx`` [B, K]."""
    expand = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, expand)


class FrameEncoder(nn.Module):
    """One embedding per frame from its 4x4-pixel patches (frames in [0, 1])."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, 32, kernel_size=4, stride=4)
        self.mix = nn.Conv2d(32, 64, kernel_size=3, stride=2, padding=1)
        self.proj = nn.Linear(64 * (cfg.frame_size // 8) ** 2, cfg.dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = (frames.unsqueeze(1) - 0.25) / 0.3  # rough dataset mean/std of the screens
        x = F.gelu(self.mix(F.gelu(self.patch(x))))
        return self.proj(x.flatten(1))


class VideoEncoder(nn.Module):
    """Frame tokens + learned temporal position embeddings -> transformer -> LayerNorm."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.frame = FrameEncoder(cfg)
        self.pos = nn.Parameter(torch.randn(cfg.num_frames, cfg.dim) * 0.02)
        self.blocks = _transformer(cfg.dim, cfg.depth, cfg.heads)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, frames: torch.Tensor, frame_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``frames`` [B, T, H, W]; with ``frame_idx`` [B, V] only those frames are read.

        Returns one embedding per encoded frame, [B, V, dim] (V = T without ``frame_idx``).
        """
        b, t = frames.shape[:2]
        if frame_idx is None:
            frame_idx = torch.arange(t, device=frames.device).expand(b, -1)
        else:
            # Masked frames are dropped before the stem: no pixel of them is ever read.
            frames = gather_frames(frames, frame_idx)
        tokens = self.frame(frames.flatten(0, 1)).view(b, frame_idx.shape[1], -1)
        return self.norm(self.blocks(tokens + self.pos[frame_idx]))


class Predictor(nn.Module):
    """Narrow transformer that fills in masked frames from the visible context.

    For JEPA it outputs latent vectors (``out_dim = dim``); for the masked
    autoencoder baseline the same module outputs pixels (``out_dim = H*W``).
    """

    def __init__(self, cfg: EncoderConfig, out_dim: int) -> None:
        super().__init__()
        p = cfg.predictor_dim
        self.embed = nn.Linear(cfg.dim, p)
        self.mask_token = nn.Parameter(torch.zeros(p))
        self.pos = nn.Parameter(torch.randn(cfg.num_frames, p) * 0.02)
        self.blocks = _transformer(p, cfg.predictor_depth, max(1, p // 32))
        self.norm = nn.LayerNorm(p)
        self.out = nn.Linear(p, out_dim)

    def forward(self, context: torch.Tensor, visible_idx: torch.Tensor, masked_idx: torch.Tensor) -> torch.Tensor:
        """context [B, V, dim] at ``visible_idx`` -> predictions [B, M, out_dim] at ``masked_idx``."""
        ctx = self.embed(context) + self.pos[visible_idx]
        queries = self.mask_token + self.pos[masked_idx]
        x = self.norm(self.blocks(torch.cat([ctx, queries], dim=1)))
        return self.out(x[:, context.shape[1] :])


def make_target_encoder(online: VideoEncoder) -> VideoEncoder:
    """A frozen copy of ``online`` to be moved by :func:`ema_update` only."""
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """θ̄ ← m θ̄ + (1 − m) θ  (I-JEPA / V-JEPA target update)."""
    for p_target, p_online in zip(target.parameters(), online.parameters(), strict=True):
        p_target.mul_(momentum).add_(p_online.detach(), alpha=1.0 - momentum)


def latent_l1_loss(predicted: torch.Tensor, target: torch.Tensor, masked_idx: torch.Tensor) -> torch.Tensor:
    """UI-JEPA / V-JEPA latent loss over masked frames only.

        L = 1/(|M| d) Σ_{t ∈ M} ‖ P(E(x_visible), t) − sg(LN(Ē(x)))_t ‖₁

    ``predicted`` [B, M, d] are the predictor's outputs at ``masked_idx``;
    ``target`` [B, T, d] are the target encoder's embeddings of *all* frames,
    of which only the masked ones are gathered, so visible frames carry no loss.
    """
    return (predicted - gather_frames(target, masked_idx)).abs().mean()
