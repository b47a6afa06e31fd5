"""Online process rewards in policy optimisation: MetaStone-S1's SPR head (``spr_online``) and
PRIME's implicit PRM (``prime``), each on a case small enough to check by hand."""
import copy
import math
from types import SimpleNamespace

import pytest
import torch

from selfprm.prm.model import base_model
from selfprm.rl import RL_METHODS
from selfprm.rl.grpo import GRPOTrainer, token_logprobs
from selfprm.rl.prime import PRIMEConfig, PRIMEMethod, rloo_advantage_return
from selfprm.rl.rollout import Rollout
from selfprm.rl.spr_online import SPROnlineConfig, SPROnlineMethod, step_read_positions


def _rollout(tok, domain, problem, steps, answer, outcome, group=0):
    text = "".join(s + "\n" for s in steps) + f"A:{answer}"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    traj = domain.make_trajectory(problem, steps, answer)
    traj.outcome = outcome
    prompt = [tok.bos_token_id] + tok(domain.render(problem), add_special_tokens=False)["input_ids"]
    return Rollout(prompt, ids, traj, group)


def _group(tok, domain, outcomes=(True, False, False)):
    p = domain.sample_problems(1, seed=0)[0]
    texts = [(["1+1=2", "2+3=5"], "5"), (["1+1=3", "3+3=6"], "6"), (["2+2=4", "4+4=9"], "9"), (["1+2=4"], "4")]
    return [_rollout(tok, domain, p, s, a, o) for (s, a), o in zip(texts, outcomes)]


def _trainer(model, tok, domain, config, ref=True):
    ref_model = copy.deepcopy(model).eval() if ref else None
    return SimpleNamespace(model=model, ref_model=ref_model, tokenizer=tok, domain=domain, config=config)


def test_both_methods_are_registered():
    assert RL_METHODS.get("spr_online").config_cls is SPROnlineConfig
    assert RL_METHODS.get("prime").config_cls is PRIMEConfig
    assert not RL_METHODS.get("spr_online").needs_prm and not RL_METHODS.get("prime").needs_prm


# ----------------------------------------------------------------------------- PRIME


def test_prime_rloo_advantage_on_a_hand_made_group():
    """Three rollouts of 2, 3 and 1 tokens; token rewards given; outcomes 1, 0, 0.

    Process rewards: means 1.5, 0, 3 (sum 4.5), K = 3, so r -> 1.5 r - 2.25:
      [-.75, .75], [-2.25, -.75, -3.75], [2.25]  ->  returns [0, .75], [-6.75, -4.5, -3.75], [2.25].
    Outcome on the last token, minus the mean of the others: 1, -.5, -.5 -> returns [1, 1], [-.5]*3, [-.5].
    Sum: [1, 1.75], [-7.25, -5, -4.25], [1.75]; mean -2, unbiased var 78.75 / 5 = 15.75.
    """
    r = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    adv, ret = rloo_advantage_return(r, [1.0, 0.0, 0.0], mask, [0, 0, 0])
    want_ret = torch.tensor([[1.0, 1.75, 0.0], [-7.25, -5.0, -4.25], [1.75, 0.0, 0.0]])
    assert torch.allclose(ret, want_ret)
    sd = math.sqrt(15.75 + 1e-8)
    want_adv = torch.tensor([[3.0, 3.75, 0.0], [-5.25, -3.0, -2.25], [3.75, 0.0, 0.0]]) / sd
    assert torch.allclose(adv, want_adv, atol=1e-6)
    # a group of two: the outcome term is exactly r_i - r_j
    _, ret2 = rloo_advantage_return(torch.zeros(2, 1), [1.0, 0.0], torch.ones(2, 1, dtype=torch.bool), [0, 0])
    assert ret2.flatten().tolist() == [1.0, -1.0]


