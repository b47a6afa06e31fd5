"""``pcl``: Post-Completion Learning — the policy learns to grade its own answer after it.

Fei et al. 2025, "Post-Completion Learning for Language Models" (arXiv 2507.20252). A training
sequence runs past the answer::

    solution → answer → <post-completion> → self-evaluation → predicted reward → <eos>

At inference generation stops at the ``<post-completion>`` marker, so the self-evaluation costs no
token; asked for (the *evaluation mode*), the model continues after the marker and grades itself.

On ``arith`` (char-level tokenizer) the marker is :data:`MARKER` (``#``, a character the domain
never writes) and the post-completion text is ``f<fmt>a<acc>r<r>``: the model's verdicts on the two
rules of the reward function, then the reward they add up to,

    r_fmt = 1[an answer line, every step well-formed]      r_acc = 1[answer right]
    r     = r_fmt + r_acc                                   ∈ {0, 1, 2}

(the paper's "white-box" reward: the model evaluates by the reward rules, then computes the score).

Training, as the paper does:

1. *dual-track SFT* (:func:`train_pcl_policy`): a reasoning track (worked solutions followed by
   the marker and their evaluation) and an evaluation track whose input is a solution the SFT
   policy sampled plus the marker and whose target is the evaluation the reward function computes
   for it (loss on the evaluation only);
2. *GRPO* (:class:`PCLMethod`) with the paper's three rewards on every full rollout (solution,
   marker, self-evaluation):

    R = w_acc · r_acc + w_fmt · r_fmt + w_cons · r_cons,    r_cons = max(0, 1 − |r̂ − r| / r_max)

   where r̂ is the reward the rollout predicted and ``r_max = 2``; ``r_cons = 0`` when the
   post-completion text does not parse. The advantage is GRPO's group-normalised R on every token,
   the self-evaluation's tokens included — that is how the consistency reward teaches grading.

Deviations (no public code of the paper was found; the arXiv text describes the rewards in words):
the consistency reward's exact form (``1 − |r̂ − r| / r_max`` here), the self-evaluation's text (two
digits and a sum instead of free text), and the paper's mixing of SFT into the RL phase (not done:
SFT, then GRPO). ``P(correct)`` for calibration is read off the model's probability of the ``a``
digit being ``1`` (given its own greedy ``f`` digit), not from a sampled number.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from selfprm.domains.arith import _STEP_RE
from selfprm.policies.base import Prefix
from selfprm.rl.advantages import group_normalise
from selfprm.rl.grpo import GRPOConfig, broadcast
from selfprm.types import Problem, Trajectory

MARKER = "#"  # the <post-completion> token: one character that arith text never contains
EVAL_CHARS = "fa"  # letters of the self-evaluation the arith charset lacks ("r" it has)
R_MAX = 2
_EVAL_RE = re.compile(r"^f([01])a([01])r(\d)$")


# ----------------------------------------------------------------------------- the sequence


class PostCompletionDomain:
    """A line domain seen through PCL: text after :data:`MARKER` is the self-evaluation, not part
    of the solution. ``from_text`` judges what precedes the marker and keeps what follows it in
    ``trajectory.meta["post_completion"]`` (None when no marker was written); all else delegates."""

    def __init__(self, base):
        if MARKER in base.charset():
            raise ValueError(f"domain {base.name!r} writes {MARKER!r}; PCL's marker must be a character it never emits")
        self.base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def charset(self) -> str:
        return self.base.charset() + MARKER + EVAL_CHARS

    def from_text(self, problem: Problem, steps_before: Sequence[str], generated: str, tokens: int) -> Trajectory:
        return self.from_texts([(problem, steps_before, generated, tokens)])[0]

    def from_texts(self, items: Sequence[tuple[Problem, Sequence[str], str, int]]) -> list[Trajectory]:
        """``from_text`` for many continuations, judged as the base domain judges a batch (``code``:
        one sandboxed process for all), each split at the marker first."""
        from selfprm.policies.base import judge_texts

        parts = [generated.partition(MARKER) for _, _, generated, _ in items]
        trajs = judge_texts(self.base, [(p, before, head, k) for (p, before, _, k), (head, _, _) in zip(items, parts)])
        for traj, (_, sep, tail) in zip(trajs, parts):
            traj.meta["post_completion"] = tail if sep else None
        return trajs


def well_formed(traj: Trajectory) -> bool:
    """r_fmt: an answer line was written and every step has arith's step syntax."""
    return (not traj.truncated) and traj.final_answer is not None and all(_STEP_RE.match(s.strip()) for s in traj.steps)


