"""gateway.metrics: the exposition text, label escaping, histogram buckets and the merge of
several workers' snapshots (no processes here)."""
import json

from gateway.metrics import BUCKETS, Metrics, escape, merge, render
from tests.gateway.gateway_support import metric, samples


def test_gateway_metrics_escape_labels_and_render_cumulative_buckets():
    m = Metrics()
    tricky = 'a"b\\c\nd'
    m.request("team.x", tricky, "2", "s1", 200, 0.0004)
    m.request("team.x", tricky, "2", "s1", 503, 0.004)
    m.request("team.x", tricky, "2", "s1", 404, 31.0)
    m.ejection(tricky)
    text = render(m.snapshot(), now=100.0).decode()
    assert escape(tricky) == 'a\\"b\\\\c\\nd'
    assert "\n" not in escape(tricky)
    # Every line parses, and the label value reads back exactly.
    parsed = samples(text)
    assert metric(text, "switchyard_gateway_requests_total", variant=tricky) == 3
    assert metric(text, "switchyard_gateway_requests_total", code_class="5xx") == 1
    assert metric(text, "switchyard_gateway_requests_total", code_class="4xx") == 1
    assert metric(text, "switchyard_gateway_ejections_total", server=tricky) == 1
    buckets = [(ls["le"], v) for n, ls, v in parsed if n == "switchyard_gateway_request_duration_seconds_bucket"]
    assert [le for le, _ in buckets] == [str(b) for b in BUCKETS] + ["+Inf"]
    counts = dict(buckets)
    assert counts["0.0005"] == 1 and counts["0.003"] == 1 and counts["0.005"] == 2 and counts["30.0"] == 2
    assert counts["+Inf"] == 3
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert metric(text, "switchyard_gateway_request_duration_seconds_count") == 3
    assert abs(metric(text, "switchyard_gateway_request_duration_seconds_sum") - 31.0044) < 1e-9
    assert text.count("# TYPE switchyard_gateway_request_duration_seconds histogram") == 1


def test_gateway_metrics_merge_sums_counters_and_keeps_the_weakest_table_gauges():
    a, b = Metrics(), Metrics()
    a.request("team.x", "stable", "1", "s1", 200, 0.001)
    b.request("team.x", "stable", "1", "s1", 200, 0.002)
    b.request("team.x", "canary", "2", "s2", 500, 0.002)
    a.shadow_result("team.x", "stable", "shadow", "agree")
    b.shadow_result("team.x", "stable", "shadow", "agree")
    a.shadow_dropped, b.shadow_dropped = 2, 3
    a.in_flight, b.in_flight = 1, 4
    a.table_version, b.table_version = 8, 7
    a.table_generated_at, b.table_generated_at = 90.0, 80.0
    a.source_up, b.source_up = 1, 0
    snaps = [json.loads(json.dumps(s.snapshot())) for s in (a, b)]  # as they travel between workers
    text = render(merge(snaps), now=100.0).decode()
    assert metric(text, "switchyard_gateway_requests_total", variant="stable") == 2
    assert metric(text, "switchyard_gateway_requests_total", variant="canary", code_class="5xx") == 1
    assert metric(text, "switchyard_gateway_request_duration_seconds_count", variant="stable") == 2
    assert metric(text, "switchyard_gateway_shadow_comparisons_total", result="agree") == 2
    assert metric(text, "switchyard_gateway_shadow_dropped_total") == 5
    assert metric(text, "switchyard_gateway_in_flight_requests") == 5
    assert metric(text, "switchyard_gateway_workers") == 2
    # A change has reached the replica only when every worker serves it; the oldest table counts.
    assert metric(text, "switchyard_gateway_table_version") == 7
    assert metric(text, "switchyard_gateway_table_age_seconds") == 20.0
    assert metric(text, "switchyard_gateway_table_source_up") == 0


def test_gateway_metrics_guard_trips_and_tripped_variants_add_up_over_workers():
    a, b = Metrics(), Metrics()
    a.guard_trip("team.x", "green")
    b.guard_trip("team.x", "green")
    a.guard_tripped = {("team.x", "green"): 1, ("team.y", "green"): 0}
    b.guard_tripped = {("team.x", "green"): 1, ("team.y", "green"): 0}
    snaps = [json.loads(json.dumps(s.snapshot())) for s in (a, b)]
    text = render(merge(snaps), now=100.0).decode()
    assert metric(text, "switchyard_gateway_guard_trips_total", endpoint="team.x", variant="green") == 2
    assert metric(text, "switchyard_gateway_guard_tripped", endpoint="team.x", variant="green") == 2  # both workers
    assert metric(text, "switchyard_gateway_guard_tripped", endpoint="team.y", variant="green") == 0  # guarded, fine
    assert "# TYPE switchyard_gateway_guard_trips_total counter" in text
    assert "# TYPE switchyard_gateway_guard_tripped gauge" in text
