"""A local OpenAI-compatible **chat** server for the offline Ctx2Skill roles (loopback only).

``python -m selfprm.selfplay.offline_server --reasoner-dir DIR [--port 0] [--judge-noise 0.1]``
serves ``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /health``; it prints one line
``READY <base_url>`` on stdout once it listens, so a parent process can read the port it took.

The request's ``model`` picks the player: ``reasoner`` is the tiny LM saved in ``--reasoner-dir``
(greedy; its chat template is :func:`~selfprm.selfplay.reasoner_lm.reasoner_prompt`), and
``challenger``, ``judge``, ``proposer``, ``generator`` the rule-based players of
:mod:`selfprm.selfplay.roles`. Replies use the API's shapes (``choices[0].message``,
``finish_reason``, ``usage``); a bad request is answered 400 with the API's error object, and the
server keeps serving.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Iterator, Sequence

from selfprm.domains.arith import ArithConfig, ArithDomain
from selfprm.rundir import config_blob
from selfprm.selfplay import roles
from selfprm.serving.policy_server import JSONHandler

RULE_ROLES = ("challenger", "judge", "proposer", "generator")


class OfflinePlayers:
    """The five players behind one ``reply(model, messages)``; one generation at a time."""

    def __init__(self, reasoner_dir: str | None, domain: ArithDomain, judge_noise: float = 0.0, seed: int = 0,
                 retrieval: bool = True):
        self.domain, self.judge_noise, self.seed, self.retrieval = domain, judge_noise, seed, retrieval
        self.lock = threading.Lock()
        self.model = self.tok = None
        if reasoner_dir is not None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.model = AutoModelForCausalLM.from_pretrained(reasoner_dir).eval()
            self.tok = AutoTokenizer.from_pretrained(reasoner_dir)

    def models(self) -> list[str]:
        return (["reasoner"] if self.model is not None else []) + list(RULE_ROLES)

    def reply(self, model: str, messages: Sequence[dict[str, str]], max_tokens: int) -> str:
        if model == "reasoner" and self.model is not None:
            from selfprm.selfplay.reasoner_lm import greedy_answer, reasoner_prompt

            system = "".join(m["content"] for m in messages if m["role"] == "system")
            user = messages[-1]["content"]
            if self.retrieval:  # the entries the task names, not the whole file (see roles.relevant_entries)
                from selfprm.selfplay.skills import parse_skills

                system = roles.relevant_entries(parse_skills(system, "reasoner system message"), user).render()
            with self.lock:
                return greedy_answer(self.model, self.tok, reasoner_prompt(system, user), max_new_tokens=max_tokens)
        players: dict[str, Callable[[], str]] = {
            "challenger": lambda: roles.offline_challenger(messages, self.domain),
            "judge": lambda: roles.offline_judge(messages, self.judge_noise, self.seed),
            "proposer": lambda: roles.offline_proposer(messages),
            "generator": lambda: roles.offline_generator(messages),
        }
        if model not in players:
            raise KeyError(model)
        return players[model]()


def build_server(players: OfflinePlayers, port: int = 0) -> ThreadingHTTPServer:
    """The server on 127.0.0.1 (never another interface); ``server.url`` is its base URL."""

    class Handler(JSONHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.rstrip("/")
            if path in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "selfprm"}
                                                            for m in players.models()]})
            elif path == "/health":
                self._send(200, {"status": "ok"})
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(HTTPStatus.NOT_FOUND, f"no route POST {self.path}")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length).decode("utf-8")) if length else None
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
                msgs = body.get("messages")
                if not (isinstance(msgs, list) and msgs and all(
                        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                        for m in msgs)):
                    raise ValueError("'messages' must be a non-empty list of {role, content} strings")
                model = body.get("model")
                if model not in players.models():
                    raise ValueError(f"unknown model {model!r}; served: {players.models()}")
                max_tokens = body.get("max_tokens") or 512
                if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
                    raise ValueError(f"'max_tokens' must be a positive integer, got {max_tokens!r}")
            except ValueError as e:
                self._error(HTTPStatus.BAD_REQUEST, str(e))
                return
            try:
                text = players.reply(model, msgs, max_tokens)
            except Exception as e:  # noqa: BLE001 — a failed reply is the server's 500, not its end
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(e).__name__}: {e}", "server_error")
                return
            n_in = sum(len(m["content"]) for m in msgs)  # characters: the tiny tokenizer's tokens
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": n_in, "completion_tokens": len(text), "total_tokens": n_in + len(text)},
            })

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    return server


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reasoner-dir", default=None, help="the tiny Reasoner's model folder (omit: rule roles only)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--judge-noise", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain-json", default=None, help="ArithConfig fields as JSON (the tasks' domain)")
    ap.add_argument("--max-seconds", type=float, default=3600.0, help="stop serving after this long")
    ap.add_argument("--no-retrieval", action="store_true",
                    help="the Reasoner reads its whole skill file, not only the entries its task names")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # the machine is shared; one generation at a time anyway
    domain = ArithDomain(ArithConfig(**json.loads(a.domain_json)) if a.domain_json else None)
    server = build_server(OfflinePlayers(a.reasoner_dir, domain, a.judge_noise, a.seed, not a.no_retrieval), a.port)
    # bounded in time: a parent that dies without killing us does not leave a server behind
    timer = threading.Timer(a.max_seconds, server.shutdown)
    timer.daemon = True
    timer.start()
    print(f"READY {server.url}", flush=True)
    server.serve_forever()



@contextlib.contextmanager
def serve_offline(reasoner_dir: str | os.PathLike | None, domain: ArithConfig, judge_noise: float, seed: int,
                  log_path: str | os.PathLike, start_timeout: float = 120.0,
                  max_seconds: float = 3600.0, retrieval: bool = True) -> Iterator[str]:
    """This server as a child process on loopback for the ``with`` block; yields its base URL.

    The child is started with the current interpreter, its stderr goes to ``log_path``; it is
    terminated (then killed) when the block ends, and stops by itself after ``max_seconds``.
    """
    cmd = [sys.executable, "-m", "selfprm.selfplay.offline_server", "--port", "0", "--judge-noise", str(judge_noise),
           "--seed", str(seed), "--max-seconds", str(max_seconds), "--domain-json", json.dumps(config_blob(domain))]
    if reasoner_dir is not None:
        cmd += ["--reasoner-dir", str(reasoner_dir)]
    if not retrieval:
        cmd += ["--no-retrieval"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            deadline = time.monotonic() + start_timeout
            line = ""
            while time.monotonic() < deadline and proc.poll() is None:
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
                if ready:
                    line = proc.stdout.readline()  # type: ignore[union-attr]
                    if line.startswith("READY "):
                        break
            if not line.startswith("READY "):
                raise RuntimeError(f"the offline chat server did not start within {start_timeout:.0f} s "
                                   f"(exit code {proc.poll()}); see {log_path}")
            yield line.split()[1]
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    main()