def test_prime_implicit_reward_is_beta_times_the_summed_log_ratio(tiny_lm, char_tokenizer, domain, one_torch_thread):
    cfg = PRIMEConfig(prime_beta=0.05)
    method = PRIMEMethod(cfg)
    trainer = _trainer(tiny_lm, char_tokenizer, domain, cfg)
    rolls = _group(char_tokenizer, domain)
    assert method.implicit_rewards(trainer, rolls) == pytest.approx([0.0] * 3, abs=1e-6)  # πφ starts as π_ref
    torch.manual_seed(0)
    with torch.no_grad():
        for p in method.prm_model_.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pad = char_tokenizer.pad_token_id or 0
    with torch.no_grad():
        lp_phi, mask = token_logprobs(method.prm_model_, rolls, 1.0, pad)
        lp_ref, _ = token_logprobs(trainer.ref_model, rolls, 1.0, pad)
    want = [0.05 * float(((lp_phi[i] - lp_ref[i]) * mask[i]).sum()) for i in range(3)]
    got = method.implicit_rewards(trainer, rolls)
    assert got == pytest.approx(want, abs=1e-6) and any(abs(w) > 1e-4 for w in want)


def test_prime_update_raises_the_right_rollouts_implicit_reward(tiny_lm, char_tokenizer, domain, one_torch_thread):
    cfg = PRIMEConfig(prm_lr=1e-3)
    method = PRIMEMethod(cfg)
    trainer = _trainer(tiny_lm, char_tokenizer, domain, cfg)
    rolls = _group(char_tokenizer, domain, (True, False, False))
    policy_before = [p.detach().clone() for p in tiny_lm.parameters()]
    _, adv = method.advantages(trainer, rolls)
    after = method.implicit_rewards(trainer, rolls)
    assert after[0] > max(after[1:]), after
    assert method.log_[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # σ(0) = 1/2 before the step
    # the policy itself is untouched: πφ is a copy
    assert all(torch.equal(a, b) for a, b in zip(policy_before, tiny_lm.parameters()))
    # token passes: π_ref forward n, πφ forward + backward 2n for the update, then πφ forward n for `after`
    n = sum(len(r.prompt_ids) + len(r.completion_ids) for r in rolls)
    assert method.token_passes == 3 * n + 2 * n  # implicit_rewards: π_ref forward + πφ forward
    # the right rollout gets the top advantage on its first token
    assert adv[0, 0] > adv[1, 0] and adv[0, 0] > adv[2, 0]


# ----------------------------------------------------------------------------- spr_online


def test_spr_reads_the_token_before_each_separator(char_tokenizer, domain):
    r = _group(char_tokenizer, domain)[0]  # "1+1=2\n2+3=5\nA:5<eos>"
    p0 = len(r.prompt_ids)
    assert step_read_positions(char_tokenizer, r, "\n") == [p0 + 4, p0 + 10]  # the "2" and the "5"
    assert step_read_positions(char_tokenizer, r, "\n", "separator") == [p0 + 5, p0 + 11]


def test_spr_online_head_trains_on_the_rollouts_and_logs_kept_shares(tiny_lm, char_tokenizer, domain, one_torch_thread):
    cfg = SPROnlineConfig(head_lr=1e-2)
    method = SPROnlineMethod(cfg)
    trainer = _trainer(tiny_lm, char_tokenizer, domain, cfg)
    rolls = _group(char_tokenizer, domain, (True, True, False, False))
    torch.manual_seed(0)
    method._ensure_head(trainer)
    assert method.prm_.backbone is base_model(tiny_lm)  # the policy's own body, not a copy
    head0 = [p.detach().clone() for p in method.prm_.head.parameters()]
    _, adv = method.advantages(trainer, rolls)
    row = method.log_[0]
    assert (row["total_pos"], row["total_neg"]) == (4, 3)  # 2 + 2 steps right, 2 + 1 wrong
    assert row["kept_pos"] + row["kept_neg"] > 0 and row["loss"] > 0
    assert row["kept_share_pos"] == row["kept_pos"] / 4 and row["kept_share_neg"] == row["kept_neg"] / 3
    assert any(not torch.equal(a, b) for a, b in zip(head0, method.prm_.head.parameters()))
    # MetaStone's advantage: outcome-only GRPO, (1, 1, 0, 0) -> +1, +1, -1, -1
    assert adv[:, 0].tolist() == pytest.approx([1, 1, -1, -1], abs=1e-4)
    method.advantages(trainer, rolls)
    assert len(method.log_) == 2  # one row per round


def test_spr_online_backbone_gets_1e4_of_the_heads_gradient(tiny_lm, char_tokenizer, domain, one_torch_thread):
    rolls = _group(char_tokenizer, domain, (True, True, False, False))
    embed = base_model(tiny_lm).embed_tokens.weight
    grads = {}
    head_state = None
    for scale in (1e-4, 1.0):
        cfg = SPROnlineConfig(backbone_grad_scale=scale)
        method = SPROnlineMethod(cfg)
        trainer = _trainer(tiny_lm, char_tokenizer, domain, cfg, ref=False)
        method._ensure_head(trainer)
        if head_state is None:
            head_state = copy.deepcopy(method.prm_.head.state_dict())
        method.prm_.head.load_state_dict(head_state)
        torch.manual_seed(1)  # the same dropout mask in both
        method.update_head(trainer, rolls)
        grads[scale] = method._pending[embed].clone()
        if scale == 1e-4:
            # the policy's next backward receives it on top of its own gradient (here 0), once
            pad = char_tokenizer.pad_token_id or 0
            for _ in range(2):
                tiny_lm.zero_grad(set_to_none=True)
                (0.0 * token_logprobs(tiny_lm, rolls, 1.0, pad)[0].sum()).backward()
                assert torch.equal(embed.grad, grads[1e-4] if _ == 0 else torch.zeros_like(embed))
            tiny_lm.zero_grad(set_to_none=True)
            method._drop_hooks()
    assert grads[1.0].abs().sum() > 0
    assert grads[1e-4].abs().sum() / grads[1.0].abs().sum() == pytest.approx(1e-4, rel=1e-3)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("name,extra", [
    ("spr_online", {}), ("spr_online", {"advantage": "step"}), ("prime", {}),
    ("prime", {"update": "before", "granularity": "whole", "norm": "none"})])
def test_two_grpo_rounds_end_to_end(name, extra, tiny_lm, char_tokenizer, domain, one_torch_thread):
    spec = RL_METHODS.get(name)
    cfg = spec.config_cls(steps=2, prompts_per_step=2, group_size=2, max_new_tokens=8, eval_every=2, ppo_epochs=1,
                          seed=0, **extra)
    method = spec.build(cfg, None)
    train, evals = domain.sample_problems(4, seed=1), domain.sample_problems(2, seed=2)
    before = [p.detach().clone() for p in tiny_lm.parameters()]
    res = GRPOTrainer(tiny_lm, char_tokenizer, domain, cfg, method).train(train, evals, progress=False)
    assert len(res.mean_reward) == 2 and len(method.log_) == 2
    assert len(res.kl) == 2
    if name == "prime":  # its process rewards move the policy even where every outcome agrees
        assert any(not torch.equal(a, b) for a, b in zip(before, tiny_lm.parameters()))
        assert method.token_passes > 0 and method.prm_model_ is not tiny_lm


def test_spr_online_ppo_step_form_needs_the_trainer_hook_and_trains_with_the_policy_loss(
        tiny_lm, char_tokenizer, domain, one_torch_thread):
    """MetaStone's own form: ``policy_loss += score_loss`` at every PPO step, then both optimizers step."""
    cfg = SPROnlineConfig(head_update="ppo_step", head_lr=1e-2)
    method = SPROnlineMethod(cfg)
    trainer = _trainer(tiny_lm, char_tokenizer, domain, cfg, ref=False)
    rolls = _group(char_tokenizer, domain, (True, True, False, False))
    with pytest.raises(RuntimeError, match="auxiliary_loss"):
        method.advantages(trainer, rolls)
    trainer.supports_auxiliary_loss = True
    method.advantages(trainer, rolls)
    assert method.log_ == []  # the head learns in the PPO steps, not here
    head0 = [p.detach().clone() for p in method.prm_.head.parameters()]
    tiny_lm.zero_grad(set_to_none=True)
    method.auxiliary_loss(trainer, rolls).backward()  # the policy loss would be added here
    embed = base_model(tiny_lm).embed_tokens.weight
    head_grad = method.prm_.head[0].weight.grad.abs().sum()
    assert 0 < embed.grad.abs().sum() < head_grad  # only 1e-4 of the head's gradient reaches the policy
    method.after_step(trainer)
    assert any(not torch.equal(a, b) for a, b in zip(head0, method.prm_.head.parameters()))
    assert len(method.log_) == 1 and method.log_[0]["total_pos"] == 4
    tiny_lm.zero_grad(set_to_none=True)
