"""``consensus``: Qwen's consensus filtering of step labels.

Zhang et al., *The Lessons of Developing Process Reward Models in Mathematical Reasoning*,
arXiv 2501.07301, §3. Monte Carlo labels are noisy; an LLM judge's are noisy in other ways. A
trajectory is kept only where the two agree on where the first error is,

    keep(x) = 1[ fe_primary(x) = fe_second(x) ]         (fe = -1: no error)

and a kept trajectory carries the primary source's labels. A dropped one keeps its labels with
weight 0 on every step (the PRM loss skips it), so the tokens spent on it still count: the cost
is both sources' cost, paid on every trajectory. A trajectory the primary source itself drops
(None) stays None.

The second opinion is pluggable: any registered label source (``second="omega"``), or a judge
model behind the policy protocol (``judge=...``): it is asked to continue the rendered solution
once, and its final answer is read as the first-error index (``-1`` for none; anything that does
not parse counts as disagreement), as a ProcessBench-style critic answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from selfprm.labels.base import LabelSource, get_label_source, register
from selfprm.policies.base import Policy, Prefix
from selfprm.types import StepLabels, Trajectory


def judge_first_errors(judge: Policy, trajectories: Sequence[Trajectory]) -> tuple[list[int | None], list[int]]:
    """The judge's first-error index per trajectory (None when unreadable) and its tokens."""
    groups = judge.continue_from([Prefix(t.problem, list(t.steps)) for t in trajectories], 1)
    out, tokens = [], []
    for g in groups:
        ans = g[0].final_answer
        try:
            out.append(int(str(ans).strip()))
        except ValueError:
            out.append(None)
        tokens.append(g[0].tokens_generated)
    return out, tokens


@register("consensus")
@dataclass
class ConsensusLabels:
    primary: str = "mc"
    second: str | None = "omega"
    primary_kwargs: dict[str, Any] = field(default_factory=dict)
    second_kwargs: dict[str, Any] = field(default_factory=dict)
    judge: Any = None  # a Policy whose final answer is a first-error index; replaces ``second``
    name: str = "consensus"

    @property
    def prm_loss(self) -> str:
        return get_label_source(self.primary, **self.primary_kwargs).prm_loss

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if self.judge is None and self.second is None:
            raise ValueError("consensus needs a second opinion: a label source name (second=) or a judge")
        primary: LabelSource = get_label_source(self.primary, **self.primary_kwargs)
        first = primary.label(trajectories, policy, progress=progress)
        if self.judge is not None:
            other_fe, other_tok = judge_first_errors(self.judge, trajectories)
            other_roll = [1] * len(trajectories)
        else:
            second: LabelSource = get_label_source(self.second, **self.second_kwargs)
            other = second.label(trajectories, policy, progress=progress)
            other_fe = [None if o is None else o.first_error for o in other]
            other_tok = [0 if o is None else o.policy_tokens for o in other]
            other_roll = [0 if o is None else o.rollouts for o in other]
        out: list[StepLabels | None] = []
        for a, fe, tok, roll in zip(first, other_fe, other_tok, other_roll):
            if a is None:
                out.append(None)
                continue
            agree = fe is not None and a.first_error == fe
            weights = a.weights if agree else [0.0] * len(a.values)
            out.append(StepLabels(list(a.values), source=self.name, soft=a.soft, weights=weights,
                                  policy_tokens=a.policy_tokens + tok, rollouts=a.rollouts + roll))
        return out
