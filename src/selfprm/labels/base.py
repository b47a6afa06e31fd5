"""The label-source protocol, its result type and the registry.

A label source turns trajectories (and, where it needs them, more policy calls) into per-step
labels. Every source answers one call, :func:`run_label_source`, which returns the labels and
what they cost, so sources compare on quality per policy token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from selfprm.policies.base import Policy
from selfprm.registry import Registry
from selfprm.types import StepLabels, Trajectory


@runtime_checkable
class LabelSource(Protocol):
    """``label`` returns one :class:`StepLabels` per trajectory, or None where it drops one.

    ``prm_loss`` names the PRM loss its labels are meant for: ``"bce"`` (hard labels),
    ``"soft_bce"`` (soft labels) or ``"spr"`` (MetaStone-S1's self-supervised loss).

    A source's dataclass fields are its configuration; ``progress`` (show a progress bar, where
    the source has a long loop) is a keyword of the call, not configuration. What a source keeps
    from its last call ends in ``_`` (scikit-learn's convention for fitted state, e.g. ``omega``'s
    ``estimator_``) and is None until the first call.
    """

    name: str
    prm_loss: str

    def label(
        self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *, progress: bool = False
    ) -> list[StepLabels | None]: ...


@dataclass
class PerTrajectoryLabels:
    """Base of the free sources that label each trajectory from what it already carries (its
    outcome, its oracle), one at a time and without calling the policy: subclasses set ``name``
    (and ``prm_loss``) and write :meth:`label_one`."""

    name: str = ""
    prm_loss: str = "bce"

    def label_one(self, t: Trajectory) -> StepLabels | None:
        raise NotImplementedError

    def label(self, trajectories: Sequence[Trajectory], policy: Policy | None = None, *,
              progress: bool = False) -> list[StepLabels | None]:
        return [self.label_one(t) for t in trajectories]


@dataclass
class LabelResult:
    """A source's labels and their cost ledger.

    ``policy_passes`` are the token positions the policy ran through its model while the source
    labelled (read off ``policy.token_passes``; 0 for a policy without a model); with the
    sources' own ``token_passes`` (training and scoring models of their own) they make
    :attr:`token_passes`, the compute the labels cost. ``seconds`` is wall time.
    """

    source: str
    labels: list[StepLabels | None]
    seconds: float
    prm_loss: str
    policy_passes: int = 0

    @property
    def token_passes(self) -> int:
        return self.policy_passes + sum(l.token_passes for l in self.labels if l is not None)

    def cost(self) -> dict[str, float]:
        """The ledger: tokens generated, token positions through any model, wall seconds."""
        return {"policy_tokens": self.policy_tokens, "token_passes": self.token_passes, "seconds": self.seconds}

    @property
    def policy_tokens(self) -> int:
        return sum(l.policy_tokens for l in self.labels if l is not None)

    @property
    def rollouts(self) -> int:
        return sum(l.rollouts for l in self.labels if l is not None)

    @property
    def labeled_steps(self) -> int:
        return sum(len(l.values) for l in self.labels if l is not None)

    @property
    def tokens_per_step_label(self) -> float:
        return self.policy_tokens / max(1, self.labeled_steps)


# name -> factory; factories take keyword arguments (the source's config fields).
LABEL_SOURCES: Registry[Callable[..., LabelSource]] = Registry("label source")


def register(name: str) -> Callable[[Callable[..., LabelSource]], Callable[..., LabelSource]]:
    """``@register("mc")`` on a source's class (or any factory of one)."""
    return LABEL_SOURCES.register(name)


def available_label_sources() -> list[str]:
    return LABEL_SOURCES.names()


def get_label_source(name: str, **kwargs: Any) -> LabelSource:
    return LABEL_SOURCES.get(name)(**kwargs)


def run_label_source(
    source: LabelSource | str,
    trajectories: Sequence[Trajectory],
    policy: Policy | None = None,
    *,
    progress: bool = False,
    **kwargs: Any,
) -> LabelResult:
    """Label ``trajectories`` with ``source`` (an instance or a registered name) and time it.

    ``kwargs`` configure a source given by name; an instance is already configured, so passing
    them with one is an error rather than silently ignored. ``progress`` goes to ``label()``.
    """
    if isinstance(source, str):
        source = get_label_source(source, **kwargs)
    elif kwargs:
        raise TypeError(f"source settings {sorted(kwargs)} go with a source name, not a {type(source).__name__} instance")
    t0 = time.perf_counter()
    passes_before = getattr(policy, "token_passes", 0)
    labels = source.label(trajectories, policy, progress=progress)
    policy_passes = getattr(policy, "token_passes", 0) - passes_before
    if len(labels) != len(trajectories):
        raise RuntimeError(f"{source.name} returned {len(labels)} label sets for {len(trajectories)} trajectories")
    for traj, lab in zip(trajectories, labels):
        if lab is not None and len(lab.values) != len(traj.steps):
            raise RuntimeError(f"{source.name}: {len(lab.values)} labels for {len(traj.steps)} steps")
    return LabelResult(source.name, labels, time.perf_counter() - t0, source.prm_loss, policy_passes)
