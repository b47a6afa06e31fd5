"""``consensus``: Qwen's consensus filtering of step labels — Monte Carlo labels kept where a judge agrees.

Zhang et al., *The Lessons of Developing Process Reward Models in Mathematical Reasoning*,
arXiv 2501.07301. Monte Carlo (MC) estimation labels a step by whether completions from
it reach the right answer; it confuses "this step is wrong" with "the policy cannot finish from
here", and a lucky completion hides a wrong step. An LLM judge errs in other ways. The paper keeps
a solution only where the two kinds of signal agree on where the first error is,

    keep(x) = 1[ fe_MC(x) = fe_judge(x) ]                       (fe = -1: no error)
    fe_MC(x) = min { i : ŷ_i = 0 },  ŷ_i = 1[ Σ_j 1[a_ij = a*] > 0 ]  (hard MC estimate, Math-Shepherd)

and a kept solution carries the MC labels (the paper trains on hard labels; ``primary_kwargs``
with ``soft=False`` gives them: hard labels, threshold 0, did best there). The filtered set, about
40% of the MC data, trained a PRM as good as one on LLM-as-a-judge labels alone.

**The judge** (``judge=``) — where the second opinion comes from:

* ``"verifier"`` (default): :class:`~selfprm.labels.verifier.OutcomeVerifier`, an outcome-supervised
  verifier (Cobbe et al. 2021; Uesato et al. 2022) on a copy of the policy's weights, trained on
  final-answer outcomes only and cross-fitted (a model never judges the problems it trained on);
  its first error is the first step whose prefix value falls below a threshold tuned on outcomes.
  A learned signal, not a rollout one, and free: ``judge_kwargs`` are its
  :class:`~selfprm.labels.verifier.VerifierConfig` fields. Needs a policy with a causal LM (HFPolicy).
* ``"policy"``: an LLM critic behind the policy protocol, ``judge_model=`` (any chat model wrapped
  as a :class:`~selfprm.policies.base.Policy`). It continues each rendered solution once and its
  final answer is read as the first-error index (``-1``: none; anything unparsable disagrees), as
  a ProcessBench critic answers. This is the paper's judge when ``judge_model`` is a strong LLM.
* any other registered label source name (e.g. ``"omega"``), with ``judge_kwargs`` as its settings;
  its labels' first error is the opinion. **A deviation** when it is an MC source: two Monte Carlo
  estimates by the same policy share its blind spots, which is what the paper's filter is meant to
  catch; kept for comparison only.

**Dropped, and cost.** A disagreement keeps the primary's labels with weight 0 on every step, so
the PRM loss skips it exactly as if it were dropped, while the tokens spent on it still count in
the ledger (which sums only returned labels); a trajectory the primary itself drops (None) stays
None. Each returned label carries the full cost of its trajectory: the primary's ``policy_tokens``
and ``rollouts`` plus the judge's (a ``"policy"`` judge's generated tokens and one call; a label
source's own), and ``token_passes`` = the primary's + the judge's model compute (the verifier's
training, calibration and judging passes of that trajectory; a ``"policy"`` judge's counter, shared
evenly). After a call ``judge_first_errors_`` holds the judge's first errors (None: unreadable),
``agree_`` which trajectories were kept, and ``verifier_`` the fitted verifier (``judge="verifier"``).

Deviations from the paper: the default judge is a small learned verifier from the policy's own
weights, not Qwen2.5-72B-Instruct prompted as a critic (no such model runs here); the MC side uses
the policy being trained, not a separate, stronger completer (Qwen2.5-Math-Instruct models with 8
completions per step in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from selfprm.labels.base import LABEL_SOURCES, LabelSource, get_label_source, register
from selfprm.policies.base import Policy, Prefix
from selfprm.types import StepLabels, Trajectory

JUDGES = ("verifier", "policy")  # besides any registered label source name


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


def _split_evenly(total: int, n: int) -> list[int]:
    return [total // n + (1 if i < total % n else 0) for i in range(n)] if n else []


@register("consensus")
@dataclass
class ConsensusLabels:
    """Qwen's consensus filter (module doc).

    Parameters:
        primary: the label source whose labels are kept (``mc``: Monte Carlo, as in the paper).
        primary_kwargs: its settings; the default ``{"soft": False}`` gives the paper's hard MC labels
            (a dict passed replaces it whole: ``{"n_rollouts": 4}`` alone means soft labels, whose
            first error is the first step with a success share below 0.5).
        judge: ``"verifier"`` (default), ``"policy"`` (needs ``judge_model``) or a label source name.
        judge_kwargs: the verifier's :class:`~selfprm.labels.verifier.VerifierConfig` fields, or the
            label source's settings.
        judge_model: ``judge="policy"`` only: a Policy whose final answer is a first-error index.
    """

    primary: str = "mc"
    primary_kwargs: dict[str, Any] = field(default_factory=lambda: {"soft": False})
    judge: str = "verifier"
    judge_kwargs: dict[str, Any] = field(default_factory=dict)
    judge_model: Any = None
    name: str = "consensus"

    def __post_init__(self) -> None:
        if not isinstance(self.judge, str):
            raise TypeError(f"judge names the kind of judge ({', '.join(JUDGES)} or a label source name); "
                            f"pass a judge model as judge='policy', judge_model=... (got {type(self.judge).__name__})")
        if self.judge == "policy" and self.judge_model is None:
            raise ValueError("judge='policy' needs judge_model: a Policy whose final answer is a first-error index")
        if self.judge != "policy" and self.judge_model is not None:
            raise ValueError(f"judge_model is only read with judge='policy', not judge={self.judge!r}")
        if self.judge == self.name:
            raise ValueError("consensus cannot be its own judge")
        if self.judge not in JUDGES:
            LABEL_SOURCES.get(self.judge)  # an unknown name fails here, naming what there is
        # what the last call found (None until the first call)
        self.judge_first_errors_: list[int | None] | None = None
        self.agree_: list[bool] | None = None
        self.verifier_ = None

    @property
    def prm_loss(self) -> str:
        return get_label_source(self.primary, **self.primary_kwargs).prm_loss

    def _opinions(self, trajectories: Sequence[Trajectory], policy: Policy | None, progress: bool, verifier=None):
        """Per trajectory: the judge's first error (None: no opinion), policy tokens, rollouts, token passes."""
        n = len(trajectories)
        if self.judge == "verifier":
            fe = verifier.first_errors(trajectories, progress=progress)
            self.verifier_ = verifier
            return list(fe), [0] * n, [0] * n, list(verifier.token_passes_)
        if self.judge == "policy":
            before = getattr(self.judge_model, "token_passes", 0)
            fe, tok = judge_first_errors(self.judge_model, trajectories)
            passes = _split_evenly(getattr(self.judge_model, "token_passes", 0) - before, n)
            return fe, tok, [1] * n, passes
        src: LabelSource = get_label_source(self.judge, **self.judge_kwargs)
        other = src.label(trajectories, policy, progress=progress)
        return ([None if o is None else o.first_error for o in other],
                [0 if o is None else o.policy_tokens for o in other],
                [0 if o is None else o.rollouts for o in other],
                [0 if o is None else o.token_passes for o in other])

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]:
        verifier = None
        if self.judge == "verifier":  # checked before the rollouts are paid for: the policy, the folds
            from selfprm.labels.verifier import OutcomeVerifier

            verifier = OutcomeVerifier(policy, **self.judge_kwargs)
            verifier.assign_folds(trajectories)
        primary: LabelSource = get_label_source(self.primary, **self.primary_kwargs)
        first = primary.label(trajectories, policy, progress=progress)
        other_fe, other_tok, other_roll, other_passes = self._opinions(trajectories, policy, progress, verifier)
        out: list[StepLabels | None] = []
        agree_all: list[bool] = []
        for a, fe, tok, roll, passes in zip(first, other_fe, other_tok, other_roll, other_passes):
            agree = a is not None and fe is not None and a.first_error == fe
            agree_all.append(agree)
            if a is None:
                out.append(None)
                continue
            weights = a.weights if agree else [0.0] * len(a.values)
            out.append(StepLabels(list(a.values), source=self.name, soft=a.soft, weights=weights,
                                  policy_tokens=a.policy_tokens + tok, rollouts=a.rollouts + roll,
                                  token_passes=a.token_passes + passes))
        self.judge_first_errors_, self.agree_ = other_fe, agree_all
        return out
