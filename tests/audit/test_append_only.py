"""The audit log is append-only in the database itself, whatever the code above it does."""
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction

from controlplane.audit.models import AuditEvent
from controlplane.audit.selectors import audit_chain_verify

ROOT = Path(__file__).resolve().parents[2]
TABLE = AuditEvent._meta.db_table


def raw(sql, params=None):
    with transaction.atomic(), connection.cursor() as cursor:  # a savepoint, so the test goes on after the error
        cursor.execute(sql, params)
        return cursor.rowcount


def test_raw_sql_update_is_refused(model):
    event = AuditEvent.objects.get(action="model.create")
    with pytest.raises(IntegrityError, match=f"{TABLE} is append-only: UPDATE refused"):
        raw(f"UPDATE {TABLE} SET reason = 'nothing happened' WHERE id = %s", [event.pk])
    with pytest.raises(IntegrityError, match="UPDATE refused"):
        raw(f"UPDATE {TABLE} SET actor_name = 'someone else'")
    event.refresh_from_db()
    assert (event.reason, event.actor_name) == ("", "dana")
    assert audit_chain_verify().ok


def test_raw_sql_delete_is_refused(model):
    with pytest.raises(IntegrityError, match=f"{TABLE} is append-only: DELETE refused"):
        raw(f"DELETE FROM {TABLE} WHERE action = %s", ["model.create"])
    assert AuditEvent.objects.filter(action="model.create").count() == 1


def test_orm_update_save_and_delete_are_refused(model):
    event = AuditEvent.objects.get(action="model.create")
    for attempt in (
        lambda: AuditEvent.objects.filter(pk=event.pk).update(reason="edited"),
        lambda: AuditEvent.objects.all().delete(),
        lambda: event.delete(),
    ):
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
            attempt()
    event.reason = "edited"
    with pytest.raises(IntegrityError, match="UPDATE refused"), transaction.atomic():
        event.save()
    assert AuditEvent.objects.get(pk=event.pk).reason == ""


def test_truncate_is_refused_unless_superuser(model):
    """An application role (not a superuser) cannot TRUNCATE even with the privilege; the test
    suite's flush, which runs as a superuser, can (a superuser can disable triggers anyway)."""
    role = f"sy_audit_app_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide; the test transaction drops it
    raw(f"CREATE ROLE {role} NOSUPERUSER")
    raw(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {TABLE} TO {role}")
    raw(f"SET LOCAL ROLE {role}")
    try:
        with pytest.raises(IntegrityError, match="TRUNCATE refused"):
            raw(f"TRUNCATE {TABLE}")
        with pytest.raises(IntegrityError, match="DELETE refused"):
            raw(f"DELETE FROM {TABLE}")
    finally:
        raw("RESET ROLE")
    assert AuditEvent.objects.count() == 1

    with transaction.atomic():
        raw(f"TRUNCATE {TABLE}")
        assert AuditEvent.objects.count() == 0
        transaction.set_rollback(True)
    assert AuditEvent.objects.count() == 1


SQLITE_SCRIPT = textwrap.dedent(
    """
    import json
    from django.db import connection, transaction
    from controlplane.accounts.models import Team
    from controlplane.audit.context import Actor
    from controlplane.audit.models import AuditEvent
    from controlplane.audit.selectors import audit_chain_verify
    from controlplane.audit.services import audit_record

    team = Team.objects.create(slug="vision")
    tricky = {"zeta": 1.0, "big": 1e16, "tiny": 1e-7, "pi": 3.14159, "ü": ["ø", None, True], "nested": {"b": 2, "a": -0.0}}
    for n in range(3):
        with transaction.atomic():
            audit_record(actor=Actor(user=None, source="worker", ip="2001:DB8::1"), action="team.touch", obj=team,
                         team=team, before={"n": n}, after=tricky, reason="round trip")
    out = {"verify": audit_chain_verify().as_dict(), "refused": {}}
    for sql in ("UPDATE audit_auditevent SET reason = 'x'", "DELETE FROM audit_auditevent"):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)
            out["refused"][sql.split()[0]] = None
        except Exception as exc:
            out["refused"][sql.split()[0]] = f"{type(exc).__name__}: {exc}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_auditevent'")
        out["triggers"] = sorted(r[0] for r in cursor.fetchall())
    out["count"] = AuditEvent.objects.count()
    print("RESULT " + json.dumps(out))
    """
)


LEGACY_ROWS = textwrap.dedent(
    """
    from django.db import connection
    with connection.cursor() as cursor:
        for n in range(2):
            cursor.execute(
                "INSERT INTO audit_auditevent (created_at, actor_name, source, request_id, ip, object_type, object_id,"
                " object_repr, action, after, reason) VALUES (%s, 'legacy', 'system', '', '10.0.0.1', 'x', %s, 'x',"
                " 'legacy.event', %s, '')",
                [f"2026-01-0{n + 1} 10:00:00.123456", str(n), '{"v": 1.0, "n": %d}' % n],
            )
    """
)


def test_sqlite_refuses_update_and_delete_and_rehashes_identically(tmp_path):
    """On a fresh SQLite database: events from before the chain existed are chained by the
    migration (which also migrates back), then the same checks as on PostgreSQL."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'audit.sqlite3'}", "SWITCHYARD_VAR_DIR": str(tmp_path),
           "SWITCHYARD_DEBUG": "true"}

    def manage(*args):
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (args, done.stderr)
        return done.stdout

    manage("migrate", "-v", "0")
    manage("migrate", "audit", "0001", "-v", "0")  # back to before the chain
    manage("shell", "-c", LEGACY_ROWS)
    manage("migrate", "-v", "0")
    result = json.loads(manage("shell", "-c", SQLITE_SCRIPT).split("RESULT ", 1)[1])

    assert result["triggers"] == ["audit_event_no_delete", "audit_event_no_update"]
    assert result["refused"]["UPDATE"].startswith("IntegrityError: audit_auditevent is append-only: UPDATE refused")
    assert result["refused"]["DELETE"].startswith("IntegrityError: audit_auditevent is append-only: DELETE refused")
    assert result["count"] == 5
    verify = result["verify"]
    assert {k: verify[k] for k in ("ok", "checked", "first_broken_id", "problem", "events")} == {
        "ok": True, "checked": 5, "first_broken_id": None, "problem": "", "events": 5}
