"""Clients of the PRM reward server: a veRL ``custom_reward_function`` and a small HTTP client.

veRL calls a custom reward function as ``compute_score(data_source, solution_str, ground_truth,
extra_info=None)`` and takes a float, or a dict whose ``"score"`` is the reward (veRL
``docs/preparation/reward_function.rst``; ``verl/workers/reward_manager/naive.py`` passes the four by
keyword). Point veRL at this file::

    custom_reward_function.path=<site-packages>/selfprm/serving/verl_reward.py
    custom_reward_function.name=compute_score
    # and export SELFPRM_REWARD_URL=http://<host>:<port> for the server

``solution_str`` is the decoded response alone. veRL does not pass the prompt; when the dataset's
``extra_info`` carries it as a string under ``"prompt"`` (or ``"question"``), it is sent as
OpenRLHF's ``prompts`` so the PRM reads the problem, as it was trained to; otherwise the prompt is
empty. ``ground_truth`` is not used: a PRM scores the steps, not the final answer.

The client retries as OpenRLHF's ``request_api_wrapper`` (``openrlhf/utils/remote_rm_utils.py``)
does: a few tries with a timeout each, but with exponential back-off, and only on what a retry can
fix (connection errors, timeouts, 5xx); a 4xx means the request itself is wrong and is raised at
once with the server's message. Standard library only (``urllib``).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

URL_ENV = "SELFPRM_REWARD_URL"
DEFAULT_URL = "http://127.0.0.1:5000"


class RewardServerError(RuntimeError):
    """The reward server refused the request (4xx) or kept failing after every retry."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RemoteRewardClient:
    """Posts ``{"query", "prompts"}`` to ``<url>/get_reward`` and reads the reply.

    ``url`` is the server's root (``http://host:port``) or the full ``/get_reward`` address.
    ``timeout`` is per try in seconds; ``retries`` is the number of tries after the first; the
    waits between tries are ``backoff_s * 2**k``.
    """

    def __init__(self, url: str | None = None, timeout: float = 60.0, retries: int = 4, backoff_s: float = 0.5):
        url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        self.url = url if url.endswith("/get_reward") else url + "/get_reward"
        self.timeout = timeout
        self.retries = retries
        self.backoff_s = backoff_s

    def get_reward(self, queries: Sequence[str], prompts: Sequence[str] | None = None) -> dict[str, Any]:
        """The server's whole reply: ``rewards``, ``scores``, ``step_rewards``, ``extra_logs``."""
        payload: dict[str, Any] = {"query": list(queries)}
        if prompts is not None:
            payload["prompts"] = list(prompts)
        body = json.dumps(payload).encode("utf-8")
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    reply = json.loads(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as e:
                message = _error_message(e)
                if e.code < 500:  # the request is wrong; sending it again will not help
                    raise RewardServerError(f"{self.url} refused the request ({e.code}): {message}", e.code) from None
                last = RewardServerError(f"{self.url} failed ({e.code}): {message}", e.code)
            except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as e:
                last = e
            else:
                if not isinstance(reply, dict) or "rewards" not in reply:
                    raise RewardServerError(f"{self.url} replied without 'rewards': {str(reply)[:200]}")
                return reply
        raise RewardServerError(f"{self.url} did not answer after {self.retries + 1} tries: {last}")

    def rewards(self, queries: Sequence[str], prompts: Sequence[str] | None = None) -> list[float]:
        """One solution score per query (the server's aggregation of its step scores)."""
        return [float(x) for x in self.get_reward(queries, prompts)["rewards"]]

    def step_rewards(self, queries: Sequence[str], prompts: Sequence[str] | None = None) -> list[list[float | None]]:
        """Every step's score per query (``None`` for a step cut off by the PRM's length limit)."""
        return self.get_reward(queries, prompts)["step_rewards"]


def _error_message(e: urllib.error.HTTPError) -> str:
    try:
        return json.loads(e.read().decode("utf-8"))["error"]
    except Exception:  # noqa: BLE001 - not our JSON error body; the reason phrase will do
        return str(e.reason)


_CLIENTS: dict[str, RemoteRewardClient] = {}


def _prompt_of(extra_info: Any) -> str | None:
    if isinstance(extra_info, dict):
        for key in ("prompt", "question"):
            if isinstance(extra_info.get(key), str):
                return extra_info[key]
    return None


def compute_score(data_source: Any, solution_str: str, ground_truth: Any = None, extra_info: Any = None, *,
                  url: str | None = None, **kwargs: Any) -> float:
    """veRL's ``custom_reward_function``: the PRM's solution score for ``solution_str``.

    The server is ``url``, else ``$SELFPRM_REWARD_URL``, else ``http://127.0.0.1:5000``.
    ``data_source`` and ``ground_truth`` are accepted for veRL's signature and not used; extra
    keyword arguments (veRL's ``reward_kwargs``) are ignored.
    """
    target = url or os.environ.get(URL_ENV) or DEFAULT_URL
    client = _CLIENTS.get(target)
    if client is None:  # one client per URL: veRL calls this once per sample
        client = _CLIENTS[target] = RemoteRewardClient(target)
    prompt = _prompt_of(extra_info)
    if prompt is None:
        return client.rewards([solution_str])[0]
    return client.rewards([prompt + solution_str], [prompt])[0]
