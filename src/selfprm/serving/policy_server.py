"""A minimal OpenAI-compatible completions server for a local Hugging Face causal LM.

For tests, and for users without vLLM, so the ``openai:`` policy backend runs against a real HTTP
server: ``selfprm serve --policy hf:MODEL_DIR --port 8000``, then
``--policy openai:http://127.0.0.1:8000#MODEL_DIR-name``.

It serves the subset of the OpenAI API the policy uses, in the API's shapes:

* ``POST /v1/completions`` — request fields ``prompt`` (a string or a list of strings), ``n``,
  ``max_tokens`` (default 16, as the API's), ``temperature`` (0: greedy), ``top_p``, ``seed``,
  ``stop`` (a string or a list; the text ends before it, as the API's does); other fields are
  ignored. The response holds ``choices[i]`` = ``{index, text, logprobs: null, finish_reason}``
  (``stop`` at the end token or a stop string, ``length`` at the token limit), prompt by prompt,
  and ``usage`` = ``{prompt_tokens, completion_tokens, total_tokens}``.
* ``GET /v1/models`` — the one model it serves.

A bad request is answered 400 with ``{"error": {"message": ..., "type": "invalid_request_error"}}``
and the server keeps serving. One generation runs at a time (a lock around the model); HTTP
requests are accepted on threads, so a client's concurrency limit is still exercised. Prompts are
tokenised like :class:`~selfprm.policies.hf.HFPolicy` does (the tokenizer's BOS text, then the
prompt, no other special tokens) so both backends see a model the same way.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

MAX_N = 128
MAX_STOPS = 16


class BadRequest(ValueError):
    """A request the server answers with 400 and the message."""


def parse_completion_request(body: Any, max_new_tokens_cap: int) -> dict[str, Any]:
    """The completions request's fields, checked; :class:`BadRequest` names the field at fault."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        prompts = [prompt]
    elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompts = list(prompt)
    else:
        raise BadRequest("'prompt' must be a string or a non-empty list of strings")

    def integer(key: str, default: int | None, low: int, high: int | None = None) -> int | None:
        v = body.get(key)
        if v is None:  # absent or null: the API's default
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            raise BadRequest(f"'{key}' must be an integer in [{low}, {high if high is not None else 'inf'}], got {v!r}")
        return v

    def number(key: str, default: float, low: float, high: float, low_open: bool = False) -> float:
        v = body.get(key)
        if v is None:
            v = default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (low < v if low_open else low <= v) or v > high:
            raise BadRequest(f"'{key}' must be a number in {'(' if low_open else '['}{low}, {high}], got {v!r}")
        return float(v)

    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and len(stop) <= MAX_STOPS and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise BadRequest(f"'stop' must be a string or a list of at most {MAX_STOPS} strings")
    return {
        "prompts": prompts,
        "n": integer("n", 1, 1, MAX_N),
        "max_tokens": min(integer("max_tokens", 16, 0), max_new_tokens_cap),  # type: ignore[type-var]
        "temperature": number("temperature", 1.0, 0.0, 100.0),
        "top_p": number("top_p", 1.0, 0.0, 1.0, low_open=True),
        "seed": integer("seed", None, 0),
        "stop": [s for s in stops if s],
    }


