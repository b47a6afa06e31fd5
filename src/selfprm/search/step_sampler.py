"""One step at a time from a policy: what step-level search expands a prefix with.

A Hugging Face policy (one with ``model`` and ``tokenizer``, like :class:`~selfprm.policies.HFPolicy`)
stops generating at the step separator, so a step costs only its own tokens. Any other policy
falls back on ``continue_from`` and keeps the first new step; the tokens of the whole
continuation are still counted, because they were spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from selfprm.policies.base import Prefix


@dataclass
class NextStep:
    """A candidate continuation of a prefix by one step, or by the final answer."""

    step: str | None  # the new step (None when the policy answered or wrote nothing usable)
    answer: str | None  # the final answer when the policy ended the solution here
    tokens: int  # policy tokens spent generating it

    @property
    def dead(self) -> bool:
        return self.step is None and self.answer is None


def max_positions(model) -> int:
    """The longest sequence ``model`` takes (a large number when its config does not say)."""
    cfg = getattr(model, "config", None)
    return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None) or 1 << 30)


class StepSampler:
    def __init__(self, policy, max_step_tokens: int = 32):
        self.policy = policy
        self.domain = policy.domain
        self.max_step_tokens = max_step_tokens
        self._calls = 0
        tok = getattr(policy, "tokenizer", None)
        sep_ids = tok(self.domain.step_separator, add_special_tokens=False)["input_ids"] if tok is not None else []
        # The fast path needs the separator to be one token, so generation can stop on it.
        self._stop_id = sep_ids[0] if len(sep_ids) == 1 and hasattr(policy, "model") else None

    def next_steps(self, prefixes: Sequence[Prefix], n: int) -> list[list[NextStep]]:
        """``n`` candidate next steps for each prefix."""
        if self._stop_id is None:
            return self._fallback(prefixes, n)
        return self._hf(prefixes, n)

    def _parse(self, text: str, tokens: int) -> NextStep:
        steps, answer, _ = self.domain.parse_completion(text)
        if steps:
            return NextStep(steps[0], None, tokens)
        return NextStep(None, answer, tokens)

    def _fallback(self, prefixes: Sequence[Prefix], n: int) -> list[list[NextStep]]:
        out = []
        for prefix, group in zip(prefixes, self.policy.continue_from(prefixes, n)):
            row = []
            for t in group:
                new = t.steps[len(prefix.steps):]
                if new:
                    row.append(NextStep(new[0], None, t.tokens_generated))
                elif not t.truncated:
                    row.append(NextStep(None, t.final_answer, t.tokens_generated))
                else:
                    row.append(NextStep(None, None, t.tokens_generated))
            out.append(row)
        return out

    @torch.no_grad()
    def _hf(self, prefixes: Sequence[Prefix], n: int) -> list[list[NextStep]]:
        pol, tok = self.policy, self.policy.tokenizer
        model, cfg = pol.model, pol.config
        device = next(model.parameters()).device
        texts = [(tok.bos_token or "") + self.domain.render(p.problem, p.steps) for p in prefixes for _ in range(n)]
        self._calls += 1
        eos = tok.eos_token_id
        flat: list[NextStep] = []
        was = model.training
        model.eval()
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(cfg.seed * 1_000_003 + 7919 * self._calls + 1)
            for s in range(0, len(texts), cfg.batch_size):
                enc = tok(texts[s:s + cfg.batch_size], return_tensors="pt", padding=True, padding_side="left",
                                  add_special_tokens=False).to(device)
                # never past the model's context: a prefix that fills it yields dead candidates
                room = max_positions(model) - enc["input_ids"].shape[1]
                if room <= 0:
                    flat.extend(NextStep(None, None, 0) for _ in range(enc["input_ids"].shape[0]))
                    continue
                gen = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
                                     max_new_tokens=min(self.max_step_tokens, room), eos_token_id=[eos, self._stop_id],
                                     pad_token_id=tok.pad_token_id)
                for row in gen[:, enc["input_ids"].shape[1]:].tolist():
                    stop = next((i for i, t in enumerate(row) if t in (eos, self._stop_id)), None)
                    k = len(row) if stop is None else stop + 1
                    text = tok.decode(row[:k], skip_special_tokens=True)
                    flat.append(self._parse(text, k) if stop is not None else NextStep(None, None, k))
        model.train(was)
        return [flat[i * n:(i + 1) * n] for i in range(len(prefixes))]
