"""GET /api/v1/metrics/series/: strict parameters, team isolation, Prometheus unset or down
(answered fast, with a status, never zeros), and real rates from a real gateway and Prometheus."""
import time
import uuid

import pytest
from django.contrib.auth import get_user_model

from controlplane.accounts.models import Membership, Role, Team
from controlplane.endpoints.models import Endpoint, EndpointKind
from controlplane.fleet.models import Pool, Server
from controlplane.metrics import charts
from tests.metrics.chart_traffic import GREEN_FAILURES, chart_traffic
from tests.quotas.conftest import make_model

URL = "/api/v1/metrics/series/"
CLOSED = "http://127.0.0.1:9"


@pytest.fixture
def objects(team, other_team):
    mine = make_model(team, "fraud-scorer")
    theirs = make_model(other_team, "asr")
    ep = Endpoint.objects.create(team=team, name="fraud", model=mine, kind=EndpointKind.LABEL, label="stable")
    their_ep = Endpoint.objects.create(team=other_team, name="asr", model=theirs, kind=EndpointKind.LABEL, label="stable")
    server = Server.objects.create(name="triton-1", pool=Pool.objects.create(name="cpu"), http_url=CLOSED)
    return {"model": mine, "their_model": theirs, "endpoint": ep, "their_endpoint": their_ep, "server": server}


def get(client, **params):
    return client.get(URL, params)


@pytest.mark.parametrize("params, field", [
    ({"scope": "fleet"}, "series"),
    ({"series": "cpu", "scope": "fleet"}, "series"),
    ({"series": "requests"}, "scope"),
    ({"series": "requests", "scope": "team:1"}, "scope"),
    ({"series": "requests", "scope": "endpoint:abc"}, "scope"),
    ({"series": "requests", "scope": "endpoint:0"}, "scope"),
    ({"series": "requests", "scope": "endpoint:99999999999999999999"}, "scope"),
    ({"series": "requests", "scope": "fleet", "range": "2h"}, "range"),
    ({"series": "requests", "scope": "fleet", "range": ""}, "range"),
    ({"series": "requests", "scope": "fleet", "since": "1h"}, "since"),
    ({"series": "gpu_utilization", "scope": "fleet"}, "series"),  # not charted for the fleet
    ({"series": "latency_p99", "scope": "fleet"}, "series"),
])
def test_bad_parameters_are_a_400_naming_the_parameter(api, deployer, params, field):
    response = api(deployer).get(URL, params)
    assert response.status_code == 400, response.content
    assert list(response.json()["fields"]) == [field]
    assert response.json()["detail"].startswith(f"{field}: ")


def test_a_repeated_parameter_is_refused(api, deployer):
    response = api(deployer).get(f"{URL}?series=requests&series=errors&scope=fleet")
    assert response.status_code == 400 and list(response.json()["fields"]) == ["series"]


def test_signed_out_is_a_401(api):
    assert api().get(URL, {"series": "requests", "scope": "fleet"}).status_code in (401, 403)


def test_another_teams_objects_answer_404_like_missing_ones(api, deployer, objects, settings):
    settings.SWITCHYARD_PROMETHEUS_URL = ""
    client = api(deployer)
    for kind, theirs in (("endpoint", objects["their_endpoint"]), ("model", objects["their_model"])):
        missing = get(client, series="requests", scope=f"{kind}:{theirs.pk + 1000}")
        other = get(client, series="requests", scope=f"{kind}:{theirs.pk}")
        assert other.status_code == missing.status_code == 404
        assert other.json() == missing.json()
        mine = objects["endpoint"] if kind == "endpoint" else objects["model"]
        assert get(client, series="requests", scope=f"{kind}:{mine.pk}").status_code == 200
    assert get(client, series="requests", scope="server:999999").status_code == 404
    assert get(client, series="requests", scope=f"server:{objects['server'].pk}").status_code == 200  # the fleet is shared


def test_not_configured_says_so_and_draws_nothing(api, deployer, objects, settings):
    settings.SWITCHYARD_PROMETHEUS_URL = ""
    body = get(api(deployer), series="requests", scope=f"endpoint:{objects['endpoint'].pk}", range="24h").json()
    assert body["status"] == "not_configured" and body["message"] == "Metrics are not configured."
    assert body["lines"] == [] and body["markers"] == []
    assert body["step"] == 120 and body["range"] == "24h" and body["series"] == "requests"
    assert body["scope"] == f"endpoint:{objects['endpoint'].pk}"
    assert body["end"] - body["start"] == 86400 and body["start"] % 120 == 0


def test_a_down_prometheus_answers_fast_with_a_reason(api, deployer, objects, settings):
    settings.SWITCHYARD_PROMETHEUS_URL = CLOSED
    client = api(deployer)
    started = time.monotonic()
    body = get(client, series="latency_p99", scope=f"endpoint:{objects['endpoint'].pk}").json()
    assert time.monotonic() - started < 0.5
    assert body["status"] == "unavailable" and body["message"].startswith("Prometheus is not answering")
    assert body["lines"] == []


