"""Video encoder over space-time patch tokens, predictor and EMA target (UI-JEPA, arXiv 2409.04081).

The encoder follows V-JEPA (Bardes et al., 2024; facebookresearch/jepa
``src/models/vision_transformer.py``) at toy scale: every frame is cut into
``patch_size`` x ``patch_size`` patches, and ``tubelet_size`` consecutive frames'
patches at one place form a *tubelet* that is linearly embedded as one token
(V-JEPA's ``PatchEmbed3D``, a Conv3d with kernel = stride = (tubelet, p, p);
V-JEPA's default tubelet is 2 frames, ``tubelet_size=1`` gives one token per
patch and frame) and gets a fixed
3-D sine-cosine position embedding (time, row, column; V-JEPA's
``get_3d_sincos_pos_embed``), and a transformer mixes all tokens.  With
``token_idx`` only the listed tokens' pixels are embedded: the context encoder
never reads a masked patch.

The predictor follows V-JEPA's ``src/models/predictor.py``
(``VisionTransformerPredictor.forward``): context tokens are projected to the
predictor width and get the predictor's position embedding at their positions;
one learned mask token (zero-initialised), plus the position embedding of each
*target* position, stands for every masked token; the concatenation goes
through the transformer, and the outputs at the mask tokens are projected back
to the encoder width.

The target encoder is an exponential moving average of the context encoder
(I-JEPA, Assran et al. 2023; V-JEPA) and never receives gradients:

    θ̄ ← m θ̄ + (1 − m) θ
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class EncoderConfig:
    """Parameters:
        frame_size: frames are ``frame_size`` x ``frame_size`` grayscale.
        num_frames: frames per clip.
        patch_size: side of a square patch; a frame has ``(frame_size // patch_size) ** 2`` tokens.
        tubelet_size: consecutive frames in one token (V-JEPA's default 2); must divide ``num_frames``.
        dim, depth, heads: the encoder transformer.
        predictor_dim, predictor_depth: the (narrower) predictor transformer.
    """

    frame_size: int = 32
    num_frames: int = 16
    patch_size: int = 8
    tubelet_size: int = 2
    dim: int = 96
    depth: int = 2
    heads: int = 4
    predictor_dim: int = 64
    predictor_depth: int = 2

    def __post_init__(self) -> None:
        if self.frame_size % self.patch_size or self.num_frames % self.tubelet_size:
            raise ValueError(f"patch_size {self.patch_size} must divide frame_size {self.frame_size} and "
                             f"tubelet_size {self.tubelet_size} must divide num_frames {self.num_frames}")

    @property
    def grid(self) -> tuple[int, int, int]:
        """The token grid (time, rows, columns): time counts tubelets, not frames."""
        side = self.frame_size // self.patch_size
        return self.num_frames // self.tubelet_size, side, side

    @property
    def token_pixels(self) -> int:
        """Pixels in one token: a tubelet of ``tubelet_size`` frames of a ``patch_size``² patch."""
        return self.tubelet_size * self.patch_size**2

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Make module initialisation repeatable without touching the caller's RNG.

    ``nn.Module`` constructors draw from torch's global generator; forking it
    keeps library code free of global seeding side effects.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_3d(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """[T*H*W, dim] fixed position embedding, V-JEPA's ``get_3d_sincos_pos_embed`` split.

    Height and width get ``2*ceil(dim/6)`` dims each, time the rest; token order (t, h, w).
    """
    t, h, w = grid
    hw_dim = int(np.ceil(dim / 6) * 2)
    t_dim = dim - 2 * hw_dim
    gt, gh, gw = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
    emb = np.concatenate([_sincos_1d(t_dim, gt), _sincos_1d(hw_dim, gh), _sincos_1d(hw_dim, gw)], axis=1)
    return torch.from_numpy(emb).float()


def _transformer(dim: int, depth: int, heads: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b]]`` for ``x`` of shape [B, N, ...] and ``idx`` [B, K]."""
    expand = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:])
    return torch.gather(x, 1, expand)


