"""A client of the OpenAI-compatible **chat** API (``POST /v1/chat/completions``).

The self-play roles of :mod:`selfprm.selfplay` talk through it, so any served chat model (vLLM,
SGLang, a hosted API, or :mod:`selfprm.selfplay.offline_server`) can play any role. Request fields
are the API's: ``model``, ``messages`` (``[{"role", "content"}]``), ``max_tokens``,
``temperature``, ``seed``; the reply is ``choices[0].message.content`` and ``usage`` is summed
into the client's ledger. Retries and error messages follow
:class:`~selfprm.policies.openai_api.OpenAIPolicy` (its helpers are reused): a connection error,
a timeout, HTTP 429 or 5xx is retried with exponential back-off; what still fails raises
:class:`~selfprm.policies.openai_api.OpenAIAPIError` naming the URL and status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from selfprm.policies.openai_api import OpenAIAPIError, post_json


def chat_url(base_url: str) -> str:
    """``{base_url}/v1/chat/completions``; a base URL that already ends in ``/v1`` is taken as it is."""
    base = base_url.rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"


@dataclass
class ChatClientConfig:
    """Transport and sampling settings of a chat client.

    Parameters:
        temperature: sampling temperature (0: greedy).
        max_tokens: most tokens per reply.
        seed: sent as the request's ``seed`` (a server that honours it repeats itself).
        timeout: seconds to wait for one response.
        max_retries: retries after a connection error, a timeout, HTTP 429 or 5xx.
        backoff: first back-off in seconds, doubled at every retry.
        api_key: sent as ``Authorization: Bearer``; None: ``$OPENAI_API_KEY`` if set.
    """

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0
    timeout: float = 60.0
    max_retries: int = 3
    backoff: float = 0.5
    api_key: str | None = None


class ChatClient:
    """``chat(model, messages) -> str`` over one server; counts requests and tokens."""

    def __init__(self, base_url: str, config: ChatClientConfig | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
        self.url = chat_url(base_url)
        self.config = config or ChatClientConfig()
        self.requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def chat(self, model: str, messages: Sequence[dict[str, str]], **overrides: Any) -> str:
        """The assistant's reply to ``messages`` from ``model``."""
        c = self.config
        body = {"model": model, "messages": list(messages), "max_tokens": c.max_tokens,
                "temperature": c.temperature, "seed": c.seed, **overrides}
        resp = self._post(body)
        try:
            text = resp["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as e:
            raise OpenAIAPIError(self.url, 200, f"response without choices[0].message.content: {e!r}") from None
        usage = resp.get("usage") or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        return str(text or "")

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request, with the completions client's retries and back-off."""
        def count() -> None:
            self.requests += 1

        return post_json(self.url, body, self.config, count)
