import json

import pytest

from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.rl.grpo import GRPOConfig
from selfprm.studies.rl import RLConfig
from selfprm.studies.rl import run as run_rl


@pytest.mark.slow
def test_rl_runs_every_method_and_writes_metrics(tmp_path):
    cfg = RLConfig(
        seeds=1, lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), sft=SFTConfig(steps=30),
        tools_sft=SFTConfig(steps=30), n_sft_problems=200,
        n_train_problems=20, n_eval_problems=6,
        grpo=GRPOConfig(steps=2, prompts_per_step=2, group_size=4, eval_every=1, max_new_tokens=24),
        method_kwargs={"tree_grpo": {"m_trees": 1, "n_branches": 3}},
        prm_pool_problems=6, prm_pool_samples=2, prm_train=PRMTrainConfig(epochs=1, batch_size=32, head_lr=5e-2),
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
    marks = {p: p.stat().st_mtime_ns for p in tmp_path.rglob(".stage-done.json")}
    again = run_rl(cfg, tmp_path, progress=False)
    assert again["methods"]["outcome"]["accuracy"] == m["methods"]["outcome"]["accuracy"]
    assert {p: p.stat().st_mtime_ns for p in marks} == marks
    # more PRM epochs: the PRM, the prm method and the search are redone (the old code served them
    # from the stale PRM), the methods that read no PRM are not
    cfg.prm_train.epochs = 2
    run_rl(cfg, tmp_path, progress=False)
    redone = {p.parent.relative_to(tmp_path).as_posix() for p, t in marks.items() if p.stat().st_mtime_ns != t}
    assert redone == {"prm", "runs/prm-seed0", "search"}, redone
