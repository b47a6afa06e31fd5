"""The embedded default policy: a tiny causal LM built from a config and trained from scratch.

Nothing is downloaded. The tokenizer is character level, built locally with ``tokenizers`` from
the domain's character set and wrapped as a ``PreTrainedTokenizerFast`` so it saves and loads
like any Hugging Face tokenizer. The model learns the domain by supervised fine-tuning (SFT) on
the domain's worked solutions; sampled at a temperature above 0 it errs at a measurable rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

SPECIAL = ["<pad>", "<bos>", "<eos>", "<unk>"]


def build_char_tokenizer(charset: str):
    """A character-level fast tokenizer whose vocabulary is ``charset`` plus four special tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for ch in dict.fromkeys(charset):
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


@dataclass
class TinyLMConfig:
    """Shape of the tiny causal LM.

    ``arch="llama"`` (rotary positions) is the default: a step ``a*b=r`` asks the model to look a
    fixed number of characters back wherever the step sits, which rotary positions express once
    and learned absolute positions (``"gpt2"``) must learn at every offset. Measured on arith
    (3-6 operations, T=0.7): after 600 SFT steps at width 64, Llama wrote 16% of steps sound and
    GPT-2 1%; GPT-2 reached 89% after 1500 steps (about 180 s on 2 cores at the pace of
    its 600-step run), Llama at width 128 after 400 (132 s). Width matters as much: Llama at width 96 had 20% sound steps after 400.

    Parameters:
        arch: ``llama`` (rotary positions) or ``gpt2``.
        n_layer: transformer blocks.
        n_head: attention heads.
        n_embd: width.
        n_positions: longest sequence.
    """

    arch: str = "llama"  # "llama" or "gpt2"
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 256


def build_tiny_lm(tokenizer, config: TinyLMConfig | None = None, seed: int = 0):
    """A causal LM (Llama or GPT-2) from a config alone, initialised from ``seed``."""
    c = config or TinyLMConfig()
    special = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    if c.arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=c.n_embd, intermediate_size=4 * c.n_embd,
            num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=c.n_head,
            max_position_embeddings=c.n_positions, tie_word_embeddings=True, **special,
        )
        cls = LlamaForCausalLM
    elif c.arch == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            vocab_size=len(tokenizer), n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
            n_head=c.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **special,
        )
        cls = GPT2LMHeadModel
    else:
        raise ValueError(f"unknown tiny LM arch {c.arch!r}; choose 'llama' or 'gpt2'")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(cfg)


@dataclass
class SFTConfig:
    """Supervised fine-tuning of the tiny policy on worked solutions.

    Parameters:
        steps: optimizer steps.
        batch_size: sequences per step.
        lr: peak learning rate (cosine schedule after the warm-up).
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay.
        seed: initialisation, batches and the worked solutions drawn.
    """

    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0


def train_sft(model, tokenizer, texts: Sequence[tuple[str, str]], config: SFTConfig | None = None, progress: bool = True) -> list[float]:
    """Next-token cross-entropy on ``<bos> prompt completion <eos>``, counted on the completion.

    ``texts`` are ``(prompt, completion)`` pairs; returns the loss curve.

    A cosine schedule after a linear warm-up; batches drawn with the config's seed.
    """
    c = config or SFTConfig()
    rng = np.random.default_rng(c.seed)
    # Loss on the solution only: the prompt's digits are random and would only teach noise.
    enc, starts = [], []
    for prompt, completion in texts:
        p_ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        enc.append(p_ids + c_ids)
        starts.append(len(p_ids))
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / c.warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / c.steps)))
    )
    model.train()
    device = next(model.parameters()).device
    losses = []
    bar = tqdm(range(c.steps), desc="SFT policy", disable=not progress, leave=False)
    for _ in bar:
        idx = rng.integers(0, len(enc), size=c.batch_size)
        width = max(len(enc[i]) for i in idx)
        ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(idx), width), -100, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.bool)
        for r, i in enumerate(idx):
            b = enc[i]
            ids[r, : len(b)] = torch.tensor(b)
            mask[r, : len(b)] = True
            labels[r, starts[i]: len(b)] = ids[r, starts[i]: len(b)]
        out = model(input_ids=ids.to(device), attention_mask=mask.long().to(device), labels=labels.to(device))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(out.loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


def train_policy_model(domain, n_train_problems: int, lm: TinyLMConfig, sft: SFTConfig, progress: bool = True):
    """A tiny causal LM and its tokenizer built from configs and trained by SFT on ``n_train_problems``
    worked solutions of ``domain``; returns ``(model, tokenizer, losses)``.

    Caching and resume are the run directory's job (:func:`selfprm.studies.stages.policy_stage`).
    """
    tok = build_char_tokenizer(domain.charset())
    model = build_tiny_lm(tok, lm, seed=sft.seed)
    rng = np.random.default_rng(sft.seed + 1)
    problems = domain.sample_problems(n_train_problems, seed=sft.seed + 10_000, prefix="sft")
    texts = []
    for p in problems:
        steps, ans = domain.worked_solution(p, rng)
        full = domain.sft_text(p, steps, ans)
        prompt = domain.render(p)
        texts.append((prompt, full[len(prompt):]))
    losses = train_sft(model, tok, texts, sft, progress=progress)
    return model, tok, losses
