"""A saved PRM served over HTTP as a remote reward model, in OpenRLHF's request/response shape.

    selfprm serve --prm PRM_DIR [--port 5000] [--host 127.0.0.1] [--batch-size 32]

The wire format is OpenRLHF's remote reward model: ``openrlhf/cli/serve_rm.py`` serves
``POST /get_reward`` with ``{"query": [...], "prompts": [...]}`` and answers ``{"rewards": [...],
"scores": [...], "extra_logs": {...}}``; its client ``remote_rm_fn`` (``openrlhf/utils/remote_rm_utils.py``)
posts ``{"query": queries, "prompts": prompts, "labels": labels}`` and reads ``"rewards"``. Here:

* ``query[i]`` is prompt + response, as OpenRLHF sends it. With ``prompts`` the response is
  ``query[i][len(prompts[i]):]`` and a query that does not start with its prompt is a 400 naming the
  index; without ``prompts`` (or ``"prompts": null``) the prompt is empty. ``labels`` and any other
  key are ignored: a PRM needs no reference answer. The response is scored as sent: strip the
  policy's special tokens (EOS, padding) first, as OpenRLHF's older ``serve_rm`` did on its side.
* The response is split into steps on ``step_delimiter`` (``build_reward_server``'s argument: how the
  policy writes its steps, e.g. ``"\n\n"``; default the PRM's ``config.step_separator``); blank steps (empty or
  whitespace only, e.g. from a trailing separator or a blank line) are dropped. Every step is scored
  in one forward pass (:meth:`ProcessRewardModel.score_steps`).
* The reply adds ``step_rewards`` (one list per query; ``null`` for a step cut off by the PRM's
  ``max_length``, never NaN, so the body is strict JSON) to ``rewards`` = ``scores`` = the solution
  score, the aggregation of the step scores (:func:`selfprm.prm.aggregate.aggregate`: ``min`` by
  default; a query with no step gets 0.0). ``extra_logs`` holds per-query numbers (``n_steps``), the
  shape OpenRLHF logs as metrics.
* An empty ``query`` list is not an error: the reply is 200 with empty lists and the model is not
  run (OpenRLHF always sends a non-empty batch; an empty one is a map over nothing).

Batching. Each request is parsed on its own handler thread, then handed to one worker thread that
owns the model: it takes the first waiting request, gathers more until ``batch_size`` queries or
``max_wait_ms`` have passed, and scores them in one call. The model is never run from two threads,
and concurrent clients share forward passes. A request is never split, so one batch can exceed
``batch_size`` queries; ``score_steps`` then runs it in chunks of ``batch_size``.

Bad input gets a 4xx JSON ``{"error": "..."}`` that says what was wrong and where, and the server
keeps serving: malformed JSON, non-UTF-8 bytes, wrong types, ``prompts`` of the wrong length, a
query that does not start with its prompt (400); a body over ``max_body_bytes`` (8 MiB), a query
over ``max_query_chars`` (256 Ki characters: a 1 MB query is refused, not tokenised), more than
``max_queries`` queries (4096) or a response of more than ``max_steps`` steps (1024) (413); no
``Content-Length`` (411); an unknown path (404); a wrong method (405). An exception while scoring
is a 500 with its message; when a batch mixing several requests fails, each request is rescored
alone so only the one that fails gets the 500. ``GET /health`` is 200 with the batcher's counters.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from selfprm.prm.aggregate import AGGREGATIONS, aggregate
from selfprm.prm.model import ProcessRewardModel

log = logging.getLogger(__name__)

REWARD_PATH = "/get_reward"
HEALTH_PATH = "/health"
# A body too large to read is still read and thrown away up to this size, so the client, still
# sending, gets the 413 instead of a connection reset; past it the connection is simply closed.
DRAIN_LIMIT_BYTES = 64 * 2**20

ScoreFn = Callable[[list[str], list[list[str]]], list[list[float]]]


@dataclass
class RewardServerConfig:
    """How the reward server batches and what it accepts.

    Parameters:
        batch_size: queries the worker gathers before it runs the model (also ``score_steps``'s chunk).
        max_wait_ms: how long the worker waits for more requests to fill a batch once it has one.
        aggregation: step scores -> solution score: ``min``, ``product``, ``last`` or ``geomean``.
        max_body_bytes: largest request body read; a larger one is a 413.
        max_query_chars: longest query (prompt + response) in characters; a longer one is a 413.
        max_queries: most queries in one request; more is a 413.
        max_steps: most steps in one response; more is a 413 (each step is a gathered hidden state).
        request_timeout_s: a request whose scores are not back by then is a 503.
        socket_timeout_s: a client that stalls mid-request this long is dropped.
    """

    batch_size: int = 32
    max_wait_ms: float = 5.0
    aggregation: str = "min"
    max_body_bytes: int = 8 * 2**20
    max_query_chars: int = 256 * 2**10
    max_queries: int = 4096
    max_steps: int = 1024
    request_timeout_s: float = 300.0
    socket_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; choose from {AGGREGATIONS}")
        for name in ("batch_size", "max_body_bytes", "max_query_chars", "max_queries", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


# ----------------------------------------------------------------------------- request -> steps


class RequestError(Exception):
    """A request the server refuses: an HTTP status and the message sent back as ``{"error": ...}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


def split_steps(response: str, separator: str) -> list[str]:
    """``response`` cut on ``separator``, blank pieces dropped (a trailing separator, blank lines)."""
    return [s for s in response.split(separator) if s.strip()]


def _check_string(value: Any, where: str, max_chars: int | None) -> str:
    if not isinstance(value, str):
        raise RequestError(400, f"{where} must be a string, got {type(value).__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise RequestError(413, f"{where} has {len(value)} characters; the limit is {max_chars}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # json.loads accepts "\ud800" escapes; the tokenizer would fail on them later, as a 500
        raise RequestError(400, f"{where} holds a lone surrogate (a \\ud800-\\udfff escape); send valid Unicode") from None
    return value


def parse_reward_request(body: bytes, separator: str, config: RewardServerConfig) -> tuple[list[str], list[list[str]]]:
    """``(prompts, steps)`` from a ``/get_reward`` body, or :class:`RequestError` saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"body is not valid UTF-8 (byte {e.start}: {e.reason})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RequestError(400, f"body is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise RequestError(400, "body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RequestError(400, f'body must be a JSON object {{"query": [...], "prompts": [...]}}, got {type(data).__name__}')
    if "query" not in data:
        raise RequestError(400, "missing 'query': a list of strings, each prompt + response")
    queries = data["query"]
    if not isinstance(queries, list):
        raise RequestError(400, f"'query' must be a list of strings, got {type(queries).__name__}")
    if len(queries) > config.max_queries:
        raise RequestError(413, f"'query' has {len(queries)} entries; the limit is {config.max_queries} per request")
    for i, q in enumerate(queries):
        _check_string(q, f"query[{i}]", config.max_query_chars)
    prompts = data.get("prompts")
    if prompts is None:
        prompts = [""] * len(queries)
    else:
        if not isinstance(prompts, list):
            raise RequestError(400, f"'prompts' must be a list of strings or null, got {type(prompts).__name__}")
        if len(prompts) != len(queries):
            raise RequestError(400, f"'prompts' has {len(prompts)} entries but 'query' has {len(queries)}; "
                                    "send one prompt per query, or none")
        for i, (p, q) in enumerate(zip(prompts, queries)):
            _check_string(p, f"prompts[{i}]", None)
            if not q.startswith(p):
                raise RequestError(400, f"query[{i}] does not start with prompts[{i}]; "
                                        "a query is the prompt followed by the response")
    steps = [split_steps(q[len(p):], separator) for p, q in zip(prompts, queries)]
    for i, st in enumerate(steps):
        if len(st) > config.max_steps:
            raise RequestError(413, f"query[{i}] has {len(st)} steps; the limit is {config.max_steps}")
    return list(prompts), steps


def reward_reply(step_scores: Sequence[Sequence[float]], aggregation: str) -> dict[str, Any]:
    """The ``/get_reward`` body: OpenRLHF's ``rewards`` / ``scores`` / ``extra_logs`` plus ``step_rewards``."""
    rewards = [aggregate(s, aggregation) for s in step_scores]
    return {
        "rewards": rewards,
        "scores": rewards,
        "step_rewards": [[None if math.isnan(x) else x for x in s] for s in step_scores],
        "extra_logs": {"n_steps": [len(s) for s in step_scores]},
    }


# ----------------------------------------------------------------------------- the batcher


class _Job:
    __slots__ = ("prompts", "steps", "done", "result", "error", "abandoned")

    def __init__(self, prompts: list[str], steps: list[list[str]]):
        self.prompts, self.steps = prompts, steps
        self.done = threading.Event()
        self.result: list[list[float]] | None = None
        self.error: BaseException | None = None
        self.abandoned = False  # its client timed out: skip it


class Batcher:
    """One worker thread that owns the scoring function and runs it on batches of queued requests.

    ``submit`` may be called from any number of threads; ``score_fn`` is only ever called from the
    worker. Counters (read with :meth:`stats`): ``requests`` submitted, ``items`` (queries) scored,
    ``batches`` (calls of ``score_fn``).
    """

    def __init__(self, score_fn: ScoreFn, batch_size: int = 32, max_wait_ms: float = 5.0):
        self.score_fn = score_fn
        self.batch_size = batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "items": 0, "batches": 0, "failed_batches": 0}
        self._closed = False
        self._worker = threading.Thread(target=self._loop, name="selfprm-reward-batcher", daemon=True)
        self._worker.start()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def alive(self) -> bool:
        return self._worker.is_alive() and not self._closed

    def submit(self, prompts: list[str], steps: list[list[str]], timeout: float | None = None) -> list[list[float]]:
        """Step scores for each ``(prompt, steps)``; blocks until the worker has run them."""
        if self._closed:
            raise RuntimeError("the reward server is shutting down")
        with self._lock:
            self._counts["requests"] += 1
        if not any(steps):  # nothing to score: no need to wait for the model
            return [[] for _ in steps]
        job = _Job(prompts, steps)
        self._queue.put(job)
        if not job.done.wait(timeout):
            job.abandoned = True
            raise TimeoutError(f"scoring did not finish within {timeout:g} s; the server is overloaded, retry later")
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the batch it is running; requests still queued fail."""
        self._closed = True
        self._queue.put(None)
        self._worker.join(timeout)
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.error = RuntimeError("the reward server shut down before scoring this request")
                job.done.set()

    # -- worker side
    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, n, stop = [job], len(job.steps), False
            deadline = time.monotonic() + self.max_wait_s
            while n < self.batch_size:
                try:
                    # what is already queued is taken at once; then wait out the rest of max_wait
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
                n += len(nxt.steps)
            jobs = [j for j in jobs if not j.abandoned]
            if jobs:
                self._run(jobs)
            if stop:
                return

    def _run(self, jobs: list[_Job]) -> None:
        prompts = [p for j in jobs for p in j.prompts]
        steps = [s for j in jobs for s in j.steps]
        todo = [i for i, s in enumerate(steps) if s]  # a query with no step is 0.0 without the model
        try:
            scored = self.score_fn([prompts[i] for i in todo], [steps[i] for i in todo])
            if len(scored) != len(todo) or any(len(r) != len(steps[i]) for r, i in zip(scored, todo)):
                raise RuntimeError(f"the PRM returned {len(scored)} score lists for {len(todo)} queries, "
                                   "or a list of the wrong length")
        except Exception as e:  # noqa: BLE001 - any scoring failure goes back to the client as a 500
            with self._lock:
                self._counts["batches"] += 1
                self._counts["failed_batches"] += 1
            if len(jobs) > 1:
                log.warning("a batch of %d requests failed (%s); rescoring each alone", len(jobs), e)
                for j in jobs:  # only the request that fails should get the 500
                    self._run([j])
                return
            log.exception("scoring failed")
            jobs[0].error = e
            jobs[0].done.set()
            return
        with self._lock:
            self._counts["batches"] += 1
            self._counts["items"] += len(todo)
        out: list[list[float]] = [[] for _ in steps]
        for i, row in zip(todo, scored):
            out[i] = [float(x) for x in row]
        k = 0
        for j in jobs:
            j.result = out[k:k + len(j.steps)]
            k += len(j.steps)
            j.done.set()


# ----------------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    server: "RewardServer"
    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse a connection (requests.Session)
    server_version = "selfprm-reward/1"
    disable_nagle_algorithm = True  # headers and body go out as two writes; don't hold the second

    def setup(self) -> None:
        self.timeout = self.server.config.socket_timeout_s  # a stalled client frees its thread
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)  # not one stderr line per request

    # -- replies
    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, allow_nan=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": message}, headers)

    def _discard_body(self) -> None:
        """Read and drop an unread body so the connection stays in step; close it if that is too big."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > DRAIN_LIMIT_BYTES or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            return
        while n > 0:
            chunk = self.rfile.read(min(n, 2**16))
            if not chunk:
                break
            n -= len(chunk)

    def handle_expect_100(self) -> bool:
        """A client that asks before sending (``Expect: 100-continue``, as curl does for large
        bodies) learns of an oversized body before it sends it."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        limit = self.server.config.max_body_bytes
        if n > limit:
            self.close_connection = True
            self._error(413, f"body has {n} bytes; the limit is {limit}")
            return False
        return super().handle_expect_100()

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        allowed = {REWARD_PATH: "POST", HEALTH_PATH: "GET"}.get(path)
        if allowed is None:
            self._discard_body()
            self._error(404, f"no such path {path!r}; POST {REWARD_PATH} or GET {HEALTH_PATH}")
        elif method != allowed:
            self._discard_body()
            self._error(405, f"{method} is not allowed on {path}; use {allowed}", {"Allow": allowed})
        elif path == HEALTH_PATH:
            self._health()
        else:
            self._get_reward()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._route("PATCH")

    # -- endpoints
    def _health(self) -> None:
        batcher = self.server.batcher
        if not batcher.alive:
            self._error(503, "the scoring worker is not running")
            return
        self._send_json(200, {"status": "ok", **batcher.stats()})

    def _read_body(self) -> bytes:
        cfg = self.server.config
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise RequestError(411, "chunked bodies are not supported; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            raise RequestError(411, "Content-Length is required")
        try:
            n = int(raw)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {raw!r}") from None
        if n > cfg.max_body_bytes:
            self._discard_body()
            self.close_connection = True
            raise RequestError(413, f"body has {n} bytes; the limit is {cfg.max_body_bytes}")
        body = self.rfile.read(n)
        if len(body) < n:
            self.close_connection = True
            raise RequestError(400, f"body ended after {len(body)} of {n} bytes")
        return body

    def _get_reward(self) -> None:
        srv = self.server
        try:
            body = self._read_body()
            prompts, steps = parse_reward_request(body, srv.separator, srv.config)
        except RequestError as e:
            self._error(e.status, e.message)
            return
        if not srv.batcher.alive:
            self._error(503, "the scoring worker is not running")
            return
        try:
            scores = srv.batcher.submit(prompts, steps, timeout=srv.config.request_timeout_s)
        except TimeoutError as e:
            self._error(503, str(e))
            return
        except Exception as e:  # noqa: BLE001 - the server keeps serving; the client learns why
            self._error(500, f"scoring failed: {type(e).__name__}: {e}")
            return
        self._send_json(200, reward_reply(scores, srv.config.aggregation))


class RewardServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that scores with one :class:`Batcher`; ``server_close`` stops it too."""

    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of more clients than that connecting at
    # once (8 load-test threads did) gets SYNs dropped and waits out the 1 s TCP retransmit.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], score_fn: ScoreFn, separator: str, config: RewardServerConfig):
        self.config = config
        self.separator = separator
        self.batcher = Batcher(score_fn, config.batch_size, config.max_wait_ms)
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self.batcher.close()
            raise

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket (the real port when built with ``port=0``)."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def stats(self) -> dict[str, int]:
        return self.batcher.stats()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):  # a client that went away: routine
            log.debug("connection from %s dropped: %s", client_address, exc)
        else:
            log.warning("error while handling a request from %s", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self.batcher.close()


def build_reward_server(
    prm: ProcessRewardModel | str | Path,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    batch_size: int = 32,
    max_wait_ms: float = 5.0,
    aggregation: str = "min",
    max_body_bytes: int = RewardServerConfig.max_body_bytes,
    max_query_chars: int = RewardServerConfig.max_query_chars,
    max_queries: int = RewardServerConfig.max_queries,
    max_steps: int = RewardServerConfig.max_steps,
    request_timeout_s: float = RewardServerConfig.request_timeout_s,
    socket_timeout_s: float = RewardServerConfig.socket_timeout_s,
    device: str = "cpu",
    step_delimiter: str | None = None,
) -> RewardServer:
    """A reward server for ``prm`` (a model, or the folder ``save_pretrained`` wrote) bound to
    ``host:port`` (``port=0``: any free port; read it from ``server.url``). Not yet serving: call
    ``serve_forever()`` (in a thread, for tests) and ``shutdown()`` / ``server_close()`` after."""
    config = RewardServerConfig(batch_size=batch_size, max_wait_ms=max_wait_ms, aggregation=aggregation,
                                max_body_bytes=max_body_bytes, max_query_chars=max_query_chars,
                                max_queries=max_queries, max_steps=max_steps, request_timeout_s=request_timeout_s,
                                socket_timeout_s=socket_timeout_s)
    model = prm if isinstance(prm, ProcessRewardModel) else ProcessRewardModel.from_pretrained(prm, device=device)
    model.eval()

    def score(prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        return model.score_steps(prompts, steps, batch_size=config.batch_size)

    # the PRM reads its steps joined by its own separator; responses arrive written the policy's way
    return RewardServer((host, port), score, step_delimiter or model.config.step_separator, config)
