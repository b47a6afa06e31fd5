"""Step-level beam search guided by a PRM (Snell et al. 2024, arXiv 2408.03314 §5.1).

At every depth each of the ``beam_width`` live prefixes is extended by ``expansions_per_beam``
sampled next steps (the first depth expands the empty prefix ``beam_width × expansions_per_beam``
times, so every depth costs the same number of samples). Each candidate is scored by the PRM —
optionally after a ``lookahead`` of k more sampled steps, whose score then stands for the
candidate (Snell's lookahead search) — and the best ``beam_width`` candidates survive. A
candidate that writes the final answer leaves the beam as a finished solution. Search stops when
``beam_width`` solutions are finished, no prefix is alive, or ``max_steps`` is reached; the
answer is the finished solution with the best aggregated PRM score.

    score(prefix) = aggregate(PRM(s_1), ..., PRM(s_t); how)

Every token the policy writes is counted, lookahead included, so beam search sits on the same
accuracy-per-token axis as best-of-N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from selfprm.policies.base import Prefix
from selfprm.prm.aggregate import aggregate
from selfprm.search.step_sampler import StepSampler
from selfprm.types import Problem, Trajectory


@dataclass
class BeamConfig:
    beam_width: int = 4
    expansions_per_beam: int = 4
    lookahead: int = 0
    max_steps: int = 16
    aggregation: str = "min"
    max_step_tokens: int = 32


@dataclass
class BeamResult:
    trajectory: Trajectory  # the chosen solution; tokens_generated is the whole search's cost
    correct: bool
    score: float
    policy_tokens: int
    finished: int  # solutions the search finished


@dataclass
class _Cand:
    steps: list[str]
    score: float = 0.0


def beam_search(policy, prm, problems: Sequence[Problem], config: BeamConfig | None = None,
                sampler: StepSampler | None = None) -> list[BeamResult]:
    """Run beam search on every problem (batched across problems at each depth)."""
    c = config or BeamConfig()
    if c.beam_width < 1 or c.expansions_per_beam < 1 or c.lookahead < 0:
        raise ValueError("beam_width and expansions_per_beam must be >= 1, lookahead >= 0")
    sampler = sampler or StepSampler(policy, c.max_step_tokens)
    domain = sampler.domain
    beams: list[list[_Cand]] = [[_Cand([])] for _ in problems]
    finished: list[list[tuple[_Cand, str]]] = [[] for _ in problems]
    tokens = [0] * len(problems)

    def score(pairs: list[tuple[int, list[str]]]) -> list[float]:
        if not pairs:
            return []
        s = prm.score_steps([problems[i].prompt for i, _ in pairs], [st for _, st in pairs])
        return [aggregate(x, c.aggregation) for x in s]

    for depth in range(c.max_steps):
        jobs = [(i, b) for i, bs in enumerate(beams) for b in bs if len(finished[i]) < c.beam_width]
        if not jobs:
            break
        n = c.expansions_per_beam * (c.beam_width if depth == 0 else 1)
        nexts = sampler.next_steps([Prefix(problems[i], b.steps) for i, b in jobs], n)
        stepping: list[tuple[int, list[str]]] = []
        ended: list[tuple[int, list[str], str]] = []
        for (i, b), row in zip(jobs, nexts):
            for ns in row:
                tokens[i] += ns.tokens
                if ns.step is not None:
                    stepping.append((i, b.steps + [ns.step]))
                elif ns.answer is not None:
                    ended.append((i, b.steps, ns.answer))
        # lookahead: roll each candidate k steps further and let the deepest prefix speak for it
        probes = [list(st) for _, st in stepping]
        alive = list(range(len(stepping)))
        for _ in range(c.lookahead):
            if not alive:
                break
            more = sampler.next_steps([Prefix(problems[stepping[j][0]], probes[j]) for j in alive], 1)
            still = []
            for j, row in zip(alive, more):
                tokens[stepping[j][0]] += row[0].tokens
                if row[0].step is not None:
                    probes[j].append(row[0].step)
                    still.append(j)
            alive = still
        step_scores = score([(i, p) for (i, _), p in zip(stepping, probes)])
        end_scores = score([(i, st) for i, st, _ in ended])
        for (i, st, a), s in zip(ended, end_scores):
            finished[i].append((_Cand(st, s), a))
        new_beams: list[list[_Cand]] = [[] for _ in problems]
        for (i, st), s in zip(stepping, step_scores):
            new_beams[i].append(_Cand(st, s))
        for i in range(len(problems)):
            new_beams[i].sort(key=lambda cand: -cand.score)  # stable: ties keep sampling order
            beams[i] = new_beams[i][: c.beam_width]
    results = []
    for i, p in enumerate(problems):
        if finished[i]:
            best, answer = max(finished[i], key=lambda fa: fa[0].score)
            traj = domain.make_trajectory(p, best.steps, answer, truncated=False, tokens_generated=tokens[i])
            sc = best.score
        else:  # nothing finished: the best live prefix, without an answer
            steps = beams[i][0].steps if beams[i] else []
            traj = domain.make_trajectory(p, steps, None, truncated=True, tokens_generated=tokens[i])
            sc = 0.0
        results.append(BeamResult(traj, bool(traj.outcome), sc, tokens[i], len(finished[i])))
    return results
