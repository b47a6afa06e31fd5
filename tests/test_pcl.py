"""Post-Completion Learning (arXiv 2507.20252): the marker, the rewards, the two generation modes."""

import math

import pytest
import torch

from selfprm.domains import ArithDomain
from selfprm.policies.hf import HFPolicy, HFPolicyConfig
from selfprm.policies.tiny import SFTConfig, TinyLMConfig, build_char_tokenizer, build_tiny_lm, train_sft
from selfprm.rl import RL_METHODS
from selfprm.rl.grpo import GRPOTrainer
from selfprm.rl.pcl import (
    MARKER,
    DualTrackConfig,
    PCLConfig,
    PostCompletionDomain,
    evaluation_track,
    extra_tokens,
    inference_tokenizer,
    parse_evaluation,
    pcl_reward,
    self_evaluate,
    train_pcl_policy,
)


@pytest.fixture
def pcl_domain():
    return PostCompletionDomain(ArithDomain())


@pytest.fixture
def problem(pcl_domain):
    return pcl_domain.make_problem("p", 1, [("+", 2), ("*", 3)])  # 1+2=3, 3*3=9


@pytest.fixture
def overfit(pcl_domain, problem, one_torch_thread):
    """A tiny LM that has memorised one full PCL sequence (solution, marker, evaluation)."""
    tok = build_char_tokenizer(pcl_domain.charset())
    model = build_tiny_lm(tok, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=64), seed=0)
    prompt = pcl_domain.render(problem)
    full = pcl_domain.sft_text(problem, ["1+2=3", "3*3=9"], "9") + MARKER + "f1a1r2"
    train_sft(model, tok, [(prompt, full[len(prompt):])], SFTConfig(steps=120, batch_size=4, lr=1e-2, warmup=5),
              progress=False)
    return model, tok


def test_the_marker_is_a_character_the_domain_never_writes(pcl_domain):
    assert MARKER not in ArithDomain().charset() and MARKER in pcl_domain.charset()

    class Clash(ArithDomain):
        def charset(self):
            return super().charset() + MARKER

    with pytest.raises(ValueError, match="marker"):
        PostCompletionDomain(Clash())


def test_from_text_judges_the_solution_before_the_marker_and_keeps_the_evaluation(pcl_domain, problem):
    t = pcl_domain.from_text(problem, [], "1+2=3\n3*3=9\nA:9#f1a1r2", 20)
    assert t.outcome and t.steps == ["1+2=3", "3*3=9"] and t.meta["post_completion"] == "f1a1r2"
    assert pcl_domain.from_text(problem, [], "1+2=3\nA:9", 9).meta["post_completion"] is None


def test_rewards_by_hand(pcl_domain, problem):
    cfg = PCLConfig()
    right = pcl_domain.from_text(problem, [], "1+2=3\n3*3=9\nA:9#f1a1r2", 0)
    assert pcl_reward(right, cfg)[0] == 3.0  # acc 1 + fmt 1 + consistency 1
    wrong_claims_right = pcl_domain.from_text(problem, [], "1+2=3\n3*3=8\nA:8#f1a1r2", 0)
    total, parts = pcl_reward(wrong_claims_right, cfg)
    assert parts == {"acc": 0.0, "fmt": 1.0, "cons": 0.5, "parsed": 1.0} and total == 1.5  # r̂=2, r=1
    unparsed = pcl_domain.from_text(problem, [], "1+2=3\nA:3#xx", 0)
    assert pcl_reward(unparsed, cfg)[1]["cons"] == 0.0
    assert parse_evaluation("f1a0r1") == (1, 0, 1) and parse_evaluation("f1a0") is None


def test_the_evaluation_track_targets_the_reward_the_reward_function_computes(pcl_domain, problem):
    wrong = pcl_domain.from_text(problem, [], "1+2=3\n3*3=8\nA:8", 0)
    truncated = pcl_domain.from_text(problem, [], "1+2=3\n", 0)
    (p1, t1), (p2, t2) = evaluation_track(pcl_domain, [wrong, truncated])
    assert p1.endswith("A:8" + MARKER) and t1 == "f1a0r1"
    assert p2.endswith(MARKER) and t2 == "f0a0r0"


def test_generation_stops_at_the_marker_and_inference_writes_no_extra_token(overfit, pcl_domain, problem):
    model, tok = overfit
    cfg = HFPolicyConfig(temperature=0.05, max_new_tokens=40, seed=0)
    train_mode = HFPolicy(model, tok, pcl_domain, cfg).sample([problem], 4)[0]
    infer = HFPolicy(model, inference_tokenizer(tok), pcl_domain, cfg).sample([problem], 4)[0]
    # training mode runs through the marker to <eos>; the memorised text is the proof it would
    assert all(t.meta["post_completion"] == "f1a1r2" and extra_tokens(tok, t) == 7 for t in train_mode)
    solution = len(tok("1+2=3\n3*3=9\nA:9", add_special_tokens=False)["input_ids"])
    for t in infer:
        assert t.outcome and t.meta["post_completion"] == "" and extra_tokens(tok, t) == 0
        assert t.tokens_generated == solution + 1  # the marker takes the place of <eos>
    assert all(a.tokens_generated - b.tokens_generated == 7 for a, b in zip(train_mode, infer))


def test_the_evaluation_mode_reads_the_self_evaluation_after_the_marker(overfit, pcl_domain, problem):
    model, tok = overfit
    traj = pcl_domain.from_text(problem, [], "1+2=3\n3*3=9\nA:9", 0)
    (ev,) = self_evaluate(model, tok, pcl_domain, [traj])
    assert ev.text == "f1a1r2" and ev.predicted_reward == 2 and ev.tokens == 7
    assert 0.9 < ev.p_correct <= 1.0


def test_two_pcl_grpo_rounds_end_to_end(pcl_domain, one_torch_thread):
    domain = ArithDomain()
    tok = build_char_tokenizer(pcl_domain.charset())
    model = build_tiny_lm(tok, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), seed=0)
    spec = RL_METHODS.get("pcl")
    cfg = spec.config_cls(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=8, eval_every=2, ppo_epochs=1)
    method = spec.build(cfg, None)
    trainer = GRPOTrainer(model, tok, domain, cfg, method)
    res = trainer.train(domain.sample_problems(4, seed=1), domain.sample_problems(2, seed=2), progress=False)
    assert isinstance(trainer.domain, PostCompletionDomain)  # the method judges the solution before the marker
    assert len(method.log_) == 2 and len(res.kl) == 2 and all(0 <= r["cons"] <= 1 for r in method.log_)


def test_dual_track_sft_mixes_sampled_solutions_with_their_computed_evaluations(pcl_domain, one_torch_thread):
    model, tok, info = train_pcl_policy(
        pcl_domain, 20, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128),
        SFTConfig(steps=3, batch_size=4, warmup=1), DualTrackConfig(problems=3, samples=2, max_new_tokens=16, steps=2),
        progress=False)
    assert info["eval_track"] == 6 and len(info["sft_losses"]) == 5 and not math.isnan(info["eval_track_correct"])
    assert tok.convert_tokens_to_ids(MARKER) != tok.unk_token_id
    assert torch.isfinite(torch.tensor(info["sft_losses"])).all()
