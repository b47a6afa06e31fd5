import pytest
import torch

from selfprm.policies import HFPolicy, HFPolicyConfig, Prefix


def _prefixes(domain):
    probs = domain.sample_problems(3, seed=0)
    return [Prefix(probs[0], []), Prefix(probs[1], ["7+5=2"]), Prefix(probs[2], ["1+1=2", "2*3=6"])]


@pytest.mark.parametrize("top_p,temperature", [(1.0, 1.0), (0.9, 0.7)])
def test_cached_and_reencoded_paths_sample_the_same_continuations(domain, tiny_lm, char_tokenizer, top_p, temperature):
    pre = _prefixes(domain)  # different lengths: left padding is exercised
    cfg = dict(max_new_tokens=16, seed=3, top_p=top_p, temperature=temperature)
    a = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(prefix_cache=True, **cfg)).continue_from(pre, 3)
    b = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(prefix_cache=False, **cfg)).continue_from(pre, 3)
    assert [[t.steps for t in g] for g in a] == [[t.steps for t in g] for g in b]
    assert [[t.tokens_generated for t in g] for g in a] == [[t.tokens_generated for t in g] for g in b]
    assert len({tuple(t.steps) for t in a[0]}) > 1  # sampled, not copies of one row


def test_cached_logits_equal_a_full_reencode(domain, tiny_lm, char_tokenizer):
    """One prefix encoded once, its cache repeated for 2 rows, then decoded on: the logits match a
    fresh forward pass over prefix + continuation."""
    tok = char_tokenizer
    ids = tok([tok.bos_token + domain.render(_prefixes(domain)[2].problem, ["1+1=2"])], return_tensors="pt",
              add_special_tokens=False)["input_ids"]
    cont = torch.tensor([[tok.convert_tokens_to_ids("2")], [tok.convert_tokens_to_ids("3")]])
    with torch.no_grad():
        out = tiny_lm(input_ids=ids, use_cache=True)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        cache.batch_repeat_interleave(2)
        step = tiny_lm(input_ids=cont, cache=cache, use_cache=True).logits[:, -1]
        full = tiny_lm(input_ids=torch.cat([ids.repeat(2, 1), cont], 1)).logits[:, -1]
    torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)


def test_repeated_prefixes_are_encoded_once_and_each_gets_n(domain, tiny_lm, char_tokenizer):
    pre = _prefixes(domain)
    pol = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=8, seed=1))
    seen = []
    orig = pol._sample_from_shared

    def spy(bos, texts, repeats):
        seen.append((list(texts), list(repeats)))
        return orig(bos, texts, repeats)

    pol._sample_from_shared = spy
    groups = pol.continue_from([pre[1], pre[0], pre[1]], 2)
    assert [len(g) for g in groups] == [2, 2, 2]
    assert all(t.steps[:1] == ["7+5=2"] for t in groups[0] + groups[2])
    [(texts, repeats)] = seen
    assert len(texts) == 2 and sorted(repeats) == [2, 4]  # pre[1] once, with 2 x 2 rows
    assert all(1 <= t.tokens_generated <= 8 for g in groups for t in g)


def test_falls_back_to_generate_where_the_cache_cannot_be_shared(domain, tiny_lm, char_tokenizer):
    pre = _prefixes(domain)
    cfg = dict(max_new_tokens=10, seed=5)
    pol = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(**cfg))
    pol._sample_from_shared = lambda *a: None  # e.g. a model whose cache has no batch_repeat_interleave
    a = pol.continue_from(pre, 2)
    b = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(prefix_cache=False, **cfg)).continue_from(pre, 2)
    assert [[t.steps for t in g] for g in a] == [[t.steps for t in g] for g in b]


def test_generation_stops_where_the_position_table_ends(domain, char_tokenizer):
    from selfprm.policies.tiny import TinyLMConfig, build_tiny_lm

    small = build_tiny_lm(char_tokenizer, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=40), seed=0)
    p = domain.sample_problems(1, seed=0)[0]
    long = Prefix(p, ["1+1=2"] * 3)  # ~36 tokens with the prompt: little room left in 40 positions
    full = Prefix(p, ["1+1=2"] * 8)  # already past the table: nothing can follow
    for cache in (True, False):
        pol = HFPolicy(small, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=30, seed=0, prefix_cache=cache))
        a, b = pol.continue_from([long, full], 2)
        assert all(t.tokens_generated <= 40 - 36 for t in a)
        assert all(t.tokens_generated == 0 and t.truncated for t in b)


def test_sibling_prefixes_share_one_encoding_and_sample_as_if_reencoded(domain, tiny_lm, char_tokenizer):
    from selfprm.policies.hf import _nest_hosts

    p, q = domain.sample_problems(2, seed=0)
    steps = ["1+1=2", "2*3=6", "6-1=5"]
    # Math-Shepherd's prefixes of one trajectory are nested: each is the start of the next
    pre = [Prefix(p, steps[:i]) for i in range(1, 4)] + [Prefix(q, steps[:1])]
    assert _nest_hosts([[1, 2], [1, 2, 3], [9], [1, 2, 3, 4], [1, 5]]) == [3, 3, 2, 3, 4]
    pol = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=12, seed=2))
    encoded = []
    real = tiny_lm.forward

    def spy(*a, **kw):
        encoded.append(kw["input_ids"].shape)
        return real(*a, **kw)

    tiny_lm.forward = spy
    try:
        a = pol.continue_from(pre, 3)
    finally:
        del tiny_lm.forward
    assert encoded[0][0] == 2  # two encodings (one per problem) for four prefixes
    b = HFPolicy(tiny_lm, char_tokenizer, domain, HFPolicyConfig(max_new_tokens=12, seed=2, prefix_cache=False)).continue_from(pre, 3)
    assert [[t.steps for t in g] for g in a] == [[t.steps for t in g] for g in b]
    assert [[t.tokens_generated for t in g] for g in a] == [[t.tokens_generated for t in g] for g in b]