class HFCompleter:
    """Completions from one HF causal LM, one generation at a time."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.lock = threading.Lock()
        self._criteria: dict[tuple[str, ...], Any] = {}
        if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
            tokenizer.pad_token = tokenizer.eos_token  # batched sampling needs a pad id; EOS is the usual one

    def _stop_criteria(self, stop: tuple[str, ...]):
        """transformers' ``StopStringCriteria`` for ``stop``, or None where it cannot be built (it
        reads the vocabulary through ``convert_tokens_to_string``, which some tokenizers, e.g. the
        character-level one of the tiny models, do not support): then generation runs to its end
        token or limit, and the text is cut at the stop string all the same."""
        if not stop:
            return None
        if stop not in self._criteria:
            from transformers import StoppingCriteriaList
            from transformers.generation.stopping_criteria import StopStringCriteria

            try:
                self._criteria[stop] = StoppingCriteriaList([StopStringCriteria(self.tokenizer, list(stop))])
            except Exception:  # noqa: BLE001 — any failure only costs the early stop
                self._criteria[stop] = None
        return self._criteria[stop]

    def _room(self, width: int, max_tokens: int) -> int:
        cfg = getattr(self.model, "config", None)
        limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        return max_tokens if limit is None else min(max_tokens, int(limit) - width)

    def complete(self, prompt: str, n: int, max_tokens: int, temperature: float, top_p: float,
                 seed: int | None, stop: Sequence[str]) -> tuple[int, list[tuple[str, int, str]]]:
        """``(prompt tokens, [(text, completion tokens, finish_reason)] * n)``."""
        import torch

        tok, model = self.tokenizer, self.model
        ids = tok((tok.bos_token or "") + prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        width = ids.shape[1]
        room = self._room(width, max_tokens)
        if room <= 0:
            return width, [("", 0, "length")] * n
        device = next(model.parameters()).device
        ids = ids.to(device)
        greedy = temperature == 0.0
        kw: dict[str, Any] = dict(max_new_tokens=room, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                  attention_mask=torch.ones_like(ids))
        if greedy:  # the API's temperature 0; every choice is the same, so one is generated
            kw.update(do_sample=False)
        else:
            kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0, num_return_sequences=n)
        criteria = self._stop_criteria(tuple(stop))
        if criteria is not None:  # stop generating where a stop string appears (the text is still cut below)
            kw.update(stopping_criteria=criteria)
        with self.lock, torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seed if seed is not None else random.randrange(2**63))
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    gen = model.generate(ids, **kw)
            finally:
                model.train(was_training)
        rows = gen[:, width:].tolist()
        if greedy:
            rows = rows * n
        return width, [self._finish(row, stop) for row in rows]

    def _finish(self, row: list[int], stop: Sequence[str]) -> tuple[str, int, str]:
        """The row's text, token count and finish reason: cut after the end token, or before the
        first stop string (counting tokens up to the one that completed it)."""
        tok = self.tokenizer
        eos = tok.eos_token_id
        n_tok, reason = (row.index(eos) + 1, "stop") if eos is not None and eos in row else (len(row), "length")
        decode = lambda k: tok.decode(row[:k], skip_special_tokens=True)  # noqa: E731
        text = decode(n_tok)
        cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
        if cut < 0:
            return text, n_tok, reason
        # fewest tokens whose text already holds the stop string (decoded prefixes only grow)
        lo, hi = 1, n_tok
        while lo < hi:
            mid = (lo + hi) // 2
            if any(s in decode(mid) for s in stop):
                hi = mid
            else:
                lo = mid + 1
        return text[:cut], lo, "stop"


def build_policy_server(
    model: str | os.PathLike | tuple[Any, Any],
    host: str = "127.0.0.1",
    port: int = 0,
    max_new_tokens_cap: int = 512,
    *,
    model_name: str | None = None,
    verbose: bool = False,
) -> ThreadingHTTPServer:
    """A server (not yet serving: call ``serve_forever``, e.g. on a thread) for a model folder or a
    ``(model, tokenizer)`` pair. ``port=0`` takes a free port; ``server.url`` is its base URL and
    ``server.model_name`` the name ``/v1/models`` reports (the folder's name, else ``local``)."""
    if isinstance(model, (str, os.PathLike)):
        from selfprm.policies.spec import load_hf_model

        name = model_name or Path(model).name
        lm, tokenizer = load_hf_model(model)
    else:
        lm, tokenizer = model
        name = model_name or "local"
    completer = HFCompleter(lm, tokenizer)
    handler = _make_handler(completer, name, max_new_tokens_cap, verbose)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.url = f"http://{host}:{server.server_address[1]}"  # type: ignore[attr-defined]
    server.model_name = name  # type: ignore[attr-defined]
    return server


class JSONHandler(BaseHTTPRequestHandler):
    """A request handler that answers in JSON, errors in the OpenAI API's shape."""

    def _send(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})


def _make_handler(completer: HFCompleter, model_name: str, cap: int, verbose: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        server_version = "selfprm-policy-server/0.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            if verbose:
                super().log_message(format, *args)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": model_name, "object": "model", "created": int(time.time()), "owned_by": "selfprm"}]})
            elif self.path.rstrip("/") == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") not in ("/v1/completions", "/completions"):
                self._error(HTTPStatus.NOT_FOUND, f"no route POST {self.path}")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length).decode("utf-8")) if length else None
                req = parse_completion_request(body, cap)
            except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError and BadRequest are ValueErrors
                self._error(HTTPStatus.BAD_REQUEST, str(e) if isinstance(e, BadRequest) else f"invalid JSON body: {e}")
                return
            try:
                choices, prompt_tokens, completion_tokens = [], 0, 0
                for p in req["prompts"]:
                    width, outs = completer.complete(p, req["n"], req["max_tokens"], req["temperature"],
                                                     req["top_p"], req["seed"], req["stop"])
                    prompt_tokens += width
                    for text, k, reason in outs:
                        choices.append({"index": len(choices), "text": text, "logprobs": None, "finish_reason": reason})
                        completion_tokens += k
            except Exception as e:  # noqa: BLE001 — a failed generation is the server's 500, not its end
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"generation failed: {type(e).__name__}: {e}", "server_error")
                return
            self._send(200, {
                "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": model_name, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            })

    return Handler
