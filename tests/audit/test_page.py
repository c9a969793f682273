"""The Audit page, its chain badge and the per-object history, rendered by Django's test client."""
import html
import re

from django.db import connection, transaction
from django.test import Client

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.audit.services import audit_record


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def shown_ids(response) -> list[int]:
    assert response.status_code == 200
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)"', response.content.decode())]


def test_the_pages_need_a_signed_in_user(client):
    for path in ("/audit/", "/audit/chain/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/?next=/audit/")


def test_the_page_lists_the_users_events_and_filters_them(log, deployer):
    client = signed_in(deployer)
    everything = shown_ids(client.get("/audit/"))
    assert everything == [log.events[i].pk for i in (6, 5, 4, 1, 0)]  # vision's, newest first
    assert shown_ids(client.get("/audit/", {"action": "model.*"})) == [log.events[1].pk, log.events[0].pk]
    assert shown_ids(client.get("/audit/", {"q": "leaked"})) == [log.events[6].pk]
    assert shown_ids(client.get("/audit/", {"source": "ui", "team": "vision"})) == [log.events[1].pk]
    page = client.get("/audit/", {"action": "model.*"}).content.decode()
    assert "2 events matching the filters" in page
    assert 'value="model.*"' in page  # the form keeps what was asked


def test_a_bad_filter_shows_its_error_and_no_rows(log, deployer):
    response = signed_in(deployer).get("/audit/", {"since": "last tuesday", "action": "model.*"})
    assert response.status_code == 200
    page = response.content.decode()
    assert shown_ids(response) == []
    assert 'aria-invalid="true"' in page
    assert "Enter an ISO 8601 date or datetime" in html.unescape(page)
    assert "No events are shown until the filters are valid." in page
    assert "Export CSV" not in page  # an export would only answer 400
    response = signed_in(deployer).get("/audit/", {"team": "speech"})  # not one of the deployer's teams
    assert shown_ids(response) == [] and "Select a valid choice" in response.content.decode()


def test_the_team_choices_are_the_users_teams(log, deployer, platform_admin):
    options = lambda user: re.findall(r'<option value="([^"]*)"', signed_in(user).get("/audit/").content.decode().split('name="team"')[1].split("</select>")[0])  # noqa: E731
    assert options(deployer) == ["", "vision"]
    assert options(platform_admin) == ["", "speech", "vision"]


def test_export_links_keep_the_filters_but_not_the_page(log, deployer):
    page = signed_in(deployer).get("/audit/", {"action": "model.*", "q": "res", "page": "1"}).content.decode()
    links = re.findall(r'href="(/api/v1/audit/events/export\.(?:csv|json)[^"]*)"', page)
    assert [html.unescape(link) for link in links] == [
        "/api/v1/audit/events/export.csv?action=model.%2A&q=res",
        "/api/v1/audit/events/export.json?action=model.%2A&q=res",
    ]
    exported = signed_in(deployer).get(html.unescape(links[0]))
    body = b"".join(exported.streaming_content).decode()
    assert body.count("\n") == 2 and "resnet50" in body  # the header and one row, as the page shows


def test_the_pager_keeps_the_filters(team, deployer):
    with transaction.atomic():
        for i in range(55):
            audit_record(actor=Actor(user=deployer, source="ui"), action="team.touch", obj=team, team=team, after={"i": i})
    client = signed_in(deployer)
    first = client.get("/audit/", {"action": "team.touch"})
    assert len(shown_ids(first)) == 50
    assert 'href="?action=team.touch&page=2"' in html.unescape(first.content.decode())
    second = client.get("/audit/", {"action": "team.touch", "page": 2})
    assert len(shown_ids(second)) == 5


def test_an_event_shows_its_changes(log, deployer):
    page = signed_in(deployer).get("/audit/", {"action": "token.revoke"}).content.decode()
    row = page.split(f'id="event-{log.events[6].pk}"')[1].split("</tr>\n")[0]
    assert "<summary>1 field</summary>" in row
    revoked = log.events[6].after["revoked_at"]
    assert re.search(r"<code>revoked_at</code>.*<del><code>null</code></del>.*<ins><code>" + re.escape(revoked), row, re.S)
    assert "Leaked in a CI log" in row and log.events[6].request_id in row


def test_the_chain_badge_says_whether_the_chain_verifies(log, viewer):
    client = signed_in(viewer)
    badge = client.get("/audit/chain/").content.decode()
    assert "Chain verified" in badge and "7 events" in badge and 'class="chain ok"' in badge

    with connection.cursor() as cursor:  # tamper behind the triggers, as a superuser could
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(f"UPDATE {AuditEvent._meta.db_table} SET reason = '' WHERE id = %s", [log.events[6].pk])
        cursor.execute("SET session_replication_role = DEFAULT")
    badge = client.get("/audit/chain/").content.decode()
    assert f"Chain broken at event {log.events[6].pk}" in badge and 'class="chain broken"' in badge
    assert 'hx-get="/audit/chain/"' in client.get("/audit/").content.decode()  # the page loads it


def test_a_model_page_shows_its_own_history(model, deployer):
    page = signed_in(deployer).get(f"/models/{model.pk}/").content.decode()
    history = page.split('id="history-title-')[1].split("</section>")[0]
    assert "model.create" in history and "dana" in history
    assert "<code>name</code>" in history and "fraud-scorer" in history  # the after snapshot
    assert f'href="/audit/?object_type=registry.model&amp;object_id={model.pk}"' in history
