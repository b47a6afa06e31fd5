"""Reading the user's intent from (frozen) clip embeddings.

UI-JEPA (arXiv 2409.04081) freezes the JEPA video encoder and lets a decoder
read the intent from its embeddings with little paired data; V-JEPA evaluates
frozen encoders with an *attentive probe* (facebookresearch/jepa
``src/models/attentive_pooler.py``: a learned query cross-attends over all
output tokens in a cross-attention block with its MLP, then a linear classifier;
here one cross-attention without the block's MLP).  At toy scale, two heads on the
frozen token embeddings [N, L, d]:

* :class:`IntentHeads`: an attentive probe (:class:`AttentivePool`) followed by
  a small MLP with one softmax for the intent template and one per slot type
  (hour, contact, level, count, ...): the slot is read by a small head;
* :class:`IntentTextDecoder`: a GRU that generates the intent text word by
  word, its initial state an attentive pooling of the tokens (the paper's
  autoregressive head, here a tiny one).

The encoder is not updated, so any difference between encoders is in what
their token embeddings make readable to a learned query.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from selfprm.jepa.model import seeded_init
from selfprm.jepa.ui_streams import SEEN_TEMPLATES, SLOT_TYPES, SLOT_VALUES, TEMPORAL_TEMPLATES, Intent

LABELLED_TEMPLATES = SEEN_TEMPLATES + TEMPORAL_TEMPLATES
TEMPLATE_NAMES: tuple[str, ...] = tuple(t.name for t in LABELLED_TEMPLATES)


class AttentivePool(nn.Module):
    """One learned query cross-attending over the tokens [N, L, d] -> [N, d] (V-JEPA attentive probe)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        kv = self.norm(tokens)
        out, _ = self.attn(self.query.expand(len(tokens), -1, -1), kv, kv, need_weights=False)
        return out.squeeze(1)


@dataclass
class ProbeConfig:
    """Parameters:
        hidden: width of the MLP after the attentive pooling.
        heads: attention heads of the pooling query (must divide the encoder width).
        steps, lr, weight_decay, dropout, batch_size: AdamW training of the probe.
    """

    hidden: int = 128
    heads: int = 4
    steps: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-2
    dropout: float = 0.1
    batch_size: int = 64


@dataclass
class IntentTargets:
    template: torch.Tensor  # long [N]; -1 for templates the heads do not know
    slots: torch.Tensor  # long [N, S]; -1 where the template has no such slot


def intent_targets(intents: list[Intent]) -> IntentTargets:
    template = [TEMPLATE_NAMES.index(i.template) if i.template in TEMPLATE_NAMES else -1 for i in intents]
    slots = [[SLOT_VALUES[s].index(dict(i.slots)[s]) if s in dict(i.slots) else -1 for s in SLOT_TYPES] for i in intents]
    return IntentTargets(torch.tensor(template), torch.tensor(slots).view(len(intents), len(SLOT_TYPES)))


class IntentHeads(nn.Module):
    """Attentive probe over tokens [N, L, in_dim] -> (template logits, per-slot-type logits)."""

    def __init__(self, in_dim: int, cfg: ProbeConfig) -> None:
        super().__init__()
        self.pool = AttentivePool(in_dim, cfg.heads)
        self.trunk = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)
        )
        self.template = nn.Linear(cfg.hidden, len(TEMPLATE_NAMES))
        self.slots = nn.ModuleList(nn.Linear(cfg.hidden, len(SLOT_VALUES[s])) for s in SLOT_TYPES)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if tokens.dim() == 2:  # one feature vector per clip: a single token
            tokens = tokens.unsqueeze(1)
        h = self.trunk(self.pool(tokens))
        return self.template(h), [head(h) for head in self.slots]


