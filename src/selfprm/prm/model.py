"""A process reward model: a scoring head on any ``transformers`` backbone.

The trajectory is written once — ``[BOS/CLS] prompt SEP step_1 SEP step_2 SEP ...`` — and the
head reads a score at the last token of every ``step_i SEP`` piece, so one forward pass scores
every step. With a decoder backbone each score sees exactly the prefix up to its step; with an
encoder (MiniLM) it also sees the steps after it, the usual trade of encoder PRMs.

    r_i = σ(w · h_{t_i} + b),   t_i = last token of step i

Inputs longer than ``max_length`` are cut from the left — the start of the problem goes first —
and never dropped; a step whose end falls off too is reported unscored (NaN).

*Surprise features* (``PRMConfig.surprise_features``, causal-LM backbones). The head may also read
how unlikely the backbone's own LM head found the step's tokens::

    s_i = min_{t in step i} log p(x_t | x_<t),   m_i = mean_{t in step i} log p(x_t | x_<t),
    c_i = min_{j <= i} s_j,                       r_i = σ(w · [h_{t_i}; s_i; m_i; c_i] + b)

A small decoder cannot both find an error and carry that finding to later steps in one pass: a
2-layer model needs one layer to gather a step's tokens, one to compare them, and a third to pass
the verdict on. The log-probabilities make the comparison explicit (a wrong result is an unlikely
token) and the running minimum ``c_i`` carries it forward, so every label source's PRM can learn
"the prefix went wrong" instead of only "this line looks odd". The features are computed in the
same forward pass through the backbone's own LM head and trained with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from selfprm.lm_logprobs import logprobs_of_next


@dataclass
class PRMConfig:
    """The PRM's shape.

    Parameters:
        step_separator: appended to the prompt and to every step before tokenizing.
        max_length: tokens per example; longer ones are cut from the left.
        surprise_features: causal LMs only: the head also reads the step tokens' log-probs (see the module doc).
        head: ``linear`` (one ``nn.Linear``) or ``mlp`` (MetaStone-S1's ``Linear(C,2C)-ReLU-Dropout(0.5)-Linear``).
        feature_layer: which entry of the backbone's ``hidden_states`` the head reads (-1: the last, -2: the penultimate).
        backbone_grad_scale: share of the head's gradient that reaches the backbone (MetaStone-S1: 1e-4).
    """

    step_separator: str = "\n"
    max_length: int = 512
    surprise_features: bool = False
    head: str = "linear"
    feature_layer: int = -1
    backbone_grad_scale: float = 1.0


# MetaStone-S1's self-supervised PRM as its public code builds it (verl/workers/fsdp_workers.py and
# actor/dp_actor.py): an MLP score head ``Linear(C, 2C)-ReLU-Dropout(0.5)-Linear(2C, 1)`` reading the
# policy's *penultimate* hidden states, ``feat = feat·1e-4 + feat.detach()·(1 - 1e-4)`` so the
# backbone sees 1e-4 of the head's gradient, and solutions scored by the geometric mean of the step
# probabilities (``geommean_scores``). Its head reads hidden states only: no surprise features.
SPR_REFERENCE = {"head": "mlp", "feature_layer": -2, "backbone_grad_scale": 1e-4, "surprise_features": False}
SPR_REFERENCE_AGGREGATION = "geomean"


N_SURPRISE = 3  # s_i, m_i, c_i


@dataclass
class EncodedBatch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    step_positions: torch.Tensor  # [B, S] token index of each step's end (0 where absent)
    step_mask: torch.Tensor  # [B, S] True where a step was scored
    step_starts: torch.Tensor | None = None  # [B, S] token index of each step's first token

    def to(self, device) -> "EncodedBatch":
        return EncodedBatch(*(None if t is None else t.to(device) for t in (
            self.input_ids, self.attention_mask, self.step_positions, self.step_mask, self.step_starts)))


def base_model(model: nn.Module) -> nn.Module:
    """The transformer body of a model with a task head (``GPT2LMHeadModel`` -> ``GPT2Model``)."""
    prefix = getattr(model, "base_model_prefix", None)
    if prefix and hasattr(model, prefix):
        return getattr(model, prefix)
    return model


class ProcessRewardModel(nn.Module):
    def __init__(self, backbone: nn.Module, tokenizer, config: PRMConfig | None = None, lm_head: nn.Module | None = None):
        super().__init__()
        self.config = config or PRMConfig()
        self.lm_head = None
        if self.config.surprise_features:
            self.lm_head = lm_head if lm_head is not None else backbone.get_output_embeddings()
            if self.lm_head is None:
                raise ValueError("surprise_features needs a causal LM backbone with an LM head "
                                 f"({type(backbone).__name__} has none)")
        self.backbone = base_model(backbone)
        self.tokenizer = tokenizer
        width = self.backbone.config.hidden_size + (N_SURPRISE if self.config.surprise_features else 0)
        # Not zero-initialised: SPR's filter keeps a step only when the sign of its logit agrees
        # with the pseudo-label, and an all-zero head agrees with nothing.
        if self.config.head == "linear":
            self.head = nn.Linear(width, 1)
        elif self.config.head == "mlp":
            self.head = nn.Sequential(nn.Linear(width, 2 * width), nn.ReLU(), nn.Dropout(p=0.5), nn.Linear(2 * width, 1))
        else:
            raise ValueError(f"unknown PRM head {self.config.head!r}; choose 'linear' or 'mlp'")

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

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
        rows, ends_all, starts_all = [], [], []
        for prompt, st in zip(prompts, steps):
            pieces = [prompt + sep] + [s + sep for s in st]
            enc = tok(pieces, add_special_tokens=False)["input_ids"]
            body, ends, begins = list(enc[0]), [], []
            for piece in enc[1:]:
                if not piece:  # a step that tokenizes to nothing still needs a place to be read
                    piece = [tok.unk_token_id if tok.unk_token_id is not None else tok.pad_token_id]
                begins.append(len(body))
                body.extend(piece)
                ends.append(len(body) - 1)
            room = limit - len(start)
            cut = max(0, len(body) - room)
            body = body[cut:]
            rows.append(start + body)
            ends_all.append([e - cut + len(start) if e >= cut else -1 for e in ends])
            # a step cut at its start keeps the tokens that are left; token 0 has no log-prob
            starts_all.append([max(1, b - cut + len(start)) for b in begins])
        width = max(len(r) for r in rows)
        n_steps = max(1, max(len(e) for e in ends_all))
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        att = torch.zeros((len(rows), width), dtype=torch.long)
        pos = torch.zeros((len(rows), n_steps), dtype=torch.long)
        smask = torch.zeros((len(rows), n_steps), dtype=torch.bool)
        begin = torch.zeros((len(rows), n_steps), dtype=torch.long)
        for i, (r, e, b) in enumerate(zip(rows, ends_all, starts_all)):
            ids[i, : len(r)] = torch.tensor(r)
            att[i, : len(r)] = 1
            for j, p in enumerate(e):
                if p >= 0:
                    pos[i, j] = p
                    begin[i, j] = b[j]
                    smask[i, j] = True
        return EncodedBatch(ids, att, pos, smask, begin)

    # ------------------------------------------------------------------ forward
    def forward(self, batch: EncodedBatch) -> torch.Tensor:
        """Step logits ``[B, S]`` (meaningful where ``batch.step_mask``)."""
        c = self.config
        out = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                            output_hidden_states=c.feature_layer != -1)
        hidden = out.last_hidden_state
        feats = hidden if c.feature_layer == -1 else out.hidden_states[c.feature_layer]
        if c.backbone_grad_scale != 1.0:
            # the value is unchanged; only backbone_grad_scale of the gradient flows into the backbone
            g = c.backbone_grad_scale
            feats = feats * g + feats.detach() * (1.0 - g)
        idx = batch.step_positions.unsqueeze(-1).expand(-1, -1, feats.size(-1))
        at_steps = feats.gather(1, idx)
        if self.lm_head is not None:
            at_steps = torch.cat([at_steps, self._surprise(hidden, batch).to(at_steps.dtype)], dim=-1)
        return self.head(at_steps).squeeze(-1)

    def _surprise(self, hidden: torch.Tensor, batch: EncodedBatch) -> torch.Tensor:
        """``[B, S, 3]``: the min and mean token log-prob of each step, and the running min."""
        if batch.step_starts is None:
            raise ValueError("surprise features need step_starts from encode()")
        # one row at a time: [T, V] logits stay small even for a 150k-token vocabulary
        tok_lp = torch.stack([logprobs_of_next(self.lm_head(hidden[i, :-1]), batch.input_ids[i])
                              for i in range(hidden.size(0))])  # log p(x_t), t >= 1
        tok_lp = torch.cat([torch.zeros_like(tok_lp[:, :1]), tok_lp], dim=1)  # [B, T], aligned to x_t
        t = torch.arange(tok_lp.size(1), device=tok_lp.device)
        inside = (t[None, None, :] >= batch.step_starts[..., None]) & (t[None, None, :] <= batch.step_positions[..., None])
        inside &= batch.step_mask[..., None]
        lp = tok_lp[:, None, :].expand_as(inside)
        n = inside.sum(-1).clamp(min=1)
        s_min = lp.masked_fill(~inside, float("inf")).amin(-1)
        s_min = torch.where(batch.step_mask, s_min, torch.zeros_like(s_min))  # unscored: neutral
        mean = (lp * inside).sum(-1) / n
        run_min = torch.cummin(s_min, dim=1).values
        return torch.stack([s_min, mean, run_min], dim=-1)

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
        if self.lm_head is not None:
            torch.save(self.lm_head.state_dict(), path / "lm_head.pt")
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
        lm_head = None
        if config.surprise_features:
            state = torch.load(path / "lm_head.pt", map_location="cpu", weights_only=True)
            lm_head = nn.Linear(state["weight"].shape[1], state["weight"].shape[0], bias="bias" in state)
            lm_head.load_state_dict(state)
        prm = cls(backbone, tok, config, lm_head=lm_head)
        prm.head.load_state_dict(torch.load(path / "head.pt", map_location="cpu", weights_only=True))
        return prm.to(device).eval()
