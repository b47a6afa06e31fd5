"""The label-source protocol, its result type and the registry.

A label source turns trajectories (and, where it needs them, more policy calls) into per-step
labels. Every source answers one call, :func:`run_label_source`, which returns the labels and
what they cost, so sources compare on quality per policy token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from selfprm.policies.base import Policy
from selfprm.types import StepLabels, Trajectory


@runtime_checkable
class LabelSource(Protocol):
    """``label`` returns one :class:`StepLabels` per trajectory, or None where it drops one.

    ``prm_loss`` names the PRM loss its labels are meant for: ``"bce"`` (hard labels),
    ``"soft_bce"`` (soft labels) or ``"spr"`` (MetaStone-S1's self-supervised loss).
    """

    name: str
    prm_loss: str

    def label(self, trajectories: Sequence[Trajectory], policy: Policy | None = None) -> list[StepLabels | None]: ...


@dataclass
class LabelResult:
    source: str
    labels: list[StepLabels | None]
    seconds: float
    prm_loss: str

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
_REGISTRY: dict[str, Callable[..., LabelSource]] = {}


def register(name: str) -> Callable[[Callable[..., LabelSource]], Callable[..., LabelSource]]:
    def deco(factory: Callable[..., LabelSource]) -> Callable[..., LabelSource]:
        if name in _REGISTRY:
            raise ValueError(f"label source {name!r} registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def available_label_sources() -> list[str]:
    return sorted(_REGISTRY)


def get_label_source(name: str, **kwargs: Any) -> LabelSource:
    if name not in _REGISTRY:
        raise KeyError(f"unknown label source {name!r}; available: {', '.join(available_label_sources())}")
    return _REGISTRY[name](**kwargs)


def run_label_source(
    source: LabelSource | str, trajectories: Sequence[Trajectory], policy: Policy | None = None, **kwargs: Any
) -> LabelResult:
    """Label ``trajectories`` with ``source`` (an instance or a registered name) and time it."""
    if isinstance(source, str):
        source = get_label_source(source, **kwargs)
    t0 = time.perf_counter()
    labels = source.label(trajectories, policy)
    if len(labels) != len(trajectories):
        raise RuntimeError(f"{source.name} returned {len(labels)} label sets for {len(trajectories)} trajectories")
    for traj, lab in zip(trajectories, labels):
        if lab is not None and len(lab.values) != len(traj.steps):
            raise RuntimeError(f"{source.name}: {len(lab.values)} labels for {len(traj.steps)} steps")
    return LabelResult(source.name, labels, time.perf_counter() - t0, source.prm_loss)
