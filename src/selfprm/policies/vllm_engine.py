"""A local model on vLLM's offline engine as a policy (GPU; ``pip install 'selfprm[vllm]'``).

Follows vLLM's offline inference API: ``LLM(model=..., enable_prefix_caching=True)`` and
``LLM.generate(prompts, sampling_params)`` with one ``SamplingParams(n, temperature, top_p,
max_tokens, seed, stop)`` per prompt. Automatic prefix caching is what makes continuation cheap
here: a label source's rollouts from one prefix (and from its sibling prefixes, each the start of
the next) reuse the prefix's KV blocks instead of recomputing them — the GPU counterpart of
:class:`~selfprm.policies.hf.HFPolicy`'s shared prefix cache.

``tokens_generated`` is each completion's ``len(token_ids)``; ``token_passes`` adds each request's
prompt tokens (as if uncached) and every generated token, like HFPolicy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from selfprm.domains.base import Domain
from selfprm.policies.base import TextCompletionPolicy

EXTRA = "pip install 'selfprm[vllm]'"


@dataclass
class VLLMPolicyConfig:
    """Sampling and engine settings.

    Parameters:
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        max_new_tokens: most tokens per completion (``max_tokens``).
        seed: base of each prompt's sampling seed (a call counter and the prompt's place are mixed in).
        stop: stop strings; None: the domain's (``domain.stop``), if it has any.
        tensor_parallel_size: GPUs the model is split over.
        gpu_memory_utilization: share of GPU memory vLLM may take.
        max_model_len: context length (None: the model's).
        dtype: weights' dtype (``auto``: the checkpoint's).
        engine_kwargs: any other ``LLM(...)`` keyword.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] | None = None
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    dtype: str = "auto"
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


class VLLMPolicy(TextCompletionPolicy):
    """The :class:`~selfprm.policies.base.Policy` protocol on ``vllm.LLM``."""

    def __init__(self, model_path: str, domain: Domain, config: VLLMPolicyConfig | None = None):
        try:  # vllm is a heavy GPU-only extra: imported only when this backend is asked for
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise ImportError(f"the vllm policy backend needs vllm: {EXTRA}") from e
        self.domain = domain
        self.config = c = config or VLLMPolicyConfig()
        self._sampling_params = SamplingParams
        kwargs: dict[str, Any] = dict(tensor_parallel_size=c.tensor_parallel_size,
                                      gpu_memory_utilization=c.gpu_memory_utilization, dtype=c.dtype, seed=c.seed)
        if c.max_model_len is not None:
            kwargs["max_model_len"] = c.max_model_len
        kwargs.update(c.engine_kwargs)
        self.llm = LLM(model=str(model_path), enable_prefix_caching=True, **kwargs)
        self._calls = 0
        self.token_passes = 0

    def complete(self, prompts: Sequence[str], n: int) -> list[list[tuple[str, int]]]:
        """``n`` completions ``(text, tokens)`` of each prompt; a prompt asked twice is sent once with
        twice the ``n`` (the same seed twice would repeat its completions)."""
        c = self.config
        self._calls += 1
        want: dict[str, int] = {}
        for t in prompts:
            want[t] = want.get(t, 0) + n
        order = list(want)
        stop = c.stop if c.stop is not None else getattr(self.domain, "stop", None)
        params = [self._sampling_params(n=want[t], temperature=c.temperature, top_p=c.top_p,
                                        max_tokens=c.max_new_tokens, stop=list(stop) if stop else None,
                                        seed=(c.seed * 1_000_003 + self._calls * 10_007 + j) % 2**31)
                  for j, t in enumerate(order)]
        results = self.llm.generate(order, params, use_tqdm=False)
        pooled: dict[str, list[tuple[str, int]]] = {}
        for t, res in zip(order, results):
            outs = [(o.text, len(o.token_ids)) for o in res.outputs]
            self.token_passes += len(res.prompt_token_ids or ()) + sum(k for _, k in outs)
            pooled[t] = outs
        taken = {t: 0 for t in order}
        out = []
        for t in prompts:
            out.append(pooled[t][taken[t]:taken[t] + n])
            taken[t] += n
        return out
