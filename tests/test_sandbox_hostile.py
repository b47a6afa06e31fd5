"""Hostile programs against the sandbox, through the path model-written code takes (issue 14).

Each case is the body of ``def f(x)`` in the code domain's program shape, written so that it
returns ``x`` — and so *passes* its one test, ``f(1) == 1`` — only if its attack worked. A case is
contained when the parent survives, the verdict is "failed", and nothing outside the sandbox's
temporary directory changed (the repository root, a canary folder the test owns). The last test
prints ``contained k/n`` and asserts ``k == n``.
"""

import os
import select
import socket
import time

import pytest

from selfprm.domains.code import sandboxed_tests
from selfprm.sandbox import run_sandboxed

SECRET_VAR, SECRET = "SELFPRM_HOSTILE_SECRET", "hunter2-do-not-leak"
RESULTS: dict[str, bool] = {}  # case -> contained, filled by test_case and read by the summary


OUTSIDE = os.path.join(os.getcwd(), "hostile-canary.txt")


def _cases(canary_dir: str, port: int) -> dict[str, str]:
    outside = OUTSIDE
    return {
        "infinite_loop": "    while True:\n        pass\n    return x\n",
        "fork_bomb": "    import os\n    while True:\n        os.fork()\n    return x\n",
        "memory_bomb": "    big = [bytearray(1 << 26) for _ in range(64)]\n    return x\n",
        "huge_output": "    import os\n    for _ in range(10000):\n        os.write(1, b'x' * (1 << 20))\n    return x\n",
        "write_outside": (f"    open({outside!r}, 'w').write('pwned')\n"
                          f"    open({os.path.join(canary_dir, 'pwned.txt')!r}, 'w').write('pwned')\n    return x\n"),
        "read_parent_env": ("    import os\n"
                            f"    found = {SECRET!r} in str(dict(os.environ))\n"
                            f"    found = found or {SECRET!r}.encode() in open('/proc/%d/environ' % os.getppid(), 'rb').read()\n"
                            "    return x if found else None\n"),
        "socket_python": f"    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    return x\n",
        "socket_raw": ("    import ctypes, struct\n    libc = ctypes.CDLL(None, use_errno=True)\n"
                       "    fd = libc.socket(2, 1, 0)\n"
                       f"    addr = struct.pack('>HH4s8x', 2, {port}, bytes([127, 0, 0, 1]))\n"
                       "    addr = struct.pack('<H', 2) + addr[2:]\n"
                       "    return x if libc.connect(fd, addr, len(addr)) == 0 else None\n"),
        "kill_parent": "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    return x\n",
        "kill_parent_group": "    import os, signal\n    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)\n    return x\n",
        "deep_recursion": ("    import sys\n    sys.setrecursionlimit(10 ** 7)\n"
                           "    def g(n):\n        return g(n + 1) + 1\n    return g(0)\n"),
    }


CASE_NAMES = list(_cases("/tmp", 1))


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """A loopback server that must see no connection, a canary folder, a secret in the environment."""
    canary = tmp_path_factory.mktemp("canary")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    os.environ[SECRET_VAR] = SECRET
    yield {"canary": str(canary), "server": server, "port": server.getsockname()[1]}
    os.environ.pop(SECRET_VAR, None)
    server.close()


def _snapshot(*folders: str) -> dict[str, tuple]:
    out = {}
    for folder in folders:
        for name in os.listdir(folder):
            st = os.stat(os.path.join(folder, name), follow_symlinks=False)
            out[os.path.join(folder, name)] = (st.st_size, st.st_mtime_ns)
    return out


def _connection_seen(server: socket.socket) -> bool:
    ready, _, _ = select.select([server], [], [], 0.05)
    if ready:
        conn, _ = server.accept()
        conn.close()
    return bool(ready)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_case(case, arena):
    body = _cases(arena["canary"], arena["port"])[case]
    program = "def f(x):\n    xs=[x]\n" + body
    # the repository is edited by others meanwhile: there only the case's own target is watched
    before = _snapshot(arena["canary"])
    t0 = time.perf_counter()
    verdict = sandboxed_tests([(program, [(1, 1)])], timeout_s=1.0, memory_mb=256)
    seconds = time.perf_counter() - t0
    checks = {
        "verdict failed": verdict == [False],
        "parent alive": os.getpid() > 0,  # reached at all: a killed parent ends the run here
        "nothing outside changed": _snapshot(arena["canary"]) == before and not os.path.exists(OUTSIDE),
        "no connection": not _connection_seen(arena["server"]),
        "returned in time": seconds < 10,
    }
    RESULTS[case] = all(checks.values())
    print(f"{case}: {checks} ({seconds:.2f} s)")
    assert all(checks.values()), f"{case} escaped: {checks}"


def test_output_is_capped_and_no_secret_is_passed():
    """Details the verdicts hide: the output that reaches the parent is bounded, the child's
    environment is the sandbox's own."""
    os.environ[SECRET_VAR] = SECRET
    try:
        r = run_sandboxed("import os\nprint(dict(os.environ), flush=True)\nfor _ in range(8):\n    os.write(1, b'x' * (8 << 20))", max_output_bytes=1 << 16)
    finally:
        os.environ.pop(SECRET_VAR, None)
    assert SECRET not in r.stdout and "PATH" in r.stdout
    assert len(r.stdout) <= 1 << 16 and not r.ok


def test_one_hostile_program_does_not_cost_the_others_their_verdict(arena):
    """All cases and two honest programs in one batch: the batch fails, every program is rerun
    alone, and the honest ones still pass."""
    good = "def f(x):\n    xs=[x]\n    a=x*3\n    return a\n"
    cases = _cases(arena["canary"], arena["port"])
    jobs = [(good, [(2, 6)])] + [("def f(x):\n    xs=[x]\n" + cases[c], [(1, 1)]) for c in ("fork_bomb", "kill_parent")]
    jobs += [("def f(x):\n    xs=[x]\n" + cases["infinite_loop"], [(1, 1)]), (good, [(1, 3), (4, 12)])]
    assert sandboxed_tests(jobs, timeout_s=1.0) == [True, False, False, False, True]


def test_contained_summary():
    """The suite's figure: how many hostile cases were contained (runs after every case)."""
    k, n = sum(RESULTS.get(c, False) for c in CASE_NAMES), len(CASE_NAMES)
    print(f"\ncontained {k}/{n}")
    assert len(RESULTS) == n, f"cases not run: {sorted(set(CASE_NAMES) - set(RESULTS))}"
    assert k == n
