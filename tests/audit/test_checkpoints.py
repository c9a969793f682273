"""Verified checkpoints: the periodic task moves them, the quick check (badge, API) re-hashes only
what lies past the newest one, and only the full check finds tampering before it."""
import time
from datetime import datetime, timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.test import Client
from django.utils import timezone

from controlplane.accounts.models import Team
from controlplane.accounts.services import token_create
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditCheckpoint, AuditEvent
from controlplane.audit.selectors import audit_chain_verify, audit_chain_verify_tail
from controlplane.audit.services import (
    _verify_lock,
    audit_chain_verify_full,
    audit_checkpoint_extend,
    audit_record,
)
from controlplane.celery import app
from tests.audit.test_chain import TABLE, behind_the_triggers, record
from workers.audit import checkpoint_extend

CLI = Actor.system("cli")


def tamper_reason(event, reason="nothing to see"):
    behind_the_triggers(f"UPDATE {TABLE} SET reason = %s WHERE id = %s", [reason, event.pk])


def test_the_checkpoint_advances_to_the_end_of_the_chain_without_an_audit_event(team):
    events = record(team, 5)
    report = audit_checkpoint_extend()
    assert (report.ok, report.complete, report.checked) == (True, True, 5)
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.ok, checkpoint.event_id, checkpoint.event_hash, checkpoint.events, checkpoint.full) == (
        True, events[-1].pk, events[-1].hash, 5, False)

    more = record(team, 3)
    report = audit_checkpoint_extend()
    assert report.checked == 1 + 3  # the checkpoint's own event, then the three after it
    newest = AuditCheckpoint.objects.order_by("-id").first()
    assert (newest.event_id, newest.event_hash, newest.events) == (more[-1].pk, more[-1].hash, 8)
    assert AuditEvent.objects.count() == 8  # moving a checkpoint is bookkeeping, not a change to audit

    audit_checkpoint_extend()  # nothing new: no new checkpoint
    assert AuditCheckpoint.objects.count() == 2


def test_the_checkpoint_advances_in_chunks(team):
    events = record(team, 5)
    audit_checkpoint_extend(chunk=2)
    assert list(AuditCheckpoint.objects.order_by("id").values_list("event_id", "events")) == [
        (events[1].pk, 2), (events[3].pk, 4), (events[4].pk, 5)]


def test_the_periodic_task_skips_while_another_verification_runs(team):
    record(team, 2)
    with _verify_lock(wait=False) as held:
        assert held
        assert audit_checkpoint_extend() is None
    assert not AuditCheckpoint.objects.exists()
    assert audit_checkpoint_extend().ok  # the lock is released
    assert AuditCheckpoint.objects.count() == 1


def test_the_quick_check_rehashes_only_the_tail_from_the_checkpoints_hash(team):
    record(team, 6)
    audit_checkpoint_extend()
    checkpoint = AuditCheckpoint.objects.get()
    tail = record(team, 2)
    report = audit_chain_verify_tail()
    assert (report.ok, report.scope, report.start_after, report.checked) == (True, "tail", checkpoint.event_id, 3)
    assert (report.verified_to, report.verified_hash, report.events, report.complete) == (tail[-1].pk, tail[-1].hash, 8, True)
    assert tail[0].prev_hash == checkpoint.event_hash  # the tail links to the checkpoint


def test_the_quick_check_is_bounded_and_says_what_is_pending(team):
    events = record(team, 7)
    report = audit_chain_verify_tail(limit=3)  # no checkpoint: from the first event, three of them
    assert (report.ok, report.complete, report.checked, report.verified_to, report.head_id) == (
        True, False, 3, events[2].pk, events[-1].pk)
    audit_checkpoint_extend(chunk=2)
    record(team, 10)
    report = audit_chain_verify_tail(limit=3)
    assert (report.ok, report.complete, report.checked, report.start_after) == (True, False, 4, events[-1].pk)


