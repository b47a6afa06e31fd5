"""Any ``transformers`` causal LM as a policy.

Solutions are sampled with ``model.generate`` (left-padded batches, KV cache inside a call);
the text after the rendered prefix is parsed back into steps by the domain. ``tokens_generated``
counts new tokens up to and including the end token.

Sampling is repeatable without touching global RNG state: each call forks the torch RNG and
seeds it from the policy's own seed and a call counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from selfprm.domains.base import Domain
from selfprm.policies.base import Prefix
from selfprm.types import Problem, Trajectory


@dataclass
class HFPolicyConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 256
    seed: int = 0


class HFPolicy:
    def __init__(self, model, tokenizer, domain: Domain, config: HFPolicyConfig | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.domain = domain
        self.config = config or HFPolicyConfig()
        self._calls = 0
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token for batched generation")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sample(self, problems: Sequence[Problem], n: int) -> list[list[Trajectory]]:
        return self.continue_from([Prefix(p, []) for p in problems], n)

    def continue_from(self, prefixes: Sequence[Prefix], n: int) -> list[list[Trajectory]]:
        jobs = [(i, p) for i, p in enumerate(prefixes) for _ in range(n)]
        texts = [self.domain.render(p.problem, p.steps) for _, p in jobs]
        generated, counts = self.generate_text(texts)
        out: list[list[Trajectory]] = [[] for _ in prefixes]
        for (i, p), g, k in zip(jobs, generated, counts):
            out[i].append(self.domain.from_text(p.problem, p.steps, g, k))
        return out

    @torch.no_grad()
    def generate_text(self, texts: Sequence[str]) -> tuple[list[str], list[int]]:
        """Sample a continuation of each text; returns the new text and its token count."""
        c, tok = self.config, self.tokenizer
        self._calls += 1
        was_training = self.model.training
        self.model.eval()
        outs: list[str] = []
        counts: list[int] = []
        eos = tok.eos_token_id
        with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
            torch.manual_seed(c.seed * 1_000_003 + self._calls)
            for start in range(0, len(texts), c.batch_size):
                chunk = list(texts[start:start + c.batch_size])
                bos = [tok.bos_token or ""] * len(chunk)
                enc = tok([b + t for b, t in zip(bos, chunk)], return_tensors="pt", padding=True,
                          padding_side="left", add_special_tokens=False).to(self.device)
                gen = self.model.generate(
                    **enc, do_sample=True, temperature=c.temperature, top_p=c.top_p, top_k=0,
                    max_new_tokens=c.max_new_tokens, eos_token_id=eos, pad_token_id=tok.pad_token_id,
                )
                new = gen[:, enc["input_ids"].shape[1]:].tolist()
                for row in new:
                    n_tok = row.index(eos) + 1 if eos in row else len(row)
                    counts.append(n_tok)
                    outs.append(tok.decode(row[:n_tok], skip_special_tokens=True))
        self.model.train(was_training)
        return outs, counts
