"""Label sources: per-step labels from free signals, each with its cost in policy tokens."""
from selfprm.labels.base import (
    LABEL_SOURCES,
    LabelResult,
    LabelSource,
    available_label_sources,
    get_label_source,
    register,
    run_label_source,
)

# importing the modules registers the sources
from selfprm.labels import mc_rollout, oracle, outcome, spr  # noqa: E402,F401
from selfprm.labels import perturbation  # noqa: E402,F401
from selfprm.labels import omega  # noqa: E402,F401
from selfprm.labels import mcts  # noqa: E402,F401
from selfprm.labels import tree_rollout  # noqa: E402,F401
from selfprm.labels import implicit  # noqa: E402,F401
from selfprm.labels import consensus  # noqa: E402,F401
from selfprm.labels import human  # noqa: E402,F401

__all__ = ["LABEL_SOURCES", "LabelResult", "LabelSource", "available_label_sources", "get_label_source", "register", "run_label_source"]
