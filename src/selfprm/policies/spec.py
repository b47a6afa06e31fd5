"""One string names a policy: ``hf:PATH``, ``openai:URL#MODEL`` or ``vllm:PATH``.

* ``hf:PATH`` — a local ``transformers`` causal LM folder (``AutoModelForCausalLM`` and
  ``AutoTokenizer``, ``local_files_only``: nothing is downloaded) as an
  :class:`~selfprm.policies.hf.HFPolicy`; on a GPU when there is one.
* ``openai:URL#MODEL`` — an OpenAI-compatible completions server (vLLM, SGLang,
  :mod:`selfprm.serving.policy_server`) as an :class:`~selfprm.policies.openai_api.OpenAIPolicy`;
  without ``#MODEL`` the server's only model (``GET /v1/models``).
* ``vllm:PATH`` — a model on vLLM's offline engine (:class:`~selfprm.policies.vllm_engine.VLLMPolicy`).

Keywords beyond the common three (``temperature``, ``max_new_tokens``, ``seed``) go to the
backend's config (e.g. ``top_p``, ``batch_size``, ``max_workers``, ``api_key``); ``hf`` also takes
``device`` and ``dtype``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from selfprm.domains.base import Domain
from selfprm.policies.base import Policy

SCHEMES: dict[str, str] = {
    "hf": "hf:PATH (a local transformers causal LM folder)",
    "openai": "openai:URL#MODEL (an OpenAI-compatible completions server)",
    "vllm": "vllm:PATH (a model on vLLM's offline engine)",
}


def parse_policy_spec(spec: str) -> tuple[str, str, str | None]:
    """``(scheme, path or URL, model or None)``; an unknown scheme is a ValueError listing the known."""
    scheme, sep, rest = spec.partition(":")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"policy spec {spec!r}: unknown scheme; use one of: {'; '.join(SCHEMES.values())}")
    if not rest:
        raise ValueError(f"policy spec {spec!r}: nothing after '{scheme}:'; expected {SCHEMES[scheme]}")
    if scheme == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"policy spec {spec!r}: the URL must start with http:// or https://")
        return scheme, url, model or None
    return scheme, rest, None


def _local_folder(scheme: str, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{scheme}:{path}: no such model folder {p}")
    return p


def load_hf_model(path: str | os.PathLike, device: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` from a local folder, nothing downloaded; the tokenizer gets a pad token
    (its EOS) when it has none, as batched sampling needs one."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _local_folder("hf", str(path))
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    kw: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        kw["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(path, **kw)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.eval()
    return model, tokenizer


def _config(cls: type, kw: dict[str, Any], scheme: str, **common: Any):
    """``cls(**common, **kw)``; a keyword ``cls`` has no field for is a ValueError naming the fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise ValueError(f"{scheme} policy: unknown option(s) {unknown}; choose from {sorted(names)}")
    return cls(**{k: v for k, v in common.items() if k in names}, **kw)


def load_policy(spec: str, domain: Domain, *, temperature: float = 1.0, max_new_tokens: int = 256,
                seed: int = 0, **kw: Any) -> Policy:
    """The policy ``spec`` names, writing in ``domain``'s format (see the module docstring)."""
    scheme, target, model = parse_policy_spec(spec)
    common = dict(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    if scheme == "hf":
        from selfprm.policies.hf import HFPolicy, HFPolicyConfig

        folder = _local_folder(scheme, target)  # before any import of weights: a typo costs nothing
        device, dtype = kw.pop("device", None), kw.pop("dtype", None)
        config = _config(HFPolicyConfig, kw, scheme, **common)
        lm, tokenizer = load_hf_model(folder, device=device, dtype=dtype)
        from selfprm.rl.rollout import uses_tools

        if uses_tools(domain):  # the tool runs between the model's turns, not in its text
            from selfprm.policies.tool_calling import ToolCallingPolicy

            return ToolCallingPolicy(lm, tokenizer, domain, config.temperature, config.max_new_tokens, config.seed)
        return HFPolicy(lm, tokenizer, domain, config)
    if scheme == "openai":
        from selfprm.policies.openai_api import OpenAIPolicy, OpenAIPolicyConfig, list_models

        config = _config(OpenAIPolicyConfig, kw, scheme, **common)
        if model is None:
            models = list_models(target, timeout=min(config.timeout, 30.0), api_key=config.api_key)
            if len(models) != 1:
                raise ValueError(f"{spec!r}: name the model after '#': the server lists {models}")
            model = models[0]
        return OpenAIPolicy(target, model, domain, config)
    from selfprm.policies.vllm_engine import VLLMPolicy, VLLMPolicyConfig

    config = _config(VLLMPolicyConfig, kw, scheme, **common)
    return VLLMPolicy(str(_local_folder(scheme, target)), domain, config)
