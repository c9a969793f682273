"""The hash chain: how events link, how verification finds the first broken link, and that
concurrent writers cannot fork it."""
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, connections, transaction

from controlplane.accounts.models import Team
from controlplane.audit import chain
from controlplane.audit.context import Actor
from controlplane.audit.models import AuditChainHead, AuditEvent
from controlplane.audit.selectors import ChainReport, audit_chain_verify
from controlplane.audit.services import audit_record

TABLE = AuditEvent._meta.db_table
WORKER = Actor(user=None, source="worker")


def record(team, n=1, **fields) -> list[AuditEvent]:
    events = []
    for i in range(n):
        with transaction.atomic():
            events.append(audit_record(actor=WORKER, action="team.touch", obj=team, team=team, after={"i": i}, **fields))
    return events


def behind_the_triggers(sql, params=None):
    """What someone with the database superuser's password could do: switch triggers off."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


def stored_row(event_id) -> dict:
    return AuditEvent.objects.values("id", "hash", *chain.FIELDS).get(pk=event_id)


def test_each_event_links_to_the_one_before(log):
    events = log.events
    assert len(events) == 7
    assert events[0].prev_hash == chain.GENESIS
    for before, after in zip(events, events[1:]):
        assert after.prev_hash == before.hash
    for event in events:
        assert len(event.hash) == 64
        assert chain.event_hash(stored_row(event.pk)) == event.hash  # as read back from the database
    head = AuditChainHead.objects.get()
    assert (head.last_id, head.last_hash) == (events[-1].pk, events[-1].hash)
    report = audit_chain_verify()
    assert report == ChainReport(ok=True, checked=7, verified_to=events[-1].pk, verified_hash=events[-1].hash, events=7,
                                 head_id=events[-1].pk)


def test_json_and_addresses_rehash_identically_after_the_round_trip(team):
    """jsonb reorders keys and prints 1e16 as an integer; inet prints IPv6 its own way."""
    tricky = {"zeta": 1.0, "big": 1e16, "huge": 1.5e300, "tiny": 1e-7, "third": 1 / 3, "ü": ["ø", None, True],
              "a": {"long key": 1, "k": -0.0}, "emoji": "🚀", "quote": 'say "hi"\n'}
    with transaction.atomic():
        event = audit_record(actor=Actor(user=None, source="cli", ip="2001:DB8:0:0::1", request_id="r" * 80), action="team.touch",
                             obj=team, team=team, before=tricky, after=[1.0, 2.5], reason="ü" * 3)
    row = stored_row(event.pk)
    assert row["ip"] == "2001:db8::1"
    assert row["request_id"] == "r" * 64
    assert row["before"]["big"] == 10**16 and row["after"] == [1, 2.5]
    assert chain.event_hash(row) == event.hash
    assert audit_chain_verify().ok


def test_nan_is_refused_with_the_change(team):
    with pytest.raises(ValueError), transaction.atomic():
        audit_record(actor=WORKER, action="team.touch", obj=team, after={"x": float("nan")})
    assert not AuditEvent.objects.exists()


def test_a_changed_row_is_the_first_broken_link(team):
    events = record(team, 5)
    behind_the_triggers(f"UPDATE {TABLE} SET reason = 'nothing to see' WHERE id = %s", [events[2].pk])
    assert AuditEvent.objects.get(pk=events[2].pk).reason == "nothing to see"  # the tampering happened

    report = audit_chain_verify()
    assert (report.ok, report.first_broken_id, report.checked) == (False, events[2].pk, 3)
    assert "content does not match its hash" in report.problem

    with pytest.raises(CommandError, match=f"BROKEN at event {events[2].pk} "):
        call_command("audit_verify")


def test_a_changed_row_with_a_recomputed_hash_breaks_the_next_link(team):
    events = record(team, 4)
    row = stored_row(events[1].pk)
    row["actor_name"] = "someone else"
    behind_the_triggers(f"UPDATE {TABLE} SET actor_name = %s, hash = %s WHERE id = %s",
                        ["someone else", chain.event_hash(row), events[1].pk])
    report = audit_chain_verify()
    assert (report.ok, report.first_broken_id) == (False, events[2].pk)
    assert f"does not follow event {events[1].pk}" in report.problem


def test_a_removed_row_breaks_the_link_after_it(team):
    events = record(team, 4)
    behind_the_triggers(f"DELETE FROM {TABLE} WHERE id = %s", [events[1].pk])
    report = audit_chain_verify()
    assert (report.ok, report.first_broken_id) == (False, events[2].pk)
    assert "removed or rewritten" in report.problem


def test_a_removed_tail_is_caught_by_the_chain_head(team):
    events = record(team, 3)
    behind_the_triggers(f"DELETE FROM {TABLE} WHERE id >= %s", [events[1].pk])
    report = audit_chain_verify()
    assert (report.ok, report.first_broken_id, report.checked) == (False, events[2].pk, 1)
    assert "events at its end were removed" in report.problem


def test_a_row_written_around_audit_record_is_reported(team):
    events = record(team, 2)
    stray = AuditEvent.objects.create(actor_name="sql", source="system", object_type="x", object_id="1", object_repr="x", action="x")
    record(team, 1)
    report = audit_chain_verify()
    assert (report.ok, report.first_broken_id) == (False, stray.pk)
    assert "not chained" in report.problem
    assert events  # the chain before the stray row verified


def test_the_database_refuses_a_fork(team):
    """Two events naming the same predecessor cannot both be stored, lock or no lock."""
    first, _second = record(team, 2)
    fork = AuditEvent(actor_name="x", source="system", object_type="x", object_id="1", object_repr="x", action="x",
                      prev_hash=first.hash, hash="0" * 64)
    with pytest.raises(IntegrityError), transaction.atomic():
        fork.save()


def test_a_rolled_back_change_takes_its_event_with_it(team):
    record(team, 2)
    with pytest.raises(RuntimeError, match="boom"), transaction.atomic():
        Team.objects.create(slug="doomed")
        audit_record(actor=WORKER, action="team.create", obj=team, team=team)
        raise RuntimeError("boom")
    assert not Team.objects.filter(slug="doomed").exists()
    assert not AuditEvent.objects.filter(action="team.create").exists()
    last = record(team, 1)[0]
    assert last.prev_hash == AuditEvent.objects.filter(action="team.touch").order_by("-id")[1].hash
    assert audit_chain_verify().ok


def test_a_missing_head_restarts_at_the_last_chained_event(team):
    events = record(team, 2)
    AuditChainHead.objects.all().delete()  # as a flushed database has none
    later = record(team, 1)[0]
    assert later.prev_hash == events[-1].hash
    assert AuditChainHead.objects.get().last_id == later.pk
    assert audit_chain_verify().ok


def test_the_command_and_the_api_report_an_intact_chain(log, api, viewer, capsys):
    response = api(viewer).get("/api/v1/audit/verify/")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("ok", "checked", "first_broken_id", "problem", "scope", "start_after", "complete")} == {
        "ok": True, "checked": len(log.events), "first_broken_id": None, "problem": "", "scope": "full", "start_after": None,
        "complete": True}  # no checkpoint yet: the quick check starts at the first event, so it is a full one
    assert (body["verified_to"], body["verified_hash"], body["events"]) == (log.events[-1].pk, log.events[-1].hash, 7)

    call_command("audit_verify")
    assert f"Audit chain verified: {len(log.events)} events" in capsys.readouterr().out
    outcome = AuditEvent.objects.order_by("-id").first()  # the command records what it found
    assert (outcome.action, outcome.source, outcome.after["ok"], outcome.after["verified_to"]) == (
        "audit.verify_full", "cli", True, log.events[-1].pk)
    body = api(viewer).get("/api/v1/audit/verify/").json()
    # From the command's checkpoint on: its event and the outcome event after it.
    assert (body["ok"], body["start_after"], body["checked"], body["verified_to"], body["events"]) == (
        True, log.events[-1].pk, 2, outcome.pk, 8)
    assert api().get("/api/v1/audit/verify/").status_code in (401, 403)


def test_the_api_reports_the_first_broken_link(team, api, viewer):
    events = record(team, 3)
    behind_the_triggers(f"UPDATE {TABLE} SET after = '{{\"i\": 99}}' WHERE id = %s", [events[1].pk])
    body = api(viewer).get("/api/v1/audit/verify/").json()
    assert (body["ok"], body["first_broken_id"], body["checked"]) == (False, events[1].pk, 2)


THREADS = 20


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_do_not_fork_the_chain():
    """Twenty threads, each on its own connection, append at once; each holds its transaction
    open a little after appending, so an unserialized append would read a stale head."""
    team = Team.objects.create(slug="vision")
    start = threading.Barrier(THREADS)
    errors = []

    def append(n):
        try:
            start.wait(timeout=10)
            with transaction.atomic():
                audit_record(actor=WORKER, action="team.touch", obj=team, team=team, after={"thread": n})
                time.sleep(0.01)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []

    events = list(AuditEvent.objects.order_by("id"))
    assert sorted(e.after["thread"] for e in events) == list(range(THREADS))
    prevs = [e.prev_hash for e in events]
    assert len(set(prevs)) == THREADS  # no two events share a predecessor: no fork
    assert prevs[0] == chain.GENESIS and [e.hash for e in events[:-1]] == prevs[1:]
    report = audit_chain_verify()
    assert (report.ok, report.checked) == (True, THREADS)
