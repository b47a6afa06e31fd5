"""Masks over space-time patch tokens: V-JEPA's tube masks, or whole frames.

UI-JEPA (arXiv 2409.04081, Sec. 3) pretrains a V-JEPA video encoder, whose
tokens are space-time patches.  Two masking strategies are offered here:

* ``masking="tube"`` (default), after V-JEPA's ``src/masks/multiblock3d.py``
  (``_MaskGenerator``): a block size ``(t, h, w)`` is drawn once per batch
  (``_sample_block_size``: temporal scale x duration, spatial scale x grid area
  at a random aspect ratio), then each clip gets ``num_blocks`` blocks of that
  size at random places (``_sample_block_mask``:
  ``mask[start:start+t, top:top+h, left:left+w]``), i.e. one spatial rectangle
  hidden in ``t`` consecutive frames.  The union is the prediction target, its
  complement the context; both are cut to the batch minimum (``__call__``'s
  ``min_keep_pred`` / ``min_keep_enc``) so the indices stack densely.
  Departure: V-JEPA uses tubelets of 2 frames; here a token is one frame's
  patch (``tubelet_size=1``) so the tube's frames are individually visible.
* ``masking="frame"``: whole frames in at most ``num_blocks`` contiguous
  temporal blocks (the previous behaviour: every patch of a masked frame).

Token index of (frame t, row i, col j) is ``(t * grid_h + i) * grid_w + j``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class MaskConfig:
    """Parameters:
        masking: "tube" (V-JEPA multiblock3d) or "frame" (whole frames).
        num_blocks: tube: blocks per clip (V-JEPA's ``npred``); frame: temporal blocks.
        spatial_scale: tube: range of a block's share of the patch grid.
        temporal_scale: tube: range of a block's share of the frames.
        aspect_ratio: tube: range of a block's height/width ratio.
        mask_ratio: frame: share of frames masked.
    """

    masking: str = "tube"
    num_blocks: int = 2
    spatial_scale: tuple[float, float] = (0.15, 0.4)
    temporal_scale: tuple[float, float] = (0.5, 1.0)
    aspect_ratio: tuple[float, float] = (0.5, 2.0)
    mask_ratio: float = 0.5


@dataclass
class TemporalMaskConfig:
    num_frames: int = 16
    mask_ratio: float = 0.5
    num_blocks: int = 2

    @property
    def num_masked(self) -> int:
        return max(1, min(self.num_frames - 1, round(self.mask_ratio * self.num_frames)))


@dataclass
class TemporalMask:
    """``masked[b, t]`` is True where frame t of clip b is hidden from the context encoder."""

    masked: torch.Tensor  # bool [B, T]
    visible_idx: torch.Tensor  # long [B, V], ascending
    masked_idx: torch.Tensor  # long [B, M], ascending


@dataclass
class TokenMask:
    """``masked[b, t, i, j]``: token hidden from the context; indices are flat token ids.

    ``visible_idx`` (context) and ``masked_idx`` (prediction targets) are disjoint,
    ascending, and cut to the batch minimum as in V-JEPA, so a few tokens of some
    clips are in neither.
    """

    masked: torch.Tensor  # bool [B, T, Hp, Wp]
    visible_idx: torch.Tensor  # long [B, V]
    masked_idx: torch.Tensor  # long [B, M]


def _random_composition(total: int, parts: int, minimum: int, generator: torch.Generator) -> list[int]:
    """Split ``total`` into ``parts`` integers >= ``minimum`` uniformly over compositions."""
    free = total - parts * minimum
    cuts = torch.randint(0, free + 1, (parts - 1,), generator=generator).sort().values.tolist()
    bounds = [0, *cuts, free]
    return [minimum + bounds[i + 1] - bounds[i] for i in range(parts)]


def sample_block_mask(config: TemporalMaskConfig, generator: torch.Generator) -> torch.Tensor:
    """One clip's mask: ``num_masked`` whole frames in at most ``num_blocks`` contiguous blocks."""
    t, m = config.num_frames, config.num_masked
    k = max(1, min(config.num_blocks, m, t - m + 1))
    blocks = _random_composition(m, k, 1, generator)
    # Gaps between blocks are >= 1 so blocks stay separate; the ends may be empty.
    gaps = _random_composition(t - m + 2, k + 1, 1, generator)
    gaps = [gaps[0] - 1, *gaps[1:-1], gaps[-1] - 1]
    mask = torch.zeros(t, dtype=torch.bool)
    pos = gaps[0]
    for i, length in enumerate(blocks):
        mask[pos : pos + length] = True
        pos += length + gaps[i + 1]
    return mask


def sample_temporal_masks(batch_size: int, config: TemporalMaskConfig, generator: torch.Generator) -> TemporalMask:
    masked = torch.stack([sample_block_mask(config, generator) for _ in range(batch_size)])
    order = torch.arange(config.num_frames).expand(batch_size, -1)
    # Sorting on (masked, time) puts visible frames first, each group in time order.
    key = masked.long() * config.num_frames + order
    idx = key.argsort(dim=1)
    v = config.num_frames - config.num_masked
    return TemporalMask(masked, idx[:, :v], idx[:, v:])


def _uniform(lo_hi: tuple[float, float], generator: torch.Generator) -> float:
    lo, hi = lo_hi
    return lo + float(torch.rand(1, generator=generator)) * (hi - lo)


def sample_tube_size(grid: tuple[int, int, int], cfg: MaskConfig, generator: torch.Generator) -> tuple[int, int, int]:
    """(t, h, w) of the batch's blocks (V-JEPA ``_sample_block_size``)."""
    frames, gh, gw = grid
    t = max(1, int(frames * _uniform(cfg.temporal_scale, generator)))
    keep = max(1, int(gh * gw * _uniform(cfg.spatial_scale, generator)))
    ar = _uniform(cfg.aspect_ratio, generator)
    h = max(1, min(gh, int(round(math.sqrt(keep * ar)))))
    w = max(1, min(gw, int(round(math.sqrt(keep / ar)))))
    return t, h, w


def sample_tube_mask(grid: tuple[int, int, int], size: tuple[int, int, int], num_blocks: int,
                     generator: torch.Generator) -> torch.Tensor:
    """bool [T, Hp, Wp]: ``num_blocks`` blocks of ``size`` at random places (V-JEPA ``_sample_block_mask``)."""
    frames, gh, gw = grid
    t, h, w = size
    mask = torch.zeros(grid, dtype=torch.bool)
    for _ in range(num_blocks):
        start = int(torch.randint(0, frames - t + 1, (1,), generator=generator))
        top = int(torch.randint(0, gh - h + 1, (1,), generator=generator))
        left = int(torch.randint(0, gw - w + 1, (1,), generator=generator))
        mask[start : start + t, top : top + h, left : left + w] = True
    return mask


def _dense(masked: torch.Tensor) -> TokenMask:
    flat = masked.flatten(1)
    m = int(flat.sum(1).min())
    v = int((~flat).sum(1).min())
    if m == 0 or v == 0:
        raise ValueError("every clip needs at least one masked and one visible token")
    order = torch.arange(flat.shape[1]).expand_as(flat)
    n = flat.shape[1]
    # Sorting on (masked, index) puts context tokens first, each group ascending.
    idx = (flat.long() * n + order).argsort(dim=1)
    counts_visible = (~flat).sum(1)
    masked_idx = torch.stack([row[c : c + m] for row, c in zip(idx, counts_visible.tolist(), strict=True)])
    return TokenMask(masked, idx[:, :v], masked_idx)


def sample_token_masks(batch_size: int, grid: tuple[int, int, int], cfg: MaskConfig,
                       generator: torch.Generator) -> TokenMask:
    """Masks for a batch over a ``(T, Hp, Wp)`` token grid, as ``cfg.masking`` says."""
    frames, gh, gw = grid
    if cfg.masking == "frame":
        per_frame = sample_temporal_masks(batch_size, TemporalMaskConfig(frames, cfg.mask_ratio, cfg.num_blocks),
                                          generator).masked
        return _dense(per_frame[:, :, None, None].expand(-1, -1, gh, gw).clone())
    if cfg.masking != "tube":
        raise ValueError(f"masking must be 'tube' or 'frame', not {cfg.masking!r}")
    size = sample_tube_size(grid, cfg, generator)
    masks = []
    for _ in range(batch_size):
        mask = sample_tube_mask(grid, size, cfg.num_blocks, generator)
        while mask.all():  # V-JEPA resamples a clip whose context came out empty
            mask = sample_tube_mask(grid, size, cfg.num_blocks, generator)
        masks.append(mask)
    return _dense(torch.stack(masks))


def contiguous_runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-D bool mask."""
    runs, start = [], None
    for i, v in enumerate(mask.tolist() + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i - start))
            start = None
    return runs
