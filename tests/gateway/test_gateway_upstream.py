"""What the gateway sends upstream, and what it does when an upstream misbehaves, against fake
upstream servers (plain sockets) beside a real tritonserver: what Triton receives (path, headers,
body), a request that was dropped unanswered (retried elsewhere), one cut off mid-answer (502,
never retried), and a real Triton too slow to answer in time (504, never retried)."""
import json
import threading
import urllib.request
import time

import pytest

from tests.gateway.gateway_support import (
    Client,
    FakeUpstream,
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


def test_gateway_rewrites_the_path_and_keeps_client_credentials_and_hop_by_hop_headers_away(tmp_path):
    echo = FakeUpstream("echo")
    data = table(1, [echo.entry(1)], [
        endpoint("team.echo", [variant("stable", 3, 100, "team-model.v1", [1])], sticky={"header": "X-User-Id"}),
    ])
    gw = start_gateway(tmp_path, table_data=data)
    try:
        client = Client(gw.url)
        status, headers, body = client.request(
            "POST", "/v2/models/team.echo/infer?x=1", b'{"inputs": []}',
            {"Authorization": "Bearer sy_secret", "X-User-Id": "u1", "Inference-Header-Content-Length": "14",
             "Keep-Alive": "timeout=9", "TE": "trailers", "Proxy-Authorization": "Basic abc",
             "X-Switchyard-Variant": "stable", "X-Request-Id": "r-1", "Accept-Encoding": "gzip"})
        assert status == 200
        seen = json.loads(body)
        # Triton sees the variant's model and version, whatever the client called it.
        assert seen["line"] == "POST /v2/models/team-model.v1/versions/3/infer HTTP/1.1"
        names = [k.lower() for k, _ in seen["headers"]]
        sent = {k.lower(): v for k, v in seen["headers"]}
        assert sent["host"] == echo.url.removeprefix("http://")
        assert sent["content-length"] == "14" and seen["body_length"] == 14
        assert sent["inference-header-content-length"] == "14"
        assert sent["x-user-id"] == "u1" and sent["x-request-id"] == "r-1" and sent["accept-encoding"] == "gzip"
        for hidden in ("authorization", "proxy-authorization", "keep-alive", "te", "connection",
                       "x-switchyard-variant"):
            assert hidden not in names, hidden
        assert names.count("host") == 1 and names.count("content-length") == 1
        # The upstream's own headers come back, less its hop-by-hop ones, plus the variant's.
        assert headers["x-upstream"] == "fake" and "keep-alive" not in headers
        assert (headers["x-switchyard-variant"], headers["x-switchyard-version"]) == ("stable", "3")
        # One keep-alive upstream connection serves request after request.
        for _ in range(5):
            assert client.get("/v2/models/team.echo")[0] == 200
        assert json.loads(client.get("/v2/models/team.echo/versions/3/ready")[2])["line"] == (
            "GET /v2/models/team-model.v1/versions/3/ready HTTP/1.1")
        assert len(echo.received) == 7 and echo.connections == 1
    finally:
        gw.stop()
        echo.close()


def test_gateway_retries_an_unanswered_request_never_a_cut_off_one_and_times_out_a_stuck_one(
        triton_fleet, s3_client, tmp_path):
    name = unique("gwr")
    # Version 2 is the real test model taking 2 s per request: a real Triton that is too slow.
    upload_versions(s3_client, name, {1: {}, 2: {"latency_ms": 2000}})
    load_model([triton_fleet[0]], name, [1, 2])
    # Dropping a request unanswered or cutting an answer off halfway is what a real Triton cannot
    # be made to do on demand: those two are stand-in TCP servers.
    drop, half = FakeUpstream("drop"), FakeUpstream("half")
    data = table(1, [server_entry(1, triton_fleet[0]), drop.entry(2), half.entry(3)], [
        endpoint("team.drops", [variant("stable", 1, 100, name, [1, 2])]),
        endpoint("team.halves", [variant("stable", 1, 100, name, [1, 3])]),
        endpoint("team.hangs", [variant("slow", 2, 100, name, [1])]),
    ])
    gw = start_gateway(tmp_path, table_data=data, extra=["--request-timeout", "0.5", "--probe-interval", "60"])
    try:
        client = Client(gw.url)
        # Dropped without a byte of answer: no answer was started, so the request goes to Triton,
        # and the client never knows. The third drop ejects the dropper.
        statuses = [client.infer("team.drops")[0] for _ in range(40)]
        assert statuses == [200] * 40
        assert len(drop.received) == 3
        text = gw.metrics()
        assert metric(text, "switchyard_gateway_ejections_total", server="fake-drop") == 1
        assert metric(text, "switchyard_gateway_requests_total", code_class="5xx") == 0

        # Cut off in the middle of an answer: that server ran it, so it is a 502, never sent again.
        statuses = []
        for _ in range(40):
            status, headers, body = client.infer("team.halves")
            statuses.append(status)
            if status != 200:
                assert status == 502 and "in the middle of its answer" in json.loads(body)["error"]
                assert headers["x-switchyard-variant"] == "stable"
        assert len(half.received) == statuses.count(502) == 3
        assert statuses[-10:] == [200] * 10
        text = gw.metrics()
        assert metric(text, "switchyard_gateway_ejections_total", server="fake-half") == 1
        assert metric(text, "switchyard_gateway_requests_total", server="fake-half", code_class="5xx") == 3

        started = time.monotonic()
        status, _, body = client.infer("team.hangs")
        assert status == 504 and "did not answer within 0.5 s" in json.loads(body)["error"]
        assert 0.4 < time.monotonic() - started < 1.9  # well before Triton's 2 s answer
        # Triton got it once and ran it to the end; the gateway did not send it again.
        assert wait_until(lambda: triton_successes(triton_fleet[0], name, 2) == 1, timeout=10)
        time.sleep(0.5)
        assert triton_successes(triton_fleet[0], name, 2) == 1
    finally:
        gw.stop()
        for fake in (drop, half):
            fake.close()
        unload_model([triton_fleet[0]], name)


def triton_successes(server, name: str, version: int) -> int:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{name}/versions/{version}/stats", timeout=10) as response:
        (stats,) = json.load(response)["model_stats"]
    return int(stats["inference_stats"]["success"]["count"])


def test_gateway_table_switch_keeps_in_flight_requests_on_a_dropped_server(tmp_path):
    old, new = FakeUpstream("slow"), FakeUpstream("echo")
    v1 = table(1, [old.entry(1)], [endpoint("team.move", [variant("blue", 1, 100, "m", [1])])])
    v2 = table(2, [new.entry(2)], [endpoint("team.move", [variant("green", 1, 100, "m", [2])])])
    server = TableServer(v1)
    gw = start_gateway(tmp_path, control_plane=server.url)
    try:
        answers = []
        in_flight = [threading.Thread(target=lambda: answers.append(Client(gw.url).get("/v2/models/team.move")))
                     for _ in range(3)]
        for t in in_flight:
            t.start()
        assert wait_until(lambda: len(old.received) == 3, timeout=5)
        server.set(v2)  # polled within 0.1 s, while the three wait on the old server (0.5 s)
        assert wait_until(lambda: Client(gw.url).get("/v2/models/team.move")[1]["x-switchyard-variant"] == "green",
                          timeout=5)
        for t in in_flight:
            t.join(10)
        # The requests that started on the old table finished there, unharmed.
        assert [(s, h["x-switchyard-variant"]) for s, h, _ in answers] == [(200, "blue")] * 3
        # Then the dropped server's pool was retired: its connections closed once idle (the three,
        # and any a request made before the poll saw the switch).
        assert wait_until(lambda: old.closed == old.connections >= 3, timeout=5), (old.closed, old.connections)
        assert len(new.received) >= 1
    finally:
        gw.stop()
        server.stop()
        old.close()
        new.close()


def test_gateway_limits_request_heads_and_closes_idle_connections(tmp_path):
    import socket

    echo = FakeUpstream("echo")
    gw = start_gateway(tmp_path, table_data=table(1, [echo.entry(1)], [
        endpoint("team.echo", [variant("stable", 1, 100, "m", [1])])]), extra=["--keepalive-timeout", "0.5"])
    try:
        host, port = "127.0.0.1", gw.port
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"GET /v2/models/team.echo HTTP/1.1\r\nHost: gw\r\n"
                         + b"X-Filler: " + b"x" * 70_000 + b"\r\n\r\n")
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 431 ") and b"headers larger than" in answer
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"GET /v2/models/" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 414 ")
        assert echo.received == []

        # HEAD answers carry no body, so the next answer on the connection still parses.
        client = Client(gw.url)
        for path, status in (("/v2/health/live", 200), ("/v2/models/team.echo", 405), ("/nothing", 404)):
            got, headers, body = client.request("HEAD", path)
            assert (got, body) == (status, b"") and "content-length" in headers
        assert client.get("/v2/health/ready")[0] == 200
        assert echo.received == []

        # An idle keep-alive connection, and one that never finishes its head, are closed.
        with socket.create_connection((host, port)) as idle, socket.create_connection((host, port)) as stuck:
            idle.sendall(b"GET /v2/models/team.echo HTTP/1.1\r\nHost: gw\r\n\r\n")
            stuck.sendall(b"GET /v2/models/team.echo HTTP/1.1\r\nHost: g")
            idle.settimeout(5)
            stuck.settimeout(5)
            first = idle.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ")
            started = time.monotonic()
            assert idle.recv(65536) == b"" and stuck.recv(65536) == b""
            assert time.monotonic() - started < 3.0
        assert len(echo.received) == 1
    finally:
        gw.stop()
        echo.close()


