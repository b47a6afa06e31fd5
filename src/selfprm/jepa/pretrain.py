"""Self-supervised pretraining on unlabeled recordings: JEPA and a pixel MAE.

Both loops share the encoder, the token masks (tube or whole-frame, see
:mod:`selfprm.jepa.masking`), the number of steps, the batch size and the
optimiser, so the only difference is *what* is predicted for the masked tokens:

* **JEPA** (UI-JEPA, arXiv 2409.04081; V-JEPA, Bardes et al. 2024; I-JEPA,
  Assran et al. 2023): the representation of each masked token under an EMA
  target encoder, with an L1 loss in latent space.
* **MAE** (He et al. 2022, VideoMAE): the masked patches' (per-patch
  normalised) pixels, with an L2 loss.

JEPA additionally runs the (gradient-free) target encoder forward once per
step.  Collapse is monitored on the batch's clip embeddings (mean of the
context tokens per clip) with two numbers logged every ``log_every`` steps:

* ``embedding_std``: the per-dimension std across the batch, averaged over
  dimensions (0 for a collapsed, constant embedding);
* ``effective_rank``: RankMe (Garrido et al. 2023), ``exp`` of the entropy of
  the normalised singular values (1 for a constant embedding, at most
  ``min(B, d)``; low values mean dimensional collapse).

Snapshots of the encoder at ``checkpoints`` evenly spaced steps (step 0
included) are kept so that the study can draw probe accuracy against
pretraining steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from selfprm.jepa.masking import MaskConfig, sample_token_masks
from selfprm.jepa.model import (
    EncoderConfig,
    Predictor,
    VideoEncoder,
    ema_update,
    gather_tokens,
    latent_l1_loss,
    make_target_encoder,
    patchify,
    seeded_init,
)


@dataclass
class PretrainConfig:
    """Parameters:
        steps, batch_size, lr, weight_decay, warmup_steps: AdamW with linear warmup and cosine decay.
        ema_start, ema_end: the target's momentum, ramped linearly (I-JEPA).
        mask: the token masks (``masking="tube"`` by default, or ``"frame"``).
        log_every: steps between loss / collapse-metric records.
        checkpoints: encoder snapshots kept at evenly spaced steps, step 0 and the last included
            (0 keeps none).
    """

    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 40
    ema_start: float = 0.99
    ema_end: float = 0.999
    mask: MaskConfig = field(default_factory=MaskConfig)
    log_every: int = 20
    checkpoints: int = 4


@dataclass
class PretrainResult:
    encoder: VideoEncoder
    history: list[dict[str, float]]
    seconds: float
    steps: int
    batch_size: int
    checkpoints: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)  # step -> encoder state


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    return frames.float().div_(255.0)


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean over dimensions of the std across samples ([..., d] flattened to rows): 0 means collapse."""
    flat = embeddings.reshape(-1, embeddings.shape[-1]).float()
    return float(flat.std(dim=0).mean())


def effective_rank(embeddings: torch.Tensor) -> float:
    """RankMe (Garrido et al. 2023): exp(H(σ / Σσ)) of the singular values of [n, d] rows.

    A constant batch has one non-zero singular value: rank 1.  All-zero gives 0.
    """
    flat = embeddings.reshape(-1, embeddings.shape[-1]).double()
    s = torch.linalg.svdvals(flat)
    if float(s.sum()) <= 1e-12:
        return 0.0
    p = s / s.sum()
    return float(torch.exp(-torch.special.xlogy(p, p).sum()))


def collapse_metrics(tokens: torch.Tensor) -> dict[str, float]:
    """Collapse checks on a batch of token embeddings [B, L, d], on the clip means [B, d]."""
    clips = tokens.detach().mean(dim=1)
    return {"embedding_std": embedding_std(clips), "effective_rank": effective_rank(clips)}


