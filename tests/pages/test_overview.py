"""The overview page (/): fleet health, deployments moving with their gates, recent audit events
and GPU quota use, for the user's teams only; and its deployments part, which the page polls."""
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.common import overview
from controlplane.deployments.spec import Gates
from controlplane.endpoints.models import GatewayReplica, RoutingTableState
from controlplane.fleet.models import Pool, Server
from controlplane.quotas.services import quota_set
from tests.pages import rows

pytestmark = pytest.mark.django_db
PART = "/?part=deployments"  # the deployments part, which the page loads apart and polls


def page(client, user, path="/"):
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def section(html: str, css_class: str) -> str:
    """The <section> whose class list has ``css_class``."""
    match = re.search(rf'<section class="card {css_class}".*?</section>', html, re.S)
    assert match, f"no section {css_class}"
    return match.group(0)


@pytest.fixture
def moving(team, other_team, deployer, outsider):
    """vision: one deployment baking step 2 of 3, one scheduled; speech: one analyzing."""
    now = timezone.now()
    vision = rows.deployment(rows.endpoint(team, "fraud"), state="baking", step_index=1, traffic=50,
                             step_started_at=now - timedelta(seconds=15))
    later = rows.deployment(rows.endpoint(team, "later"), state="scheduled", start_at=now + timedelta(hours=2),
                            created_by=deployer)
    speech = rows.deployment(rows.endpoint(other_team, "asr"), state="analyzing", step_index=0, traffic=10)
    return vision, later, speech


def test_each_user_sees_the_deployments_of_their_own_teams(client, moving, deployer, outsider, platform_admin):
    vision, later, speech = moving
    html = section(page(client, deployer, PART), "ov-deployments")
    assert f'data-deployment="{vision.pk}"' in html and "vision.fraud" in html
    assert f'data-deployment="{later.pk}"' in html and "vision.later" in html
    assert "speech.asr" not in html and f'data-deployment="{speech.pk}"' not in html

    html = section(page(client, outsider, PART), "ov-deployments")
    assert "speech.asr" in html and "vision." not in html

    html = section(page(client, platform_admin, PART), "ov-deployments")
    assert all(f'data-deployment="{d.pk}"' in html for d in moving)


def test_a_deployment_in_progress_shows_its_step_traffic_and_bake_as_a_progress_bar(client, moving, deployer):
    vision, later, _ = moving
    html = section(page(client, deployer, PART), "ov-deployments")
    row = re.search(rf'<li class="ov-dep[^"]*" data-deployment="{vision.pk}">.*?</li>', html, re.S).group(0)
    assert f'href="/deployments/{vision.pk}/"' in row
    assert 'data-state="baking"' in row and 'data-traffic="50"' in row
    # Step 2 of 3 with 15 of its 60 s of bake run, as the deployment page counts it (progress.py):
    # preparation 0-10%, the steps 10-90%, a bake 80% of its step.
    bar = re.search(r'<div class="ov-progress" role="progressbar"[^>]*>', row).group(0)
    assert 'aria-valuenow="42"' in bar
    assert 'aria-valuetext="42%: step 2 of 3, baking; 50% of traffic to green"' in bar
    assert 'data-width="42"' in row
    assert re.findall(r'ov-progress-tick" data-left="([\d.]+)"', row) == ["10.000", "36.667", "63.333", "90.000"]
    left = int(re.search(r'data-bake-left="(\d+)"', row).group(1))
    assert 40 <= left <= 45
    # The scheduled one is listed apart, with its start time.
    sched = re.search(rf'<tr data-deployment="{later.pk}">.*?</tr>', html, re.S).group(0)
    assert later.start_at.strftime("%Y-%m-%d %H:%M") in sched and "dana" in sched
    assert 'class="ov-progress"' not in sched