def test_tampering_before_the_checkpoint_is_missed_by_the_quick_check_and_found_by_the_full_check(team):
    events = record(team, 5)
    audit_checkpoint_extend()
    record(team, 2)
    tamper_reason(events[1])

    assert audit_chain_verify_tail().ok  # the quick check trusts the checkpoint: this is its limit
    report = audit_chain_verify_full(actor=CLI)
    assert (report.ok, report.first_broken_id) == (False, events[1].pk)
    assert "content does not match its hash" in report.problem
    outcome = AuditEvent.objects.order_by("-id").first()
    assert (outcome.action, outcome.after["ok"], outcome.after["first_broken_id"]) == ("audit.verify_full", False, events[1].pk)

    # The break stands for the quick check, and the periodic task stops extending, until a full check passes.
    quick = audit_chain_verify_tail()
    assert (quick.ok, quick.first_broken_id, quick.checked) == (False, events[1].pk, 0)
    checkpoints = AuditCheckpoint.objects.count()
    assert audit_checkpoint_extend() is None
    assert AuditCheckpoint.objects.count() == checkpoints

    tamper_reason(events[1], reason="")  # restored, as from a backup
    assert audit_chain_verify_full(actor=CLI).ok
    assert audit_chain_verify_tail().ok
    assert AuditCheckpoint.objects.order_by("-id").first().full


def test_the_command_runs_the_full_check_and_records_a_break(team, capsys):
    events = record(team, 4)
    audit_checkpoint_extend()
    tamper_reason(events[0])
    call_command("audit_verify", "--tail")
    assert f"verified to event {events[-1].pk}" in capsys.readouterr().out
    with pytest.raises(CommandError, match=f"BROKEN at event {events[0].pk} "):
        call_command("audit_verify")
    assert not AuditCheckpoint.objects.order_by("-id").first().ok
    with pytest.raises(CommandError, match=f"BROKEN at event {events[0].pk} "):
        call_command("audit_verify", "--tail")  # the standing break


def test_a_changed_checkpoint_event_or_a_forged_checkpoint_is_found_by_the_quick_check(team):
    events = record(team, 3)
    audit_checkpoint_extend()
    tamper_reason(events[-1])
    report = audit_chain_verify_tail()
    assert (report.ok, report.first_broken_id) == (False, events[-1].pk)
    assert "changed after a checkpoint verified it" in report.problem

    tamper_reason(events[-1], reason="")
    AuditCheckpoint.objects.update(event_hash="0" * 64)
    assert not audit_chain_verify_tail().ok


def test_a_break_in_the_tail_is_recorded_once_by_the_periodic_task(team):
    events = record(team, 3)
    audit_checkpoint_extend()
    tail = record(team, 2)
    tamper_reason(tail[0])
    report = audit_checkpoint_extend()
    assert (report.ok, report.first_broken_id) == (False, tail[0].pk)
    broken = AuditEvent.objects.filter(action="audit.chain_broken")
    assert [(e.source, e.after["first_broken_id"]) for e in broken] == [("schedule", tail[0].pk)]
    assert audit_checkpoint_extend() is None  # the standing break: not recorded again
    assert broken.count() == 1
    assert events


# --------------------------------------------------------------------------------------------
# The API, the page, and who may ask for a full check


def test_the_api_and_the_badge_show_the_checkpoint(team, api, viewer):
    record(team, 4)
    audit_checkpoint_extend()
    checkpoint = AuditCheckpoint.objects.get()
    tail = record(team, 1)
    body = api(viewer).get("/api/v1/audit/verify/").json()
    assert (body["scope"], body["start_after"], body["checked"], body["verified_to"], body["events"], body["complete"]) == (
        "tail", checkpoint.event_id, 2, tail[0].pk, 5, True)
    assert datetime.fromisoformat(body["checkpoint_at"]) == checkpoint.created_at

    client = Client()
    client.force_login(viewer)
    badge = client.get("/audit/chain/").content.decode()
    assert f"to event {tail[0].pk} (5 events), 2 re-hashed past the checkpoint of" in badge
    assert "Full re-verification" not in badge  # only platform admins may ask


def test_the_badge_offers_the_full_check_to_platform_admins(team, platform_admin):
    record(team, 1)
    client = Client()
    client.force_login(platform_admin)
    badge = client.get("/audit/chain/").content.decode()
    assert 'action="/audit/verify-full/"' in badge and "data-confirm=" in badge and "csrfmiddlewaretoken" in badge


