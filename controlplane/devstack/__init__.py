"""Local stand-ins for the outside world: moto's S3 server and real tritonserver processes.

Plain Python with no Django imports, shared by the pytest fixtures and the demo runner.
Every process started here runs in its own process group and is remembered, so that an
interpreter exit stops whatever the caller forgot (`atexit` is the last line of defence,
not the plan).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

LOOPBACK = "127.0.0.1"

_live: set[subprocess.Popen] = set()
_live_lock = threading.Lock()


def free_ports(count: int = 1, *, host: str = LOOPBACK) -> list[int]:
    """Distinct free TCP ports on `host` (held open together so they cannot repeat)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the port now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def spawn(cmd: list[str], *, log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start `cmd` in a new process group, appending stdout and stderr to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True,
        )
    with _live_lock:
        _live.add(proc)
    return proc


def stop_process_group(proc: subprocess.Popen | None, *, grace: float = 5.0) -> None:
    """SIGTERM the process group, wait up to `grace` seconds, then SIGKILL it. Idempotent."""
    if proc is None:
        return
    try:
        if not has_exited(proc):
            _signal_group(proc, signal.SIGTERM)
            wait_until(lambda: has_exited(proc), timeout=grace)
        # Children (Triton's Python backend stubs) share the group. The leader is not reaped
        # yet (see has_exited), so its pid cannot have been reused for another group.
        if proc.returncode is None:
            _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        with _live_lock:
            _live.discard(proc)


def has_exited(proc: subprocess.Popen) -> bool:
    """Whether the process has exited, without reaping it (keeps its group id reserved)."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere
        return True


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def http_ok(url: str, *, timeout: float = 1.0) -> bool:
    """Whether a GET of `url` answers 200: the readiness check of every local server here."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@atexit.register
def stop_all() -> None:
    """Stop every process started through spawn() that is still running."""
    with _live_lock:
        leftovers = list(_live)
    for proc in leftovers:
        stop_process_group(proc, grace=2.0)
