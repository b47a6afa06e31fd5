"""Any ``transformers`` causal LM as a policy.

Solutions are sampled in left-padded batches; the text after the rendered prefix is parsed back
into steps by the domain. ``tokens_generated`` counts new tokens up to and including the end token.

*Prefix cache.* ``continue_from(prefixes, n)`` asks for ``n`` continuations of each prefix, and a
label source often asks for the same prefix from several trajectories. With ``prefix_cache`` on,
each distinct prefix is encoded once and its key/value cache is copied into its ``n`` rows, and
sampling runs on from there, instead of ``model.generate`` re-encoding the prefix in each of the
``n`` rows. Sibling prefixes share too: a prefix whose tokens begin another prefix in the same
batch (Math-Shepherd asks for every step prefix of a solution, each the start of the next) is not
encoded at all; its keys and values are the first positions of the longer one's, which causal
attention makes independent of what follows. The sampling rule is ``generate``'s (temperature,
then nucleus), rows in the same order, drawn with ``torch.multinomial`` from the same seeded RNG,
so the two paths give the same distribution and, on the same seed, the same continuations.
``model.generate`` stays the path for models where the trick does not apply (encoder-decoder
models, caches that are not per-layer ``[batch, heads, time, dim]`` tensors), and
``prefix_cache=False`` selects it everywhere.

Sampling is repeatable without touching global RNG state: each call forks the torch RNG and
seeds it from the policy's own seed and a call counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from tqdm.auto import tqdm

from selfprm.domains.base import Domain
from selfprm.policies.base import Prefix, judge_texts
from selfprm.types import Problem, Trajectory


@dataclass
class HFPolicyConfig:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = 256
    seed: int = 0
    prefix_cache: bool = True
    progress: bool = False  # a progress bar over generation batches


class HFPolicy:
    def __init__(self, model, tokenizer, domain: Domain, config: HFPolicyConfig | None = None):
        from selfprm.rl.rollout import uses_tools

        if uses_tools(domain):
            raise ValueError(f"HFPolicy would write the answers of domain {getattr(domain, 'name', domain)!r}'s tool "
                             "calls itself; use selfprm.policies.tool_calling.ToolCallingPolicy, which runs them")
        self.model = model
        self.tokenizer = tokenizer
        self.domain = domain
        self.config = config or HFPolicyConfig()
        self._calls = 0
        # running count of real token positions run through the model (prompts and prefixes once
        # per encoding, every generated token once): the compute side of the cost ledger
        self.token_passes = 0
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a pad token for batched generation")

    def reseed(self, seed: int) -> None:
        """Restart sampling from ``seed`` (any int: the stream is seeded modulo 2**63): what follows is
        repeatable on its own."""
        self.config.seed = seed
        self._calls = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sample(self, problems: Sequence[Problem], n: int) -> list[list[Trajectory]]:
        return self.continue_from([Prefix(p, []) for p in problems], n)

    def continue_from(self, prefixes: Sequence[Prefix], n: int) -> list[list[Trajectory]]:
        jobs = [(i, p) for i, p in enumerate(prefixes) for _ in range(n)]
        if self.config.prefix_cache and self._can_share_cache():
            generated, counts = self.generate_text_shared([self.domain.render(p.problem, p.steps) for p in prefixes], n)
        else:
            generated, counts = self.generate_text([self.domain.render(p.problem, p.steps) for _, p in jobs])
        out: list[list[Trajectory]] = [[] for _ in prefixes]
        trajs = judge_texts(self.domain, [(p.problem, p.steps, g, k) for (_, p), g, k in zip(jobs, generated, counts)])
        for (i, _), traj in zip(jobs, trajs):
            out[i].append(traj)
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
            torch.manual_seed((c.seed * 1_000_003 + self._calls) % 2**63)
            starts = range(0, len(texts), c.batch_size)
            for start in tqdm(starts, desc="sampling", disable=not c.progress or len(starts) < 2, leave=False):
                chunk = list(texts[start:start + c.batch_size])
                bos = [tok.bos_token or ""] * len(chunk)
                enc = tok([b + t for b, t in zip(bos, chunk)], return_tensors="pt", padding=True,
                          padding_side="left", add_special_tokens=False).to(self.device)
                room = self._room(enc["input_ids"].shape[1])
                if room <= 0:  # the prefix already fills the model's context: nothing can follow
                    new = [[] for _ in chunk]
                else:
                    gen = self.model.generate(
                        **enc, do_sample=True, temperature=c.temperature, top_p=c.top_p, top_k=0,
                        max_new_tokens=room, eos_token_id=eos, pad_token_id=tok.pad_token_id,
                    )
                    new = gen[:, enc["input_ids"].shape[1]:].tolist()
                self.token_passes += int(enc["attention_mask"].sum())
                for row in new:
                    n_tok = row.index(eos) + 1 if eos in row else len(row)
                    counts.append(n_tok)
                    self.token_passes += n_tok
                    outs.append(tok.decode(row[:n_tok], skip_special_tokens=True))
        self.model.train(was_training)
        return outs, counts

    def _room(self, width: int) -> int:
        """New tokens a batch of ``width`` prompt tokens may take: ``max_new_tokens``, cut where the
        model's position table ends (past it GPT-2 fails with an index error)."""
        cfg = getattr(self.model, "config", None)
        limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        return self.config.max_new_tokens if limit is None else min(self.config.max_new_tokens, int(limit) - width)

    # ------------------------------------------------------------------ prefix cache
    def _can_share_cache(self) -> bool:
        cfg = getattr(self.model, "config", None)
        return not getattr(cfg, "is_encoder_decoder", False) and callable(getattr(self.model, "forward", None))

    def _cache_kwarg(self) -> str:
        # transformers 5 renamed ``past_key_values`` to ``cache``; older versions take the old name
        import inspect

        params = inspect.signature(type(self.model).forward).parameters
        return "cache" if "cache" in params else "past_key_values"

    @torch.no_grad()
    def generate_text_shared(self, texts: Sequence[str], n: int) -> tuple[list[str], list[int]]:
        """``n`` sampled continuations of each text (text-major: text 0's n, then text 1's, ...),
        encoding each distinct text once (or not at all, inside a longer sibling) and copying its
        KV cache into its rows."""
        c, tok = self.config, self.tokenizer
        # identical texts (the same prefix asked for twice) are encoded once and given n·k rows
        uniq: dict[str, int] = {}
        for t in texts:
            uniq[t] = uniq.get(t, 0) + n
        order = list(uniq)
        self._calls += 1
        was_training = self.model.training
        self.model.eval()
        by_text: dict[str, list[tuple[str, int]]] = {t: [] for t in order}
        # as many distinct prefixes per batch as keep the expanded batch within batch_size rows
        per_batch = []
        cur, rows = [], 0
        for t in order:
            if cur and rows + uniq[t] > c.batch_size:
                per_batch.append(cur)
                cur, rows = [], 0
            cur.append(t)
            rows += uniq[t]
        if cur:
            per_batch.append(cur)
        with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
            torch.manual_seed((c.seed * 1_000_003 + self._calls) % 2**63)
            for chunk in per_batch:
                res = self._sample_from_shared([tok.bos_token or "" for _ in chunk], chunk, [uniq[t] for t in chunk])
                if res is None:  # this model's cache cannot be repeated: re-encode per row
                    self.model.train(was_training)
                    self._calls -= 1
                    return self.generate_text([t for t in texts for _ in range(n)])
                for t, outs in zip(chunk, res):
                    by_text[t].extend(outs)
        self.model.train(was_training)
        gen: list[str] = []
        counts: list[int] = []
        taken = {t: 0 for t in order}
        for t in texts:
            for g, k in by_text[t][taken[t]: taken[t] + n]:
                gen.append(g)
                counts.append(k)
            taken[t] += n
        return gen, counts

    def _sample_from_shared(self, bos: list[str], texts: list[str], repeats: list[int]) -> list[list[tuple[str, int]]] | None:
        c, tok = self.config, self.tokenizer
        eos, pad = tok.eos_token_id, tok.pad_token_id
        ids = [tok(b + t, add_special_tokens=False)["input_ids"] for b, t in zip(bos, texts)]
        width = max(len(x) for x in ids)
        room = self._room(width)
        if room <= 0:  # the prefix already fills the model's context: nothing can follow
            return [[("", 0)] * k for k in repeats]
        # sibling prefixes: a text whose tokens begin another's (the prefix of a trajectory up to
        # step i inside the one up to step j) is not encoded at all; its keys and values are the
        # first tokens of its host's, which causal attention made independent of what follows
        hosts = _nest_hosts(ids)
        host_rows = sorted(set(hosts))
        enc_ids = torch.full((len(host_rows), width), pad, dtype=torch.long)
        enc_att = torch.zeros((len(host_rows), width), dtype=torch.long)
        for r, h in enumerate(host_rows):
            enc_ids[r, width - len(ids[h]):] = torch.tensor(ids[h])
            enc_att[r, width - len(ids[h]):] = 1
        enc_ids, enc_att = enc_ids.to(self.device), enc_att.to(self.device)
        # positions as ``generate`` computes them for a left-padded batch
        pos = (enc_att.cumsum(-1) - 1).masked_fill(enc_att == 0, 0)
        out = self.model(input_ids=enc_ids, attention_mask=enc_att, position_ids=pos, use_cache=True)
        self.token_passes += sum(len(ids[h]) for h in host_rows)
        cache = _cache_of(out)
        if cache is None:
            return None
        # every sampled row: its prefix's host row, and where in the host its tokens sit
        row_of = {h: r for r, h in enumerate(host_rows)}
        src_row, src_time, lens = [], [], []
        for i, k in enumerate(repeats):
            h, n_i = hosts[i], len(ids[i])
            start = width - len(ids[h])  # where the host's tokens begin
            times = [0] * (width - n_i) + list(range(start, start + n_i))  # right-aligned, left pad
            src_row += [row_of[h]] * k
            src_time += [times] * k
            lens += [n_i] * k
        if not _gather_cache(cache, torch.tensor(src_row, device=self.device),
                             torch.tensor(src_time, device=self.device)):
            return None  # a cache this trick does not know: re-encode per row instead
        lens_t = torch.tensor(lens, device=self.device)
        att = (torch.arange(width, device=self.device)[None, :] >= (width - lens_t)[:, None]).long()
        last = torch.tensor([t[-1] for t in src_time], device=self.device)
        logits = out.logits[torch.tensor(src_row, device=self.device), last]
        next_pos = lens_t[:, None]
        kw = self._cache_kwarg()
        done = torch.zeros(att.shape[0], dtype=torch.bool, device=self.device)
        new: list[torch.Tensor] = []
        for step in range(room):
            nxt = _sample_next(logits, c.temperature, c.top_p)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            new.append(nxt)
            if eos is not None:
                done = done | (nxt == eos)
            if bool(done.all()) or step == room - 1:
                break
            att = torch.cat([att, torch.ones_like(att[:, :1])], dim=1)
            out = self.model(input_ids=nxt[:, None], attention_mask=att, position_ids=next_pos, use_cache=True,
                             **{kw: cache})
            cache = _cache_of(out)
            next_pos = next_pos + 1
            logits = out.logits[:, -1]
        rows = torch.stack(new, 1).tolist() if new else [[] for _ in range(att.shape[0])]
        res: list[list[tuple[str, int]]] = []
        r = 0
        for k in repeats:
            group = []
            for row in rows[r:r + k]:
                n_tok = row.index(eos) + 1 if eos in row else len(row)
                self.token_passes += n_tok
                group.append((tok.decode(row[:n_tok], skip_special_tokens=True), n_tok))
            res.append(group)
            r += k
        return res


