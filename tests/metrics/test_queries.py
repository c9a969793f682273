"""The query builder: escaping, the chart queries per scope, the insight and gate queries.

Pure tests first; then a real Prometheus parses and runs every query, with series whose label
values are hostile (recording rules with static labels), so "no injection" is checked by the
engine that would be injected, not by reading our own strings.
"""
import math
import time

import pytest

from controlplane.metrics import queries as q
from controlplane.metrics import series as S
from controlplane.metrics.client import PrometheusClient, PrometheusError
from tests.metrics.static_prometheus import rule, start_static_prometheus

INJECTION = 'a"} or vector(1) or {x="'
HOSTILE = [
    INJECTION,
    "back\\slash\\",
    'trailing backslash \\',
    "new\nline",
    "tab\tand\rreturn",
    "ctrl\x01\x7f",
    "ünïcødé.✓ 模型",
    "dots.*(regex)|[chars]+?",
    "",
]


# -- pure ------------------------------------------------------------------------------------------


def test_quote_escapes_backslash_quote_and_control_characters():
    assert q.quote('a"b') == '"a\\"b"'
    assert q.quote("a\\b") == '"a\\\\b"'
    assert q.quote("a\nb") == '"a\\nb"'
    assert q.quote("\x01") == '"\\u0001"'
    assert q.quote("ü✓") == '"ü✓"'
    for value in HOSTILE:
        quoted = q.quote(value)
        inner = quoted[1:-1]
        assert "\n" not in quoted and "\r" not in quoted
        # No unescaped double quote inside: every quote is preceded by an odd run of backslashes.
        for i, ch in enumerate(inner):
            if ch == '"':
                run = len(inner[:i]) - len(inner[:i].rstrip("\\"))
                assert run % 2 == 1, (value, quoted)


def test_quote_refuses_non_strings_and_lone_surrogates():
    with pytest.raises(TypeError):
        q.quote(1)
    with pytest.raises(ValueError):
        q.quote("\ud800")


def test_regex_literal_escapes_every_ascii_symbol():
    assert q.regex_literal("a.b*c") == "a\\.b\\*c"
    assert q.regex_literal("ü_1") == "ü_1"


def test_selector_skips_none_and_quotes_values():
    assert q.selector(S.GATEWAY_REQUESTS, endpoint="x", variant=None) == 'switchyard:gateway_requests:rate1m{endpoint="x"}'
    assert q.selector("up") == "up"
    assert q.selector("up", endpoint=q.Prefixes(("vision.",))) == 'up{endpoint=~"(?:vision\\\\.).+"}'


@pytest.mark.parametrize("series_key", q.CHART_SERIES)
@pytest.mark.parametrize("kind", q.SCOPE_KINDS)
def test_every_chart_query_uses_recorded_series_only(series_key, kind):
    scope = q.Scope(kind, "vision.fraud-scorer" if kind != "server" else "triton-1", teams=("vision",))
    try:
        chart = q.chart_query(series_key, scope)
    except q.Unsupported:
        return
    recorded = {s.name for s in S.ALL}
    names = {token for token in chart.expr.replace("(", " ").replace(")", " ").replace("{", " ").split() if token.startswith("switchyard:")}
    assert names and names <= recorded, chart.expr


def test_supported_pairs():
    supported = {
        kind: {key for key in q.CHART_SERIES if _supported(key, kind)} for kind in q.SCOPE_KINDS
    }
    assert supported["fleet"] == {"requests", "errors", "error_ratio"}
    assert supported["endpoint"] == {"requests", "errors", "error_ratio", "latency_p50", "latency_p95", "latency_p99"}
    assert supported["model"] == set(q.CHART_SERIES) - {"gpu_utilization", "gpu_memory"}
    assert supported["server"] == set(q.CHART_SERIES)


def _supported(key, kind):
    try:
        q.chart_query(key, q.Scope(kind, "x", teams=None))
        return True
    except q.Unsupported:
        return False


def test_unknown_series_and_scope_are_unsupported():
    with pytest.raises(q.Unsupported):
        q.chart_query("up", q.Scope("fleet"))
    with pytest.raises(q.Unsupported):
        q.chart_query("requests", q.Scope("team", "x"))


def test_fleet_for_a_team_user_is_their_endpoints_only():
    chart = q.chart_query("requests", q.Scope("fleet", teams=("vision", "speech")))
    assert chart.expr == 'sum(switchyard:gateway_requests:rate1m{endpoint=~"(?:speech\\\\.|vision\\\\.).+"})'
    admin = q.chart_query("requests", q.Scope("fleet"))
    assert admin.expr == "switchyard:fleet_requests:rate1m"


def test_line_labels():
    chart = q.chart_query("requests", q.Scope("endpoint", "vision.x"))
    assert q.line_label(chart, {"variant": "canary", "version": "3"}) == "canary v3"
    fleet = q.chart_query("requests", q.Scope("fleet"))
    assert q.line_label(fleet, {}) == "all endpoints"


