"""GET /api/v1/audit/events/ and its exports: filters, visibility, errors."""
import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.http import StreamingHttpResponse
from django.utils import timezone

from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.services import audit_record

URL = "/api/v1/audit/events/"
VISION = {0, 1, 4, 5, 6}  # positions in log.events (see conftest): what vision's members see


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def positions(log, *indexes) -> set[int]:
    return {log.events[i].pk for i in indexes}


def test_reading_needs_a_signed_in_user(api, log):
    for path in (URL, f"{URL}{log.events[0].pk}/", f"{URL}export.csv", f"{URL}export.json", "/api/v1/audit/verify/"):
        assert api().get(path).status_code in (401, 403), path


@pytest.mark.parametrize(
    "user_fixture, visible",
    [("deployer", VISION), ("viewer", VISION), ("outsider", {2}), ("platform_admin", set(range(7)))],
)
def test_each_user_sees_their_teams_events_and_only_admins_see_platform_events(request, api, log, user_fixture, visible):
    got = ids(api(request.getfixturevalue(user_fixture)).get(URL))
    assert set(got) == positions(log, *visible)
    assert got == sorted(got, reverse=True)  # newest first


def test_another_teams_event_is_404(api, log, deployer):
    client = api(deployer)
    assert client.get(f"{URL}{log.events[2].pk}/").status_code == 404  # speech's
    assert client.get(f"{URL}{log.events[3].pk}/").status_code == 404  # platform-wide
    body = client.get(f"{URL}{log.events[6].pk}/").json()
    assert body["action"] == "token.revoke" and body["team"] == "vision" and body["reason"] == "Leaked in a CI log"
    assert body["actor"] == "pat" and body["source"] == "api" and body["hash"] == log.events[6].hash
    assert body["before"] == {"revoked_at": None} and body["after"]["revoked_at"]


def _cases():
    model_id = lambda log: log.events[0].object_id  # noqa: E731
    at = lambda log, i: log.events[i].created_at.isoformat()  # noqa: E731
    today = lambda log: log.events[0].created_at.date()  # noqa: E731
    return [
        ({"team": "vision"}, VISION),
        ({"team": "speech"}, {2}),
        ({"actor": "DANA"}, {0, 1}),
        ({"source": "ui"}, {1}),
        ({"action": "model.create"}, {0, 1, 2}),
        ({"action": "model.*"}, {0, 1, 2}),
        ({"action": "token."}, {5, 6}),
        ({"action": "token"}, set()),
        ({"object_type": "fleet.pool"}, {3}),
        (lambda log: {"object_type": "registry.model", "object_id": model_id(log)}, {0}),
        ({"q": "LEAKED"}, {6}),
        ({"q": "resnet"}, {1}),
        (lambda log: {"since": at(log, 2)}, {2, 3, 4, 5, 6}),
        (lambda log: {"until": at(log, 2)}, {0, 1}),
        (lambda log: {"since": at(log, 2).replace("+00:00", "Z"), "until": at(log, 4)}, {2, 3}),
        (lambda log: {"since": str(today(log))}, set(range(7))),
        (lambda log: {"until": str(today(log))}, set(range(7))),  # a date includes its whole day
        (lambda log: {"until": str(today(log) - timedelta(days=1))}, set()),
        ({"team": "vision", "source": "api", "action": "model.*"}, {0}),
    ]


@pytest.mark.parametrize("params, expected", _cases())
def test_filters(api, log, platform_admin, params, expected):
    params = params(log) if callable(params) else params
    assert set(ids(api(platform_admin).get(URL, params))) == positions(log, *expected)


