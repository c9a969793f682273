"""Smoke runs of the benchmarks at a tiny size, so that they never rot. No timing assertions."""
import io
import re

import pytest

from benchmarks import api_latency, audit_badge
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