def heads_loss(outputs: tuple[torch.Tensor, list[torch.Tensor]], targets: IntentTargets) -> torch.Tensor:
    """Cross-entropy on the template plus the mean over slot types present in the batch."""
    template_logits, slot_logits = outputs
    loss = F.cross_entropy(template_logits, targets.template, ignore_index=-1)
    slot_losses = [
        F.cross_entropy(logits, targets.slots[:, j], ignore_index=-1)
        for j, logits in enumerate(slot_logits)
        if (targets.slots[:, j] >= 0).any()
    ]
    return loss + torch.stack(slot_losses).mean() if slot_losses else loss


def train_probe(
    features: torch.Tensor, intents: list[Intent], cfg: ProbeConfig, generator: torch.Generator, seed: int
) -> IntentHeads:
    """Fit the attentive probe on frozen token features [N, L, d] (or [N, d])."""
    with seeded_init(seed):
        heads = IntentHeads(features.shape[-1], cfg)
    targets = intent_targets(intents)
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(features)
    for _ in range(cfg.steps):
        idx = torch.randint(n, (min(cfg.batch_size, n),), generator=generator) if n > cfg.batch_size else torch.arange(n)
        loss = heads_loss(heads(features[idx]), IntentTargets(targets.template[idx], targets.slots[idx]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    heads.eval()
    return heads


@torch.no_grad()
def evaluate_heads(heads: IntentHeads, features: torch.Tensor, intents: list[Intent]) -> dict[str, float]:
    """intent_accuracy: template argmax; slot_accuracy: per recording, the share of its slots right;
    slot_one_class: 1.0 when a slot with varied true values got a single predicted value.

    For templates unknown to the heads (zero-shot) only slot accuracy is meaningful.
    """
    heads.eval()
    template_logits, slot_logits = heads(features)
    targets = intent_targets(intents)
    known = targets.template >= 0
    intent_acc = (template_logits.argmax(-1) == targets.template)[known].float().mean() if known.any() else None
    slot_pred = torch.stack([logits.argmax(-1) for logits in slot_logits], dim=1)
    present = targets.slots >= 0
    per_recording = ((slot_pred == targets.slots) & present).sum(1).float() / present.sum(1).clamp(min=1)
    out = {"slot_accuracy": float(per_recording.mean())}
    # A degenerate probe predicts one value for a slot whose true values vary: 1.0 when any slot does
    # (its accuracy is then just that value's share of the test set), 0.0 otherwise
    varied = [j for j in range(targets.slots.shape[1]) if targets.slots[present[:, j], j].unique().numel() > 1]
    out["slot_one_class"] = float(any(slot_pred[present[:, j], j].unique().numel() == 1 for j in varied))
    if intent_acc is not None:
        out["intent_accuracy"] = float(intent_acc)
    return out


# --- text decoder -------------------------------------------------------------

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def tokenize(text: str) -> list[str]:
    return text.replace(":", " : ").split()


def intent_vocabulary() -> list[str]:
    """Words of the labelled templates and every slot value: what the labels could ever teach.

    Held-out templates' own words ("video", "volume") are deliberately absent:
    a decoder never shown them cannot produce them, as in the paper's IIW.
    """
    words: set[str] = set()
    for t in LABELLED_TEMPLATES:
        words.update(w for w in tokenize(t.text) if not w.startswith("{"))
    for values in SLOT_VALUES.values():
        words.update(values)
    words.add(":")
    return [PAD, BOS, EOS, UNK, *sorted(words)]


@dataclass
class TextDecoderConfig:
    """Parameters:
        hidden, embed: GRU state and word-embedding widths.
        heads: attention heads of the pooling query over the tokens.
        steps, lr, batch_size: AdamW, teacher-forced training.
        max_len: the most words generated.
    """

    hidden: int = 128
    heads: int = 4
    embed: int = 32
    steps: int = 300
    lr: float = 3e-3
    batch_size: int = 64
    max_len: int = 10


class IntentTextDecoder(nn.Module):
    """GRU language model whose initial state is a projection of an attentive pooling of the tokens."""

    def __init__(self, in_dim: int, vocab: list[str], cfg: TextDecoderConfig) -> None:
        super().__init__()
        self.vocab, self.cfg = vocab, cfg
        self.index = {w: i for i, w in enumerate(vocab)}
        self.pool = AttentivePool(in_dim, cfg.heads)
        self.proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, cfg.hidden), nn.Tanh())

        self.embed = nn.Embedding(len(vocab), cfg.embed)
        self.gru = nn.GRU(cfg.embed, cfg.hidden, batch_first=True)
        self.out = nn.Linear(cfg.hidden, len(vocab))

    def init(self, tokens: torch.Tensor) -> torch.Tensor:
        """Initial GRU state [N, hidden] from tokens [N, L, d] (or one vector [N, d])."""
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(1)
        return self.proj(self.pool(tokens))

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """[N, L] token ids: <bos> words <eos> <pad>..."""
        rows = [[self.index[BOS]] + [self.index.get(w, self.index[UNK]) for w in tokenize(t)] + [self.index[EOS]] for t in texts]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [self.index[PAD]] * (width - len(r)) for r in rows])

    def forward(self, features: torch.Tensor, tokens_in: torch.Tensor) -> torch.Tensor:
        h0 = self.init(features).unsqueeze(0)
        out, _ = self.gru(self.embed(tokens_in), h0)
        return self.out(out)

    @torch.no_grad()
    def generate(self, features: torch.Tensor) -> list[str]:
        """Greedy decoding until <eos> or ``max_len`` words."""
        self.eval()
        h = self.init(features).unsqueeze(0)
        tok = torch.full((len(features), 1), self.index[BOS])
        words: list[list[str]] = [[] for _ in range(len(features))]
        done = torch.zeros(len(features), dtype=torch.bool)
        for _ in range(self.cfg.max_len):
            out, h = self.gru(self.embed(tok), h)
            tok = self.out(out[:, -1]).argmax(-1, keepdim=True)
            for i, t in enumerate(tok.squeeze(1).tolist()):
                if done[i] or t == self.index[EOS]:
                    done[i] = True
                else:
                    words[i].append(self.vocab[t])
            if done.all():
                break
        return [" ".join(w).replace(" : ", ":") for w in words]


