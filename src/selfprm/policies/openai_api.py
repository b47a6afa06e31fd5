"""A policy served by any OpenAI-compatible server (vLLM, SGLang, :mod:`selfprm.serving.policy_server`).

It speaks the legacy **completions** API (``POST /v1/completions``), not chat: a step prefix is
continued by sending its rendered text as ``prompt``, which the chat API cannot express. The
request fields are the API's: ``model``, ``prompt``, ``n``, ``max_tokens``, ``temperature``,
``top_p``, ``seed``, ``stop``; the response's ``choices[i].text`` is parsed by the domain and
``usage`` fills the cost ledger.

*Tokens.* ``usage.completion_tokens`` counts the request's generated tokens over all choices; a
choice's own count is taken where the server gives one (``logprobs.tokens``), else the total is
split over the choices (:func:`split_tokens`: ``max_tokens`` to a choice cut at the limit, the
rest in proportion to text length), so the sum over a request stays exact.

*Failures.* A connection error, a timeout, HTTP 429 or a 5xx is retried ``max_retries`` times with
exponential back-off (``backoff * 2**attempt`` seconds, or the server's ``Retry-After``); other
HTTP errors are not retried. What still fails raises :class:`OpenAIAPIError` naming the URL and
the status.

Requests run on a thread pool (``max_workers`` at a time) so the server batches them; the answers
are parsed back on the calling thread (``math-verify`` times itself with ``signal.alarm``, which
only works on the main thread).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from selfprm.domains.base import Domain
from selfprm.policies.base import TextCompletionPolicy

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class OpenAIAPIError(OSError):
    """A completions request that failed for good; ``url`` and ``status`` (None: no HTTP answer)."""

    def __init__(self, url: str, status: int | None, why: str, method: str = "POST"):
        self.url, self.status = url, status
        super().__init__(f"{method} {url} failed ({'no answer' if status is None else f'HTTP {status}'}): {why}")


@dataclass
class OpenAIPolicyConfig:
    """Sampling and transport settings of an OpenAI-compatible policy.

    Parameters:
        temperature: sampling temperature (the API's ``temperature``).
        top_p: nucleus sampling mass (``top_p``).
        max_new_tokens: most tokens per completion (``max_tokens``).
        seed: base of each request's ``seed``: a call counter and the request's place are mixed in, so
            a run is repeatable on a server that honours ``seed`` (vLLM does).
        stop: stop strings (``stop``); None: the domain's (``domain.stop``), if it has any.
        max_n: most completions asked in one request (``n``); a larger ``n`` is split over requests.
        max_workers: requests in flight at once.
        timeout: seconds to wait for one response.
        max_retries: retries after a connection error, a timeout, HTTP 429 or 5xx.
        backoff: first back-off in seconds, doubled at every retry.
        api_key: sent as ``Authorization: Bearer``; None: ``$OPENAI_API_KEY`` if set.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    stop: tuple[str, ...] | None = None
    max_n: int = 64
    max_workers: int = 8
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 0.5
    api_key: str | None = None

    def __post_init__(self) -> None:
        if self.max_n < 1 or self.max_workers < 1:
            raise ValueError("max_n and max_workers must be at least 1")
        if self.max_retries < 0 or self.timeout <= 0 or self.backoff < 0:
            raise ValueError("need max_retries >= 0, timeout > 0 and backoff >= 0")


def completions_url(base_url: str) -> str:
    """``{base_url}/v1/completions``; a base URL that already ends in ``/v1`` is taken as it is."""
    base = base_url.rstrip("/")
    return (base if base.endswith("/v1") else base + "/v1") + "/completions"


class OpenAIPolicy(TextCompletionPolicy):
    """The :class:`~selfprm.policies.base.Policy` protocol over the completions API."""

    def __init__(self, base_url: str, model: str, domain: Domain, config: OpenAIPolicyConfig | None = None):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url {base_url!r} must start with http:// or https://")
        self.base_url = base_url
        self.url = completions_url(base_url)
        self.model = model
        self.domain = domain
        self.config = config or OpenAIPolicyConfig()
        self._calls = 0
        # the cost ledger, read off the servers' ``usage``: prompt tokens (once per request; a
        # server with a prefix cache may compute fewer) plus every generated token
        self.token_passes = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.requests = 0  # HTTP attempts, retries included
        self._lock = threading.Lock()  # ``requests`` is counted on the pool's threads

    # ------------------------------------------------------------------ requests
    def complete(self, prompts: Sequence[str], n: int) -> list[list[tuple[str, int]]]:
        """``n`` completions ``(text, tokens)`` of each prompt, in order.

        A prompt asked for twice is sent once with twice the ``n``; a request never asks for more
        than ``max_n``.
        """
        c = self.config
        self._calls += 1
        want: dict[str, int] = {}
        for t in prompts:
            want[t] = want.get(t, 0) + n
        jobs: list[tuple[str, int]] = []
        for t, k in want.items():
            jobs += [(t, min(c.max_n, k - s)) for s in range(0, k, c.max_n)]
        bodies = [self._body(t, k, self._request_seed(j)) for j, (t, k) in enumerate(jobs)]
        with ThreadPoolExecutor(max_workers=min(c.max_workers, max(1, len(bodies)))) as pool:
            results = list(pool.map(self._post, bodies))
        pooled: dict[str, list[tuple[str, int]]] = {t: [] for t in want}
        for (t, k), resp in zip(jobs, results):
            pooled[t] += self._read(resp, k)
        taken = {t: 0 for t in want}
        out = []
        for t in prompts:
            out.append(pooled[t][taken[t]:taken[t] + n])
            taken[t] += n
        return out

    def _request_seed(self, j: int) -> int:
        return (self.config.seed * 1_000_003 + self._calls * 10_007 + j) % 2**31

    def _body(self, prompt: str, n: int, seed: int) -> dict[str, Any]:
        c = self.config
        stop = c.stop if c.stop is not None else getattr(self.domain, "stop", None)
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "n": n, "max_tokens": c.max_new_tokens,
                                "temperature": c.temperature, "top_p": c.top_p, "seed": seed}
        if stop:
            body["stop"] = list(stop)
        return body

    def _read(self, resp: dict[str, Any], n: int) -> list[tuple[str, int]]:
        """``(text, tokens)`` per choice, in ``index`` order, counted into the ledger."""
        try:
            choices = sorted(resp["choices"], key=lambda ch: ch.get("index", 0))
            texts = [str(ch["text"]) for ch in choices]
        except (KeyError, TypeError) as e:
            raise OpenAIAPIError(self.url, 200, f"response without choices[].text: {e!r}") from None
        if len(texts) != n:
            raise OpenAIAPIError(self.url, 200, f"asked for {n} completions, got {len(texts)}")
        usage = resp.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        own = [_choice_tokens(ch) for ch in choices]
        if all(k is not None for k in own):
            counts = [int(k) for k in own]  # type: ignore[arg-type]
        else:
            counts = split_tokens(int(usage.get("completion_tokens") or 0), texts,
                                  [ch.get("finish_reason") for ch in choices], self.config.max_new_tokens)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += sum(counts)
        self.token_passes += prompt_tokens + sum(counts)
        return list(zip(texts, counts))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request, retried on connection errors, timeouts, 429 and 5xx with exponential back-off."""
        def count() -> None:
            with self._lock:
                self.requests += 1

        return post_json(self.url, body, self.config, count)


def post_json(url: str, body: dict[str, Any], config: Any, on_attempt: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """POST ``body`` as JSON to ``url`` and return the JSON reply, retried on connection errors,
    timeouts, 429 and 5xx with exponential back-off (``config``: ``api_key``, ``timeout``,
    ``max_retries``, ``backoff``); ``on_attempt`` is called before each attempt (request counters).
    A 4xx other than 429, or a reply that is not JSON, raises :class:`OpenAIAPIError` at once."""
    c = config
    data = json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = c.api_key if c.api_key is not None else os.environ.get("OPENAI_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    status: int | None = None
    why, wait = "", 0.0
    for attempt in range(c.max_retries + 1):
        if attempt:
            time.sleep(wait)
        on_attempt()
        wait = c.backoff * 2 ** attempt
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=c.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            status, why = e.code, _error_message(e)
            if status not in RETRY_STATUS:
                raise OpenAIAPIError(url, status, why) from None
            wait = _retry_after(e, wait)
            continue
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            # URLError wraps refused connections and connect timeouts; a read timeout is a bare
            # TimeoutError; a server that drops the connection is a ConnectionError
            status, why = None, str(getattr(e, "reason", e)) or type(e).__name__
            continue
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise OpenAIAPIError(url, 200, f"response is not JSON ({e.msg})") from None
    raise OpenAIAPIError(url, status, f"{why} (after {c.max_retries + 1} attempts)")


def _choice_tokens(choice: dict[str, Any]) -> int | None:
    """A choice's own token count where the server gives one (``logprobs.tokens``)."""
    lp = choice.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("tokens"), list):
        return len(lp["tokens"])
    return None