def test_a_user_in_no_team_gets_no_data_without_a_query(api, settings, db):
    from tests.conftest import _user

    settings.SWITCHYARD_PROMETHEUS_URL = CLOSED  # would be "unavailable" if it were asked
    body = get(api(_user("loner")), series="requests", scope="fleet").json()
    assert body["status"] == "no_data" and body["lines"] == []


# -- real numbers ----------------------------------------------------------------------------------


def _last(line) -> float:
    values = [v for _, v in line["points"] if v is not None]
    assert values, line
    return values[-1]


@pytest.mark.django_db(transaction=True)
def test_rates_from_a_real_gateway_through_a_real_prometheus(
        api, settings, prometheus, prometheus_token, other_team, outsider, triton_fleet, s3_client, tmp_path):
    settings.SWITCHYARD_PROMETHEUS_URL = prometheus.url
    # A team and a user of their own: the session's Prometheus still holds the series of earlier
    # tests' "vision" endpoints and models, which a team-wide scope (server, fleet) rightly includes.
    team = Team.objects.create(slug=f"rates-{uuid.uuid4().hex[:8]}")
    deployer = get_user_model().objects.create_user(username=f"{team.slug}-deployer")
    Membership.objects.create(user=deployer, team=team, role=Role.DEPLOYER)
    with chart_traffic(prometheus, team, triton_fleet, s3_client, tmp_path) as known:
        client = api(deployer)
        scope = f"endpoint:{known.endpoint.pk}"
        sent = known.sent_rate()

        requests = get(client, series="requests", scope=scope, range="15m").json()
        assert requests["status"] == "ok" and requests["step"] == 5, requests["message"]
        by_label = {line["label"]: line for line in requests["lines"]}
        assert set(by_label) == {"blue v1", "green v2"}
        assert by_label["blue v1"]["labels"] == {"variant": "blue", "version": "1"}
        total = sum(_last(line) for line in requests["lines"])
        assert total == pytest.approx(sent, rel=0.25)
        for line in requests["lines"]:
            assert len(line["points"]) == 181  # 15 min every 5 s, both ends
            assert all(t % 5 == 0 for t, _ in line["points"])
            assert line["points"][0][1] is None  # before the traffic: no data, not zero

        ratio = {line["label"]: _last(line) for line in get(client, series="error_ratio", scope=scope).json()["lines"]}
        assert ratio["blue v1"] == pytest.approx(0.0, abs=0.02)
        assert ratio["green v2"] == pytest.approx(GREEN_FAILURES, abs=0.12)

        latency = get(client, series="latency_p99", scope=scope).json()
        assert {line["label"] for line in latency["lines"]} == {"blue", "green"}
        assert all(0 < _last(line) < 1 for line in latency["lines"])

        model = get(client, series="inferences", scope=f"model:{known.model.pk}").json()
        inferences = {line["label"]: _last(line) for line in model["lines"]}
        assert set(inferences) == {"v1", "v2"}
        assert inferences["v1"] == pytest.approx(_last(by_label["blue v1"]), rel=0.3), (inferences, {k: _last(v) for k, v in by_label.items()}, sent, model["lines"][0]["points"][-8:])
        batch = get(client, series="batch_size", scope=f"model:{known.model.pk}").json()
        sizes = {line["label"]: _last(line) for line in batch["lines"]}
        assert sizes["v1"] == pytest.approx(1.0, abs=0.2)  # one request at a time
        # Triton counts only succeeded inferences but every execution: green's failures halve it.
        assert sizes["v2"] == pytest.approx(1 - GREEN_FAILURES, abs=0.2)

        server = get(client, series="requests", scope=f"server:{known.servers[0].pk}").json()
        assert [line["label"] for line in server["lines"]] == [known.model.triton_name]
        # CPU servers: GPU series are unknown, so no data rather than a line at zero.
        assert get(client, series="gpu_utilization", scope=f"server:{known.servers[0].pk}").json()["status"] == "no_data"

        fleet = get(client, series="requests", scope="fleet").json()
        assert [line["label"] for line in fleet["lines"]] == ["your teams' endpoints"]
        assert _last(fleet["lines"][0]) == pytest.approx(sent, rel=0.25)

        # Another team: a 404 on the endpoint and the model, no line on the shared server.
        other = api(outsider)
        assert get(other, series="requests", scope=scope).status_code == 404
        assert get(other, series="requests", scope=f"model:{known.model.pk}").status_code == 404
        assert get(other, series="requests", scope=f"server:{known.servers[0].pk}").json()["lines"] == []
        assert get(other, series="requests", scope="fleet").json()["status"] == "no_data"


def test_ranges_map_to_steps():
    assert {key: charts.choose_step(seconds) for key, seconds in charts.RANGES.items()} == {
        "15m": 5, "1h": 5, "24h": 120, "7d": 900, "30d": 3600}
