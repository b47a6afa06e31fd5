import json

import pytest

from selfprm.rl.experiment import RLRunConfig, run_rl
from selfprm.rl.grpo import GRPOConfig
from selfprm.policies.tiny import TinyLMConfig


@pytest.mark.slow
def test_rl_runs_every_method_and_writes_metrics(tmp_path):
    cfg = RLRunConfig(
        seeds=1, lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), sft_steps=30, n_sft_problems=200,
        n_train_problems=20, n_eval_problems=6,
        grpo=GRPOConfig(steps=2, prompts_per_step=2, group_size=4, eval_every=1, max_new_tokens=24),
        method_kwargs={"tree_grpo": {"trees": 1, "branches": 3}},
        prm_pool_problems=6, prm_pool_samples=2, prm_epochs=1,
        search_problems=3, search_ns=(1, 2), search_beams=((1, 2, 0),),
    )
    m = run_rl(cfg, tmp_path, progress=False)
    data = json.loads((tmp_path / "rl_metrics.json").read_text())
    assert set(data["methods"]) == {"outcome", "prm", "tree_grpo", "r3", "srl", "outcome_tools", "toolpo"}
    for name, rec in data["methods"].items():
        assert [x for x, _ in rec["accuracy"]] == [0, 8, 16], name  # equal samples for every method
        assert 0.0 <= rec["final_accuracy"] <= 1.0 and rec["seeds"] == 1
    assert isinstance(data["initial_accuracy"], float)
    assert {"best_of_n", "weighted_majority", "majority_vote", "beam"} <= set(data["search"])
    for f in ("rl_curves.png", "search_curves.png", "rl_table.md"):
        assert (tmp_path / f).stat().st_size > 0
    # a rerun resumes from the cached stages and gives the same numbers
    again = run_rl(cfg, tmp_path, progress=False)
    assert again["methods"]["outcome"]["accuracy"] == m["methods"]["outcome"]["accuracy"]
