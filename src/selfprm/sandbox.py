"""The one place model-written code runs: a short-lived, resource-limited subprocess with no network.

:func:`run_sandboxed` starts ``sys.executable -I -S`` (isolated mode: no ``PYTHON*`` variables, no
user or venv ``site-packages``, the script's directory not on ``sys.path``) on a small *bootstrap*
that locks the process down and only then runs the untrusted code (``exec`` of a Python source
string) or ``execvp``'s an untrusted command (an argv list). In the child, before any untrusted
byte runs, the bootstrap

1. **cuts the network** — ``unshare(CLONE_NEWNET)`` via ``ctypes`` (as root), or
   ``unshare(CLONE_NEWUSER | CLONE_NEWNET)`` with the caller's uid/gid mapped to itself (as an
   unprivileged user, where user namespaces are enabled): the process then lives in a fresh network
   namespace whose only interface, loopback, is down, so every ``connect`` fails with "Network is
   unreachable", whatever language or syscall asks. Where ``unshare`` is not permitted (a container
   whose seccomp profile refuses it, user namespaces disabled) this step is skipped silently and the
   only network guard is step 5; :attr:`SandboxResult.network` reports which one held.
2. **drops root** — when the parent runs as uid 0, the child switches to ``nobody`` (65534, no
   supplementary groups), so the code cannot write files root owns (the repository, the run
   directory), raise its own limits, or use root's exemption from ``RLIMIT_NPROC``. The modules in
   :data:`PRELOAD` (and ``preload=``) are imported before the switch, since the interpreter's own
   files may sit under a directory ``nobody`` cannot read (``/root/.pyenv``).
3. **sets hard resource limits** (soft = hard, so the code cannot raise them back):
   ``RLIMIT_AS`` = ``memory_mb`` (a large allocation raises ``MemoryError``, reported as
   ``killed_for_memory``), ``RLIMIT_CPU`` = ⌈timeout⌉ + 1 s (a CPU-bound loop that somehow survives
   the wall clock gets ``SIGXCPU``/``SIGKILL``), ``RLIMIT_NPROC`` = 0 (no ``fork``, no threads —
   effective once root is dropped; a process counted as root ignores it), ``RLIMIT_FSIZE`` =
   ``max_output_bytes`` (no file, stdout and stderr included, grows past it: ``SIGXFSZ``),
   ``RLIMIT_NOFILE`` = 64, ``RLIMIT_CORE`` = 0.
4. **closes its status channel** — one JSON line to the parent on a private pipe (what step 1 and 2
   achieved), then the pipe is closed, so the code cannot forge it.
5. **disables sockets in Python** — ``socket.socket``, ``socket.create_connection``,
   ``socket.socketpair``, ``socket.fromfd``, ``socket.getaddrinfo`` (and ``_socket``'s
   constructors) are replaced by functions that raise ``PermissionError`` (source-string mode only;
   an exec'd command keeps just step 1).

The parent gives the child a minimal environment (``PATH``, ``LANG``, ``HOME`` = the temp dir), a
fresh temporary working directory (deleted afterwards), ``stdout``/``stderr`` as unlinked temp files
(bounded by ``RLIMIT_FSIZE``, so a flood of output cannot fill the parent's memory), its own
session and process group (``start_new_session``), and a wall-clock timeout after which the whole
group is ``SIGKILL``\\ ed; the group is killed after a normal exit too, so nothing outlives a call.

Limits are set in the child's bootstrap, not in ``preexec_fn``: the parent is a PyTorch trainer
with live thread pools, and Python documents ``preexec_fn`` as unsafe (deadlock-prone) in a
threaded parent. Only trusted interpreter start-up runs before the bootstrap has set them.

**What it does not guard.** It is not a security boundary against a determined attacker: there is
no seccomp filter, no mount or PID namespace and no chroot, so the code can *read* any file
``nobody`` (or, not running as root, the caller) can read and can see other processes; the
Python-level socket patch alone (when ``unshare`` is refused) is a speed bump — ``ctypes`` can
issue the raw syscalls; CPU and memory are limited per call, not in aggregate. It is meant for
what a policy under training writes — arithmetic, small scripts, accidents like infinite loops and
runaway allocations — on a machine that holds nothing secret.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Sequence

MEMORY_EXIT = 86  # the bootstrap's exit status when the code died of MemoryError
NOBODY = 65534
# imported before root is dropped (cheap, and commonly needed by small scripts)
PRELOAD = ("ast", "json", "math", "operator", "re", "collections", "itertools", "functools", "traceback")

_BOOTSTRAP = r'''
import ctypes, errno, os, resource, socket, sys, json as _json
_cfg = _json.loads(sys.argv[1])
for _m in _cfg["preload"]:
    try:
        __import__(_m)
    except Exception:
        pass
_net = "none"
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _NEWNET, _NEWUSER = 0x40000000, 0x10000000
    if os.geteuid() == 0 and _libc.unshare(_NEWNET) == 0:
        _net = "namespace"
    elif os.geteuid() != 0:
        _uid, _gid = os.getuid(), os.getgid()
        if _libc.unshare(_NEWUSER | _NEWNET) == 0:
            _net = "namespace"
            for _f, _s in (("setgroups", "deny"), ("uid_map", f"{_uid} {_uid} 1"), ("gid_map", f"{_gid} {_gid} 1")):
                try:
                    with open(f"/proc/self/{_f}", "w") as _h:
                        _h.write(_s)
                except OSError:
                    pass
except Exception:
    pass
_uid_after = os.getuid()
if _cfg["drop_root"] and os.getuid() == 0:
    os.setgroups([])
    os.setgid(_cfg["nobody"])
    os.setuid(_cfg["nobody"])
    _uid_after = os.getuid()
_cpu = _cfg["cpu_s"]
for _lim, _val in ((resource.RLIMIT_AS, _cfg["memory"]), (resource.RLIMIT_CPU, _cpu),
                   (resource.RLIMIT_FSIZE, _cfg["fsize"]), (resource.RLIMIT_NOFILE, 64),
                   (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0)):
    try:
        resource.setrlimit(_lim, (_val, _val))
    except (ValueError, OSError):
        pass
def _no_net(*a, **k):
    raise PermissionError(errno.EACCES, "network access is disabled in the sandbox")
class _NoSocket:
    def __new__(cls, *a, **k):
        _no_net()
for _mod in (socket, sys.modules.get("_socket")):
    for _name in ("socket", "SocketType", "socketpair", "fromfd", "create_connection",
                  "create_server", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        if _mod is not None and hasattr(_mod, _name):
            setattr(_mod, _name, _NoSocket if _name in ("socket", "SocketType") else _no_net)
_status = "net=" + ("namespace" if _net == "namespace" else "patched") + f" uid={_uid_after}"
_cpu = _lim = _val = _mod = _name = _libc = None
try:
    os.write(_cfg["status_fd"], (_status + "\n").encode())
finally:
    os.close(_cfg["status_fd"])
if _cfg["argv"] is not None:
    try:
        os.execvp(_cfg["argv"][0], _cfg["argv"])
    except OSError as _e:
        sys.stderr.write(f"sandbox: cannot run {_cfg['argv'][0]!r}: {_e}\n")
        os._exit(127)
del _json
_code = open(_cfg["code"], encoding="utf-8").read()
sys.argv = ["<sandbox>"]
_g = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(compile(_code, "<sandbox>", "exec"), _g)
except MemoryError:
    sys.stdout.flush()
    sys.stderr.write("MemoryError\n")
    sys.stderr.flush()
    os._exit(__MEMORY_EXIT__)
except SystemExit:
    raise
except BaseException:
    import traceback
    traceback.print_exc()
    for _s in (sys.stdout, sys.stderr):
        try:
            _s.flush()
        except Exception:
            pass
    os._exit(1)
'''.replace("__MEMORY_EXIT__", str(MEMORY_EXIT))


@dataclass
class SandboxResult:
    """What a sandboxed run left behind.

    Parameters:
        stdout: its standard output (decoded as UTF-8, undecodable bytes replaced).
        stderr: its standard error.
        returncode: exit status; negative: killed by that signal.
        timed_out: killed at the wall-clock timeout (or by ``RLIMIT_CPU``).
        killed_for_memory: died of ``MemoryError`` under ``RLIMIT_AS``.
        network: how the network was cut: ``"namespace"`` (an empty network namespace),
            ``"patched"`` (only Python's socket functions disabled) or ``""`` (the bootstrap never
            reported, e.g. it was killed first).
    """

    stdout: str
    stderr: str
    returncode: int
    timed_out: bool
    killed_for_memory: bool
    network: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_sandboxed(code_or_argv: str | Sequence[str], *, timeout_s: float = 2.0, memory_mb: int = 256,
                  stdin: str | bytes | None = None, max_output_bytes: int = 1 << 20,
                  preload: Sequence[str] = (), drop_root: bool = True) -> SandboxResult:
    """Run Python source (a ``str``) or a command (a sequence of strings) in the sandbox described
    in the module docstring; returns its output and how it ended (never raises for what the code
    does).

    ``stdin`` is fed to the child's standard input; ``preload`` names further modules to import
    before root is dropped; ``drop_root=False`` keeps uid 0 when the parent is root (then
    ``RLIMIT_NPROC`` does not bind and the code can write root's files — for trusted commands only).
    """
    argv = None if isinstance(code_or_argv, str) else [str(a) for a in code_or_argv]
    if argv is not None and not argv:
        raise ValueError("an empty command")
    work = tempfile.mkdtemp(prefix="selfprm-sandbox-")
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    status_r, status_w = os.pipe()
    try:
        code_path = os.path.join(work, "main.py")
        if argv is None:
            with open(code_path, "w", encoding="utf-8") as f:
                f.write(code_or_argv)
        as_nobody = drop_root and os.geteuid() == 0
        if as_nobody:  # the child works in its temp dir as nobody
            os.chown(work, NOBODY, NOBODY)
            if argv is None:
                os.chmod(code_path, 0o644)
        cfg = {"preload": list(PRELOAD) + list(preload), "drop_root": drop_root, "nobody": NOBODY,
               "memory": int(memory_mb) << 20, "cpu_s": int(math.ceil(timeout_s)) + 1,
               "fsize": int(max_output_bytes), "status_fd": status_w, "argv": argv, "code": code_path}
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work}
        data = stdin.encode() if isinstance(stdin, str) else stdin
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _BOOTSTRAP, json.dumps(cfg)],
                                stdin=subprocess.PIPE if data is not None else subprocess.DEVNULL,
                                stdout=out_f, stderr=err_f, cwd=work, env=env, close_fds=True,
                                pass_fds=(status_w,), start_new_session=True)
        os.close(status_w)
        status_w = -1
        timed_out = not _wait_exited(proc, data, timeout_s)
        # the group is killed while the leader is still an unreaped zombie, so its id cannot have
        # been reused: on a timeout that ends the run, after an exit it ends anything left behind
        _kill_group(proc.pid)
        proc.wait()
        rc = proc.returncode
        status = _read_all(status_r).decode(errors="replace")
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode(errors="replace")
        stderr = err_f.read().decode(errors="replace")
    finally:
        if status_w >= 0:
            os.close(status_w)
        os.close(status_r)
        out_f.close()
        err_f.close()
        shutil.rmtree(work, ignore_errors=True)
    timed_out = timed_out or rc == -signal.SIGXCPU
    memory = rc == MEMORY_EXIT or (rc != 0 and stderr.rstrip().endswith("MemoryError"))
    network = "namespace" if "net=namespace" in status else ("patched" if "net=patched" in status else "")
    return SandboxResult(stdout, stderr, rc, timed_out, memory, network)


def _wait_exited(proc: subprocess.Popen, data: bytes | None, timeout_s: float) -> bool:
    """Feed ``data`` to the child's stdin and wait until it has exited — without reaping it — or
    ``timeout_s`` has passed; True when it exited in time."""
    if data is not None:
        def feed() -> None:
            try:
                proc.stdin.write(data)
            except (BrokenPipeError, OSError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        threading.Thread(target=feed, daemon=True).start()
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel): poll without reaping
        deadline = time.monotonic() + timeout_s
        pause = 0.0005
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return False
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
        return bool(ready)
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_all(fd: int) -> bytes:
    chunks = []
    os.set_blocking(fd, False)
    while True:
        try:
            b = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)
