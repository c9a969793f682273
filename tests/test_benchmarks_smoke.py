"""Smoke runs of the benchmarks at a tiny size, so that they never rot. No timing assertions."""
import io
import re

import pytest

from benchmarks import api_latency, audit_badge, gateway_throughput
from benchmarks.__main__ import BENCHMARKS

FINAL_LINE = re.compile(r"^(?P<name>[a-z0-9_]+): (?P<value>\S+) \(goal: [^)]+\)$", re.MULTILINE)


@pytest.mark.django_db
def test_api_latency_benchmark_runs_at_a_tiny_size():
    out = io.StringIO()
    result = api_latency.run(size="tiny", rounds=2, out=out)
    text = out.getvalue()

    # The seed happened at the requested size.
    tiny = api_latency.SIZES["tiny"]
    assert result.counts["versions"] == tiny.versions
    assert result.counts["hot model versions"] == tiny.hot_versions
    assert result.counts["servers"] == tiny.servers
    assert result.counts["audit events"] == tiny.audit_events

    # One result row per page, in the table and in the result, with samples and query counts.
    assert [p.label for p in result.pages] == [label for label, _ in api_latency.PAGES]
    for page in result.pages:
        assert len(page.times_ms["empty"]) == len(page.times_ms["seeded"]) == 2, page.label
        assert set(page.queries) == set(api_latency.PHASES), page.label
        assert re.search(rf"^{re.escape(page.label)}\s+\d", text, re.MULTILINE), f"no table row for {page.label}"

    # The final lines, in the `name: value (goal: ...)` form.
    finals = {m["name"]: m["value"] for m in FINAL_LINE.finditer(text)}
    for name in ("api_ui_p95_ms_worst", "pages_over_goal", "query_count_growth"):
        assert name in finals, f"missing final line {name!r} in:\n{text}"
    assert float(finals["api_ui_p95_ms_worst"]) > 0
    assert finals["query_count_growth"] == str(sum(max(p.growth, 0) for p in result.pages))


@pytest.mark.django_db
def test_audit_badge_benchmark_runs_at_a_tiny_size():
    out = io.StringIO()
    result = audit_badge.run(size="tiny", rounds=2, out=out)
    text = out.getvalue()

    tiny = audit_badge.SIZES["tiny"]
    assert [p.events for p in result.points] == list(tiny.chains)
    for point in result.points:
        assert len(point.badge_ms) == len(point.api_ms) == 2
        assert point.checked == 1 + audit_badge.TAIL  # the checkpoint's event and the tail after it
        assert point.queries > 0 and point.full_s > 0
        assert re.search(rf"^\s*{point.events}\s+\d", text, re.MULTILINE), f"no table row for {point.events}"
    from controlplane.audit.models import AuditEvent
    from controlplane.audit.selectors import audit_chain_verify

    report = audit_chain_verify()  # the seeded chain is a real one
    assert report.ok and report.events == AuditEvent.objects.count() == tiny.chains[-1] + audit_badge.TAIL

    finals = {m["name"]: m["value"] for m in FINAL_LINE.finditer(text)}
    for name in ("audit_badge_ratio", "audit_badge_ratio_vs_reference", "audit_badge_query_growth", "audit_badge_worst_ms"):
        assert name in finals, f"missing final line {name!r} in:\n{text}"
    for name in ("audit_badge_ratio", "audit_badge_ratio_vs_reference"):
        assert finals[name].endswith("x") and float(finals[name][:-1]) > 0, finals[name]
    assert all(len(p.reference_ms) == 2 for p in result.points)
    assert finals["audit_badge_query_growth"] == "0"


def test_every_benchmark_is_registered_and_the_cli_knows_the_sizes():
    assert {"api_latency", "audit_badge"} <= set(BENCHMARKS)
    assert {"tiny", "small", "full"} <= set(api_latency.SIZES) == set(audit_badge.SIZES)


def test_percentile_interpolates_like_numpy():
    samples = [float(n) for n in range(1, 21)]  # 1..20
    assert api_latency.percentile(samples, 50) == 10.5
    assert api_latency.percentile(samples, 95) == pytest.approx(19.05)
    assert api_latency.percentile([7.0], 95) == 7.0


