"""The gateway in front of the real fleet: an unchanged tritonclient, weights, access and bad input.

One gateway subprocess (from --table-file) serves one test model, versions 1 and 2 loaded side by
side on both fleet servers (OUTPUT0 = INPUT0 * 2, VERSION = the version number).
"""
import gzip
import json
import time

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.gateway.gateway_support import (
    INFER_BODY,
    Client,
    endpoint,
    load_model,
    many,
    metric,
    model_state,
    server_entry,
    start_gateway,
    table,
    unique,
    unload_model,
    upload_versions,
    variant,
)

pytestmark = pytest.mark.integration

MAX_BODY = 1024 * 1024
TOKENS = {  # secret -> (team, scopes)
    "sy_team_infer": ("team", ["infer"]),
    "sy_team_read": ("team", ["read"]),
    "sy_team_deploy": ("team", ["infer", "deploy"]),
    "sy_other_infer": ("other", ["infer"]),
}


def token_entries():
    import hashlib

    return [{"team": team, "sha256": hashlib.sha256(secret.encode()).hexdigest(), "scopes": scopes,
             "expires_at": None} for secret, (team, scopes) in TOKENS.items()]


@pytest.fixture(scope="module")
def model(triton_fleet, s3_client):
    name = unique("gwt")
    upload_versions(s3_client, name, {1: {}, 2: {}})
    load_model(triton_fleet, name, [1, 2])
    yield name
    unload_model(triton_fleet, name)


@pytest.fixture(scope="module")
def gateway(model, triton_fleet, tmp_path_factory):
    both = [1, 2]
    data = table(7, [server_entry(1, triton_fleet[0]), server_entry(2, triton_fleet[1])], [
        endpoint("team.single", [variant("stable", 1, 100, model, both)]),
        endpoint("team.echo", [variant("canary", 2, 5, model, both), variant("stable", 1, 95, model, both)],
                 labels={"stable": 1, "canary": 2}, sticky={"header": "X-User-Id"}),
        endpoint("team.secure", [variant("canary", 2, 0, model, both), variant("stable", 1, 100, model, both)],
                 access="token", labels={"stable": 1}),
        endpoint("team.nowhere", [variant("stable", 1, 100, model, [])]),
    ], tokens=token_entries())
    gw = start_gateway(tmp_path_factory.mktemp("gw-triton"), table_data=data,
                       extra=["--max-body-bytes", str(MAX_BODY)])
    yield gw
    assert gw.stop() == 0  # a graceful stop exits cleanly


def tc(url):
    return triton_http.InferenceServerClient(url.removeprefix("http://"), network_timeout=30)


def infer_both_ways(client, model, version=""):
    """(JSON result, binary result) for the same input: OUTPUT0 and VERSION as numpy arrays."""
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    out = []
    for binary in (False, True):
        tensor = triton_http.InferInput("INPUT0", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [triton_http.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "VERSION")]
        result = client.infer(model, [tensor], model_version=version, outputs=outputs)
        out.append((result.as_numpy("OUTPUT0"), result.as_numpy("VERSION")))
    return x, out