def test_gates_show_their_latest_value_against_their_limit_in_one_query(client, team, deployer, django_assert_max_num_queries):
    gates = Gates(max_error_ratio=0.05, max_p99_ms=250)
    d = rows.deployment(rows.endpoint(team, "fraud"), state="analyzing", step_index=1, traffic=50, gates=gates)
    rows.evaluations(d, 3, value=0.01, step_index=0)  # older: passed at step 1
    rows.evaluations(d, 1, value=0.2, verdict="fail")  # the latest: 20% against 5%
    rows.evaluations(d, 1, gate="metrics", value=None, limit=0, verdict="no_data")
    html = section(page(client, deployer, PART), "ov-deployments")
    gates_html = re.search(rf'aria-label="Gates of deployment {d.pk}">.*?</table>', html, re.S).group(0)
    error = re.search(r'<tr class="ov-gate ov-verdict-fail" data-gate="error_ratio".*?</tr>', gates_html, re.S).group(0)
    assert "Error rate" in error and '<span class="ov-gate-now">20.00%</span>' in error and "≤ 5.00%" in error
    assert 'data-width="100.00"' in error  # four times the limit: the bar is full, past the limit line
    assert "fail" in error and "on 500 requests" in error
    p99 = re.search(r'<tr class="ov-gate ov-verdict-none" data-gate="p99_ms".*?</tr>', gates_html, re.S).group(0)
    assert "≤ 250.0 ms" in p99 and "not judged yet" in p99 and "—" in p99 and 'data-width="0.00"' in p99
    guard = re.search(r'<tr class="ov-gate ov-verdict-none" data-gate="guard".*?</tr>', gates_html, re.S).group(0)
    assert "armed" in guard
    # The gates the deployment page shows, and only those (a Prometheus error's "metrics" row is its status).
    assert re.findall(r'data-gate="([\w:]+)"', gates_html) == ["error_ratio", "p99_ms", "guard"]

    # The latest evaluation of every gate of every deployment shown: one query, however many.
    for i in range(3):
        other = rows.deployment(rows.endpoint(team, f"e{i}"), state="analyzing", step_index=0, traffic=10)
        rows.evaluations(other, 4)
    with django_assert_max_num_queries(1):
        latest = overview.latest_evaluations(list(range(d.pk, d.pk + 4)))
    assert latest[d.pk]["error_ratio"].value == 0.2 and latest[d.pk]["metrics"].verdict == "no_data"
    assert [len(latest[pk]) for pk in range(d.pk + 1, d.pk + 4)] == [1, 1, 1]


def test_a_failed_rollback_comes_first_and_stands_out(client, team, deployer):
    ok = rows.deployment(rows.endpoint(team, "a"), state="shifting", step_index=0, traffic=10)
    stuck = rows.deployment(rows.endpoint(team, "b"), state="rollback_failed", step_index=0, traffic=10,
                            status_text="could not unload green on cpu-1")
    newer = rows.deployment(rows.endpoint(team, "c"), state="validating")
    html = section(page(client, deployer, PART), "ov-deployments")
    order = [int(pk) for pk in re.findall(r'<li class="ov-dep[^"]*" data-deployment="(\d+)"', html)]
    assert order == [stuck.pk, newer.pk, ok.pk]
    assert f'<li class="ov-dep ov-tone-bad ov-alarm" data-deployment="{stuck.pk}">' in html
    assert f'<li class="ov-dep ov-tone-run" data-deployment="{ok.pk}">' in html
    assert "could not unload green on cpu-1" in html


def test_past_deployments_stay_off_and_long_lists_are_cut(client, team, deployer):
    for state in ("retired", "rolled_back", "aborted", "failed", "cancelled"):
        rows.deployment(rows.endpoint(team, f"past-{state.replace('_', '-')}"), state=state)
    html = section(page(client, deployer, PART), "ov-deployments")
    assert "Nothing is moving." in html and "No deployment is scheduled." in html

    for i in range(overview.ACTIVE_SHOWN + 1):
        rows.deployment(rows.endpoint(team, f"a{i}"), state="baking", step_index=0, traffic=10)
    html = section(page(client, deployer, PART), "ov-deployments")
    assert len(re.findall(r'<li class="ov-dep', html)) == overview.ACTIVE_SHOWN
    assert "More in progress on the" in html