def test_gateway_a_kept_alive_connection_closed_under_a_request_gets_one_more_try(tmp_path):
    # The request goes out on a kept-alive connection (the gateway's fast path). The server closes
    # it unanswered, as a server does with a connection it had just let go: the only server of the
    # variant gets one more try, on a new connection. Never answered at all is a 504, not retried.
    drop, hang, spare = FakeUpstream("echo-then-drop"), FakeUpstream("echo-then-hang"), FakeUpstream("echo")
    data = table(1, [drop.entry(1), hang.entry(2), spare.entry(3)], [
        endpoint("team.drops", [variant("stable", 1, 100, "m", [1])]),
        endpoint("team.hangs", [variant("stable", 1, 100, "m", [2])]),
    ])
    gw = start_gateway(tmp_path, table_data=data, extra=["--request-timeout", "0.5"])
    try:
        client = Client(gw.url)
        assert client.get("/v2/models/team.drops")[0] == 200
        status, headers, body = client.get("/v2/models/team.drops")
        assert status == 200 and json.loads(body)["line"] == "GET /v2/models/m/versions/1 HTTP/1.1"
        assert headers["x-switchyard-variant"] == "stable"
        assert (len(drop.received), drop.connections) == (3, 2)

        assert client.get("/v2/models/team.hangs")[0] == 200
        started = time.monotonic()
        status, _, body = client.get("/v2/models/team.hangs")
        assert status == 504 and "did not answer within 0.5 s" in json.loads(body)["error"]
        assert 0.4 < time.monotonic() - started < 3.0
        assert (len(hang.received), hang.connections) == (2, 1)
        # The client's connection carries on.
        assert client.get("/v2/health/live")[0] == 200
        text = gw.metrics()
        assert metric(text, "switchyard_gateway_requests_total", server="fake-echo-then-drop", code_class="5xx") == 0
        assert metric(text, "switchyard_gateway_requests_total", server="fake-echo-then-hang", code_class="5xx") == 1
        assert metric(text, "switchyard_gateway_in_flight_requests") == 0
        assert spare.received == []
    finally:
        gw.stop()
        for fake in (drop, hang, spare):
            fake.close()


def test_gateway_sigterm_finishes_requests_in_flight(tmp_path):
    import signal
    import socket

    slow = FakeUpstream("slow")  # answers after 0.5 s
    data = table(1, [slow.entry(1)], [endpoint("team.slow", [variant("stable", 1, 100, "m", [1])])])
    try:
        for workers in (1, 2):
            slow.received.clear()
            gw = start_gateway(tmp_path, table_data=data, workers=workers)
            try:
                answers = []

                def call(url=gw.url, answers=answers):
                    answers.append(Client(url).get("/v2/models/team.slow"))

                clients = [threading.Thread(target=call) for _ in range(4)]
                for t in clients:
                    t.start()
                assert wait_until(lambda: len(slow.received) == 4, timeout=5)
                gw.process.send_signal(signal.SIGTERM)  # all four are waiting on the upstream
                for t in clients:
                    t.join(10)
                # Everything already on its way was answered; then the process exited cleanly and
                # the port no longer takes connections.
                assert [s for s, _, _ in answers] == [200] * 4
                assert gw.process.wait(10) == 0
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", gw.port), timeout=2).close()
            finally:
                gw.stop()
    finally:
        slow.close()