def test_gateway_an_unchanged_tritonclient_gets_what_triton_gives(gateway, model, triton_fleet):
    direct = tc(triton_fleet[0].http_url)
    via = tc(gateway.url)
    assert via.is_server_live() and via.is_server_ready()
    assert via.get_server_metadata()["name"] == "switchyard-gateway"

    # Metadata and config are Triton's own answers for the variant's version.
    assert via.get_model_metadata("team.single") == direct.get_model_metadata(model, "1")
    assert via.get_model_config("team.single") == direct.get_model_config(model, "1")
    assert via.is_model_ready("team.single")

    x, (json_result, binary_result) = infer_both_ways(via, "team.single")
    _, (direct_json, direct_binary) = infer_both_ways(direct, model, "1")
    for (out, ver), (d_out, d_ver) in ((json_result, direct_json), (binary_result, direct_binary)):
        np.testing.assert_array_equal(out, x * 2)
        np.testing.assert_array_equal(out, d_out)
        np.testing.assert_array_equal(ver, d_ver)

    # Compressed both ways (Content-Encoding passes through untouched, as do binary tensors).
    tensor = triton_http.InferInput("INPUT0", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    result = via.infer("team.single", [tensor], request_compression_algorithm="gzip",
                       response_compression_algorithm="gzip",
                       outputs=[triton_http.InferRequestedOutput("OUTPUT0", binary_data=True)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), x * 2)

    # A label and a number pick the version, whatever the weights say (canary has 5%).
    _, results = infer_both_ways(via, "team.echo", "stable")
    assert all((v == 1).all() for _, v in results)
    _, results = infer_both_ways(via, "team.echo", "2")
    assert all((v == 2).all() for _, v in results)
    tensor = triton_http.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="no label 'nightly'"):
        via.infer("team.echo", [tensor], model_version="nightly")

    # Every proxied answer says which variant and version served it.
    client = Client(gateway.url)
    status, headers, body = client.infer("team.echo", version="canary")
    assert status == 200
    assert (headers["x-switchyard-variant"], headers["x-switchyard-version"]) == ("canary", "2")
    assert json.loads(body)["model_version"] == "2"
    status, headers, _ = client.get("/v2/models/team.single/ready")
    assert status == 200 and headers["x-switchyard-variant"] == "stable"
    status, headers, body = client.request("POST", "/v2/models/team.single/infer", INFER_BODY,
                                           {"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]


def test_gateway_weights_hold_over_10k_requests(gateway):
    started = time.monotonic()
    def status_and_variant(client, i):
        status, headers, _ = client.get("/v2/models/team.echo/ready")
        return status, headers["x-switchyard-variant"]

    statuses_variants = many(gateway.url, 10_000, status_and_variant, threads=16)
    elapsed = time.monotonic() - started
    assert {s for s, _ in statuses_variants} == {200}
    canary = sum(1 for _, v in statuses_variants if v == "canary")
    # 5% of 10k: sigma = sqrt(10k * .05 * .95) ~ 21.8 requests, so 400..600 is about +-4.6 sigma.
    assert 400 <= canary <= 600, canary
    assert elapsed < 60, elapsed
    text = gateway.metrics()
    assert metric(text, "switchyard_gateway_requests_total", endpoint="team.echo", variant="canary",
                  code_class="2xx") >= canary
    # Least-outstanding spreads the load over both servers of the variant.
    for server in ("fleet-0", "fleet-1"):
        assert metric(text, "switchyard_gateway_requests_total", endpoint="team.echo", server=server) > 1000

    # One request at a time, every server choice is a tie: the canary's ties must be spread too
    # (a draw shared with the variant choice would send them all to its first server).
    def canary_by_server():
        text = gateway.metrics()
        return [metric(text, "switchyard_gateway_requests_total", endpoint="team.echo", variant="canary",
                       server=s) for s in ("fleet-0", "fleet-1")]

    before = canary_by_server()
    client = Client(gateway.url)
    for _ in range(1500):
        assert client.get("/v2/models/team.echo/ready")[0] == 200
    after = canary_by_server()
    assert all(a - b >= 5 for a, b in zip(after, before)), (before, after)  # ~37 each expected


def test_gateway_token_endpoint_refuses_missing_foreign_and_scopeless_tokens(gateway):
    client = Client(gateway.url)
    cases = {
        None: 401,
        "Bearer sy_unknown": 401,
        "Bearer sy_team_read": 403,  # the team's token, without the infer scope
        "Bearer sy_other_infer": 403,  # another team's
        "Bearer sy_team_infer": 200,
    }
    for authorization, expected in cases.items():
        headers = {"Authorization": authorization} if authorization else {}
        status, response_headers, body = client.infer("team.secure", headers=headers)
        assert status == expected, (authorization, status, body)
        if expected != 200:
            assert set(json.loads(body)) == {"error"}
            assert "x-switchyard-variant" not in response_headers
    assert client.get("/v2/models/team.secure")[0] == 401  # metadata too


def test_gateway_explicit_variant_needs_a_deploy_token(gateway):
    client = Client(gateway.url)
    ask_canary = {"X-Switchyard-Variant": "canary"}
    # canary has weight 0: only an honoured header reaches it.
    for _ in range(20):
        status, headers, body = client.infer("team.secure", headers={**ask_canary, "Authorization": "Bearer sy_team_infer"})
        assert status == 200 and headers["x-switchyard-variant"] == "stable"
        assert json.loads(body)["model_version"] == "1"
    status, headers, body = client.infer("team.secure", headers={**ask_canary, "Authorization": "Bearer sy_team_deploy"})
    assert status == 200 and headers["x-switchyard-variant"] == "canary"
    assert json.loads(body)["model_version"] == "2"
    # On an open endpoint the header without any token is ignored as well (canary 5%).
    seen = [client.infer("team.echo", headers=ask_canary)[1]["x-switchyard-variant"] for _ in range(40)]
    assert seen.count("canary") < 15, seen


def test_gateway_refuses_the_repository_and_admin_apis_without_calling_triton(gateway, model, triton_fleet):
    client = Client(gateway.url)
    for method, path in [
        ("POST", "/v2/repository/index"),
        ("POST", f"/v2/repository/models/{model}/unload"),
        ("POST", f"/v2/repository/models/{model}/load"),
    ]:
        status, _, body = client.request(method, path, b"{}")
        assert status == 403, (path, body)
        assert json.loads(body) == {"error": "the repository API is not available through the gateway"}
    for path in ("/v2/systemsharedmemory/status", "/v2/cudasharedmemory/status", "/v2/trace/setting",
                 "/v2/logging", "/v2/models/stats", "/v2/models/team.echo/trace/setting"):
        status, _, body = client.get(path)
        assert status == 403 and "not available through the gateway" in json.loads(body)["error"], path
    # The unload never reached Triton: both versions are still READY on both servers.
    for server in triton_fleet:
        assert model_state(server, model, 1) == "READY" and model_state(server, model, 2) == "READY"


def test_gateway_bad_input(gateway, model, triton_fleet, tmp_path):
    client = Client(gateway.url)
    status, headers, body = client.infer("team.missing")
    assert status == 404 and headers["content-type"] == "application/json"
    assert "team.missing" in json.loads(body)["error"]
    status, _, body = client.get("/v2/nothing/here")
    assert status == 404 and set(json.loads(body)) == {"error"}
    status, headers, body = client.request("DELETE", "/v2/models/team.single")
    assert status == 405 and headers["allow"] == "GET, POST" and set(json.loads(body)) == {"error"}

    # A bad body goes to Triton untouched, and Triton's answer comes back unchanged: 400 for an
    # input the model does not have; Triton 2.51 says 500 for a body that is not JSON at all.
    direct = Client(triton_fleet[0].http_url)
    for bad, expected in [
        (b'{"inputs": [{"name": "NOPE", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}', 400),
        (b"{not json", 500),
    ]:
        d_status, d_headers, d_body = direct.request("POST", f"/v2/models/{model}/versions/1/infer", bad)
        status, headers, body = client.request("POST", "/v2/models/team.single/infer", bad)
        assert (status, body) == (d_status, d_body)
        assert status == expected and "error" in json.loads(body)
        assert headers["content-type"] == d_headers["content-type"]
        assert headers["x-switchyard-variant"] == "stable"

    # Past the configured limit: 413, Triton-style; just under it, Triton decides.
    status, headers, body = client.request("POST", "/v2/models/team.single/infer", b"x" * (MAX_BODY + 1))
    assert status == 413 and "limit" in json.loads(body)["error"]
    status, _, body = Client(gateway.url).request("POST", "/v2/models/team.single/infer", b" " * MAX_BODY)
    assert status in (400, 500) and "error" in json.loads(body), body  # Triton's answer, not ours

    # A variant with no server is a 503 naming both.
    status, _, body = Client(gateway.url).infer("team.nowhere")
    assert status == 503
    assert json.loads(body) == {"error": "endpoint 'team.nowhere' variant 'stable' has no ready server"}

    # A gateway without a table is live but not ready.
    empty = start_gateway(tmp_path, table_data=table(0, [], []))
    try:
        c = Client(empty.url)
        assert c.get("/v2/health/live")[0] == 200
        assert c.get("/v2/health/ready")[0] == 503
        assert c.infer("team.single")[0] == 503
    finally:
        empty.stop()


def read_responses(sock, count, timeout=10.0):
    """`count` HTTP responses off a raw socket, as (status, headers, body), in arrival order."""
    import httptools

    done = []

    class Collector:
        def on_message_begin(self):
            self.headers, self.body = {}, b""

        def on_header(self, name, value):
            self.headers[name.decode().lower()] = value.decode()

        def on_body(self, body):
            self.body += body

        def on_message_complete(self):
            done.append((parser.get_status_code(), self.headers, self.body))

    parser = httptools.HttpResponseParser(Collector())
    sock.settimeout(timeout)
    while len(done) < count:
        data = sock.recv(65536)
        if not data:
            break
        parser.feed_data(data)
    return done


def test_gateway_http_pipelining_chunked_bodies_and_an_early_413(gateway):
    import socket

    host, port = gateway.url.removeprefix("http://").split(":")
    body = b'{"inputs":[{"name":"INPUT0","datatype":"FP32","shape":[1,4],"data":[1,2,3,4]}]}'
    infer = b"POST /v2/models/team.echo/versions/%s/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s"
    chunked = (b"POST /v2/models/team.single/infer HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, body[:10], len(body) - 10, body[10:]))
    with socket.create_connection((host, int(port))) as sock:
        # Five requests in one write, proxied and local ones mixed: answered in order.
        sock.sendall(infer % (b"2", len(body), body) + b"GET /v2/health/live HTTP/1.1\r\nHost: gw\r\n\r\n"
                     + chunked + b"GET /v2/nothing HTTP/1.1\r\nHost: gw\r\n\r\n" + infer % (b"1", len(body), body))
        responses = read_responses(sock, 5)
    assert [s for s, _, _ in responses] == [200, 200, 200, 404, 200]
    assert json.loads(responses[0][2])["model_version"] == "2"
    assert json.loads(responses[2][2])["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
    assert json.loads(responses[4][2])["model_version"] == "1"

    # A malformed request after a proxied one: the proxied answer first, then the 400, then close.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(infer % (b"1", len(body), body) + b"GET /v2/health/live HTTP/1.1\r\nHost gw\r\n\r\n")
        responses = read_responses(sock, 2)
        assert sock.recv(100) == b""  # closed
    assert [s for s, _, _ in responses] == [200, 400]
    assert "malformed" in json.loads(responses[1][2])["error"]

    # A declared length past the limit is refused from the headers alone, before any body byte.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v2/models/team.single/infer HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n"
                     % (10 * MAX_BODY))
        [(status, headers, answer)] = read_responses(sock, 1)
    assert status == 413 and headers["connection"] == "close" and "error" in json.loads(answer)
    # A chunked body is cut off as soon as it passes the limit.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v2/models/team.single/infer HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (256 * 1024, b" " * 256 * 1024)
        for _ in range(5):
            sock.sendall(chunk)
        [(status, _, _)] = read_responses(sock, 1)
    assert status == 413
