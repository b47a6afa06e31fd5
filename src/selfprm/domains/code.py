"""``code``: straight-line Python functions with unit tests, written line by line, run in the sandbox.

A problem is a spec of operations and the unit tests the function must pass, e.g.
``Q:*3 push +x max T:f(1)=3 f(2)=6 f(5)=15``; a solution writes the body of ``def f(x):`` one line
per operation (the list ``xs`` starts as ``[x]``; each new value gets the next letter ``a``, ``b``,
...; an operation applies to the latest value) and ends with the answer line naming what is
returned::

    a=x*3
    xs.append(a)
    b=a+x
    c=max(xs)
    A:c

The operations: ``*k``, ``+k``, ``-k`` (a constant), ``*x``, ``+x``, ``-x`` (the input), ``*@k``,
``+@k``, ``-@k`` (the value ``k`` back, ``@1`` the latest: ``+@2`` after ``b`` writes ``c=b+a``), ``push``
(``xs.append``) and ``max`` / ``min`` / ``sum`` (of ``xs``). The program the text stands for
(:meth:`CodeDomain.program`) is::

    def f(x):
        xs=[x]
        a=x*3
        ...
        return c

*Outcome.* A solution's outcome is whether that program passes every test, found by running it
in :func:`selfprm.sandbox.run_sandboxed` — model-written code runs nowhere else. Many programs go
to one sandboxed process (:func:`sandboxed_tests`: each in a fresh namespace, the result must be an
``int`` equal to the expected one); if that process fails (a program that loops, floods the
output, kills its interpreter), each program is rerun alone so one cannot cost the others their
verdict. Verdicts are cached per domain instance by program text, and :meth:`CodeDomain.from_texts`
runs a whole batch of completions in one process (~0.6 ms a program, against ~40 ms for a process
of its own unloaded, ~90 ms on a loaded 2-core machine). The policies and RL rollouts judge each
generation batch through :func:`selfprm.policies.base.judge_texts`, so a batch costs one process.

*Step oracle* (:meth:`CodeDomain.judge_steps`). Let ``L_1..L_k`` be the reference lines and
``r`` the reference's returned name. Step ``i`` of a solution is **sound iff the program made of
the solution's first ``i`` lines, then the reference's lines ``L_{i+1}..L_k``, then ``return r``
passes every test** — the state after step ``i`` can still reach a passing program by writing the
spec's remaining operations. It is exact: the oracle evaluates the lines with an interpreter of the
domain's line grammar (:data:`LINE_RES`: the three line shapes above, single-letter names), never
with ``exec``; a line outside that grammar, one that fails (an unknown name) or one that makes a
value beyond :data:`MAX_VALUE` leaves the state unknown, so that step and every later one are
unsound. The alignment is positional (one line per operation, as the spec fixes), so a missing or
extra line misaligns what follows and is an error unless harmless on the tests (e.g. ``max`` where ``sum`` gives the same values: a lucky step, as
finite tests allow lucky programs).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from selfprm.domains.base import LineDomain
from selfprm.types import Problem, Trajectory

NAMES = "abcdefghijklmnopqrstuvw"  # fresh value names, in order (``x`` is the input)
LINE_RES = {
    "bin": re.compile(r"^([a-z])=([a-z])([+\-*])([a-z]|\d+)$"),
    "push": re.compile(r"^xs\.append\(([a-z]|\d+)\)$"),
    "reduce": re.compile(r"^([a-z])=(max|min|sum)\(xs\)$"),
}
REDUCERS = {"max": max, "min": min, "sum": sum}
MAX_VALUE = 1 << 64  # the oracle calls a state with a larger value unknown (its cost stays bounded)

# Runs inside the sandbox: reads a nonce line, then a JSON list of [source, [[input, expected], ...]];
# writes the nonce and a JSON list of booleans. Each program runs in a fresh namespace; a result
# must be an int (not an object whose __eq__ always says yes) equal to the expected value.
TEST_RUNNER = r'''
import io, json, os, sys
_nonce = sys.stdin.readline().strip()
_jobs = json.loads(sys.stdin.read())
_verdicts = []
for _src, _tests in _jobs:
    _ok = False
    sys.stdout = io.StringIO()  # what a program prints must not garble the verdicts
    try:
        _g = {"__builtins__": __builtins__, "__name__": "program"}
        exec(compile(_src, "<program>", "exec"), _g)
        _ok = all(type(_got) is int and _got == _want for _got, _want in ((_g["f"](_a), _w) for _a, _w in _tests))
    except BaseException:
        _ok = False
    sys.stdout = sys.__stdout__
    _verdicts.append(bool(_ok))
os.write(1, (_nonce + json.dumps(_verdicts)).encode())
'''


def sandboxed_tests(jobs: Sequence[tuple[str, Sequence[tuple[int, int]]]], *, batched: bool = True,
                    timeout_s: float = 5.0, memory_mb: int = 256) -> list[bool]:
    """Whether each program (Python source defining ``f``) passes its tests ``[(input, expected)]``,
    run by :data:`TEST_RUNNER` in the sandbox: all in one process (``batched``; should it fail, each
    is rerun alone) or one process per program. A program whose run fails passes nothing."""
    jobs = [(str(src), [(int(a), int(w)) for a, w in tests]) for src, tests in jobs]
    if not jobs:
        return []
    if batched:
        got = _run_tests(jobs, timeout_s, memory_mb)
        if got is not None or len(jobs) == 1:  # a lone program's failed run is its verdict
            return got or [False]
    return [(_run_tests([j], timeout_s, memory_mb) or [False])[0] for j in jobs]


def _run_tests(jobs: list[tuple[str, list[tuple[int, int]]]], timeout_s: float, memory_mb: int) -> list[bool] | None:
    from selfprm.sandbox import run_sandboxed

    # the verdict line must start with a nonce the program has not seen printed, so a program that
    # writes "[true]" and exits cannot pass itself (not proof against one that reads the runner's memory)
    nonce = secrets.token_hex(8)
    res = run_sandboxed(TEST_RUNNER, timeout_s=timeout_s, memory_mb=memory_mb, preload=("io",),
                        stdin=nonce + "\n" + json.dumps(jobs))
    if not res.ok or not res.stdout.startswith(nonce):
        return None
    try:
        rows = json.loads(res.stdout[len(nonce):])
    except ValueError:
        return None
    if not isinstance(rows, list) or len(rows) != len(jobs) or not all(isinstance(r, bool) for r in rows):
        return None
    return rows


@dataclass
class CodeConfig:
    """Knobs of the ``code`` domain.

    Parameters:
        min_ops: fewest operations (lines) in a program.
        max_ops: most operations in a program.
        op_weights: how often each kind of operation is drawn: ``const`` (``*k``/``+k``/``-k``), ``input``
            (``*x``/``+x``/``-x``), ``ref`` (``+@k``: with the value ``k`` back, ``@1`` the latest; the
            policy must find its name, which makes steps hard), ``push`` and ``reduce``
            (``max``/``min``/``sum`` of ``xs``).
        max_back: largest ``k`` of a ``ref`` operation.
        const_max: largest constant ``k``.
        n_tests: unit tests per problem (distinct inputs).
        input_max: tests' inputs are drawn from 1..input_max.
    """

    min_ops: int = 4
    max_ops: int = 7
    op_weights: dict[str, float] = field(default_factory=lambda: {"const": 0.3, "input": 0.1, "ref": 0.3,
                                                                  "push": 0.15, "reduce": 0.15})
    max_back: int = 3
    const_max: int = 5
    n_tests: int = 3
    input_max: int = 9


class _Unknown(Exception):
    """The oracle cannot say what a line does (outside the grammar, or it fails)."""


def exec_line(line: str, env: dict[str, Any]) -> None:
    """Apply one line of the grammar to ``env`` (names -> ints, ``xs`` -> list): the oracle's
    interpreter, which never calls ``exec``. Raises ``_Unknown`` for anything else."""
    s = line.strip()
    m = LINE_RES["bin"].match(s)
    try:
        if m:
            t, a, op, b = m.groups()
            u, v = env[a], (int(b) if b.isdigit() else env[b])
            r = u + v if op == "+" else (u - v if op == "-" else u * v)
            # model-written `b=b*b` lines square without bound; the oracle runs in the parent
            if abs(r) > MAX_VALUE:
                raise _Unknown(f"a value beyond {MAX_VALUE}")
            env[t] = r
            return
        m = LINE_RES["push"].match(s)
        if m:
            b = m.group(1)
            env["xs"] = env["xs"] + [int(b) if b.isdigit() else env[b]]
            return
        m = LINE_RES["reduce"].match(s)
        if m:
            env[m.group(1)] = REDUCERS[m.group(2)](env["xs"])
            return
    except (KeyError, TypeError) as e:  # an unknown name, or xs used as a number
        raise _Unknown(str(e)) from e
    raise _Unknown(f"not a line of the grammar: {line!r}")


class CodeDomain(LineDomain):
    """Samples problems with unit tests, writes reference programs, judges steps; outcomes from the sandbox."""

    name = "code"

    def __init__(self, config: CodeConfig | None = None, *, batch_size: int = 256, timeout_s: float = 5.0):
        """``batch_size``: most programs run in one sandboxed process; ``timeout_s``: its wall-clock
        limit (both kept out of ``config``, so the cached SFT stages keyed by it stay valid)."""
        self.config = config or CodeConfig()
        self.batch_size, self.timeout_s = batch_size, timeout_s
        c = self.config
        if c.min_ops < 1 or c.max_ops < c.min_ops or c.max_ops > len(NAMES):
            raise ValueError(f"need 1 <= min_ops <= max_ops <= {len(NAMES)}")
        if c.n_tests < 1 or c.input_max < c.n_tests:
            raise ValueError("need 1 <= n_tests <= input_max (the tests' inputs are distinct)")
        # verdicts by program text; kept out of ``config`` (it is a cache, not a knob)
        self._verdicts: dict[tuple[str, str], bool] = {}

    # ------------------------------------------------------------------ problems
    def sample_problems(self, n: int, seed: int, prefix: str = "code") -> list[Problem]:
        rng = np.random.default_rng(seed)
        c = self.config
        kinds = list(c.op_weights)
        probs = np.array([c.op_weights[k] for k in kinds], dtype=float)
        probs /= probs.sum()
        out = []
        for i in range(n):
            ops: list[str] = []
            k = int(rng.integers(c.min_ops, c.max_ops + 1))
            for j in range(k):
                kind = kinds[int(rng.choice(len(kinds), p=probs))]
                # no push as the last line (it would be dead code), no reduce of a list that has
                # had nothing pushed since the last reduce (it would repeat a known value)
                if (kind == "push" and j == k - 1) or (kind == "reduce" and "push" not in ops[_last_reduce(ops):]):
                    kind = "const"
                if kind == "const":
                    op = "+-*"[int(rng.integers(0, 3))]
                    ops.append(f"{op}{int(rng.integers(2, c.const_max + 1))}")
                elif kind == "ref":
                    values = 1 + sum(o != "push" for o in ops)  # x and every value made so far
                    back = int(rng.integers(1, min(c.max_back, values) + 1))
                    op = "+-*"[int(rng.integers(0, 3))]
                    ops.append(("+" if op == "-" and back == 1 else op) + f"@{back}")  # not v-v = 0
                elif kind == "input":
                    ops.append("+-*"[int(rng.integers(0, 3))] + "x")
                elif kind == "push":
                    ops.append("push")
                else:
                    ops.append(("max", "min", "sum")[int(rng.integers(0, 3))])
            inputs = sorted(int(v) for v in rng.choice(np.arange(1, c.input_max + 1), size=c.n_tests, replace=False))
            out.append(self.make_problem(f"{prefix}-{seed}-{i}", ops, inputs))
        return out

    def make_problem(self, pid: str, ops: Sequence[str], inputs: Sequence[int]) -> Problem:
        """The problem of spec ``ops`` with tests at ``inputs`` (expected values from the reference)."""
        lines, last, values = [], "x", ["x"]
        for j, op in enumerate(ops):
            if op == "push":
                lines.append(f"xs.append({last})")
                continue
            new = NAMES[sum(o != "push" for o in ops[:j])]
            if op in REDUCERS:
                lines.append(f"{new}={op}(xs)")
            elif len(op) >= 2 and op[0] in "+-*" and (op[1:] == "x" or op[1:].isdigit()):
                lines.append(f"{new}={last}{op[0]}{op[1:]}")
            elif op[:1] in ("+", "-", "*") and op[1:2] == "@" and op[2:].isdigit() and 1 <= int(op[2:]) <= len(values):
                lines.append(f"{new}={last}{op[0]}{values[-int(op[2:])]}")
            else:
                raise ValueError(f"problem {pid}: unknown operation {op!r}")
            last = new
            values.append(new)
        tests = [[int(a), self._evaluate(lines, last, int(a))] for a in inputs]
        prompt = "Q:" + " ".join(ops) + " T:" + " ".join(f"f({a})={w}" for a, w in tests)
        return Problem(pid, prompt, last, {"ops": list(ops), "lines": lines, "tests": tests})

    def worked_solution(self, problem: Problem, rng: np.random.Generator) -> tuple[list[str], str]:
        """The reference program (``rng`` unused: one right program per spec)."""
        return list(problem.meta["lines"]), problem.answer

    # ------------------------------------------------------------------ programs
    @staticmethod
    def program(steps: Sequence[str], answer: str | None) -> str:
        """The Python source a solution stands for: ``def f(x)`` with ``xs=[x]``, the steps, the return."""
        body = ["xs=[x]"] + [s.strip() for s in steps] + [f"return {answer.strip() if answer else 'None'}"]
        return "def f(x):\n" + "".join(f"    {line}\n" for line in body)

    @staticmethod
    def parse_program(source: str) -> tuple[list[str], str]:
        """The steps and returned expression of a :meth:`program` source (its inverse)."""
        lines = source.split("\n")
        if not lines or lines[0] != "def f(x):" or len(lines) < 3 or lines[1] != "    xs=[x]":
            raise ValueError("not a program of the code domain (want 'def f(x):' then '    xs=[x]')")
        body = [line[4:] for line in lines[2:] if line.strip()]
        if not body or not body[-1].startswith("return "):
            raise ValueError("the program does not end with a return line")
        return body[:-1], body[-1][len("return "):]

    def passes(self, items: Sequence[tuple[Problem, Sequence[str], str | None]]) -> list[bool]:
        """Whether each solution's program passes its problem's tests, run in the sandbox (unseen
        programs in batches of ``batch_size``; seen ones from the cache)."""
        keys = [(self.program(steps, ans), json.dumps(p.meta["tests"])) for p, steps, ans in items]
        todo = list(dict.fromkeys(k for k in keys if k not in self._verdicts))
        b = self.batch_size
        for start in range(0, len(todo), b):
            chunk = todo[start:start + b]
            got = sandboxed_tests([(src, json.loads(tests)) for src, tests in chunk], timeout_s=self.timeout_s)
            self._verdicts.update(zip(chunk, got))
        return [self._verdicts[k] for k in keys]

    # ------------------------------------------------------------------ trajectories
    def from_texts(self, items: Sequence[tuple[Problem, Sequence[str], str, int]]) -> list[Trajectory]:
        """:meth:`from_text` for many continuations ``(problem, steps_before, generated, tokens)``,
        their programs run in one sandboxed batch."""
        parsed = []
        for p, before, g, k in items:
            steps, ans, truncated = self.parse_completion(g)
            parsed.append((p, list(before) + steps, ans, truncated, k))
        ok = self.passes([(p, steps, ans) for p, steps, ans, truncated, _ in parsed if not truncated])
        verdicts = iter(ok)
        return [Trajectory(problem=p, steps=steps, final_answer=ans,
                           outcome=False if truncated else next(verdicts),
                           oracle_labels=self.judge_steps(p, steps), tokens_generated=k, truncated=truncated)
                for p, steps, ans, truncated, k in parsed]

    def from_text(self, problem: Problem, steps_before: Sequence[str], generated: str, tokens: int) -> Trajectory:
        return self.from_texts([(problem, steps_before, generated, tokens)])[0]

    def make_trajectory(self, problem: Problem, steps: Sequence[str], final_answer: str | None,
                        truncated: bool = False, tokens_generated: int = 0) -> Trajectory:
        """A trajectory whose outcome is its program's sandboxed test run (False when truncated)."""
        outcome = (not truncated) and self.passes([(problem, steps, final_answer)])[0]
        return Trajectory(problem=problem, steps=list(steps), final_answer=final_answer, outcome=outcome,
                          oracle_labels=self.judge_steps(problem, steps), tokens_generated=tokens_generated,
                          truncated=truncated)

    def check_answer(self, problem: Problem, answer: str | None) -> bool:
        """Whether the answer line returns the reference's name; the *outcome* is the sandbox's test run."""
        return answer is not None and answer.strip() == problem.answer

    # ------------------------------------------------------------------ oracle
    @staticmethod
    def _evaluate(lines: Sequence[str], returned: str, x: int) -> int | None:
        """What ``f(x)`` returns for these lines by the oracle's interpreter; None when unknown."""
        env: dict[str, Any] = {"x": x, "xs": [x]}
        try:
            for line in lines:
                exec_line(line, env)
        except _Unknown:
            return None
        v = env.get(returned)
        return v if type(v) is int else None

    def judge_steps(self, problem: Problem, steps: Sequence[str]) -> list[bool]:
        """Step ``i`` is sound iff its first ``i`` lines, then the reference's lines after ``i``, then
        the reference's return, pass every test (see the module docstring)."""
        ref, tests = problem.meta["lines"], problem.meta["tests"]
        out, known = [], True
        for i in range(1, len(steps) + 1):
            # once a line is outside the grammar the state is unknown for good
            known = known and all(_parses(s) for s in steps[i - 1:i])
            program = list(steps[:i]) + list(ref[i:])
            out.append(known and all(self._evaluate(program, problem.answer, a) == w for a, w in tests))
        return out

    def step_well_formed(self, step: str) -> bool:
        s = step.strip()
        return _parses(s) or (s.startswith("A:") and len(s) > 2)

    def charset(self) -> str:
        """Every character code text can contain: the spec, the tests, and the lines' letters."""
        return "0123456789+-*=:() .@\nQATabcdefghijklmnopqrstuvwxyz"


def _last_reduce(ops: Sequence[str]) -> int:
    return max((j + 1 for j, o in enumerate(ops) if o in REDUCERS), default=0)


def _parses(line: str) -> bool:
    s = line.strip()
    return any(rx.match(s) for rx in LINE_RES.values())
