"""``mc``: Math-Shepherd's Monte Carlo step labels.

Wang et al., *Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human Annotations*,
arXiv 2312.08935, §3.3. From the prefix ending at step ``s_i`` the policy completes the solution
``N`` times, ``{(s_{i+1,j}, ..., a_j)}_{j=1..N}``, and the step is scored by how many completions
reach the gold answer ``a*``:

    hard estimate  y_i^HE = 1 if ∃ j : a_j = a*  else 0
    soft estimate  y_i^SE = Σ_j 1[a_j = a*] / N

Identical prefixes (the same problem sampled twice often opens the same way) are rolled out once
per call and their estimate shared, and charged once, to the first trajectory that asked for
them; the cost counts the tokens actually generated (``policy_tokens``, ``rollouts``;
``token_passes`` stays 0: the policy's own generation compute is read off the policy by
:func:`selfprm.labels.run_label_source`).

``assume_correct_sound`` (same name and meaning in ``omega``): a trajectory whose final answer is
right is labelled sound throughout, 1.0 on every step, at zero cost and without rollouts.
Math-Shepherd rolls out every step of every solution, so it is off by default, here as in
``omega``, so the two compare on equal terms; a study runs each source both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from tqdm.auto import tqdm

from selfprm.labels.base import register
from selfprm.policies.base import Policy, Prefix
from selfprm.types import StepLabels, Trajectory


@register("mc")
@dataclass
class MonteCarloLabels:
    n_rollouts: int = 8
    soft: bool = True
    batch_prefixes: int = 256
    assume_correct_sound: bool = False  # a right-answer trajectory: all 1.0, no rollouts (as in omega)
    name: str = "mc"

    @property
    def prm_loss(self) -> str:
        return "soft_bce" if self.soft else "bce"

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        if policy is None:
            raise ValueError("mc labels need a policy to roll out from each step prefix")
        keys: dict[tuple, int] = {}
        prefixes: list[Prefix] = []
        free = [bool(self.assume_correct_sound and t.outcome) for t in trajectories]
        for t, skip in zip(trajectories, free):
            if skip:
                continue
            for i in range(len(t.steps)):
                key = (t.problem.id, tuple(t.steps[: i + 1]))
                if key not in keys:
                    keys[key] = len(prefixes)
                    prefixes.append(Prefix(t.problem, list(t.steps[: i + 1])))
        successes, tokens = [0] * len(prefixes), [0] * len(prefixes)
        bar = tqdm(total=len(prefixes), desc=f"{self.name} rollouts", disable=not progress, leave=False)
        for start in range(0, len(prefixes), self.batch_prefixes):
            chunk = prefixes[start:start + self.batch_prefixes]
            for j, group in enumerate(policy.continue_from(chunk, self.n_rollouts)):
                successes[start + j] = sum(bool(r.outcome) for r in group)
                tokens[start + j] = sum(r.tokens_generated for r in group)
            bar.update(len(chunk))
        bar.close()
        # each unique prefix's cost is charged to the first trajectory that asked for it
        charged: set[int] = set()
        out: list[StepLabels | None] = []
        for t, skip in zip(trajectories, free):
            if skip:  # a right answer, taken as sound throughout
                out.append(StepLabels([1.0] * len(t.steps), source=self.name, soft=self.soft))
                continue
            values, cost, rollouts = [], 0, 0
            for i in range(len(t.steps)):
                k = keys[(t.problem.id, tuple(t.steps[: i + 1]))]
                share = successes[k] / self.n_rollouts
                values.append(share if self.soft else float(successes[k] > 0))
                if k not in charged:
                    charged.add(k)
                    cost += tokens[k]
                    rollouts += self.n_rollouts
            out.append(StepLabels(values, source=self.name, soft=self.soft, policy_tokens=cost, rollouts=rollouts))
        return out
