"""The Prometheus client: parsing (of answers captured from a real Prometheus), the step choice,
the errors, and live calls to a real Prometheus, a closed port and a server that never answers."""
import itertools
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from controlplane.metrics import client as c
from controlplane.metrics.client import (
    MetricsNotConfigured,
    PrometheusClient,
    PrometheusError,
    PrometheusUnavailable,
)
from tests.metrics.static_prometheus import rule, start_static_prometheus

# Answers of a real Prometheus (Debian's 2.42.0), captured by running it on the queries named in
# each entry: the parser is tested on what Prometheus sends, not on JSON written by hand.
CAPTURED = json.loads((Path(__file__).parent / "prometheus_answers.json").read_text())
CLOSED = "http://127.0.0.1:9"  # nothing listens on the discard port


# -- parsing ------------------------------------------------------------------------------------


def test_parse_a_vector():
    got = c.parse_vector(CAPTURED["vector"]["body"]["data"])
    values = {v.labels["handler"]: v.value for v in got}
    assert values["/-/ready"] == 0.0 and values["/metrics"] == 1.0  # a zero rate is a value
    assert values["/api/v1/query"] == pytest.approx(1.472)
    assert all(isinstance(v.at, float) and v.at > 1.7e9 for v in got)


def test_an_empty_vector_is_no_data():
    assert c.parse_vector(CAPTURED["vector_empty"]["body"]["data"]) == []


def test_nan_and_infinity_read_as_none_never_zero():
    assert [v.value for v in c.parse_vector(CAPTURED["vector_nan"]["body"]["data"])] == [None]
    assert [v.value for v in c.parse_vector(CAPTURED["vector_inf"]["body"]["data"])] == [None]


def test_parse_a_scalar():
    assert [(v.labels, v.value) for v in c.parse_vector(CAPTURED["scalar"]["body"]["data"])] == [({}, 2.5)]


def test_parse_a_matrix():
    lines = c.parse_matrix(CAPTURED["matrix"]["body"]["data"])
    assert len(lines) == 3
    for line in lines:
        times = [t for t, _ in line.points]
        assert all(b - a == 2 for a, b in itertools.pairwise(times))  # in order, one a step (2 s)
        assert all(isinstance(v, float) for _, v in line.points)
    assert c.parse_matrix(CAPTURED["matrix_empty"]["body"]["data"]) == []


def test_a_vector_where_a_matrix_is_expected_is_an_error():
    with pytest.raises(PrometheusError):
        c.parse_matrix(CAPTURED["vector"]["body"]["data"])
    with pytest.raises(PrometheusError):
        c.parse_vector(CAPTURED["matrix"]["body"]["data"])


# -- step choice ----------------------------------------------------------------------------------


@pytest.mark.parametrize("range_s, step", [(900, 5), (3600, 5), (86400, 120), (7 * 86400, 900), (30 * 86400, 3600)])
def test_step_for_the_chart_ranges(range_s, step):
    assert c.choose_step(range_s) == step
    start, end = c.aligned_range(range_s, step, now=1_796_000_123.4)
    assert start % step == 0 and end % step == 0 and end <= 1_796_000_123.4
    assert (end - start) // step + 1 <= c.MAX_POINTS


@pytest.mark.parametrize("range_s", [1, 59, 900, 4000, 10**5, 10**6, 10**7, 10**9])
def test_a_chart_never_asks_for_more_than_max_points(range_s):
    step = c.choose_step(range_s)
    assert range_s / step + 1 <= c.MAX_POINTS and step >= c.MIN_STEP


def test_step_choice_refuses_nonsense():
    with pytest.raises(ValueError):
        c.choose_step(0)
    with pytest.raises(ValueError):
        c.choose_step(100, max_points=1)


def test_the_aligned_range_is_stable_within_a_step():
    assert c.aligned_range(3600, 5, now=1000.0) == c.aligned_range(3600, 5, now=1004.9) == (-2600, 1000)


# -- settings -------------------------------------------------------------------------------------


def test_not_configured(settings):
    settings.SWITCHYARD_PROMETHEUS_URL = ""
    with pytest.raises(MetricsNotConfigured):
        c.client_from_settings()
    settings.SWITCHYARD_PROMETHEUS_URL = "http://127.0.0.1:9090/prom/"
    settings.SWITCHYARD_PROMETHEUS_TIMEOUT_SECONDS = 0.7
    client = c.client_from_settings()
    assert client.url == "http://127.0.0.1:9090/prom" and client.timeout == 0.7
    assert c.client_from_settings(max_timeout=0.2).timeout == 0.2
    assert c.client_from_settings(max_timeout=5).timeout == 0.7