def test_an_empty_team_list_matches_nothing_rather_than_everything():
    with pytest.raises(ValueError):
        q.chart_query("requests", q.Scope("fleet", teams=()))
    with pytest.raises(ValueError):
        q.AnyOf(())


def test_gate_query_checks_its_arguments():
    with pytest.raises(q.Unsupported):
        q.gate_query("e", "v", "throughput", 60)
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError):
            q.gate_query("e", "v", "error_ratio", bad)


# -- against a real Prometheus -------------------------------------------------------------------


def _gateway(endpoint, variant, version, requests, errors):
    labels = {"endpoint": endpoint, "variant": variant, "version": version}
    return [rule(S.GATEWAY_REQUESTS.name, requests, **labels), rule(S.GATEWAY_ERRORS.name, errors, **labels)]


@pytest.fixture(scope="module")
def prom(tmp_path_factory):
    rules = []
    for i, name in enumerate(HOSTILE):
        rules += _gateway(name, "blue", "1", 10.0 + i, 1.0)
    rules += _gateway("a", "blue", "1", 1000.0, 0.0)  # a decoy: the injection's own prefix
    rules += _gateway("vision.fraud", "blue", "1", 4.0, 1.0)
    rules += _gateway("vision.fraud", "green", "2", 0.0, 0.0)  # no traffic: ratio is no data
    rules.append(rule(S.GATEWAY_LATENCY_P99.name, 0.25, endpoint="vision.fraud", variant="blue"))
    rules += _gateway("speech.asr", "blue", "1", 7.0, 0.0)
    # The raw counter, growing one a second, so a gate's increase() sees requests.
    rules.append({"record": q.GATEWAY_REQUESTS_COUNTER, "expr": "vector(time())",
                  "labels": {"endpoint": "vision.fraud", "variant": "blue", "version": "1", "code_class": "2xx"}})
    triton = {"model": "vision.fraud", "version": "2"}
    for server, inf, batch, req, share in (("s1", 10.0, 2.0, 10.0, 0.1), ("s2", 30.0, 6.0, 30.0, 0.5)):
        rules += [rule(S.TRITON_INFERENCES.name, inf, server=server, **triton),
                  rule(S.TRITON_BATCH_SIZE.name, batch, server=server, **triton),
                  rule(S.TRITON_REQUESTS.name, req, server=server, **triton),
                  rule(S.TRITON_QUEUE_SHARE.name, share, server=server, **triton),
                  rule(S.TRITON_LATENCY_P99.name, 1500.0, server=server, **triton)]
    rules.append(rule(S.TRITON_REQUESTS.name, 99.0, server="s1", model="speech.asr", version="1"))
    rules.append(rule(S.TRITON_INFERENCES.name, 5.0, server=INJECTION, model=INJECTION, version="1"))
    rules.append(rule(S.GPU_UTILIZATION.name, 0.5, server="s1", gpu_uuid="GPU-1"))
    server = start_static_prometheus(tmp_path_factory.mktemp("prom-queries"), rules)
    time.sleep(2.5)  # a gate's increase() over 5 s needs two samples of the counter
    yield PrometheusClient(server.url, timeout=5)
    server.stop()


@pytest.mark.parametrize("value", HOSTILE)
def test_quote_reads_back_exactly_in_prometheus(prom, value):
    got = prom.query(f'label_replace(vector(1), "x", {q.quote(value)}, "", "")')
    assert [v.labels.get("x", "") for v in got] == [value]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_endpoint_name_matches_only_itself(prom, name):
    chart = q.chart_query("requests", q.Scope("endpoint", name))
    got = prom.query(chart.expr)
    assert [(v.labels, v.value) for v in got] == [({"variant": "blue", "version": "1"}, 10.0 + HOSTILE.index(name))]


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_team_slug_cannot_widen_the_fleet_view(prom, name):
    got = prom.query(q.chart_query("requests", q.Scope("fleet", teams=(name,))).expr)
    # A slug never matches the endpoints of another: at most the series named "<slug>.<something>".
    assert all(v.value != 1.0 for v in got)
    assert sum(v.value for v in got) < 1000


def test_injection_through_a_model_and_server_name_is_inert(prom):
    chart = q.chart_query("inferences", q.Scope("server", INJECTION, teams=(INJECTION[:-1],)))
    assert prom.query(chart.expr) == []  # the model "a\"} ..." is not "<slug>.<something>"
    chart = q.chart_query("inferences", q.Scope("model", INJECTION))
    assert [v.value for v in prom.query(chart.expr)] == [5.0]
    rates = q.triton_batching(prom, INJECTION, [INJECTION, "s1"])
    assert [(r.server, r.inferences) for r in rates] == [(INJECTION, 5.0)]


def test_model_batch_size_and_queue_share_are_weighted_over_servers(prom):
    batch = prom.query(q.chart_query("batch_size", q.Scope("model", "vision.fraud")).expr)
    assert [(v.labels, v.value) for v in batch] == [({"version": "2"}, pytest.approx(4.0))]  # 40 inf / 10 executions
    share = prom.query(q.chart_query("queue_share", q.Scope("model", "vision.fraud")).expr)
    assert [v.value for v in share] == [pytest.approx(0.4)]  # (0.1*10 + 0.5*30) / 40
    latency = prom.query(q.chart_query("latency_p99", q.Scope("model", "vision.fraud")).expr)
    assert sorted((v.labels["server"], v.value) for v in latency) == [("s1", 0.0015), ("s2", 0.0015)]


