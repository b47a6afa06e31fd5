"""The offline Reasoner: a tiny causal LM that reads a skill file of ``arith`` facts in its context.

Ctx2Skill's Reasoner is a frozen LM whose only change between rounds is the skill file it reads.
For that to be observable offline, the embedded tiny LM must (a) have weaknesses and (b) use a
correct fact when it is in context. Both are made by construction in its SFT data:

* a *weak* set of facts ``W`` (``n_weak`` facts of ``weak_op``, drawn by the seed) never appears
  in training with its true value: wherever a chain uses one, the example's context states it with
  a random value and the solution follows the context. So without the fact in context the model
  can only guess (its weakness), and with the true fact in context it copies it.
* other facts are stated in context with probability ``p_context``, and with probability
  ``p_override`` with a wrong value that the solution then follows, so context beats memory.
* up to ``max_skills`` distractor entries fill the rest of the file.

Measured with the defaults (seed 0, 400 SFT steps, 152 s on a loaded 2-core machine), greedy, by
:func:`entry_effect` on 300 drawn tasks: on the 35 that use a weak fact, 0.00 without skills, 0.60
with the true entry alone, 0.00 with a wrong one, but 0.06 with the true entry among 7 true
distractors; on non-weak tasks 0.81 / 0.95 / 0.54 / 0.81. So a full skill file (what self-play
writes) hides a good entry from this Reasoner: its lookup does not survive distractors, and the
loop's effect stayed flat. The offline server therefore puts only the entries a task names in the
Reasoner's context (:func:`selfprm.selfplay.roles.relevant_entries`, on by default, a listed
deviation of :mod:`selfprm.selfplay.ctx2skill`). Tried at the same budget and
worse: 3 layers at width 96 with half the distractors near misses (``p_hard=0.5``; true entry
alone 0.06), and 16 weak facts, 12 entries, ``p_context=0.6``, ``p_override=0.3`` (memory fell to
0.05 on non-weak tasks); 800 steps (517 s loaded): true entry alone 0.43, among distractors 0.14.
Two-operation chains at 300-600 steps stayed near 0.2-0.26 accuracy,
hence one operation per task by default.

The training text is exactly what the chat template (:func:`reasoner_prompt`) builds from a chat
request: the system message (the Markdown skill file), then the user message (the ``Q:`` line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from selfprm.domains.arith import ArithConfig, ArithDomain, apply_op
from selfprm.policies.tiny import SFTConfig, TinyLMConfig, build_char_tokenizer, build_tiny_lm, train_sft
from selfprm.selfplay.skills import SkillSet
from selfprm.types import Problem

Fact = tuple[int, str, int]  # (running value, operation, operand)


def fact_text(f: Fact, value: int) -> str:
    """A fact as the entry and the step write it: ``7*8=6``."""
    return f"{f[0]}{f[1]}{f[2]}={value}"


@dataclass
class ReasonerLMConfig:
    """The offline Reasoner's world and training.

    Parameters:
        domain: the ``arith`` knobs of the tasks (short chains keep the context small).
        weak_op: the operation whose facts hold the weak set.
        n_weak: facts of ``weak_op`` the model never sees with their true value.
        max_skills: most skill entries in the context (the skill file's capacity).
        p_context: chance a needed non-weak fact is stated in the training context.
        p_override: chance a stated non-weak fact carries a wrong value the solution follows.
        p_hard: chance a distractor entry is a near miss of a needed fact (same running value and
            operation, or same operation and operand), so the lookup learns to match the whole key.
        n_examples: training examples drawn.
        lm: the tiny LM's shape.
        sft: its SFT schedule.
        seed: the weak set, the examples and the initialisation.
    """

    domain: ArithConfig = field(default_factory=lambda: ArithConfig(
        min_ops=1, max_ops=1, op_weights={"+": 0.3, "-": 0.2, "*": 0.5}, operand_max={"+": 5, "-": 5, "*": 5},
        recovery_rate=0.0, extra_step_rate=0.0))
    weak_op: str = "*"
    n_weak: int = 10
    max_skills: int = 8
    p_context: float = 0.5
    p_override: float = 0.2
    p_hard: float = 0.0
    n_examples: int = 6000
    lm: TinyLMConfig = field(default_factory=lambda: TinyLMConfig(n_layer=2, n_embd=128, n_positions=256))
    sft: SFTConfig = field(default_factory=lambda: SFTConfig(steps=400, batch_size=32, lr=3e-3, warmup=30))
    seed: int = 0


def all_facts(domain: ArithDomain) -> list[Fact]:
    """Every single-operation fact of the domain: each running value with each operand."""
    c = domain.config
    return [(a, op, b) for op in c.op_weights for b in range((2 if op == "*" else 1), c.operand_max[op] + 1)
            for a in range(c.modulus)]


def weak_facts(config: ReasonerLMConfig) -> list[Fact]:
    """The weak set ``W``: ``n_weak`` facts of ``weak_op``, drawn by the seed."""
    pool = [f for f in all_facts(ArithDomain(config.domain)) if f[1] == config.weak_op]
    if config.n_weak > len(pool):
        raise ValueError(f"n_weak={config.n_weak} exceeds the {len(pool)} facts of {config.weak_op!r}")
    rng = np.random.default_rng([config.seed, 7])
    return sorted(pool[i] for i in rng.choice(len(pool), size=config.n_weak, replace=False))


def chain_facts(problem) -> list[Fact]:
    """The facts a correct solution of ``problem`` uses, in order."""
    vals = problem.meta["values"]
    return [(vals[j], op, int(b)) for j, (op, b) in enumerate(problem.meta["chain"])]


def reasoner_prompt(system: str, user: str) -> str:
    """The tiny Reasoner's chat template: the skill file, then the task line and a newline."""
    return system.rstrip("\n") + "\n" + user.strip() + "\n"


def reasoner_charset() -> str:
    return ArithDomain().charset() + "#Skil-"


def training_examples(config: ReasonerLMConfig) -> list[tuple[str, str]]:
    """``(prompt, completion)`` pairs built as the module docstring says."""
    dom = ArithDomain(config.domain)
    m = dom.config.modulus
    weak = set(weak_facts(config))
    facts = all_facts(dom)
    rng = np.random.default_rng([config.seed, 11])
    out = []
    for p in dom.sample_problems(config.n_examples, seed=config.seed + 50_000, prefix="reasoner"):
        world: dict[Fact, int] = {}
        stated: dict[Fact, int] = {}
        a = p.meta["start"]
        steps = []
        for op, b in p.meta["chain"]:
            f = (a, op, int(b))
            if f not in world:
                true = apply_op(a, op, int(b), m)
                if f in weak:  # never its true value: only the context can tell it
                    world[f] = (true + int(rng.integers(1, m))) % m
                    stated[f] = world[f]
                elif rng.random() < config.p_context:
                    world[f] = int(rng.integers(0, m)) if rng.random() < config.p_override else true
                    stated[f] = world[f]
                else:
                    world[f] = true
            r = world[f]
            steps.append(fact_text(f, r))
            a = r
        room = config.max_skills - len(stated)
        needed = list(world)
        for _ in range(int(rng.integers(0, max(0, room) + 1))):
            if rng.random() < config.p_hard:  # a near miss: the lookup must match all of a, op and b
                n = needed[int(rng.integers(0, len(needed)))]
                near = [g for g in facts if g != n and g[1] == n[1] and (g[0] == n[0] or g[2] == n[2])]
                f = near[int(rng.integers(0, len(near)))]
            else:
                f = facts[int(rng.integers(0, len(facts)))]
            if f not in stated:
                true = apply_op(f[0], f[1], f[2], m)
                stated[f] = (true + int(rng.integers(1, m))) % m if f in weak else true
        entries = [fact_text(f, v) for f, v in stated.items()]
        rng.shuffle(entries)
        prompt = reasoner_prompt(SkillSet(tuple(entries)).render(), p.prompt)
        out.append((prompt, "".join(s + "\n" for s in steps) + "A:" + str(a)))
    return out


def train_reasoner(config: ReasonerLMConfig, progress: bool = True):
    """The tiny Reasoner and its tokenizer after SFT on :func:`training_examples`; ``(model, tok, losses)``."""
    tok = build_char_tokenizer(reasoner_charset())
    model = build_tiny_lm(tok, config.lm, seed=config.seed)
    losses = train_sft(model, tok, training_examples(config), config.sft, progress=progress)
    return model, tok, losses


def greedy_answer(model, tok, prompt: str, max_new_tokens: int = 48) -> str:
    """The model's greedy completion of ``prompt`` (used by the chat server and quick checks)."""
    import torch

    ids = tok((tok.bos_token or "") + prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    room = min(max_new_tokens, model.config.max_position_embeddings - ids.shape[1]
               if hasattr(model.config, "max_position_embeddings") else max_new_tokens)
    if room <= 0:
        return ""
    with torch.no_grad():
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=room, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)


def skill_entries_for(problems: Sequence, facts: set[Fact], modulus: int) -> list[str]:
    """The true entries of ``facts`` that ``problems`` use (an oracle skill file, for checks)."""
    seen: list[str] = []
    for p in problems:
        for f in chain_facts(p):
            e = fact_text(f, apply_op(f[0], f[1], f[2], modulus))
            if f in facts and e not in seen:
                seen.append(e)
    return seen


def entry_effect(answer: Callable[[SkillSet, Problem], str], domain: ArithDomain, problems: Sequence[Problem],
                 facts: set[Fact], n_distractors: int = 0, seed: int = 0) -> dict[str, float]:
    """What one skill entry does, on the ``problems`` that use a fact of ``facts``: the Reasoner's
    accuracy (exact verifier) with no skills, with that fact's true entry, with a wrong entry for it
    (the true value shifted by a random nonzero amount), and with the true entry among
    ``n_distractors`` true entries of facts the task does not use. ``answer(skills, problem)`` is
    the Reasoner's reply. Good edits should raise ``true`` above ``none``; a bad one should not."""
    m = domain.config.modulus
    rng = np.random.default_rng(seed)
    pool = all_facts(domain)
    acc = {"none": 0, "true": 0, "wrong": 0, "true_with_distractors": 0}
    used = [p for p in problems if any(f in facts for f in chain_facts(p))]
    if not used:
        raise ValueError("entry_effect: none of the problems uses a fact of the given set")
    for p in used:
        f = next(f for f in chain_facts(p) if f in facts)
        true = apply_op(f[0], f[1], f[2], m)
        need = set(chain_facts(p))
        others = [g for g in pool if g not in need]
        picks = [others[i] for i in rng.choice(len(others), size=min(n_distractors, len(others)), replace=False)]
        noise = [fact_text(g, apply_op(g[0], g[1], g[2], m)) for g in picks]
        at = int(rng.integers(0, len(noise) + 1))
        files = {"none": SkillSet(), "true": SkillSet((fact_text(f, true),)),
                 "wrong": SkillSet((fact_text(f, (true + int(rng.integers(1, m))) % m),)),
                 "true_with_distractors": SkillSet(tuple(noise[:at] + [fact_text(f, true)] + noise[at:]))}
        for k, s in files.items():
            _, ans, _ = domain.parse_completion(answer(s, p))
            acc[k] += domain.check_answer(p, ans)
    return {**{k: v / len(used) for k, v in acc.items()}, "n": float(len(used))}