@pytest.mark.integration
def test_gateway_throughput_benchmark_runs_at_a_tiny_size():
    """A real tritonserver, nginx, wrk and two gateways (a table file, then a polled table)."""
    out = io.StringIO()
    result = gateway_throughput.run(size="tiny", out=out)
    text = out.getvalue()

    # Every target at every connection count, once, with requests counted and CPU read.
    for connections in (1, *gateway_throughput.CONNECTIONS):
        for target in gateway_throughput.TARGETS:
            [sample] = result.select(target, connections)
            assert sample.requests > 0 and sample.p50_ms > 0, (target, connections)
            assert sample.cpu_s["triton"] > 0 and ("proxy" in sample.cpu_s) == (target != "direct")
            assert re.search(rf"^\s*{connections}\s+{target}\s+\d", text, re.MULTILINE), f"no table row for {target} c{connections}"
    tiny = gateway_throughput.SIZES["tiny"]
    assert result.memory.total_requests >= tiny.memory_total and result.memory.rss_end_kb > 0
    assert result.memory.workers == gateway_throughput.WORKERS
    mechanisms = {s.mechanism for s in result.switches}  # "redis" only where redis-server is installed
    assert "poll" in mechanisms
    assert all(sum(s.mechanism == m for s in result.switches) == tiny.switches for m in mechanisms)

    finals = {m["name"]: m["value"] for m in FINAL_LINE.finditer(text)}
    numbers = ["gateway_added_p50_ms", "nginx_added_p50_ms", "gateway_cpu_us_per_request", "nginx_cpu_us_per_request",
               "gateway_failed_requests", "gateway_rss_growth_mb", "gateway_switch_s", "gateway_switch_reported_s",
               "gateway_switch_failed_requests"]
    if "redis" in mechanisms:
        numbers += ["gateway_switch_s_redis", "gateway_switch_failed_requests_redis"]
    ratios = ["gateway_rss_growth_ratio"] + [f"{name}_c{c}" for name in ("gateway_over_nginx", "nginx_over_direct")
                                             for c in gateway_throughput.CONNECTIONS]
    for name in numbers + ratios:
        assert name in finals, f"missing final line {name!r} in:\n{text}"
    for name in numbers:
        float(finals[name])
    for name in ratios:
        assert finals[name].endswith("x") and float(finals[name][:-1]) > 0, (name, finals[name])


def test_gateway_throughput_is_registered_with_the_same_sizes():
    assert BENCHMARKS["gateway_throughput"] is gateway_throughput.main
    assert set(gateway_throughput.SIZES) == set(api_latency.SIZES)


def test_gateway_throughput_reads_wrk_and_times_a_switch():
    # The summary line benchmarks/wrk/infer.lua prints.
    line = ("switchyard-wrk requests=1200 duration_us=2000000 bytes=9 connect=0 read=1 write=0 status=2 timeout=0 "
            "p50_us=150 p90_us=300 p99_us=900 max_us=4000 mean_us=180.5")
    summary = gateway_throughput.parse_wrk(f"Running 2s test\n{line}\n")
    assert summary["requests"] == 1200 and summary["p50_us"] == 150 and summary["mean_us"] == 180.5
    assert "SWITCHYARD_WRK_BODY" in gateway_throughput.LUA.read_text()

    # (sent, received, status, variant, VERSION): changed at 10.0, the last v1 answer at 10.4.
    records = [(9.9, 10.0, 200, "v1", 1), (10.2, 10.4, 200, "v1", 1), (10.3, 10.5, 200, "v2", 2), (10.6, 10.7, 200, "v2", 2)]
    assert gateway_throughput.switch_time(records, 10.0, "v2", now=10.7) is None  # not settled yet
    assert gateway_throughput.switch_time(records, 10.0, "v2", now=11.0) == pytest.approx(0.4)
    assert gateway_throughput.switch_time(records[:2], 10.0, "v2", now=11.0) is None  # v2 never answered
    records.append((10.8, 10.9, 502, "", 0))
    assert gateway_throughput.switch_counts(records, 10.0, 11.0, "v1", "v2") == (5, 1, 0)


@pytest.mark.django_db(transaction=True)  # gunicorn, in another process, reads the servers from this database
def test_metrics_pipeline_benchmark_runs_at_a_tiny_size():
    """A fake Triton fleet, gunicorn serving discovery, three real Prometheus servers and promtool."""
    from benchmarks import metrics_pipeline

    out = io.StringIO()
    result = metrics_pipeline.run(size="tiny", out=out)
    text = out.getvalue()

    tiny = metrics_pipeline.SIZES["tiny"]
    assert [d.servers for d in result.discovery] == [tiny.reference_servers, tiny.servers]
    for d in result.discovery:
        assert d.targets == d.servers + tiny.gateways and d.queries > 0 and len(d.times_ms) == tiny.discovery_rounds
    for p in result.pipelines:
        assert p.targets_total == p.servers and p.scrapes > 0 and p.samples_per_s > 0 and p.rss_mb > 0, p
        assert p.recorded_series == 5 * p.servers  # the shipped rules ran on every model version of every server
    for c in result.charts:
        assert len(c.api_ms) == len(c.raw_ms) == tiny.chart_rounds and c.lines >= 2 and c.points > 0, c

    finals = {m["name"]: m["value"] for m in FINAL_LINE.finditer(text)}
    numbers = [f"discovery_p95_ms_{tiny.servers}", f"discovery_p95_ms_{tiny.reference_servers}", "discovery_query_growth",
               "chart_7d_p95_ms", "chart_7d_p50_ms", "chart_7d_raw_p95_ms", "chart_1h_p95_ms",
               "chart_7d_p95_ms_1s_samples", "chart_7d_p95_ms_gc_frozen",
               "pipeline_scrape_p99_s",
               "pipeline_rule_eval_max_s", "pipeline_missed_iterations", "pipeline_samples_per_s",
               "pipeline_prometheus_cores", "pipeline_prometheus_rss_mb"]
    for name in numbers + ["discovery_p95_ratio", "chart_7d_over_1h", "pipeline_targets_up", "pipeline_keeps_up"]:
        assert name in finals, f"missing final line {name!r} in:\n{text}"
    for name in numbers:
        float(finals[name])
    for name in ("discovery_p95_ratio", "chart_7d_over_1h"):
        assert finals[name].endswith("x") and float(finals[name][:-1]) > 0, finals[name]
    up, total = finals["pipeline_targets_up"].split("/")
    assert int(total) == tiny.servers and 0 <= int(up) <= int(total)
    assert finals["pipeline_keeps_up"] in ("yes", "no")