def split_tokens(total: int, texts: Sequence[str], finish_reasons: Sequence[str | None] | None = None,
                 cap: int | None = None) -> list[int]:
    """``total`` completion tokens split over the choices of one request, summing to ``total``.

    A choice that stopped at the limit (``finish_reason == "length"``) wrote ``cap`` tokens; the
    rest is shared by the others in proportion to their text length (+1 each: an empty completion
    still cost its end token), none above ``cap``, by largest remainder. Where the counts do not fit
    (a server that stopped short of ``cap`` at its context end) the plain proportional split is used.
    """
    n = len(texts)
    if n == 0:
        return []
    reasons = list(finish_reasons) if finish_reasons is not None else [None] * n
    parts = [0] * n
    free = list(range(n))
    if cap is not None and cap >= 0:
        at_limit = [i for i in range(n) if reasons[i] == "length"]
        others = [i for i in range(n) if reasons[i] != "length"]
        if cap * len(at_limit) <= total <= cap * n and (others or cap * len(at_limit) == total):
            for i in at_limit:
                parts[i] = cap
            free = others
        else:
            cap = None
    rest = total - sum(parts)
    while free and rest > 0:  # proportional shares; one over the cap is set to it and the rest re-shared
        weights = {i: len(texts[i]) + 1 for i in free}
        whole = sum(weights.values())
        over = [i for i in free if cap is not None and rest * weights[i] / whole > cap]
        if not over:
            exact = {i: rest * weights[i] / whole for i in free}
            for i in free:
                parts[i] += int(exact[i])
            left = rest - sum(int(x) for x in exact.values())
            for i in sorted(free, key=lambda i: exact[i] - int(exact[i]), reverse=True)[:left]:
                parts[i] += 1
            break
        for i in over:
            parts[i], rest = cap, rest - cap  # type: ignore[assignment]
        free = [i for i in free if i not in over]
    return parts


