"""The registry of policy-optimisation methods: each method file registers itself here.

A :class:`MethodSpec` says how to build the method from its config (and a PRM, for the methods
that score steps with one) and which domain the method runs on, so a study runs any registered
method without an if-chain of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from selfprm.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    """``build(config, prm)`` -> the method object the GRPO trainer calls.

    Parameters:
        config_cls: the method's config dataclass (a ``GRPOConfig`` subclass).
        build: makes the method from a config of ``config_cls`` and the PRM (None unless ``needs_prm``).
        domain: the domain it trains on (``"arith"`` or ``"tools"``).
        needs_prm: whether it reads a PRM's step scores.
    """

    config_cls: type
    build: Callable[[Any, Any], Any]
    domain: str = "arith"
    needs_prm: bool = False


RL_METHODS: Registry[MethodSpec] = Registry("RL method")


def register_method(name: str, spec: MethodSpec) -> MethodSpec:
    RL_METHODS.register(name, spec)
    return spec


# Post-Completion Learning: imported on first use (its module builds its spec on import)
RL_METHODS.register_lazy("pcl", "selfprm.rl.pcl:SPEC")