def test_only_platform_admins_may_request_a_full_check(team, api, viewer, team_admin, platform_admin,
                                                        django_capture_on_commit_callbacks):
    before = AuditEvent.objects.count()
    for user in (viewer, team_admin):
        assert api(user).post("/api/v1/audit/verify/full/", {}, format="json").status_code == 403
    read_only = token_create(actor=CLI, user=platform_admin, name="ro", scopes=["read"],
                             expires_at=timezone.now() + timedelta(days=1))[1]
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {read_only}")
    assert client.post("/api/v1/audit/verify/full/", {}, format="json").status_code == 403
    assert api().post("/api/v1/audit/verify/full/", {}, format="json").status_code in (401, 403)
    assert AuditEvent.objects.count() == before + 1  # the token's creation only

    ui = Client()
    ui.force_login(viewer)
    response = ui.post("/audit/verify-full/")
    assert response.status_code == 403 and "Only platform admins may do this." in response.content.decode()
    assert AuditEvent.objects.count() == before + 1

    response = api(platform_admin).post("/api/v1/audit/verify/full/", {"reason": "x" * 501}, format="json")
    assert response.status_code == 400 and "reason" in response.json()["fields"]

    app.control.purge()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api(platform_admin).post("/api/v1/audit/verify/full/", {"reason": "quarterly review"}, format="json")
    assert response.status_code == 202
    event = AuditEvent.objects.get(pk=response.json()["request_event_id"])
    assert (event.action, event.actor_name, event.reason, event.team_id) == (
        "audit.verify_full_request", platform_admin.username, "quarterly review", None)
    assert len(queued) == 1  # the task is queued only once the request is committed


def test_the_ui_form_queues_a_full_check(team, platform_admin, django_capture_on_commit_callbacks):
    client = Client()
    client.force_login(platform_admin)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post("/audit/verify-full/")
    assert response.status_code == 302 and response["Location"] == "/audit/"
    assert AuditEvent.objects.filter(action="audit.verify_full_request", source="ui").count() == 1
    assert len(queued) == 1


# --------------------------------------------------------------------------------------------
# Real Celery worker processes over Redis


def test_beat_runs_the_checkpoint_task_every_minute():
    entry = settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]
    assert entry["task"] == checkpoint_extend.name == "audit.checkpoint_extend"
    assert entry["schedule"] == 60.0


def wait_for(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.django_db(transaction=True)
def test_the_tasks_run_on_a_real_worker_over_redis(api):
    from tests.conftest import _user

    assert app.conf.broker_url.startswith("redis://"), "the test suite runs Celery on Redis (REDIS_URL)"
    team = Team.objects.create(slug="vision")
    events = []
    for i in range(3):
        with transaction.atomic():
            events.append(audit_record(actor=CLI, action="team.touch", obj=team, team=team, after={"i": i}))
    admin = _user("pat", is_staff=True)
    app.control.purge()
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        checkpoint_extend.delay()
        assert wait_for(lambda: AuditCheckpoint.objects.filter(event_id=events[-1].pk).exists())

        response = api(admin).post("/api/v1/audit/verify/full/", {"reason": "audit"}, format="json")
        assert response.status_code == 202
        assert wait_for(lambda: AuditEvent.objects.filter(action="audit.verify_full").exists())
    outcome = AuditEvent.objects.get(action="audit.verify_full")
    request_id = response.json()["request_event_id"]
    assert (outcome.source, outcome.after["ok"], outcome.after["verified_to"]) == ("worker", True, request_id)
    assert outcome.reason == f"requested by pat in event {request_id}"
    assert AuditCheckpoint.objects.order_by("-id").first().full
    assert audit_chain_verify().ok


def test_the_badge_runs_the_same_queries_and_rehashes_the_same_however_long_the_chain(team, viewer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(viewer)
    seen = []
    for n in (3, 60):
        record(team, n)
        audit_checkpoint_extend()
        record(team, 2)
        client.get("/audit/chain/")  # the session, warm
        with CaptureQueriesContext(connection) as ctx:
            badge = client.get("/audit/chain/").content.decode()
        seen.append((len(ctx.captured_queries), audit_chain_verify_tail().checked))
        assert "Chain verified" in badge
    assert seen[0] == seen[1] and seen[0][1] == 3
