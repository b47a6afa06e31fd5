"""Test-time use of a PRM: best-of-N, weighted majority vote and step-level beam search.

Every method returns, per problem, the answer it picked and the policy tokens it spent, so that
accuracy can be drawn against the token budget (:mod:`selfprm.search.curves`).
"""
from selfprm.search.beam import BeamConfig, BeamResult, beam_search
from selfprm.search.best_of_n import (
    Pick,
    best_of_n_pick,
    majority_vote_pick,
    pick_all,
    weighted_majority_pick,
)
from selfprm.search.step_sampler import StepSampler

__all__ = ["BeamConfig", "BeamResult", "beam_search", "Pick", "best_of_n_pick", "majority_vote_pick",
           "pick_all", "weighted_majority_pick", "StepSampler"]
