import json

import pytest

from selfprm.domains.arith import ArithConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig
from selfprm.prm.train import PRMTrainConfig
from selfprm.rl.grpo import GRPOConfig
from selfprm.studies.rl import RLConfig
from selfprm.studies.rl import run as run_rl

SOURCES = ("oracle", "outcome", "mc")
ARITH_ROWS = {"outcome", "spr_online", "spr_online:step", "prime", "tree_grpo", "r3", "srl"} | {f"prm:{s}" for s in SOURCES}


@pytest.mark.slow
def test_rl_runs_every_method_in_every_regime_and_writes_metrics(tmp_path):
    cfg = RLConfig(
        seeds=1, lm=TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), sft=SFTConfig(steps=30),
        tools_sft=SFTConfig(steps=30), n_sft_problems=200,
        sparse_arith=ArithConfig(min_ops=4, max_ops=5), sparse_max_new_tokens=32,
        n_train_problems=20, n_eval_problems=6,
        grpo=GRPOConfig(steps=2, prompts_per_step=2, group_size=4, eval_every=1, max_new_tokens=24),
        method_kwargs={"tree_grpo": {"m_trees": 1, "n_branches": 3}, "prm:mc": {"alpha": 0.25}},
        prm_sources=SOURCES, mc_rollouts=2,
        prm_pool_problems=6, prm_pool_samples=2, prm_train=PRMTrainConfig(epochs=1, batch_size=32, head_lr=5e-2),
        search_problems=3, search_ns=(1, 2), search_beams=((1, 2, 0),),
    )
    m = run_rl(cfg, tmp_path, progress=False)
    data = json.loads((tmp_path / "rl_metrics.json").read_text())
    regimes = data["regimes"]
    assert set(regimes) == {"short", "sparse", "tools"}
    assert set(regimes["short"]["methods"]) == set(regimes["sparse"]["methods"]) == ARITH_ROWS
    assert set(regimes["tools"]["methods"]) == {"outcome_tools", "toolpo"}
    short = regimes["short"]["methods"]
    assert short["spr_online"]["reward"] == "spr_online" and short["prime"]["reward"] == "prime"
    # the variant row runs the same method with its own settings (step scores in the advantage)
    assert short["spr_online:step"]["method"] == "spr_online" and short["spr_online:step"]["reward"] == "spr_online:step"
    # PRIME runs two more models beside the policy: their passes are in the ledger; plain GRPO has none
    assert short["prime"]["method_token_passes"] > 0 and short["outcome"]["method_token_passes"] == 0
    for r, reg in regimes.items():
        assert 0.0 <= reg["sft_accuracy"] <= 1.0 and data["sft_accuracy"][r] == reg["sft_accuracy"]
        for name, rec in reg["methods"].items():
            assert [x for x, _ in rec["accuracy"]] == [0, 8, 16], (r, name)  # equal samples for every method
            assert 0.0 <= rec["final_accuracy"] <= 1.0 and rec["seeds"] == 1 and rec["regime"] == r
            # every run starts from its regime's SFT weights, measured on the same problems
            assert rec["accuracy"][0][1] == reg["sft_accuracy"], (r, name)
            assert rec["reward"] == ("outcome" if name in ("outcome", "outcome_tools") else name)
            if not name.startswith("prm:"):
                assert rec["tokens"][0][0] == 0 and "label_policy_tokens" not in rec
    assert regimes["sparse"]["max_new_tokens"] == 32 and regimes["short"]["max_new_tokens"] == 24
    for r in ("short", "sparse"):
        methods, pool = regimes[r]["methods"], regimes[r]["pool"]
        assert pool["policy_tokens"] > 0
        # exact and outcome labels cost the pool only; MC's rollouts cost more
        assert methods["prm:oracle"]["label_policy_tokens"] == methods["prm:outcome"]["label_policy_tokens"] == pool["policy_tokens"]
        assert methods["prm:mc"]["label_policy_tokens"] > pool["policy_tokens"]
        assert methods["prm:mc"]["label_token_passes"] > 0
        for s in SOURCES:
            rec = methods[f"prm:{s}"]
            # the token curve starts at what the labels cost, and the run's tokens come on top
            assert rec["tokens"][0][0] == rec["label_policy_tokens"] > 0, (r, s)
            assert rec["tokens"][-1][0] == rec["label_policy_tokens"] + rec["policy_tokens"], (r, s)
    # the per-row kwargs reach that row's config only
    def run_config(path):
        return json.loads((tmp_path / path / ".stage-done.json").read_text())["config"]["config"]
    assert run_config("runs/short/prm-mc-seed0")["alpha"] == 0.25 and run_config("runs/short/prm-oracle-seed0")["alpha"] == 0.5
    assert {"best_of_n", "weighted_majority", "majority_vote", "beam"} <= set(data["search"])
    assert data["search"]["prm"] == "oracle"
    for f in ("rl_curves.png", "search_curves.png", "rl_table.md"):
        assert (tmp_path / f).stat().st_size > 0
    table = (tmp_path / "rl_table.md").read_text()
    assert "| sparse | prm:mc | prm:mc |" in table and "| tools | toolpo |" in table
    # a rerun resumes from the cached stages and gives the same numbers
    marks = {p: p.stat().st_mtime_ns for p in tmp_path.rglob(".stage-done.json")}
    again = run_rl(cfg, tmp_path, progress=False)
    assert again["regimes"]["short"]["methods"]["outcome"]["accuracy"] == m["regimes"]["short"]["methods"]["outcome"]["accuracy"]
    assert {p: p.stat().st_mtime_ns for p in marks} == marks
    # more PRM epochs: every source's PRM in every regime, the prm:<source> rows and the search are
    # redone; the pools, the labels and the methods that read no PRM are not
    cfg.prm_train.epochs = 2
    run_rl(cfg, tmp_path, progress=False)
    redone = {p.parent.relative_to(tmp_path).as_posix() for p, t in marks.items() if p.stat().st_mtime_ns != t}
    assert redone == ({f"{r}/prm/{s}" for r in ("short", "sparse") for s in SOURCES}
                      | {f"runs/{r}/prm-{s}-seed0" for r in ("short", "sparse") for s in SOURCES} | {"search"}), redone