def _error_message(e: urllib.error.HTTPError) -> str:
    """The server's ``error.message`` (OpenAI's error shape), else its body, else the reason."""
    try:
        body = e.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    try:
        err = json.loads(body).get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return str(msg)
    except (ValueError, AttributeError):
        pass
    return body.strip()[:300] or str(e.reason)


def _retry_after(e: urllib.error.HTTPError, default: float) -> float:
    """The server's ``Retry-After`` seconds (capped at a minute), else ``default``."""
    try:
        return min(60.0, max(0.0, float(e.headers.get("Retry-After", ""))))
    except (TypeError, ValueError):
        return default


def list_models(base_url: str, timeout: float = 10.0, api_key: str | None = None) -> list[str]:
    """The model ids a server lists at ``GET {base_url}/v1/models`` (the API's ``data[].id``)."""
    base = base_url.rstrip("/")
    url = (base if base.endswith("/v1") else base + "/v1") + "/models"
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return [str(m["id"]) for m in json.loads(r.read())["data"]]
    except urllib.error.HTTPError as e:
        raise OpenAIAPIError(url, e.code, _error_message(e), "GET") from None
    except (urllib.error.URLError, OSError) as e:
        raise OpenAIAPIError(url, None, str(getattr(e, "reason", e)), "GET") from None
    except (ValueError, KeyError, TypeError) as e:
        raise OpenAIAPIError(url, 200, f"not a model list: {e!r}", "GET") from None