gather_frames = gather_tokens  # a frame is a token when patch_size == frame_size


def patchify(frames: torch.Tensor, patch_size: int, tubelet_size: int = 1) -> torch.Tensor:
    """[B, T, H, W] -> [B, (T/k)*(H/p)*(W/p), k*p*p] pixel tubelets in token order (t, row, col).

    ``k = tubelet_size`` frames of one ``p`` x ``p`` patch form a token, as V-JEPA's Conv3d patch
    embedding (kernel = stride = (k, p, p)) reads them."""
    b, t, h, w = frames.shape
    p, k = patch_size, tubelet_size
    x = frames.reshape(b, t // k, k, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
    return x.reshape(b, (t // k) * (h // p) * (w // p), k * p * p)


class VideoEncoder(nn.Module):
    """Patch tokens + 3-D sincos positions -> transformer -> LayerNorm; [B, N, dim] out."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Linear(cfg.token_pixels, cfg.dim)
        self.register_buffer("pos", sincos_3d(cfg.dim, cfg.grid), persistent=False)
        self.blocks = _transformer(cfg.dim, cfg.depth, cfg.heads)
        self.norm = nn.LayerNorm(cfg.dim)

    def forward(self, frames: torch.Tensor, token_idx: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``frames`` [B, T, H, W] (in [0, 1]); with ``token_idx`` [B, V] only those tokens.

        Returns one embedding per encoded token, [B, V, dim] (V = N = T*Hp*Wp without ``token_idx``).
        """
        patches = (patchify(frames, self.cfg.patch_size, self.cfg.tubelet_size) - 0.25) / 0.3  # rough screen mean/std
        pos = self.pos.expand(len(frames), -1, -1)
        if token_idx is not None:
            # Masked patches are dropped before the embedding: no pixel of them is ever read.
            patches, pos = gather_tokens(patches, token_idx), gather_tokens(pos, token_idx)
        return self.norm(self.blocks(self.patch_embed(patches) + pos))


class Predictor(nn.Module):
    """Narrow transformer over context tokens + position-carrying mask tokens (V-JEPA predictor).

    For JEPA it outputs latent vectors (``out_dim = dim``); for the masked
    autoencoder baseline the same module outputs pixels (``out_dim = token_pixels``).
    """

    def __init__(self, cfg: EncoderConfig, out_dim: int) -> None:
        super().__init__()
        p = cfg.predictor_dim
        self.embed = nn.Linear(cfg.dim, p)
        self.mask_token = nn.Parameter(torch.zeros(p))  # V-JEPA: zero_init_mask_tokens
        self.register_buffer("pos", sincos_3d(p, cfg.grid), persistent=False)
        self.blocks = _transformer(p, cfg.predictor_depth, max(1, p // 32))
        self.norm = nn.LayerNorm(p)
        self.out = nn.Linear(p, out_dim)

    def forward(self, context: torch.Tensor, visible_idx: torch.Tensor, masked_idx: torch.Tensor) -> torch.Tensor:
        """context [B, V, dim] at ``visible_idx`` -> predictions [B, M, out_dim] at ``masked_idx``."""
        pos = self.pos.expand(len(context), -1, -1)
        ctx = self.embed(context) + gather_tokens(pos, visible_idx)
        queries = self.mask_token + gather_tokens(pos, masked_idx)
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
    """UI-JEPA / V-JEPA latent loss over masked tokens only.

        L = 1/(|M| d) Σ_{i ∈ M} ‖ P(E(x_context), i) − sg(LN(Ē(x)))_i ‖₁

    ``predicted`` [B, M, d] are the predictor's outputs at ``masked_idx``;
    ``target`` [B, N, d] are the target encoder's embeddings of *all* tokens,
    of which only the masked ones are gathered, so context tokens carry no loss.
    """
    return (predicted - gather_tokens(target, masked_idx)).abs().mean()
