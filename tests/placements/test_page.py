"""The placements section of the model page, its forms and the live fragment (Django's client)."""
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.placements import services
from controlplane.placements.models import Drift, Placement, PlacementTarget, ReconcileRun, TargetSample, TargetState
from tests.placements.conftest import make_config


@pytest.fixture
def placed(deployer, model, versions, offline_servers):
    placement, _ = services.placement_create(actor=Actor(user=deployer, source="api"), model=model, versions=[1],
                                             servers=offline_servers)
    return placement


def page(client, model):
    response = client.get(f"/models/{model.pk}/")
    assert response.status_code == 200
    return response.content.decode()


def test_deployers_see_targets_actions_and_the_form(client, deployer, model, placed):
    client.force_login(deployer)
    html = page(client, model)
    assert f'data-placement="{placed.pk}"' in html
    assert html.count('class="target state-pending"') == 2
    assert f'hx-get="/placements/{placed.pk}/live/"' in html and 'hx-trigger="load, every 10s"' in html
    assert f'action="/placements/{placed.pk}/remove/"' in html and f'data-confirm="Remove placement {placed.pk}? ' in html
    assert 'action="/placements/' not in html.replace(f'action="/placements/{placed.pk}/remove/"', "")  # no retry: nothing failed
    assert f'action="/models/{model.pk}/placements/"' in html
    assert re.search(r'<option value="triton-0"\s*>triton-0 \(cpu, unknown\)</option>', html) and "Triton defaults" in html


def test_viewers_see_the_state_but_no_controls(client, viewer, model, placed):
    client.force_login(viewer)
    html = page(client, model)
    assert html.count('class="target state-pending"') == 2
    assert "/remove/" not in html and "placement-form" not in html


def test_failed_and_drifted_targets_are_highlighted_with_their_text(client, deployer, model, placed):
    services.placement_apply(placement_id=placed.pk)
    PlacementTarget.objects.filter(server_name="triton-1").update(drift=Drift.MISSING, drift_detail="not loaded")
    ReconcileRun.objects.create(started_at="2030-01-01T00:00Z", finished_at="2030-01-01T00:00Z", report={
        "extra": [{"server": "triton-0", "model": "vision.fraud-scorer", "versions": "v9 READY"},
                  {"server": "triton-0", "model": "vision.other", "versions": "v1 READY"}]})
    client.force_login(deployer)
    html = page(client, model)
    assert re.search(r'<tr data-server="triton-1" class="target state-failed drifted">', html)
    assert re.search(r'<tr data-server="triton-0" class="target state-failed">', html)
    assert '<span class="drift-badge missing">missing</span>' in html and "Connection refused" in html
    assert f'action="/placements/{placed.pk}/retry/"' in html
    assert "v9 READY" in html and "vision.other" not in html  # extras of this model only