def test_metrics_pipeline_is_registered_with_the_same_sizes():
    from benchmarks import metrics_pipeline

    assert BENCHMARKS["metrics_pipeline"] is metrics_pipeline.main
    assert set(metrics_pipeline.SIZES) == set(api_latency.SIZES)


def test_metrics_pipeline_fake_triton_pages_carry_the_series_the_rules_read():
    import time

    from benchmarks.fake_triton_fleet import FakeServer

    server = FakeServer(3, time.time() - 60)
    first, later = server.page(time.time()).decode(), server.page(time.time() + 30).decode()
    for name in ("nv_inference_count", "nv_inference_request_success", "nv_inference_request_failure",
                 "nv_inference_exec_count", "nv_inference_queue_duration_us", "nv_inference_request_duration_us",
                 'nv_inference_request_summary_us{model="resnet50",version="2",quantile="0.99"}', "nv_cpu_utilization",
                 "nv_gpu_utilization", "nv_gpu_memory_used_bytes"):
        assert f"\n{name}" in first, name

    def value(page, prefix):
        return float(next(line for line in page.splitlines() if line.startswith(prefix)).rsplit(" ", 1)[1])

    key = 'nv_inference_count{model="resnet50",version="1"}'
    assert value(later, key) > value(first, key)  # counters grow


@pytest.mark.django_db(transaction=True)  # the engine publishes the routing table after each commit
def test_rollout_benchmark_fleet_scale_runs_at_a_tiny_size():
    """The fleet-scale part: a simulated fleet, blue placed on half, rollouts driven in process
    to retired, gates answered by the stand-in. The real-fleet parts need the whole stack (tens of
    seconds to start), so they run in the benchmark only; their measuring helpers are tested below."""
    from benchmarks import rollout

    out = io.StringIO()
    result = rollout.run(size="tiny", out=out, parts=("fleet",))
    text = out.getvalue()

    tiny = rollout.SIZES["tiny"]
    assert sorted(x.fleet_size for x in result.fleet) == sorted(tiny.fleet * tiny.fleet_rounds)
    for x in result.fleet:
        assert x.servers == x.fleet_size - x.fleet_size // 2 and x.green in rollout.HEALTHY
        assert x.bakes_s == 2 * tiny.fleet_bake_s and x.wall_s > x.bakes_s and x.unload_s is not None
        assert x.phases["provisioning"] + x.load_s > 0 and x.pauses == 0
        assert re.search(rf"^\s*N={x.fleet_size}\s+v{x.green}\s", text, re.MULTILINE), f"no table row for N={x.fleet_size}"
    assert result.fleet_info["gate queries answered by the stand-in"] >= 2 * len(result.fleet)  # one a step at least
    assert result.fleet_info["placement concurrency"] > 0
    from controlplane.deployments.models import Deployment

    assert set(Deployment.objects.values_list("state", flat=True)) == {"retired"}

    finals = {m["name"]: m["value"] for m in FINAL_LINE.finditer(text)}
    names = [f"fleet_overhead_s_{n}" for n in tiny.fleet]
    for name in [*names, "fleet_overhead_growth"]:
        assert name in finals, f"missing final line {name!r} in:\n{text}"
    for name in names:
        float(finals[name])
    assert finals["fleet_overhead_growth"].endswith("x")


def test_rollout_benchmark_is_registered_and_times_switches_from_the_answers():
    from benchmarks import rollout
    from benchmarks.rollout import Answer, time_to_all

    assert BENCHMARKS["rollout"] is rollout.main
    assert set(rollout.SIZES) == set(api_latency.SIZES)
    # Blue is v1. A failed answer at 10.0 starts the clock; the last answer not from blue is at 10.3.
    answers = [Answer(9.9, 200, "blue", 1), Answer(10.0, 500, "green", 0), Answer(10.1, 200, "blue", 1),
               Answer(10.3, 200, "green", 4), Answer(10.4, 200, "blue", 1)]
    assert time_to_all(answers, 10.0, 1, now=10.5) is None  # not settled for 0.5 s yet
    assert time_to_all(answers, 10.0, 1, now=10.9) == pytest.approx(0.3)
    # A promotion whose switch was done before the call returned: 0.
    assert time_to_all([Answer(5.0, 200, "green", 2), Answer(5.2, 200, "stable", 2)], 5.1, 2, now=6.0) == 0
    # A failed answer is never "from" the new version.
    assert time_to_all([Answer(5.2, 502, "stable", 0), Answer(5.3, 200, "stable", 2)], 5.1, 2, now=6.0) == pytest.approx(0.1)
