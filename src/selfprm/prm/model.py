"""A process reward model: a scoring head on any ``transformers`` backbone.

The trajectory is written once — ``[BOS/CLS] prompt SEP step_1 SEP step_2 SEP ...`` — and the
head reads a score at the last token of every ``step_i SEP`` piece, so one forward pass scores
every step. With a decoder backbone each score sees exactly the prefix up to its step; with an
encoder (MiniLM) it also sees the steps after it, the usual trade of encoder PRMs.

    r_i = σ(w · h_{t_i} + b),   t_i = last token of step i

Inputs longer than ``max_length`` are cut from the left — the start of the problem goes first —
and never dropped; a step whose end falls off too is reported unscored (NaN).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn


@dataclass
class PRMConfig:
    step_separator: str = "\n"  # appended to the prompt and to every step before tokenizing
    max_length: int = 512


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    step_positions: torch.Tensor  # [B, S] token index of each step's end (0 where absent)
    step_mask: torch.Tensor  # [B, S] True where a step was scored

    def to(self, device) -> "EncodedBatch":
        return EncodedBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.step_positions, self.step_mask)))


def base_model(model: nn.Module) -> nn.Module:
    """The transformer body of a model with a task head (``GPT2LMHeadModel`` -> ``GPT2Model``)."""
    prefix = getattr(model, "base_model_prefix", None)
    if prefix and hasattr(model, prefix):
        return getattr(model, prefix)
    return model


class ProcessRewardModel(nn.Module):
    def __init__(self, backbone: nn.Module, tokenizer, config: PRMConfig | None = None):
        super().__init__()
        self.backbone = base_model(backbone)
        self.tokenizer = tokenizer
        self.config = config or PRMConfig()
        hidden = self.backbone.config.hidden_size
        # Not zero-initialised: SPR's filter keeps a step only when the sign of its logit agrees
        # with the pseudo-label, and an all-zero head agrees with nothing.
        self.head = nn.Linear(hidden, 1)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # ------------------------------------------------------------------ encoding
    def _start_ids(self) -> list[int]:
        tok = self.tokenizer
        for tid in (tok.cls_token_id, tok.bos_token_id):
            if tid is not None:
                return [tid]
        return []

    def encode(self, prompts: Sequence[str], steps: Sequence[Sequence[str]]) -> EncodedBatch:
        tok, sep, limit = self.tokenizer, self.config.step_separator, self.config.max_length
        start = self._start_ids()
        rows, ends_all = [], []
        for prompt, st in zip(prompts, steps):
            pieces = [prompt + sep] + [s + sep for s in st]
            enc = tok(pieces, add_special_tokens=False)["input_ids"]
            body, ends = list(enc[0]), []
            for piece in enc[1:]:
                if not piece:  # a step that tokenizes to nothing still needs a place to be read
                    piece = [tok.unk_token_id if tok.unk_token_id is not None else tok.pad_token_id]
                body.extend(piece)
                ends.append(len(body) - 1)
            room = limit - len(start)
            cut = max(0, len(body) - room)
            body = body[cut:]
            rows.append(start + body)
            ends_all.append([e - cut + len(start) if e >= cut else -1 for e in ends])
        width = max(len(r) for r in rows)
        n_steps = max(1, max(len(e) for e in ends_all))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        pos = torch.zeros((len(rows), n_steps), dtype=torch.long)
        smask = torch.zeros((len(rows), n_steps), dtype=torch.bool)
        for i, (r, e) in enumerate(zip(rows, ends_all)):
            ids[i, : len(r)] = torch.tensor(r)
            att[i, : len(r)] = 1
            for j, p in enumerate(e):
                if p >= 0:
                    pos[i, j] = p
                    smask[i, j] = True
        return EncodedBatch(ids, att, pos, smask)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        """Step logits ``[B, S]`` (meaningful where ``batch.step_mask``)."""
        hidden = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        idx = batch.step_positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        at_steps = hidden.gather(1, idx)
        return self.head(at_steps).squeeze(-1)

    @torch.no_grad()
    def score_steps(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], batch_size: int = 64) -> list[list[float]]:
        """σ(logit) of every step, one list per solution (NaN for a step cut off by truncation)."""
        was = self.training
        self.eval()
        out: list[list[float]] = []
        for s in range(0, len(prompts), batch_size):
            b = self.encode(prompts[s:s + batch_size], steps[s:s + batch_size]).to(self.device)
            probs = torch.sigmoid(self(b).float()).cpu()
            for i, st in enumerate(steps[s:s + batch_size]):
                row = probs[i, : len(st)].tolist()
                ok = b.step_mask[i, : len(st)].tolist()
                out.append([p if k else math.nan for p, k in zip(row, ok)])
        self.train(was)
        return out

    def score_trajectories(self, trajectories, batch_size: int = 64) -> list[list[float]]:
        return self.score_steps([t.problem.prompt for t in trajectories], [t.steps for t in trajectories], batch_size)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(path / "backbone")
        self.tokenizer.save_pretrained(path / "backbone")
        torch.save(self.head.state_dict(), path / "head.pt")
        (path / "prm_config.json").write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "ProcessRewardModel":
        from transformers import AutoModel, AutoTokenizer

        path = Path(path)
        if not (path / "prm_config.json").exists():
            raise FileNotFoundError(f"{path} is not a saved selfprm PRM (no prm_config.json)")
        config = PRMConfig(**json.loads((path / "prm_config.json").read_text()))
        backbone = AutoModel.from_pretrained(path / "backbone")
        tok = AutoTokenizer.from_pretrained(path / "backbone")
        prm = cls(backbone, tok, config)
        prm.head.load_state_dict(torch.load(path / "head.pt", map_location="cpu", weights_only=True))
        return prm.to(device).eval()
