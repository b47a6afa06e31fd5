"""Policy optimisation with dense step rewards: one GRPO core, one file per method.

========== ========================================================================
outcome    GRPO on the final outcome only (the baseline)
prm        GRPO + a PRM's step rewards added to the tokens of each step
tree_grpo  Tree-GRPO: tree rollouts, intra + inter-tree advantages (arXiv 2509.21240)
r3         reverse curriculum from demonstration prefixes (arXiv 2402.05808)
srl        Supervised RL: step similarity to the expert (arXiv 2510.25992)
spr_online MetaStone-S1's SPR head learning online on the policy (arXiv 2507.01951)
prime      PRIME: implicit PRM updated online, RLOO advantage (arXiv 2502.01456)
toolpo     ToolPO's tool-call credit on the ``tools`` domain (arXiv 2510.21618)
========== ========================================================================
"""
from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, TrainResult, evaluate_accuracy, group_normalise, grpo_loss
from selfprm.rl.outcome import OutcomeConfig, OutcomeMethod
from selfprm.rl.prm_reward import PRMRewardConfig, PRMRewardMethod
from selfprm.rl.prime import PRIMEConfig, PRIMEMethod
from selfprm.rl.r3 import R3Config, R3Method
from selfprm.rl.rollout import Rollout, sample_rollouts, token_segments
from selfprm.rl.spr_online import SPROnlineConfig, SPROnlineMethod
from selfprm.rl.srl import SRLConfig, SRLMethod
from selfprm.rl.toolpo import ToolPOConfig, ToolPOMethod
from selfprm.rl.tree_grpo import TreeGRPOConfig, TreeGRPOMethod

from selfprm.rl.methods import RL_METHODS, MethodSpec, register_method  # filled by the imports above

__all__ = ["GRPOConfig", "GRPOTrainer", "TrainResult", "evaluate_accuracy", "group_normalise", "grpo_loss",
           "OutcomeConfig", "OutcomeMethod", "PRMRewardConfig", "PRMRewardMethod", "PRIMEConfig", "PRIMEMethod",
           "R3Config", "R3Method", "Rollout", "sample_rollouts", "token_segments", "SPROnlineConfig",
           "SPROnlineMethod", "SRLConfig", "SRLMethod", "ToolPOConfig", "ToolPOMethod",
           "TreeGRPOConfig", "TreeGRPOMethod", "RL_METHODS", "MethodSpec", "register_method"]
