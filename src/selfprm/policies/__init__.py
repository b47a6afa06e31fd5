"""Policies: anything that writes step-by-step solutions and continues from a prefix."""
from selfprm.policies.base import Policy, Prefix, sample_flat
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.simulated import SimulatedPolicy, SimulatedPolicyConfig

__all__ = ["Policy", "Prefix", "sample_flat", "HFPolicy", "HFPolicyConfig", "SimulatedPolicy", "SimulatedPolicyConfig"]
