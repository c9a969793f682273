"""A server of a two-server variant is SIGKILLed under load: no client sees a failure, the server
is ejected (counted), and once it is back the liveness probe re-admits it.

The kill happens at a quiet moment of the load loop (its requests are held back for the instant
of the kill): a request that Triton had already received when it died may have run, so the
gateway must not retry it, and the client would rightly see a 502. Everything sent after the
kill must succeed: pooled connections to the dead server are dropped, connects are refused
(nothing sent, so retried on the other server) and the server is ejected after three.
"""
import json
import os
import signal
import socket
import threading
import time

import pytest

from tests.gateway.gateway_support import (
    Client,
    LoadLoop,
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


def test_gateway_failover_loses_no_request_and_readmits_the_server(triton_fleet, disposable_triton, s3_client,
                                                                   tmp_path):
    survivor, victim = triton_fleet[0], disposable_triton
    name = unique("gwf")
    upload_versions(s3_client, name, {1: {}})
    load_model([survivor, victim], name, [1])
    data = table(1, [server_entry(1, survivor), server_entry(2, victim)],
                 [endpoint("team.ha", [variant("stable", 1, 100, name, [1, 2])])])
    gw = start_gateway(tmp_path, table_data=data, extra=["--probe-interval", "0.2"])
    loop = LoadLoop(gw.url, lambda c: c.infer("team.ha"), threads=4)
    try:
        served_by = lambda server: metric(gw.metrics(), REQUESTS, server=server.name)  # noqa: E731
        assert wait_until(lambda: served_by(victim) >= 50 and served_by(survivor) >= 50, timeout=20)

        loop.pause()
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait(10)
        time.sleep(0.1)  # the gateway sees its idle connections to the victim close
        before = served_by(victim)
        killed_at = time.monotonic()
        loop.resume()

        assert wait_until(lambda: loop.count_since(killed_at) >= 400, timeout=30)
        assert loop.failures() == []
        text = gw.metrics()
        assert metric(text, "switchyard_gateway_ejections_total", server=victim.name) == 1
        assert metric(text, REQUESTS, server=victim.name) == before
        assert metric(text, REQUESTS, code_class="5xx") == 0

        # Back up with its model: the probe re-admits it and it takes traffic again.
        loop.pause()
        victim.start()
        load_model([victim], name, [1])
        loop.resume()
        assert wait_until(lambda: served_by(victim) > before + 20, timeout=20)
        assert loop.failures() == []
    finally:
        loop.stop()
        gw.stop()
        unload_model([survivor], name)
    assert loop.failures() == []
    assert len(loop.results) > 500


class FakeUpstream:
    """A TCP server that reads each request and then either drops the connection without a word
    (a server that died with the request in hand) or never answers (a stuck one). It counts the
    requests it received."""

    def __init__(self, mode: str):
        self.mode = mode
        self.received = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            data += chunk
        self.received += 1
        if self.mode == "drop":
            conn.close()
        else:
            self.held.append(conn)

    def entry(self, sid):
        return {"id": sid, "name": f"fake-{self.mode}", "url": f"http://127.0.0.1:{self.port}", "healthy": True}

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_gateway_never_retries_a_sent_request_and_times_out_a_stuck_one(triton_fleet, s3_client, tmp_path):
    name = unique("gwr")
    upload_versions(s3_client, name, {1: {}})
    load_model([triton_fleet[0]], name, [1])
    drop, hang = FakeUpstream("drop"), FakeUpstream("hang")
    data = table(1, [server_entry(1, triton_fleet[0]), drop.entry(2), hang.entry(3)], [
        endpoint("team.drops", [variant("stable", 1, 100, name, [1, 2])]),
        endpoint("team.hangs", [variant("stable", 1, 100, name, [3])]),
    ])
    gw = start_gateway(tmp_path, table_data=data, extra=["--request-timeout", "0.5", "--probe-interval", "60"])
    try:
        client = Client(gw.url)
        statuses = []
        for _ in range(40):
            status, headers, body = client.infer("team.drops")
            statuses.append(status)
            if status != 200:
                assert status == 502 and "closed the connection" in json.loads(body)["error"]
                assert headers["x-switchyard-variant"] == "stable"
        # Each request the dropper received failed, and was not sent again to the healthy server:
        # it might have run. Its third failure ejected it; everything else went to Triton.
        assert drop.received == 3
        assert statuses.count(502) == 3
        assert statuses[-10:] == [200] * 10
        text = gw.metrics()
        assert metric(text, "switchyard_gateway_ejections_total", server="fake-drop") == 1
        assert metric(text, "switchyard_gateway_requests_total", server="fake-drop", code_class="5xx") == drop.received

        started = time.monotonic()
        status, _, body = client.infer("team.hangs")
        assert status == 504 and "did not answer within 0.5 s" in json.loads(body)["error"]
        assert 0.4 < time.monotonic() - started < 3.0
        assert hang.received == 1
    finally:
        gw.stop()
        drop.close()
        hang.close()
        unload_model([triton_fleet[0]], name)
