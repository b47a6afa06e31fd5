import os

import pytest
import torch

from selfprm.data.paths import ENV_VAR, shared_data_dir
from selfprm.domains import ArithDomain
from selfprm.policies.tiny import TinyLMConfig, build_char_tokenizer, build_tiny_lm

# Set by .ci/run: CI always has the shared data, so there a test that needs it must not be skipped.
REQUIRE_DATA_VAR = "SELFPRM_REQUIRE_DATA"


def _missing_data_reason() -> str | None:
    """Why a ``needs_data`` test cannot run here, None when the shared data folder is there.

    The folder is resolved by the loaders' own helper, so this check and the loaders always look in
    the same place (``$SELFPRM_SHARED_DATA``, else ``<repo>/../shared/data``).
    """
    data = shared_data_dir()
    return None if data.is_dir() else f"needs the shared data at {data}; set {ENV_VAR}"


def pytest_collection_modifyitems(config, items):
    """Without the shared data folder (a clean clone without it), skip every ``needs_data`` test;
    the skip is a marker so ``-ra`` names each skipped test."""
    if os.environ.get(REQUIRE_DATA_VAR) == "1":
        return  # pytest_runtest_setup fails them instead
    reason = _missing_data_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("needs_data") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_setup(item):
    """With ``$SELFPRM_REQUIRE_DATA=1`` (CI) a ``needs_data`` test without the data fails, not skips."""
    if os.environ.get(REQUIRE_DATA_VAR) != "1" or item.get_closest_marker("needs_data") is None:
        return
    reason = _missing_data_reason()
    if reason is not None:
        pytest.fail(f"{reason} ({REQUIRE_DATA_VAR}=1: missing data is a failure here, not a skip)", pytrace=False)


@pytest.fixture
def domain():
    return ArithDomain()


@pytest.fixture
def char_tokenizer(domain):
    return build_char_tokenizer(domain.charset())


@pytest.fixture
def tiny_lm(char_tokenizer):
    return build_tiny_lm(char_tokenizer, TinyLMConfig(n_layer=1, n_head=2, n_embd=32, n_positions=128), seed=0)


@pytest.fixture
def one_torch_thread():
    """The tiny models run many small ops; a second intra-op thread adds a barrier to each, which
    stalls whenever the 2 shared cores are busy (the toy test: 1 s on one thread, 200 s on two under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