def _nest_hosts(ids: Sequence[Sequence[int]]) -> list[int]:
    """For each token list, the longest list in ``ids`` that starts with it (itself if none)."""
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    hosts = []
    for i in range(len(ids)):
        host = i
        for j in order:
            if len(ids[j]) <= len(ids[i]):
                break
            if list(ids[j][: len(ids[i])]) == list(ids[i]):
                host = j
                break
        hosts.append(host)
    # a host must itself be hosted by no one longer, so that every host is encoded
    return [h if hosts[h] == h else hosts[h] for h in hosts]


def _gather_cache(cache, rows: torch.Tensor, times: torch.Tensor) -> bool:
    """Rebuild each layer's keys/values as ``kv[rows[r], :, times[r, t]]``; False if the cache's
    layout is not the ``[batch, heads, time, dim]`` tensors of a dynamic cache."""
    layers = getattr(cache, "layers", None)
    if not layers or not all(isinstance(getattr(l, "keys", None), torch.Tensor) and
                             isinstance(getattr(l, "values", None), torch.Tensor) for l in layers):
        return False
    for layer in layers:
        for name in ("keys", "values"):
            kv = getattr(layer, name)
            if kv.dim() != 4 or kv.shape[2] != times.shape[1]:
                return False
            sel = kv[rows]  # [R, heads, time, dim]
            idx = times[:, None, :, None].expand(-1, sel.shape[1], -1, sel.shape[3])
            setattr(layer, name, torch.gather(sel, 2, idx))
    return True


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return getattr(out, "past_key_values", None) if cache is None else cache


def _sample_next(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token per row by ``generate``'s rule: logits / T, nucleus filter, multinomial."""
    scores = logits.float() / temperature
    if top_p < 1.0:
        # transformers' TopPLogitsWarper: drop the low tail whose mass is at most 1 - top_p, keep >= 1
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, sorted_idx, remove), -float("inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)