def checkpoint_steps(cfg: PretrainConfig) -> list[int]:
    if cfg.checkpoints <= 0:
        return []
    if cfg.checkpoints == 1:
        return [cfg.steps]
    return sorted({round(i * cfg.steps / (cfg.checkpoints - 1)) for i in range(cfg.checkpoints)})


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def jepa_loss(
    encoder: VideoEncoder,
    target_encoder: VideoEncoder,
    predictor: Predictor,
    frames: torch.Tensor,
    visible_idx: torch.Tensor,
    masked_idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 between predicted and EMA-target embeddings of the masked tokens.

    Target: sg(LN(Ē(x))) over the whole clip (V-JEPA's layer-normed target);
    context: E(x_visible); prediction: P(context, positions of masked tokens).
    Returns (loss, context embeddings).
    """
    with torch.no_grad():
        target = target_encoder(frames)
        target = F.layer_norm(target, target.shape[-1:])
    context = encoder(frames, visible_idx)
    predicted = predictor(context, visible_idx, masked_idx)
    return latent_l1_loss(predicted, target, masked_idx), context


def mae_loss(
    encoder: VideoEncoder,
    decoder: Predictor,
    frames: torch.Tensor,
    visible_idx: torch.Tensor,
    masked_idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error on the normalised pixels of masked patches (MAE's norm_pix_loss)."""
    context = encoder(frames, visible_idx)
    predicted = decoder(context, visible_idx, masked_idx)
    pixels = gather_tokens(patchify(frames, encoder.cfg.patch_size, encoder.cfg.tubelet_size), masked_idx)
    pixels = (pixels - pixels.mean(-1, keepdim=True)) / (pixels.std(-1, keepdim=True) + 1e-3)
    return F.mse_loss(predicted, pixels), context


def _pretrain(
    method: str,
    frames: torch.Tensor,
    enc_cfg: EncoderConfig,
    cfg: PretrainConfig,
    seed: int,
    progress: bool,
) -> PretrainResult:
    gen = torch.Generator().manual_seed(seed)
    with seeded_init(seed):
        encoder = VideoEncoder(enc_cfg)
        head = Predictor(enc_cfg, enc_cfg.dim if method == "jepa" else enc_cfg.token_pixels)
    target = make_target_encoder(encoder) if method == "jepa" else None
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict[str, float]] = []
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    keep = set(checkpoint_steps(cfg))
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"{method} pretrain", disable=not progress, leave=False)
    for step in bar:
        if step in keep:
            snapshots[step] = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
        batch = frames_to_float(frames[torch.randint(len(frames), (cfg.batch_size,), generator=gen)])
        mask = sample_token_masks(cfg.batch_size, enc_cfg.grid, cfg.mask, gen)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        if target is not None:
            loss, context = jepa_loss(encoder, target, head, batch, mask.visible_idx, mask.masked_idx)
        else:
            loss, context = mae_loss(encoder, head, batch, mask.visible_idx, mask.masked_idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if target is not None:
            # I-JEPA's momentum schedule: m ramps linearly from ema_start to ema_end.
            m = cfg.ema_start + (cfg.ema_end - cfg.ema_start) * step / max(1, cfg.steps - 1)
            ema_update(target, encoder, m)
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            collapse = collapse_metrics(context)
            loss_value = float(loss.detach())
            history.append({"step": step, "loss": loss_value, **collapse})
            bar.set_postfix(loss=f"{loss_value:.4f}", emb_std=f"{collapse['embedding_std']:.3f}",
                            rank=f"{collapse['effective_rank']:.1f}")
    if cfg.steps in keep:
        snapshots[cfg.steps] = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    encoder.eval()
    return PretrainResult(encoder, history, time.perf_counter() - start, cfg.steps, cfg.batch_size, snapshots)


def pretrain_jepa(
    frames: torch.Tensor, enc_cfg: EncoderConfig, cfg: PretrainConfig, seed: int, progress: bool = True
) -> PretrainResult:
    """UI-JEPA pretraining (tube or frame masks, EMA target, latent L1) on uint8 clips [N, T, H, W]."""
    return _pretrain("jepa", frames, enc_cfg, cfg, seed, progress)


def pretrain_mae(
    frames: torch.Tensor, enc_cfg: EncoderConfig, cfg: PretrainConfig, seed: int, progress: bool = True
) -> PretrainResult:
    """Masked-autoencoder pretraining at the same steps, batch, masks and encoder as JEPA."""
    return _pretrain("mae", frames, enc_cfg, cfg, seed, progress)
