"""`switchyard gateway` / `python -m gateway`: the process model.

One worker is one process with one uvloop event loop, its own routing-table copy (its own
TableSource, reporting in as replica `<replica-id>/w<k>`), its own upstream pools and metrics.

With `--workers N > 1` the parent forks N workers and only supervises: each worker binds its own
listening socket with SO_REUSEPORT on the same port (the kernel spreads connections), a worker
that dies is started again, and SIGTERM or SIGINT stops them all gracefully (no new connections,
in-flight requests finish for up to `--grace` seconds).

Metrics across workers: a scrape lands on any one worker, so each worker also listens on a
private Unix socket `w<k>.sock` in a run directory that the parent creates (mode 0700) and
removes. The worker answering `/metrics` fetches the others' snapshots over those sockets (plain
JSON, only on a scrape), adds them to its own and renders the sum. Nothing is shared in memory, so
the hot path stays lock-free, and a worker that is restarting is merely missing from one scrape
(`switchyard_gateway_workers` says how many answered).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

from gateway import metrics as metrics_mod
from gateway.health import DEFAULT_EJECT_AFTER, DEFAULT_PROBE_INTERVAL, Health
from gateway.proxy import (
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_BODY,
    INTERNAL_SNAPSHOT,
    ClientConnection,
    Gateway,
)
from gateway.shadow import DEFAULT_LIMIT as DEFAULT_SHADOW_LIMIT
from gateway.shadow import Shadower
from gateway.tablesource import TableSource
from gateway.upstream import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_POOL_SIZE,
    DEFAULT_REQUEST_TIMEOUT,
    Upstreams,
)

log = logging.getLogger("gateway")

RESTART_BACKOFF_MAX = 5.0


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="switchyard gateway",
        description="The Switchyard inference gateway: Triton's HTTP/REST v2 API, routed by the routing table.",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--control-plane", default=env("SWITCHYARD_CONTROL_PLANE_URL"),
                   help="control plane base URL (env SWITCHYARD_CONTROL_PLANE_URL)")
    p.add_argument("--key", default=env("SWITCHYARD_GATEWAY_KEY"),
                   help="gateway key for the control plane (env SWITCHYARD_GATEWAY_KEY)")
    p.add_argument("--redis", default=env("REDIS_URL"), help="Redis URL for pushed tables (env REDIS_URL)")
    p.add_argument("--table-file", help="serve the routing table in this JSON file (read once)")
    p.add_argument("--poll-interval", type=float, default=None,
                   help="seconds between table polls (default 1, or 10 while Redis pushes)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY,
                   help=f"largest request body accepted; larger gets 413 (default {DEFAULT_MAX_BODY})")
    p.add_argument("--replica-id", help="replica id reported to the control plane (default hostname:port); "
                                        "each worker reports as <replica-id>/w<k>")
    p.add_argument("--advertise", help="address the control plane should show for this replica")
    p.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT,
                   help="seconds to wait for Triton's answer before a 504 (default 30)")
    p.add_argument("--connect-timeout", type=float, default=DEFAULT_CONNECT_TIMEOUT)
    p.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE,
                   help="connections per upstream server per worker (default 256)")
    p.add_argument("--eject-after", type=int, default=DEFAULT_EJECT_AFTER,
                   help="consecutive connection failures that take a server out (default 3)")
    p.add_argument("--probe-interval", type=float, default=DEFAULT_PROBE_INTERVAL,
                   help="seconds between liveness probes of an ejected server (default 0.5)")
    p.add_argument("--shadow-limit", type=int, default=DEFAULT_SHADOW_LIMIT,
                   help="shadow copies in flight per worker before copies are dropped (default 64)")
    p.add_argument("--keepalive-timeout", type=float, default=DEFAULT_KEEPALIVE_TIMEOUT,
                   help="seconds an idle client connection stays open (default 75)")
    p.add_argument("--startup-wait", type=float, default=5.0,
                   help="seconds to wait for a first table from the control plane before listening (default 5)")
    p.add_argument("--grace", type=float, default=5.0, help="seconds in-flight requests get at shutdown")
    p.add_argument("--log-level", default=env("SWITCHYARD_GATEWAY_LOG_LEVEL", "INFO"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.table_file is None and not args.control_plane:
        print("switchyard gateway: give --control-plane (or SWITCHYARD_CONTROL_PLANE_URL) or --table-file",
              file=sys.stderr)
        return 2
    if args.workers < 1:
        print("switchyard gateway: --workers must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    if args.port == 0 and args.workers > 1:
        print("switchyard gateway: --port 0 (any free port) works with one worker only", file=sys.stderr)
        return 2
    # SO_REUSEPORT would let this replica silently share a port with another process that also
    # set it; bind once without it first, so that a port in use is an error, not a split.
    try:
        listen_socket(args.host, args.port, reuse_port=False).close()
    except OSError as e:
        print(f"switchyard gateway: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 1
    if args.replica_id is None:
        args.replica_id = f"{socket.gethostname()}:{args.port}"
    if args.advertise is None:
        host = socket.gethostname() if args.host in ("0.0.0.0", "::", "") else args.host
        args.advertise = f"http://{host}:{args.port}"
    if args.workers == 1:
        return run_worker(args, 0, None, announce=True)
    return supervise(args)


# -- the parent ----------------------------------------------------------------------------------

def supervise(args) -> int:
    run_dir = tempfile.mkdtemp(prefix="switchyard-gateway-")
    ready_r, ready_w = os.pipe()
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    def spawn(index: int) -> None:
        first = ready_w >= 0  # a restarted worker has no one waiting for its byte
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                if first:
                    os.close(ready_r)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _die_with_parent()
                if os.getppid() != parent:  # it died before the line above took effect
                    os._exit(0)
                code = run_worker(args, index, run_dir, ready_fd=ready_w if first else None)
            except BaseException:
                logging.getLogger("gateway").exception("worker %d failed", index)
            finally:
                os._exit(code)
        children[pid] = index

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for k in range(args.workers):
            spawn(k)
        os.close(ready_w)
        ready_w = -1
        # Every worker writes one byte once it listens.
        got, deadline = 0, time.monotonic() + 60
        while got < args.workers and time.monotonic() < deadline and not stopping:
            try:
                chunk = os.read(ready_r, args.workers - got)
            except InterruptedError:
                continue
            if not chunk:
                break
            got += len(chunk)
        if got < args.workers:
            print(f"switchyard gateway: only {got} of {args.workers} workers started", file=sys.stderr)
            stopping = True
        else:
            print(f"switchyard gateway listening on http://{args.host}:{args.port} "
                  f"({args.workers} workers, pid {os.getpid()})", flush=True)
        os.close(ready_r)

        backoff: dict[int, float] = {}
        while not stopping:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                time.sleep(0.1)
                continue
            index = children.pop(pid, None)
            if index is None or stopping:
                continue
            delay = backoff.get(index, 0.0)
            log.warning("worker %d (pid %d) exited with status %d; starting it again%s", index, pid, status,
                        f" in {delay:.1f} s" if delay else "")
            if delay:
                time.sleep(delay)
            backoff[index] = min(RESTART_BACKOFF_MAX, max(0.2, delay * 2))
            spawn(index)
        return 0 if got == args.workers else 1
    finally:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                children.pop(pid, None)
        deadline = time.monotonic() + args.grace + 3.0
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                children.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        shutil.rmtree(run_dir, ignore_errors=True)


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the parent dies (even by SIGKILL), rather than serving on
    unsupervised, holding the port. Best effort elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# -- one worker ------------------------------------------------------------------------------------

def run_worker(args, index: int, run_dir: str | None, *, announce: bool = False, ready_fd: int | None = None) -> int:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(args, index, run_dir, announce=announce, ready_fd=ready_fd))


def listen_socket(host: str, port: int, *, reuse_port: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


async def _serve(args, index: int, run_dir: str | None, *, announce: bool, ready_fd: int | None) -> int:
    loop = asyncio.get_running_loop()
    metrics = metrics_mod.Metrics()
    upstreams = Upstreams(loop, pool_size=args.pool_size, connect_timeout=args.connect_timeout,
                          request_timeout=args.request_timeout)
    health = Health(loop, metrics, eject_after=args.eject_after, probe_interval=args.probe_interval)
    shadower = Shadower(loop, upstreams, health, metrics, limit=args.shadow_limit)

    def stats() -> dict:
        return {"worker": index, "pid": os.getpid(), "in_flight": metrics.in_flight,
                "requests": sum(metrics.requests.values()), "ejected": sorted(health.ejected)}

    source = TableSource(control_plane=args.control_plane or None, key=args.key, redis_url=args.redis or None,
                         table_file=args.table_file, poll_interval=args.poll_interval,
                         replica_id=f"{args.replica_id}/w{index}", address=args.advertise, stats=stats,
                         trips=lambda: gw.guards.report())
    workers = args.workers if run_dir else 1
    gw = Gateway(loop, source=source, upstreams=upstreams, health=health, shadower=shadower, metrics=metrics,
                 max_body=args.max_body_bytes,
                 collect_metrics=(lambda: _collect(run_dir, index, workers)) if run_dir else None)

    def on_swap(old, new) -> None:
        # Requests still holding the old table may reach a dropped server once more; pool() and
        # the health state simply start afresh for it.
        upstreams.forget_others(new.servers)
        health.forget_others(new.servers)
        gw.table_swapped(old, new)

    source.on_swap.append(on_swap)
    try:
        await source.start()
    except (OSError, ValueError) as e:  # an unreadable or invalid --table-file (TableError is a ValueError)
        print(f"switchyard gateway: cannot serve {args.table_file}: {e}", file=sys.stderr, flush=True)
        return 1
    upstreams.start()
    # Give the first poll or push a moment, so that a fresh replica rarely answers 503; it listens
    # (live, not ready) either way, and serves the table as soon as one arrives.
    deadline = loop.time() + args.startup_wait
    while not source.has_table and loop.time() < deadline:
        await asyncio.sleep(0.02)

    sweeper = loop.create_task(gw.sweep_idle(args.keepalive_timeout))
    sock = listen_socket(args.host, args.port)
    server = await loop.create_server(lambda: ClientConnection(gw), sock=sock)
    internal = None
    if run_dir:
        os.makedirs(run_dir, mode=0o700, exist_ok=True)  # gone if every worker had stopped on its own
        path = os.path.join(run_dir, f"w{index}.sock")
        if os.path.exists(path):
            os.unlink(path)  # a previous incarnation of this worker
        internal = await loop.create_unix_server(lambda: ClientConnection(gw, internal=True), path=path)

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if announce:
        port = sock.getsockname()[1]
        print(f"switchyard gateway listening on http://{args.host}:{port} (1 worker, pid {os.getpid()})", flush=True)
    if ready_fd is not None:
        os.write(ready_fd, b"1")
        os.close(ready_fd)

    await stop.wait()

    # Graceful stop: no new connections; idle keep-alive connections close; each busy one closes
    # after its current answer; in-flight requests get `grace` seconds.
    server.close()
    gw.close_idle()
    deadline = loop.time() + args.grace
    while (metrics.in_flight or any(c.busy for c in gw.connections)) and loop.time() < deadline:
        await asyncio.sleep(0.02)
    await shadower.drain(max(0.0, deadline - loop.time()))
    shadower.close()
    for conn in list(gw.connections):
        if conn.transport is not None:
            conn.transport.close()
    sweeper.cancel()
    if internal is not None:
        internal.close()
        # The parent removes the run directory, but if it was killed the last worker out does.
        for remove in (os.unlink, os.rmdir):
            try:
                remove(path if remove is os.unlink else run_dir)
            except OSError:
                pass
    health.close()
    upstreams.close()
    await source.stop()
    return 0


async def _collect(run_dir: str, index: int, workers: int) -> list[dict]:
    """The other workers' metrics snapshots, over their Unix sockets (skipping any that do not answer)."""
    async def one(k: int) -> dict | None:
        path = os.path.join(run_dir, f"w{k}.sock")
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 1.0)
        except (TimeoutError, OSError):
            return None
        try:
            writer.write(f"GET {INTERNAL_SNAPSHOT} HTTP/1.1\r\nHost: w{k}\r\nConnection: close\r\n\r\n".encode())
            data = await asyncio.wait_for(reader.read(), 2.0)
            head, _, body = data.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                return None
            return json.loads(body)
        except (TimeoutError, OSError, ValueError):
            return None
        finally:
            writer.close()

    results = await asyncio.gather(*(one(k) for k in range(workers) if k != index))
    return [r for r in results if r is not None]
