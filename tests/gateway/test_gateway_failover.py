"""A server of a two-server variant is SIGKILLed under load: no client sees a failure, the server
is ejected (counted), and once it is back the liveness probe re-admits it.

The kill lands while requests are in flight on the victim. Those were sent, but the dead server
never answered a byte of them, so the gateway runs them on the other server (inference through
the gateway is stateless). Everything sent after the kill succeeds too: pooled connections to
the dead server are dropped, connects are refused (nothing sent, so retried on the other server)
and the server is ejected after three failures.
"""
import os
import signal
import time

import pytest

from tests.gateway.gateway_support import (
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
        served_by = lambda server: metric(gw.metrics(), REQUESTS, server=server.name)
        assert wait_until(lambda: served_by(victim) >= 50 and served_by(survivor) >= 50, timeout=20)

        os.killpg(victim.process.pid, signal.SIGKILL)  # under load: requests are in flight on it
        killed_at = time.monotonic()
        victim.process.wait(10)
        time.sleep(0.2)  # the gateway has seen the victim's connections close
        before = served_by(victim)

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

