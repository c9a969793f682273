"""The query count of every main page and list endpoint must not grow with the data.

Each page is fetched with a little data (every page shows at least one row), then with a lot
more, and both counts must be equal. Each test also checks that the second fetch really shows
more rows, so that an N+1 has rows to multiply; the canary tests at the end prove that these
comparisons catch one.
"""
import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.accounts.models import Membership, Role, Team
from controlplane.audit.models import AuditEvent
from controlplane.fleet.models import Pool, Server
from controlplane.registry.models import Model, ModelVersion, VersionStatus
from tests.conftest import TENSORS_IN, TENSORS_OUT

# {model} is the conftest model (vision/fraud-scorer), the one whose versions grow.
PAGES = [
    "/",
    "/models/",
    "/models/{model}/",
    "/fleet/",
    "/audit/",
    "/api/v1/models/",
    "/api/v1/models/{model}/versions/",
    "/api/v1/servers/",
    "/api/v1/pools/",
]


class Data:
    """Adds rows in steps; every object gets an unrelated-looking owner so FKs matter."""

    def __init__(self, teams, users, model):
        self.teams, self.users, self.model = teams, users, model
        self.n = {"models": 0, "versions": 0, "servers": 0, "pools": 0, "events": 0}

    def grow(self, *, models, versions, servers, pools, events):
        for i in range(self.n["pools"], pools):
            Pool.objects.create(name=f"pool-{i}")
        pool_list = list(Pool.objects.order_by("pk"))
        for i in range(self.n["models"], models):
            Model.objects.create(
                team=self.teams[i % len(self.teams)], name=f"m-{i}", backend="onnxruntime",
                inputs=TENSORS_IN, outputs=TENSORS_OUT, created_by=self.users[i % len(self.users)],
            )
        others = list(Model.objects.exclude(pk=self.model.pk).order_by("pk"))
        for i in range(self.n["versions"], versions):
            # Two thirds on the detail page's model, the rest spread over the other models.
            target = self.model if i % 3 or not others else others[i % len(others)]
            number = (target.versions.order_by("-version").values_list("version", flat=True).first() or 0) + 1
            ModelVersion.objects.create(
                model=target, version=number, status=VersionStatus.READY, artifact_uri=f"s3://b/repo/{target.pk}/{number}/",
                checksum="sha256:" + "0" * 64, size_bytes=1000 + i, files=[{"path": "model.onnx", "size": 1000, "sha256": "0" * 64}],
                created_by=self.users[i % len(self.users)],
            )
        now = timezone.now()
        for i in range(self.n["servers"], servers):
            Server.objects.create(
                name=f"triton-{i}", pool=pool_list[i % len(pool_list)], http_url=f"http://10.0.0.{i}:8000",
                status=["up", "down", "not_ready"][i % 3], gpu_type="A100", gpu_count=i % 4, last_seen_at=now,
                repository_index=[
                    {"name": f"vision.m-{k}", "version": str(k + 1), "state": "READY", "reason": ""} for k in range(1 + i % 3)
                ],
            )
        for i in range(self.n["events"], events):
            team = self.teams[i % len(self.teams)] if i % 5 else None
            AuditEvent.objects.create(
                actor_user=self.users[i % len(self.users)], actor_name=self.users[i % len(self.users)].username,
                source="api", team=team, object_type="registry.model", object_id=str(self.model.pk),
                object_repr=str(self.model), action="model.update", after={"i": i},
            )
        self.n = {"models": models, "versions": versions, "servers": servers, "pools": pools, "events": events}


SMALL = {"models": 2, "versions": 3, "servers": 2, "pools": 1, "events": 3}
LARGE = {"models": 30, "versions": 60, "servers": 40, "pools": 4, "events": 60}


@pytest.fixture
def data(team, other_team, deployer, model):
    # A third team the deployer only views, and a second author for versions and events.
    audio = Team.objects.create(slug="audio")
    Membership.objects.create(user=deployer, team=audio, role=Role.VIEWER)
    return Data(teams=[team, other_team, audio], users=[deployer, get_user_model().objects.create_user(username="erin")], model=model)


def fetch(client, path):
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return [q["sql"] for q in ctx.captured_queries], rows(response)


def rows(response) -> int:
    """How many rows the page shows: API results, or table rows and list items in HTML."""
    if response["Content-Type"].startswith("application/json"):
        return len(response.json()["results"])
    html = response.content.decode()
    return len(re.findall(r"<tr[ >]", html)) + len(re.findall(r"<li>", html))


def queries_small_and_large(client, data, path):
    data.grow(**SMALL)
    small, small_rows = fetch(client, path)
    data.grow(**LARGE)
    large, large_rows = fetch(client, path)
    assert large_rows > small_rows, f"{path}: the larger data set must show more rows ({small_rows} -> {large_rows})"
    return small, large


def _explain(path, small, large) -> str:
    lines = [f"{path}: {len(small)} queries with little data, {len(large)} with more. Queries with more data:"]
    lines += [f"  {sql[:200]}" for sql in large]
    return "\n".join(lines)


@pytest.mark.parametrize("user_fixture", ["deployer", "platform_admin"])
@pytest.mark.parametrize("page", PAGES)
def test_query_count_does_not_grow_with_the_data(request, api, data, model, page, user_fixture):
    client = api(request.getfixturevalue(user_fixture))
    path = page.format(model=model.pk)
    small, large = queries_small_and_large(client, data, path)
    assert len(large) == len(small), _explain(path, small, large)


# Canaries: make a selector forget its select_related, and the comparison above must notice.


def _without_select_related(selector):
    def wrapped(*args, **kwargs):
        return selector(*args, **kwargs).select_related(None)

    return wrapped


@pytest.mark.parametrize(
    "module, name, page",
    [
        ("controlplane.fleet.selectors", "servers_list", "/fleet/"),
        ("controlplane.fleet.selectors", "servers_list", "/api/v1/servers/"),
        ("controlplane.registry.selectors", "models_visible", "/models/"),
        ("controlplane.registry.selectors", "models_visible", "/api/v1/models/"),
        ("controlplane.registry.selectors", "versions_of", "/models/{model}/"),
        ("controlplane.registry.selectors", "versions_of", "/api/v1/models/{model}/versions/"),
    ],
)
def test_the_comparison_catches_an_n_plus_one(monkeypatch, api, deployer, data, model, module, name, page):
    import importlib

    selectors = importlib.import_module(module)
    monkeypatch.setattr(selectors, name, _without_select_related(getattr(selectors, name)))
    path = page.format(model=model.pk)
    small, large = queries_small_and_large(api(deployer), data, path)
    assert len(large) > len(small), f"{path}: an N+1 went unnoticed ({len(small)} -> {len(large)} queries)"