def actual_reward(traj: Trajectory) -> tuple[int, int]:
    """``(r_fmt, r_acc)`` by the reward function."""
    return int(well_formed(traj)), int(bool(traj.outcome))


def evaluation_text(fmt: int, acc: int) -> str:
    """The self-evaluation and predicted reward: ``f<fmt>a<acc>r<fmt+acc>``."""
    return f"f{fmt}a{acc}r{fmt + acc}"


def parse_evaluation(text: str | None) -> tuple[int, int, int] | None:
    """``(fmt, acc, r̂)`` of a post-completion text, None when it does not parse."""
    m = _EVAL_RE.match((text or "").strip())
    return None if m is None else (int(m.group(1)), int(m.group(2)), int(m.group(3)))


def solution_text(domain, traj: Trajectory) -> str:
    """The rendered solution up to (not including) the marker."""
    if traj.final_answer is None:
        return domain.render(traj.problem, traj.steps)
    return domain.sft_text(traj.problem, traj.steps, traj.final_answer)


# ----------------------------------------------------------------------------- rewards


@dataclass
class PCLConfig(GRPOConfig):
    """GRPO with Post-Completion Learning's rewards (arXiv 2507.20252).

    Parameters:
        w_acc: weight of the accuracy reward r_acc.
        w_fmt: weight of the format reward r_fmt.
        w_cons: weight of the consistency reward r_cons (predicted against actual reward).
    """

    w_acc: float = 1.0
    w_fmt: float = 1.0
    w_cons: float = 1.0
    max_new_tokens: int = 104  # the solution's room plus the post-completion text


def pcl_reward(traj: Trajectory, config: PCLConfig) -> tuple[float, dict[str, float]]:
    """R = w_acc·r_acc + w_fmt·r_fmt + w_cons·r_cons with r_cons = max(0, 1 − |r̂ − r| / r_max)."""
    fmt, acc = actual_reward(traj)
    parsed = parse_evaluation(traj.meta.get("post_completion"))
    cons = 0.0 if parsed is None else max(0.0, 1.0 - abs(parsed[2] - (fmt + acc)) / R_MAX)
    total = config.w_acc * acc + config.w_fmt * fmt + config.w_cons * cons
    return total, {"acc": float(acc), "fmt": float(fmt), "cons": cons, "parsed": float(parsed is not None)}


class PCLMethod:
    """GRPO rollouts run through the marker to ``<eos>``; the advantage is the group-normalised PCL reward."""

    name = "pcl"

    def __init__(self, config: PCLConfig | None = None):
        self.config = config or PCLConfig()
        self.log_: list[dict[str, float]] = []

    def rollouts(self, trainer, problems: list[Problem], step: int):
        if not isinstance(trainer.domain, PostCompletionDomain):
            # the rollouts carry a self-evaluation after the marker: the trainer must judge the
            # solution before it (and its held-out accuracy too), so it reads the PCL view
            trainer.domain = PostCompletionDomain(trainer.domain)
        return trainer.sample([Prefix(p, []) for p in problems], trainer.config.group_size, step)

    def advantages(self, trainer, rollouts):
        parts = [pcl_reward(r.trajectory, self.config) for r in rollouts]
        rewards = [t for t, _ in parts]
        self.log_.append({k: float(np.mean([p[k] for _, p in parts])) for k in ("acc", "fmt", "cons", "parsed")})
        adv = group_normalise(rewards, [r.group for r in rollouts], trainer.config.eps)
        return rollouts, broadcast(rollouts, adv)