def test_an_unencoded_plus_in_a_datetime_still_parses(api, log, platform_admin):
    since = log.events[5].created_at.isoformat()  # ends in +00:00
    response = api(platform_admin).get(f"{URL}?since={since}")  # the "+" arrives as a space
    assert set(ids(response)) == positions(log, 5, 6)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"since": "2026-13-45"}, "since"),
        ({"until": "soon"}, "until"),
        ({"team": "no-such-team"}, "team"),
        ({"team": "speech"}, "team"),  # exists, but not the deployer's: the same answer as a missing one
        ({"source": "robot"}, "source"),
    ],
)
def test_bad_filter_values_are_400_naming_the_field(api, log, deployer, params, field):
    for path in (URL, f"{URL}export.csv", f"{URL}export.json"):
        response = api(deployer).get(path, params)
        assert response.status_code == 400, (path, response.content)
        body = response.json()
        assert list(body["fields"]) == [field], body
        assert body["detail"].startswith(f"{field}: ")


def test_pages(api, log, platform_admin):
    client = api(platform_admin)
    first = client.get(URL, {"page_size": 3}).json()
    assert first["count"] == 7 and len(first["results"]) == 3 and first["next"] and first["previous"] is None
    rest = client.get(first["next"]).json()
    assert [r["id"] for r in rest["results"]] == [log.events[i].pk for i in (3, 2, 1)]
    oldest_first = ids(client.get(URL, {"ordering": "id"}))
    assert oldest_first == [e.pk for e in log.events]


def read_stream(response) -> str:
    assert isinstance(response, StreamingHttpResponse) and response.streaming
    pieces = [p.decode() if isinstance(p, bytes) else p for p in response.streaming_content]
    return "".join(pieces)


def test_csv_export_honours_filters_and_visibility(api, log, deployer):
    response = api(deployer).get(f"{URL}export.csv", {"action": "model.*"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-events-')
    rows = list(csv.DictReader(io.StringIO(read_stream(response))))
    assert [int(r["id"]) for r in rows] == [log.events[1].pk, log.events[0].pk]  # not speech's model
    first = rows[1]
    assert (first["actor"], first["source"], first["team"], first["action"]) == ("dana", "api", "vision", "model.create")
    assert json.loads(first["after"])["name"] == "fraud-scorer" and first["before"] == ""
    assert first["hash"] == log.events[0].hash and first["prev_hash"] == ""
    assert list(rows[0]) == ["id", "created_at", "actor", "actor_user_id", "token_id", "source", "request_id", "ip", "team",
                             "object_type", "object_id", "object_repr", "action", "before", "after", "reason", "prev_hash", "hash"]


def test_csv_cells_that_look_like_formulas_stay_text(api, team, deployer):
    with transaction.atomic():
        audit_record(actor=Actor(user=deployer, source="api"), action="team.touch", obj=team, team=team,
                     reason='=HYPERLINK("http://evil.example","click")')
    rows = list(csv.DictReader(io.StringIO(read_stream(api(deployer).get(f"{URL}export.csv")))))
    assert rows[0]["reason"] == '\'=HYPERLINK("http://evil.example","click")'


def test_json_export_is_one_array_of_what_the_list_shows(api, log, platform_admin):
    client = api(platform_admin)
    response = client.get(f"{URL}export.json")
    assert response["Content-Type"] == "application/json"
    exported = json.loads(read_stream(response))
    listed = client.get(URL).json()["results"]
    assert [e["id"] for e in exported] == [e["id"] for e in listed]
    for row, shown in zip(exported, listed):
        assert {k: row[k] for k in ("actor", "team", "action", "before", "after", "reason", "hash")} == \
               {k: shown[k] for k in ("actor", "team", "action", "before", "after", "reason", "hash")}
    assert json.loads(read_stream(client.get(f"{URL}export.json", {"action": "nothing.matches"}))) == []


def test_a_read_token_exports_for_scripts(api, log, deployer):
    _token, secret = token_create(actor=Actor(user=deployer, source="api"), user=deployer, name="siem", scopes=["read"],
                                  expires_at=timezone.now() + timedelta(days=1))
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    exported = json.loads(read_stream(client.get(f"{URL}export.json", {"team": "vision"})))
    assert {e["id"] for e in exported} == positions(log, *VISION)
    assert {e["team"] for e in exported} == {"vision"}