def test_create_retry_and_remove_through_the_forms(client, deployer, model, versions, offline_servers):
    make_config(model, 1, {"max_batch_size": 4})
    client.force_login(deployer)
    response = client.post(f"/models/{model.pk}/placements/", {"versions": ["2"], "servers": ["triton-1"], "config_revision": "1"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/models/{model.pk}/#placements"
    placement = Placement.objects.get()
    assert (placement.versions, placement.config.revision) == ([2], 1)
    assert "Placement {} created".format(placement.pk) in response.content.decode()
    assert AuditEvent.objects.get(action="placement.create").source == "ui"

    services.placement_apply(placement_id=placement.pk)
    client.post(f"/placements/{placement.pk}/retry/")
    assert PlacementTarget.objects.get().state == TargetState.PENDING
    response = client.post(f"/placements/{placement.pk}/remove/", follow=True)
    placement.refresh_from_db()
    assert placement.removed_at is not None and "removed" in response.content.decode()
    assert f"Recently removed: placement {placement.pk} (v2, " in response.content.decode()
    assert f'data-placement="{placement.pk}"' not in response.content.decode()
    assert AuditEvent.objects.get(action="placement.remove").source == "ui"


def field_errors(html: str, field_id: str) -> list[str]:
    """The errors in the errorlist right after the (invalid) field ``field_id``."""
    field = re.search(rf'<(select|input)[^>]*id="{field_id}"[^>]*>', html)
    assert field and 'aria-invalid="true"' in field.group(0), f"{field_id} is not marked invalid"
    after = html[field.end():]
    if field.group(1) == "select":
        after = after[after.index("</select>") + len("</select>"):]
    errors = re.match(rf'<ul class="errorlist" id="{field_id}_error">(.*?)</ul>', after, re.S)
    assert errors, f"no errorlist right after {field_id}"
    return re.findall(r"<li>(.*?)</li>", errors.group(1))


def test_refusals_show_next_to_their_field(client, deployer, viewer, model, versions, offline_servers):
    client.force_login(deployer)
    response = client.post(f"/models/{model.pk}/placements/", {"versions": ["1"], "servers": []})
    assert response.status_code == 400
    assert field_errors(response.content.decode(), "placement-servers") == ["Choose at least one server."]
    response = client.post(f"/models/{model.pk}/placements/", {"versions": ["x"], "servers": ["triton-0"]})
    assert response.status_code == 400
    html = response.content.decode()
    assert field_errors(html, "placement-versions") == ["Versions are whole numbers."]
    assert re.search(r'<option value="triton-0"\s*selected>', html)  # the choice stays
    response = client.post(f"/models/{model.pk}/placements/", {"versions": ["1"], "servers": ["triton-0"], "config_revision": "9"})
    assert response.status_code == 400
    assert field_errors(response.content.decode(), "placement-config_revision") == ["fraud-scorer has no config revision 9."]
    client.force_login(viewer)
    response = client.post(f"/models/{model.pk}/placements/", {"versions": ["1"], "servers": ["triton-0"]})
    assert response.status_code == 403
    alert = response.content.decode().split('aria-labelledby="placements-title"')[1].split("</div>")[0]
    assert "needs the deployer role" in alert
    assert Placement.objects.count() == 0 and not AuditEvent.objects.filter(action__startswith="placement").exists()


def test_the_ui_and_the_api_resolve_a_placement_the_same_way(api, client, deployer, model, versions, offline_servers):
    """One lookup (placements.selectors) for both: an unknown server and an unknown config
    revision get the same field errors."""
    client.force_login(deployer)
    for body, field in [({"versions": [1], "servers": ["nope"]}, "servers"),
                        ({"versions": [1], "servers": ["triton-0"], "config_revision": 9}, "config_revision")]:
        from_api = api(deployer).post("/api/v1/placements/", {"model": model.pk, **body}, format="json")
        assert from_api.status_code == 400
        ui = client.post(f"/models/{model.pk}/placements/", body)
        assert ui.status_code == 400
        assert field_errors(ui.content.decode(), f"placement-{field}") == [
            m.replace("'", "&#x27;") for m in from_api.json()["fields"][field]]
    assert Placement.objects.count() == 0


def test_the_live_fragment_serves_the_last_sample_and_never_calls_triton(client, viewer, outsider, placed):
    client.force_login(viewer)
    with CaptureQueriesContext(connection) as queries:
        html = client.get(f"/placements/{placed.pk}/live/").content.decode()
    assert 'hx-trigger="every 10s"' in html and "reading the last sample" not in html
    assert html.count("no sample yet") == 2 and "Connection refused" not in html  # nothing asked Triton

    assert services.placements_sample() == {"servers": 1, "targets": 2, "unreachable": 2}  # what beat runs
    response = client.get(f"/placements/{placed.pk}/live/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="error small"') == 2 and "Connection refused" in html
    assert html.count("no sample yet") == 0 and len(re.findall(r"sampled \d+ s ago", html)) == 2
    assert len(queries) < 15  # a handful of queries, none per target
    client.force_login(outsider)
    assert client.get(f"/placements/{placed.pk}/live/").status_code == 404


def test_the_sampler_keeps_one_sample_per_active_target(deployer, model, placed):
    services.placements_sample()
    assert TargetSample.objects.count() == 2
    services.placements_sample()  # overwritten, not appended
    assert TargetSample.objects.count() == 2
    services.placement_remove(actor=Actor(user=deployer, source="api"), placement=placed)
    assert services.placements_sample() == {"servers": 0, "targets": 0, "unreachable": 0}
    assert TargetSample.objects.count() == 0 and services.placement_live(placed) == {}


def test_model_page_query_count_does_not_grow_with_placements(client, deployer, model, versions, pool):
    from controlplane.fleet.models import Server

    actor = Actor(user=deployer, source="api")
    servers = [Server.objects.create(name=f"s-{i}", pool=pool, http_url="http://127.0.0.1:9") for i in range(12)]
    services.placement_create(actor=actor, model=model, versions=[1], servers=servers[:1])
    client.force_login(deployer)

    def count():
        with CaptureQueriesContext(connection) as queries:
            page(client, model)
        return len(queries)

    few = count()
    for i in range(1, 4):
        services.placement_create(actor=actor, model=model, versions=[1 + i % 2], servers=servers[i * 3:i * 3 + 3])
    services.placement_apply(placement_id=Placement.objects.order_by("-id").first().pk)
    assert Placement.objects.filter(removed_at=None).count() == 4
    assert count() == few


def test_big_fleets_get_a_names_field_instead_of_a_picker(client, deployer, model):
    from controlplane.fleet.models import Pool, Server
    from controlplane.placements.ui import PICKER_SERVERS

    pool = Pool.objects.create(name="big")
    Server.objects.bulk_create(Server(name=f"t-{i}", pool=pool, http_url=f"http://127.0.0.1:{1000 + i}") for i in range(PICKER_SERVERS + 5))
    client.force_login(deployer)
    html = client.get(f"/models/{model.pk}/").content.decode()
    assert 'input name="servers"' in html and html.count('<option value="t-') == 0