def test_the_deployments_part_loads_apart_and_polls_itself(client, moving, deployer):
    vision, later, _ = moving
    full = page(client, deployer)
    poller = re.search(r'<div id="overview-deployments"[^>]*>', full).group(0)
    assert 'hx-get="/?part=deployments"' in poller and 'hx-trigger="load, every 3s"' in poller
    placeholder = section(full, "ov-deployments")
    assert "Loading deployments…" in placeholder and "data-deployment" not in placeholder
    part = page(client, deployer, PART)
    assert not part.lstrip().startswith("<!doctype") and "<html" not in part
    assert re.findall(r'data-deployment="(\d+)"', part) == [str(vision.pk), str(later.pk)]
    assert 'role="progressbar"' in part and 'data-state="baking"' in part
    assert "Fleet health" not in part and "Recent changes" not in part


def test_fleet_health_counts_servers_and_says_how_far_each_gateway_replica_lags(client, deployer):
    pool = Pool.objects.create(name="p")
    now = timezone.now()
    for i, status in enumerate(["up", "up", "up", "down", "not_ready", "unknown"]):
        Server.objects.create(name=f"s{i}", pool=pool, http_url=f"http://127.0.0.1:{9000 + i}", status=status,
                              draining_since=now if i == 2 else None)
    RoutingTableState.objects.update_or_create(pk=1, defaults={"version": 12, "published_at": now - timedelta(seconds=7)})
    for rid, version, seen in [("gw-a", 12, 2), ("gw-b", 10, 3), ("gw-c", 9, 120)]:
        GatewayReplica.objects.create(replica_id=rid, address=f"10.0.0.1:{rid}", table_version=version,
                                      last_seen_at=now - timedelta(seconds=seen))
    html = section(page(client, deployer), "ov-fleet")
    counts = dict(re.findall(r'data-count="(\w+)"><span class="num">(\d+)</span>', html))
    assert counts == {"total": "6", "up": "3", "down": "1", "not_ready": "1", "draining": "1", "replicas": "2"}
    assert '<span class="num">2</span><span>gateway replicas live, 1 behind</span>' in html
    lag = re.search(r"1 live replica still serves an older table, (\d+) s after v12 was published\.", html)
    assert lag and 7 <= int(lag.group(1)) < 60, html
    assert re.search(r"routing table v12, published (\d+) s ago", html)
    replicas = re.findall(r'<tr data-replica="([\w-]+)">.*?data-behind="(\d+)".*?</tr>', html, re.S)
    assert replicas == [("gw-c", "3"), ("gw-b", "2"), ("gw-a", "0")]  # the silent one, then the furthest behind
    assert html.count("silent") == 1 and "2 versions behind" in html and ">current<" in html


def test_recent_audit_events_follow_the_audit_logs_visibility(client, team, other_team, deployer, outsider, platform_admin):
    system = Actor.system()
    audit_record(actor=system, action="label.move", obj=team, team=team, after={"x": 1}, reason="vision's")
    audit_record(actor=system, action="endpoint.create", obj=other_team, team=other_team, after={"x": 2})
    audit_record(actor=system, action="server.register", obj=team, team=None, after={"x": 3})  # platform-wide

    def actions(user):
        html = section(page(client, user), "ov-audit")
        return re.findall(r"<td><code>([\w.]+)</code>", html)

    assert actions(deployer) == ["label.move"]
    assert actions(outsider) == ["endpoint.create"]
    assert actions(platform_admin) == ["server.register", "endpoint.create", "label.move"]


def test_quota_use_of_each_of_the_users_teams(client, team, other_team, deployer, platform_admin):
    quota_set(actor=Actor(user=platform_admin, source="api"), team=team, gpus=8)
    html = section(page(client, deployer), "ov-quotas")
    assert 'data-quota-team="vision"' in html and 'data-quota-team="speech"' not in html
    assert "0 of 8 GPUs held" in html and 'role="meter"' in html

    html = section(page(client, platform_admin), "ov-quotas")
    assert 'data-quota-team="speech"' in html and 'data-quota-team="vision"' in html
    assert "no GPU quota set" in html  # speech has none
