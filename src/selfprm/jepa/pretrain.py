"""Self-supervised pretraining on unlabeled recordings: JEPA and a pixel MAE.

Both loops share the encoder, the temporal block masks, the number of steps,
the batch size and the optimiser, so the only difference is *what* is
predicted for the masked frames:

* **JEPA** (UI-JEPA, arXiv 2409.04081; V-JEPA, Bardes et al. 2024; I-JEPA,
  Assran et al. 2023): the representation of each masked frame under an EMA
  target encoder, with an L1 loss in latent space.
* **MAE** (He et al. 2022, VideoMAE): the masked frames' (per-frame
  normalised) pixels, with an L2 loss.

JEPA additionally runs the (gradient-free) target encoder forward once per
step.  Collapse is monitored by the per-dimension standard deviation of the
context embeddings across the batch: a JEPA that collapses to a constant
embedding drives it to zero.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from selfprm.jepa.masking import TemporalMaskConfig, sample_temporal_masks
from selfprm.jepa.model import (
    EncoderConfig,
    Predictor,
    VideoEncoder,
    ema_update,
    gather_frames,
    latent_l1_loss,
    make_target_encoder,
    seeded_init,
)


@dataclass
class PretrainConfig:
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 40
    ema_start: float = 0.99
    ema_end: float = 0.999
    mask: TemporalMaskConfig = field(default_factory=TemporalMaskConfig)
    log_every: int = 20


@dataclass
class PretrainResult:
    encoder: VideoEncoder
    history: list[dict[str, float]]
    seconds: float
    steps: int
    batch_size: int


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    return frames.float().div_(255.0)


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean over dimensions of the std across samples: ~0 means collapse."""
    flat = embeddings.reshape(-1, embeddings.shape[-1]).float()
    return float(flat.std(dim=0).mean())


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
    """L1 between predicted and EMA-target embeddings of the masked frames.

    Target: sg(LN(Ē(x))) over the whole clip (V-JEPA's layer-normed target);
    context: E(x_visible); prediction: P(context, positions of masked frames).
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
    """Mean squared error on the normalised pixels of masked frames (MAE's norm_pix_loss)."""
    context = encoder(frames, visible_idx)
    predicted = decoder(context, visible_idx, masked_idx)
    pixels = gather_frames(frames, masked_idx).flatten(2)
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
        head = Predictor(enc_cfg, enc_cfg.dim if method == "jepa" else enc_cfg.frame_size**2)
    target = make_target_encoder(encoder) if method == "jepa" else None
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    mask_cfg = TemporalMaskConfig(enc_cfg.num_frames, cfg.mask.mask_ratio, cfg.mask.num_blocks)
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=f"{method} pretrain", disable=not progress, leave=False)
    for step in bar:
        batch = frames_to_float(frames[torch.randint(len(frames), (cfg.batch_size,), generator=gen)])
        mask = sample_temporal_masks(cfg.batch_size, mask_cfg, gen)
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
            std = embedding_std(context.detach())
            loss_value = float(loss.detach())
            history.append({"step": step, "loss": loss_value, "embedding_std": std})
            bar.set_postfix(loss=f"{loss_value:.4f}", emb_std=f"{std:.3f}")
    encoder.eval()
    return PretrainResult(encoder, history, time.perf_counter() - start, cfg.steps, cfg.batch_size)


def pretrain_jepa(
    frames: torch.Tensor, enc_cfg: EncoderConfig, cfg: PretrainConfig, seed: int, progress: bool = True
) -> PretrainResult:
    """UI-JEPA pretraining (temporal block masks, EMA target, latent L1) on uint8 clips [N, T, H, W]."""
    return _pretrain("jepa", frames, enc_cfg, cfg, seed, progress)


def pretrain_mae(
    frames: torch.Tensor, enc_cfg: EncoderConfig, cfg: PretrainConfig, seed: int, progress: bool = True
) -> PretrainResult:
    """Masked-autoencoder pretraining at the same steps, batch, masks and encoder as JEPA."""
    return _pretrain("mae", frames, enc_cfg, cfg, seed, progress)
