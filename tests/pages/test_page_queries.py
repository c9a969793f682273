"""The overview, the Deployments list (and its plan form) and a deployment's page (and its live part) make the same
number of queries whatever the data: measured with a little data and with a lot more (endpoints,
deployments in progress, scheduled and past, their transitions and gate evaluations, servers,
gateway replicas, audit events, teams), and asserted equal. Each page must also show more rows
the second time, so that an N+1 would have rows to multiply; the canaries at the end prove that
the comparison catches one."""
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.accounts.models import Membership, Role, Team
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record
from controlplane.deployments.spec import Gates
from controlplane.endpoints.models import GatewayReplica, RoutingTableState
from controlplane.fleet.models import Pool, Server
from controlplane.quotas.services import quota_set
from tests.pages import rows

pytestmark = pytest.mark.django_db

# {d} is the deployment whose own page is fetched; it gains history and evaluations as data grows.
PAGES = ["/", "/?part=deployments", "/deployments/", "/deployments/?part=plan", "/deployments/{d}/",
         "/deployments/{d}/live/"]
# In progress, in turn: every state the overview lists (a succeeded one does not hold its endpoint).
MOVING = ["validating", "provisioning", "shifting", "baking", "analyzing", "paused", "awaiting_approval",
          "promoting", "succeeded", "rolling_back", "rollback_failed", "pending", "verifying"]
PAST = ["retired", "rolled_back", "aborted", "failed", "cancelled"]


class Data:
    """Grows every kind of row the three pages read, spread over the deployer's teams and others."""

    def __init__(self, teams, deployer, target):
        self.teams, self.deployer, self.target = teams, deployer, target
        self.n = 0
        self.pool = Pool.objects.create(name="grow")
        RoutingTableState.objects.update_or_create(pk=1, defaults={"version": 40, "published_at": timezone.now()})

    def grow(self, n: int):
        now = timezone.now()
        for i in range(self.n, n):
            team = self.teams[i % len(self.teams)]
            ep = rows.endpoint(team, f"ep-{i}")
            for k, state in enumerate(PAST):  # finished ones first, on the same endpoint
                rows.history(rows.deployment(ep, state=state, step_index=1, traffic=0), 3 + k)
            state = MOVING[i % len(MOVING)]
            d = rows.deployment(ep, state=state, step_index=i % 3, traffic=10 * (i % 3 + 1),
                                gates=Gates(max_error_ratio=0.05, max_p99_ms=300), created_by=self.deployer,
                                step_started_at=now - timedelta(seconds=20))
            rows.history(d, 4 + i % 5)
            rows.evaluations(d, 2 + i % 4)
            rows.evaluations(d, 2, gate="p99_ms", value=120 + i, limit=300)
            rows.deployment(rows.endpoint(team, f"later-{i}"), state="scheduled", start_at=now + timedelta(hours=i + 1),
                            created_by=self.deployer)
            Server.objects.create(name=f"s-{i}", pool=self.pool, http_url=f"http://127.0.0.1:{10000 + i}",
                                  status=["up", "down", "not_ready"][i % 3], draining_since=now if i % 4 == 0 else None)
            GatewayReplica.objects.create(replica_id=f"gw-{i}", address=f"10.0.0.{i}:9000", table_version=40 - i % 3,
                                          last_seen_at=now - timedelta(seconds=3 * i))
            audit_record(actor=Actor(user=self.deployer, source="ui"), action="label.move", obj=ep, team=team,
                         after={"i": i}, reason="grow")
            extra = Team.objects.create(slug=f"grow-{i}", display_name=f"Grow {i}")
            Membership.objects.create(user=self.deployer, team=extra, role=Role.VIEWER)
            quota_set(actor=Actor.system(), team=extra, gpus=i + 1)
        rows.history(self.target, 3 * (n - self.n))  # the target's own history and evaluations grow too
        rows.evaluations(self.target, 4 * (n - self.n), value=0.01 * (n % 4))
        rows.evaluations(self.target, n - self.n, gate="guard", value=0.3, verdict="fail")
        self.n = n


SMALL, LARGE = 2, 12


@pytest.fixture
def data(team, other_team, deployer):
    audio = Team.objects.create(slug="audio", display_name="Audio")
    Membership.objects.create(user=deployer, team=audio, role=Role.VIEWER)
    target = rows.deployment(rows.endpoint(team, "target"), state="analyzing", step_index=1, traffic=50,
                             gates=Gates(max_error_ratio=0.05, max_p99_ms=300, max_p99_ratio=1.5), created_by=deployer)
    return Data([team, other_team, audio], deployer, target)


def fetch(client, path):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    html = response.content.decode()
    return [q["sql"] for q in ctx.captured_queries], len(re.findall(r"<(?:tr|li|option)[ >]", html))


def _shape(sql: str) -> str:
    return re.sub(r"\b\d+\b|'[^']*'", "?", sql)


def explain(path, small, large) -> str:
    """Which queries the larger data set added: their shapes (literals as ?), with how often each ran."""
    from collections import Counter

    before, after = Counter(map(_shape, small)), Counter(map(_shape, large))
    grown = {q: after[q] - before[q] for q in after if after[q] != before[q]}
    lines = [f"{path}: {len(small)} queries with a little data, {len(large)} with more. Shapes whose count changed:"]
    lines += [f"  {n:+d}  {q[:300]}" for q, n in grown.items()]
    return "\n".join(lines)


def small_and_large(client, data, page):
    data.grow(SMALL)
    path = page.format(d=data.target.pk)
    small, small_rows = fetch(client, path)
    data.grow(LARGE)
    large, large_rows = fetch(client, path)
    assert large_rows > small_rows, f"{path}: the larger data set must show more rows ({small_rows} -> {large_rows})"
    return path, small, large


@pytest.mark.parametrize("user_fixture", ["deployer", "platform_admin"])
@pytest.mark.parametrize("page", PAGES)
def test_query_count_does_not_grow_with_the_data(request, client, data, page, user_fixture):
    client.force_login(request.getfixturevalue(user_fixture))
    path, small, large = small_and_large(client, data, page)
    assert len(large) == len(small), explain(path, small, large)


# Canaries: make the overview forget a select_related, or read each deployment's gates on its own,
# and the comparison above must notice.


def test_the_comparison_catches_a_missing_select_related(monkeypatch, client, data, deployer):
    from controlplane.common import overview

    original = overview._deployments
    monkeypatch.setattr(overview, "_deployments", lambda user: original(user).select_related(None))
    client.force_login(deployer)
    path, small, large = small_and_large(client, data, "/?part=deployments")
    assert len(large) > len(small), f"{path}: an N+1 went unnoticed ({len(small)} -> {len(large)} queries)"


def test_the_comparison_catches_gates_read_one_deployment_at_a_time(monkeypatch, client, data, deployer):
    from controlplane.common import overview

    original = overview.latest_evaluations
    monkeypatch.setattr(overview, "latest_evaluations",
                        lambda ids: {pk: original([pk])[pk] for pk in ids})
    client.force_login(deployer)
    path, small, large = small_and_large(client, data, "/?part=deployments")
    assert len(large) > len(small), f"{path}: an N+1 went unnoticed ({len(small)} -> {len(large)} queries)"