def test_a_bad_url_is_refused():
    with pytest.raises(ValueError):
        PrometheusClient("ftp://x")


# -- live -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    server = start_static_prometheus(tmp_path_factory.mktemp("prom-client"), [
        rule("switchyard:gateway_requests:rate1m", 2.5, endpoint="vision.a", variant="blue", version="1"),
        rule("switchyard:gateway_requests:rate1m", 0.0, endpoint="vision.a", variant="green", version="2"),
    ])
    time.sleep(2.2)  # a few evaluations, for the range query
    yield server
    server.stop()


def test_instant_query_against_prometheus(prom):
    client = PrometheusClient(prom.url)
    got = client.query('switchyard:gateway_requests:rate1m{endpoint="vision.a"}')
    assert {v.labels["variant"]: v.value for v in got} == {"blue": 2.5, "green": 0.0}  # zero is a value
    assert client.query('switchyard:gateway_requests:rate1m{endpoint="nobody"}') == []  # no data is no series
    at = time.time() - 1
    assert all(abs(v.at - at) < 0.01 for v in client.query("switchyard:gateway_requests:rate1m", at=at))


def test_range_query_against_prometheus(prom):
    client = PrometheusClient(prom.url)
    end = int(time.time())
    lines = client.query_range('switchyard:gateway_requests:rate1m{variant="blue"}', start=end - 2, end=end, step=1)
    assert len(lines) == 1 and lines[0].labels["variant"] == "blue"
    assert [v for _, v in lines[0].points][-1] == 2.5
    assert [t for t, _ in lines[0].points] == sorted(t for t, _ in lines[0].points)
    with pytest.raises(ValueError):
        client.query_range("up", start=0, end=10**6, step=1)  # refused before asking: too many points


def test_prometheus_error_text_is_kept(prom):
    with pytest.raises(PrometheusError) as info:
        PrometheusClient(prom.url).query("sum(up")
    assert info.value.error_type == "bad_data" and info.value.status == 400
    assert "unclosed left parenthesis" in info.value.message
    assert not isinstance(info.value, PrometheusUnavailable)


def test_a_closed_port_is_unavailable_at_once():
    started = time.monotonic()
    with pytest.raises(PrometheusUnavailable) as info:
        PrometheusClient(CLOSED, timeout=2).query("up")
    assert time.monotonic() - started < 0.5
    assert "refused" in info.value.message.lower()


def test_a_server_that_never_answers_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections (the kernel does), never reads nor answers
    try:
        started = time.monotonic()
        with pytest.raises(PrometheusUnavailable) as info:
            PrometheusClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.3).query("up")
        assert 0.25 < time.monotonic() - started < 1.0
        assert "0.3" in info.value.message
    finally:
        listener.close()


class _Canned(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, str, bytes]]] = {}

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, ctype, body = self.answers[self.path]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_what_a_proxy_or_another_server_may_answer(canned):
    url = f"http://127.0.0.1:{canned.server_address[1]}"
    timeout_body = json.dumps(CAPTURED["error_execution"]["body"]).encode()
    _Canned.answers = {
        "/a/api/v1/query": (502, "text/html", b"<html>bad gateway</html>"),
        "/b/api/v1/query": (200, "text/html", b"<html>not prometheus</html>"),
        "/c/api/v1/query": (422, "application/json", timeout_body),
        "/d/api/v1/query": (503, "application/json", json.dumps({"status": "error", "errorType": "timeout",
                                                                  "error": "query timed out in expression evaluation"}).encode()),
    }
    with pytest.raises(PrometheusUnavailable):
        PrometheusClient(f"{url}/a").query("up")
    with pytest.raises(PrometheusError, match="not a Prometheus answer"):
        PrometheusClient(f"{url}/b").query("up")
    with pytest.raises(PrometheusError, match="same labelset") as info:
        PrometheusClient(f"{url}/c").query("up")
    assert info.value.error_type == "execution"
    with pytest.raises(PrometheusError, match="timed out"):
        PrometheusClient(f"{url}/d").query("up")
