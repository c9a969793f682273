"""`--workers 2`: both workers serve one port (SO_REUSEPORT), each reports in as its own replica,
/metrics on either one sums both, a killed worker is started again, and SIGTERM stops them all."""
import http.client
import json
import os
import signal
from pathlib import Path

import pytest

from tests.gateway.gateway_support import (
    INFER_BODY,
    TableServer,
    endpoint,
    load_model,
    metric,
    server_entry,
    start_gateway,
    table,
    unique,
    unload_model,
    upload_versions,
    variant,
    wait_until,
)

pytestmark = pytest.mark.integration

REQUESTS = "switchyard_gateway_requests_total"


def fresh_connection_infer(port: int) -> int:
    # A new connection each time, so the kernel picks a worker each time.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v2/models/team.work/infer", body=INFER_BODY, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_gateway_two_workers_share_the_port_and_sum_their_metrics(triton_fleet, s3_client, tmp_path):
    name = unique("gww")
    upload_versions(s3_client, name, {1: {}})
    load_model([triton_fleet[0]], name, [1])
    server = TableServer(table(1, [server_entry(1, triton_fleet[0])],
                               [endpoint("team.work", [variant("stable", 1, 100, name, [1])])]))
    gw = start_gateway(tmp_path, control_plane=server.url, workers=2, extra=["--replica-id", "gw-test"])
    try:
        statuses = [fresh_connection_infer(gw.port) for _ in range(200)]
        assert statuses == [200] * 200

        # Each worker reports in as its own replica, with what it served.
        def served_by_worker():
            reports = {rid: r for rid, r in server.reports.items() if rid.startswith("gw-test/")}
            return {rid: r["stats"]["requests"] for rid, r in reports.items()}

        assert wait_until(lambda: set(served_by_worker()) == {"gw-test/w0", "gw-test/w1"}
                          and sum(served_by_worker().values()) == 200, timeout=10), server.reports
        assert all(n > 0 for n in served_by_worker().values()), served_by_worker()

        # Whichever worker answers the scrape, it counts both workers' requests.
        for _ in range(6):
            text = gw.metrics()
            assert metric(text, REQUESTS, endpoint="team.work", code_class="2xx") == 200
            assert metric(text, "switchyard_gateway_workers") == 2
            assert metric(text, "switchyard_gateway_request_duration_seconds_count", endpoint="team.work") == 200
            assert metric(text, "switchyard_gateway_table_version") == 1

        # A worker that dies is started again, and the port keeps answering meanwhile.
        victim = server.reports["gw-test/w1"]["stats"]["pid"]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: server.reports["gw-test/w1"]["stats"]["pid"] != victim, timeout=15)
        assert [fresh_connection_infer(gw.port) for _ in range(20)] == [200] * 20
        assert wait_until(lambda: metric(gw.metrics(), "switchyard_gateway_workers") == 2, timeout=10)
    finally:
        code = gw.stop()
        server.stop()
        unload_model([triton_fleet[0]], name)
    assert code == 0  # SIGTERM: every worker stopped gracefully


def test_gateway_refuses_a_port_in_use_and_a_broken_table_file(tmp_path):
    # SO_REUSEPORT must not let a second replica silently share a port with someone else.
    import socket
    import subprocess
    import sys

    from tests.gateway.gateway_support import ROOT

    path = tmp_path / "table.json"
    path.write_text(json.dumps(table(1, [], [])))
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        for workers in ("1", "2"):
            result = subprocess.run(
                [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port), "--workers", workers,
                 "--table-file", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
            assert result.returncode == 1
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    # A table file that breaks the contract stops the start, with a one-line reason.
    path.write_text(json.dumps({"format": 1, "version": 1}))
    for workers in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", "0" if workers == "1" else str(port),
             "--workers", workers, "--table-file", str(path)], cwd=ROOT, capture_output=True, text=True, timeout=30,
            check=False)
        assert result.returncode == 1
        assert f"cannot serve {path}" in result.stderr and "missing keys" in result.stderr
        assert "Traceback" not in result.stderr


def unix_socket_paths(pid: int) -> list[Path]:
    """The paths of the Unix sockets process `pid` holds (its fds' inodes, in /proc/net/unix)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes:
            paths.append(Path(fields[7]))
    return paths


def test_gateway_workers_die_with_a_killed_supervisor(tmp_path):
    from tests.gateway.gateway_support import start_gateway, wait_until

    gw = start_gateway(tmp_path, table_data=table(1, [], []), workers=2)
    try:
        parent = gw.process.pid
        workers = [int(p) for p in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]
        assert len(workers) == 2
        [run_dir] = {p.parent for p in unix_socket_paths(workers[0]) if p.name == "w0.sock"}
        assert run_dir.name.startswith("switchyard-gateway-") and sorted(os.listdir(run_dir)) == ["w0.sock", "w1.sock"]
        os.kill(parent, signal.SIGKILL)
        gw.process.wait(10)

        def gone(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            # A zombie is gone too (reaped by init); look at its state.
            return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")

        assert wait_until(lambda: all(gone(p) for p in workers), timeout=10)
        # The last worker out removed the run directory its killed parent could not.
        assert wait_until(lambda: not run_dir.exists(), timeout=5)
    finally:
        gw.stop()
