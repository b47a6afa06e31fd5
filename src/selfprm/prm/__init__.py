"""Process reward models: a step-scoring head on any transformers backbone."""
from selfprm.prm.aggregate import AGGREGATIONS, aggregate
from selfprm.prm.losses import bce_loss, spr_loss
from selfprm.prm.model import PRMConfig, ProcessRewardModel
from selfprm.prm.train import PRMTrainConfig, TrainHistory, train_prm

__all__ = ["AGGREGATIONS", "aggregate", "bce_loss", "spr_loss", "PRMConfig", "ProcessRewardModel",
           "PRMTrainConfig", "TrainHistory", "train_prm"]