# ----------------------------------------------------------------------------- dual-track SFT


@dataclass
class DualTrackConfig:
    """The evaluation track of PCL's dual-track SFT.

    Parameters:
        problems: problems the SFT policy samples solutions of for the evaluation track.
        samples: solutions sampled per problem.
        temperature: sampling temperature of those solutions.
        max_new_tokens: longest sampled solution.
        steps: SFT steps on the mixed tracks after the reasoning-track SFT.
        eval_share: share of each mixed batch drawn from the evaluation track.
    """

    problems: int = 400
    samples: int = 2
    temperature: float = 1.0
    max_new_tokens: int = 96
    steps: int = 200
    eval_share: float = 0.5


def reasoning_track(domain: PostCompletionDomain, n_problems: int, seed: int) -> list[tuple[str, str]]:
    """Worked solutions, each followed by the marker and its (full-marks) evaluation."""
    rng = np.random.default_rng(seed + 1)
    out = []
    for p in domain.sample_problems(n_problems, seed=seed + 10_000, prefix="sft"):
        steps, ans = domain.worked_solution(p, rng)
        prompt = domain.render(p)
        full = domain.sft_text(p, steps, ans) + MARKER + evaluation_text(1, 1)
        out.append((prompt, full[len(prompt):]))
    return out


def evaluation_track(domain: PostCompletionDomain, trajectories: Sequence[Trajectory]) -> list[tuple[str, str]]:
    """(sampled solution + marker, the evaluation the reward function computes for it): loss on the latter."""
    return [(solution_text(domain, t) + MARKER, evaluation_text(*actual_reward(t))) for t in trajectories]


