"""Temporal block masking of whole frames (UI-JEPA, arXiv 2409.04081, Sec. 3).

UI-JEPA masks whole frames of the screen recording in contiguous temporal
blocks, so that the predictor has to infer what happened *between* the
visible moments (which digit the counter reached, which row got opened)
rather than copying a neighbouring frame's pixels.  Every clip in a batch
gets the same *number* of masked frames (at different places), so visible and
masked frames can be gathered into dense ``[B, V]`` / ``[B, M]`` index tensors,
as in I-JEPA / V-JEPA's collators.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
