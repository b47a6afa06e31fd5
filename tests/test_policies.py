from selfprm.policies import HFPolicy, HFPolicyConfig, Prefix, SimulatedPolicy, SimulatedPolicyConfig
from selfprm.policies.tiny import SFTConfig, train_sft


def test_hf_policy_samples_and_continues_with_token_counts(domain, tiny_lm, char_tokenizer):
    pol = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=12, seed=3))
    probs = domain.sample_problems(3, seed=0)
    groups = pol.sample(probs, 2)
    assert [len(g) for g in groups] == [2, 2, 2]
    for g, p in zip(groups, probs):
        for t in g:
            assert t.problem is p and 1 <= t.tokens_generated <= 12
            assert t.oracle_labels is not None and len(t.oracle_labels) == len(t.steps)
    cont = pol.continue_from([Prefix(probs[0], ["7+5=2"])], 3)[0]
    assert len(cont) == 3 and all(t.steps[0] == "7+5=2" for t in cont)
    # untrained model rarely ends: hitting the limit counts every token and marks it truncated
    assert any(t.truncated and t.tokens_generated == 12 for g in groups for t in g)


def test_hf_policy_is_repeatable_from_its_seed(domain, tiny_lm, char_tokenizer):
    probs = domain.sample_problems(2, seed=0)
    a = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=10, seed=7)).sample(probs, 2)
    b = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=10, seed=7)).sample(probs, 2)
    c = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=10, seed=8)).sample(probs, 2)
    steps = lambda gs: [t.steps for g in gs for t in g]  # noqa: E731
    assert steps(a) == steps(b) and steps(a) != steps(c)


def test_sft_loss_falls_on_worked_solutions(domain, tiny_lm, char_tokenizer):
    import numpy as np

    rng = np.random.default_rng(0)
    texts = []
    for p in domain.sample_problems(64, seed=0):
        st, ans = domain.worked_solution(p, rng)
        prompt = domain.render(p)
        texts.append((prompt, domain.sft_text(p, st, ans)[len(prompt):]))
    losses = train_sft(tiny_lm, char_tokenizer, texts, SFTConfig(steps=60, batch_size=16, warmup=5), progress=False)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_simulated_policy_error_rates_are_what_it_is_given(domain):
    perfect = SimulatedPolicy(domain, SimulatedPolicyConfig(error_rate={"easy": 0, "medium": 0, "hard": 0},
                                                            answer_error_rate=0.0, seed=0))
    trajs = [t for g in perfect.sample(domain.sample_problems(50, seed=1), 2) for t in g]
    assert all(t.outcome and all(t.oracle_labels) for t in trajs)
    noisy = SimulatedPolicy(domain, SimulatedPolicyConfig(error_rate={"easy": 0.3, "medium": 0.3, "hard": 0.3},
                                                          recovery_rate=0.0, extra_step_rate=0.0, seed=0))
    trajs = [t for g in noisy.sample(domain.sample_problems(300, seed=1), 1) for t in g]
    first = [t.oracle_labels[0] for t in trajs]
    assert 0.6 < sum(first) / len(first) < 0.8  # the first step is wrong about 30% of the time