def train_pcl_policy(domain: PostCompletionDomain, n_sft_problems: int, lm, sft, track: DualTrackConfig,
                     progress: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """A tiny LM trained by PCL's dual-track SFT: ``sft.steps`` on the reasoning track, then
    ``track.steps`` on reasoning and evaluation tracks mixed. Returns ``(model, tokenizer, info)``."""
    from dataclasses import replace

    from selfprm.policies.hf import HFPolicy, HFPolicyConfig
    from selfprm.policies.tiny import build_char_tokenizer, build_tiny_lm, train_sft

    tok = build_char_tokenizer(domain.charset())
    model = build_tiny_lm(tok, lm, seed=sft.seed)
    reasoning = reasoning_track(domain, n_sft_problems, sft.seed)
    losses = train_sft(model, tok, reasoning, sft, progress=progress)
    pol = HFPolicy(model, tok, domain, HFPolicyConfig(temperature=track.temperature,
                                                      max_new_tokens=track.max_new_tokens, seed=sft.seed + 5))
    problems = domain.sample_problems(track.problems, seed=sft.seed + 20_000, prefix="pcl-eval")
    sampled = [t for g in pol.sample(problems, track.samples) for t in g]
    evals = evaluation_track(domain, sampled)
    # the mixed phase draws each batch from the two tracks by eval_share: the tracks are repeated
    # to that ratio (train_sft draws uniformly from its list)
    k = max(1, round(track.eval_share / max(1e-9, 1 - track.eval_share) * len(reasoning) / max(1, len(evals))))
    mixed = reasoning + evals * k if track.eval_share < 1 else evals
    if track.steps > 0:
        losses += train_sft(model, tok, mixed, replace(sft, steps=track.steps, seed=sft.seed + 3,
                                                       warmup=min(sft.warmup, track.steps)), progress=progress)
    info = {"sft_losses": losses, "eval_track": len(evals),
            "eval_track_correct": float(np.mean([bool(t.outcome) for t in sampled])) if sampled else math.nan}
    return model, tok, info


# ----------------------------------------------------------------------------- inference and evaluation mode


def inference_tokenizer(tokenizer):
    """The tokenizer with the marker as its end token: generation (:class:`~selfprm.policies.hf.HFPolicy`,
    any ``generate`` reading ``eos_token_id``) stops at ``<post-completion>``, so inference writes
    nothing after it."""
    inf = copy.deepcopy(tokenizer)
    if inf.convert_tokens_to_ids(MARKER) == inf.unk_token_id:
        raise ValueError(f"the tokenizer has no {MARKER!r} token: train the policy with PostCompletionDomain's charset")
    inf.eos_token = MARKER
    return inf


def extra_tokens(tokenizer, traj: Trajectory) -> int:
    """Tokens generated after the marker (0 when generation stopped at it, or wrote none)."""
    tail = traj.meta.get("post_completion")
    if not tail:
        return 0
    return len(tokenizer(tail, add_special_tokens=False)["input_ids"]) + 1  # and the <eos> it ended on


@dataclass
class SelfEvaluation:
    """The evaluation mode's reading of one solution.

    Parameters:
        p_correct: the model's probability that the ``a`` digit is 1 (answer right).
        predicted_reward: r̂ it wrote (None when the text did not parse).
        text: the post-completion text it wrote (greedy).
        tokens: tokens generated after the marker (the evaluation mode's cost).
    """

    p_correct: float
    predicted_reward: int | None
    text: str
    tokens: int


@torch.no_grad()
def self_evaluate_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 128,
                        max_new_tokens: int = 8) -> list[SelfEvaluation]:
    """Continue every ``text + MARKER`` greedily to ``<eos>`` and read the self-evaluation.

    ``p_correct`` is P(``1``) / (P(``0``) + P(``1``)) at the ``a`` digit, where the greedy text
    follows the ``f?a`` template; NaN where it does not."""
    dev = next(model.parameters()).device
    ids = {d: tokenizer.convert_tokens_to_ids(d) for d in "01"}
    eos = tokenizer.eos_token_id
    out: list[SelfEvaluation] = []
    was = model.training
    model.eval()
    for s in range(0, len(texts), batch_size):
        chunk = [(tokenizer.bos_token or "") + t + MARKER for t in texts[s:s + batch_size]]
        enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False).to(dev)
        gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=eos,
                             pad_token_id=tokenizer.pad_token_id, output_logits=True, return_dict_in_generate=True)
        new = gen.sequences[:, enc["input_ids"].shape[1]:].tolist()
        logits = torch.stack(gen.logits, dim=1).float()  # [B, new, V]
        for b, row in enumerate(new):
            n = row.index(eos) + 1 if eos in row else len(row)
            text = tokenizer.decode(row[:n], skip_special_tokens=True)
            parsed = parse_evaluation(text)
            p = math.nan
            if len(text) >= 4 and text[0] == "f" and text[2] == "a" and logits.shape[1] > 3:
                two = torch.softmax(logits[b, 3, [ids["0"], ids["1"]]], dim=-1)  # the digit after "f?a"
                p = float(two[1])
            out.append(SelfEvaluation(p, None if parsed is None else parsed[2], text, n))
    model.train(was)
    return out


def self_evaluate(model, tokenizer, domain, trajectories: Sequence[Trajectory], **kw) -> list[SelfEvaluation]:
    """The evaluation mode on sampled trajectories (their solution text, then the marker)."""
    return self_evaluate_texts(model, tokenizer, [solution_text(domain, t) for t in trajectories], **kw)


def _spec():
    from selfprm.rl.methods import MethodSpec

    return MethodSpec(PCLConfig, lambda c, prm: PCLMethod(c))


SPEC = _spec()  # RL_METHODS holds "pcl" lazily as "selfprm.rl.pcl:SPEC" (selfprm.rl.methods)