def test_server_scope_of_a_team_user_hides_other_teams_models(prom):
    mine = prom.query(q.chart_query("requests", q.Scope("server", "s1", teams=("vision",))).expr)
    assert [v.labels for v in mine] == [{"model": "vision.fraud"}]
    admin = prom.query(q.chart_query("requests", q.Scope("server", "s1")).expr)
    assert sorted(v.labels["model"] for v in admin) == ["speech.asr", "vision.fraud"]
    gpu = prom.query(q.chart_query("gpu_utilization", q.Scope("server", "s1")).expr)
    assert [(v.labels, v.value) for v in gpu] == [({"gpu_uuid": "GPU-1"}, 0.5)]
    assert prom.query(q.chart_query("gpu_memory", q.Scope("server", "s1")).expr) == []  # unknown, not 0


def test_error_ratio_without_traffic_is_no_data_not_zero(prom):
    got = prom.query(q.chart_query("error_ratio", q.Scope("endpoint", "vision.fraud")).expr)
    values = {v.labels["variant"]: v.value for v in got}
    assert values["blue"] == pytest.approx(0.25)
    assert values.get("green") is None  # 0/0: NaN, read as None


def test_triton_batching_reads_each_server_and_version(prom):
    rates = q.triton_batching(prom, "vision.fraud", ["s1", "s2", "s3"])
    assert [(r.server, r.version, r.batch_size, r.queue_share, r.inferences, r.requests) for r in rates] == [
        ("s1", "2", 2.0, 0.1, 10.0, 10.0), ("s2", "2", 6.0, 0.5, 30.0, 30.0)]
    assert q.triton_batching(prom, "vision.fraud", []) == []


def test_gate_sample(prom):
    sample = q.gate_sample(prom, "vision.fraud", "blue", "error_ratio", 5)
    assert sample.window_s == 5 and sample.requests > 0
    assert sample.value == pytest.approx(0.25)
    latency = q.gate_sample(prom, "vision.fraud", "blue", "latency_p99", 5)
    assert latency.value == pytest.approx(0.25)
    silent = q.gate_sample(prom, "vision.fraud", "green", "error_ratio", 5)
    assert silent.value is None and silent.requests == 0
    hostile = q.gate_sample(prom, INJECTION, INJECTION, "error_ratio", 5)
    assert hostile.value is None and hostile.requests == 0


def test_a_custom_gate_reads_its_own_series_and_never_another_teams(prom):
    """Pinned selectors read exactly the deployment's own series; the check refuses what would
    read further, and Prometheus shows what such a query would have leaked."""
    from controlplane.metrics import custom_gates

    def run(template, endpoint="vision.fraud", variant="blue"):
        assert custom_gates.problem(template) == ""
        return [v.value for v in prom.query(custom_gates.fill(
            template, endpoint=endpoint, model=endpoint, variant=variant, window_s=60))]

    requests = "sum(" + S.GATEWAY_REQUESTS.name + "{endpoint={{endpoint}}, variant={{variant}}})"
    assert run(requests) == [4.0]
    assert run(requests, endpoint=INJECTION) == [10.0]  # a hostile name, quoted: only itself
    assert run("sum(" + S.TRITON_REQUESTS.name + "{model={{model}}})") == [40.0]  # s1 and s2, not speech.asr's 99
    assert sorted(run("sum by (variant) (" + S.GATEWAY_ERRORS.name + "{endpoint={{endpoint}}}) or on() vector(0)")) == [0.0, 1.0]

    for greedy in ("sum(" + S.GATEWAY_REQUESTS.name + ")", "sum(" + S.TRITON_REQUESTS.name + '{model=~".+"})',
                   "sum(" + S.GATEWAY_REQUESTS.name + '{endpoint="speech.asr"})'):
        assert "pin every selector" in custom_gates.problem(greedy), greedy
        leaked = [v.value for v in prom.query(greedy)]
        assert leaked and leaked[0] > 0  # what it would have read: other endpoints' traffic


def test_prometheus_accepts_every_query_the_builder_makes(prom):
    scopes = [q.Scope("fleet"), q.Scope("fleet", teams=("vision", INJECTION)), q.Scope("endpoint", INJECTION),
              q.Scope("model", INJECTION), q.Scope("server", INJECTION), q.Scope("server", "s1", teams=("vision",))]
    for scope in scopes:
        for key in q.CHART_SERIES:
            try:
                chart = q.chart_query(key, scope)
            except q.Unsupported:
                continue
            try:
                result = prom.query_range(chart.expr, start=1, end=61, step=30)
            except PrometheusError as exc:  # pragma: no cover - the message says which
                pytest.fail(f"{key} {scope}: {exc}")
            assert all(p[1] is None or math.isfinite(p[1]) for line in result for p in line.points)