def train_text_decoder(
    features: torch.Tensor, intents: list[Intent], cfg: TextDecoderConfig, generator: torch.Generator, seed: int
) -> IntentTextDecoder:
    """Teacher-forced cross-entropy on the intent texts of the labelled recordings."""
    with seeded_init(seed):
        decoder = IntentTextDecoder(features.shape[-1], intent_vocabulary(), cfg)
    tokens = decoder.encode_texts([i.text for i in intents])
    pad = decoder.index[PAD]
    opt = torch.optim.AdamW(decoder.parameters(), lr=cfg.lr)
    n = len(features)
    for _ in range(cfg.steps):
        idx = torch.randint(n, (cfg.batch_size,), generator=generator) if n > cfg.batch_size else torch.arange(n)
        logits = decoder(features[idx], tokens[idx, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[idx, 1:].flatten(), ignore_index=pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    decoder.eval()
    return decoder


def token_f1(predicted: str, reference: str) -> float:
    """Bag-of-words F1 (ROUGE-1-like), the graded credit for partially right intents."""
    p, r = tokenize(predicted), tokenize(reference)
    common = sum(min(p.count(w), r.count(w)) for w in set(p))
    if not p or not r or common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def text_metrics(predicted: list[str], intents: list[Intent]) -> dict[str, float]:
    refs = [i.text for i in intents]
    exact = sum(p == r for p, r in zip(predicted, refs, strict=True)) / len(refs)
    f1 = sum(token_f1(p, r) for p, r in zip(predicted, refs, strict=True)) / len(refs)
    return {"text_exact_match": exact, "text_token_f1": f1}

