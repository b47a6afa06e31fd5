import pytest

from selfprm.domains import ArithDomain
from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm


@pytest.fixture
def domain():
    return ArithDomain()


@pytest.fixture
def char_tokenizer(domain):
    return build_char_tokenizer(domain.charset())


@pytest.fixture
def tiny_lm(char_tokenizer):
    return build_tiny_lm(char_tokenizer, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), seed=0)
