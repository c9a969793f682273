"""What an event records, and that it is written in the transaction of the change, from the API
and from a worker alike."""
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from controlplane.accounts.models import Team
from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.audit.selectors import audit_chain_verify
from controlplane.audit.services import audit_record
from controlplane.fleet.models import Server
from controlplane.fleet.services import pool_create, server_register
from controlplane.registry.models import Model
from workers.fleet import probe_server

DEAD_URL = "http://127.0.0.1:9"  # the discard port: nothing listens there


def test_an_api_change_records_actor_token_source_request_and_object(api, deployer, team, model_payload):
    token, secret = token_create(actor=Actor(user=deployer, source="api"), user=deployer, name="ci", scopes=["deploy"],
                                 expires_at=timezone.now() + timedelta(days=1))
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}", HTTP_X_REQUEST_ID="req-42", HTTP_X_SWITCHYARD_CLIENT="cli",
                       REMOTE_ADDR="203.0.113.9")
    before = timezone.now()
    response = client.post("/api/v1/models/", model_payload(description="Scores card payments"), format="json")
    assert response.status_code == 201, response.json()

    model = Model.objects.get(name="fraud-scorer")
    event = AuditEvent.objects.get(action="model.create")
    assert (event.actor_user, event.actor_name, event.token_id) == (deployer, "dana", token.pk)
    assert (event.source, event.request_id, event.ip) == ("cli", "req-42", "203.0.113.9")
    assert (event.team, event.object_type, event.object_id, event.object_repr) == (team, "registry.model", str(model.pk), str(model))
    assert event.before is None and event.after["description"] == "Scores card payments"
    assert before <= event.created_at <= timezone.now()
    assert event.prev_hash == AuditEvent.objects.get(action="token.create").hash
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)  # the other tests run inside the test's transaction
def test_audit_record_refuses_to_run_outside_the_changes_transaction():
    team = Team.objects.create(slug="vision")
    with pytest.raises(RuntimeError, match="inside transaction.atomic"):
        audit_record(actor=Actor.system(), action="team.touch", obj=team)
    assert not AuditEvent.objects.exists()


def test_a_workers_change_is_recorded_with_the_worker_as_actor(platform_admin):
    admin = Actor(user=platform_admin, source="api")
    server = server_register(actor=admin, name="triton-dead", pool=pool_create(actor=admin, name="gpu"), http_url=DEAD_URL)

    counts = probe_server(server.pk)  # the Celery task, run in this process

    assert counts == {"down": 1}
    assert Server.objects.get(pk=server.pk).status == "down"
    event = AuditEvent.objects.get(action="server.down")
    assert (event.actor_user, event.actor_name, event.source) == (None, "worker", "worker")
    assert (event.object_type, event.object_id, event.before, event.after) == ("fleet.server", str(server.pk), {"status": "unknown"}, {"status": "down"})
    assert event.reason == Server.objects.get(pk=server.pk).last_error != ""  # the probe's error is the reason
    assert audit_chain_verify().ok


def test_an_event_and_its_change_roll_back_together(team, deployer):
    """A service's transaction fails after audit_record: neither the row nor the event is kept."""
    with pytest.raises(RuntimeError), transaction.atomic():
        model = Model.objects.create(team=team, name="ghost", backend="python", inputs=[], outputs=[])
        audit_record(actor=Actor(user=deployer, source="ui"), action="model.create", obj=model, team=team)
        raise RuntimeError("the commit never happens")
    assert not Model.objects.filter(name="ghost").exists()
    assert not AuditEvent.objects.exists()
