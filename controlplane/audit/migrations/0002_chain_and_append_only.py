"""Chain audit events by hash and make the table append-only in the database.

Existing events are chained in id order before the triggers exist. On PostgreSQL a trigger
refuses UPDATE and DELETE of any row, and TRUNCATE unless the session is a superuser (Django's
test flush runs as one; a superuser can disable triggers anyway). For TRUNCATE and DROP to be
refused outright, the production role should not own the table and should hold only SELECT and
INSERT on it. On SQLite two triggers refuse UPDATE and DELETE, so `manage.py flush` fails there.

SQLite drops a table's triggers when Django rebuilds the table, which it does for most field
changes: a later migration that alters AuditEvent must create the SQLite triggers again
(tests/audit/test_append_only.py checks that they exist after all migrations).
"""
import django.utils.timezone
from django.core.exceptions import ImproperlyConfigured
from django.db import migrations, models

from controlplane.audit import chain

TABLE = "audit_auditevent"

POSTGRES_CREATE = f"""
CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
"""
POSTGRES_DROP = f"""
DROP TRIGGER IF EXISTS audit_event_no_truncate ON {TABLE};
DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE};
DROP FUNCTION IF EXISTS audit_event_append_only();
"""
SQLITE_CREATE = [
    f"""CREATE TRIGGER audit_event_no_{op.lower()} BEFORE {op} ON {TABLE}
        BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {op} refused'); END"""
    for op in ("UPDATE", "DELETE")
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS audit_event_no_{op}" for op in ("update", "delete")]


def create_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_CREATE, params=None)  # no placeholders: "%" is plpgsql's
    elif vendor == "sqlite":
        for sql in SQLITE_CREATE:
            schema_editor.execute(sql)
    else:
        raise ImproperlyConfigured(f"Switchyard's audit log has append-only triggers for PostgreSQL and SQLite, not {vendor}.")


def drop_triggers(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_DROP, params=None)
    elif vendor == "sqlite":
        for sql in SQLITE_DROP:
            schema_editor.execute(sql)


def chain_existing_events(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    AuditChainHead = apps.get_model("audit", "AuditChainHead")
    prev, last_id, batch = chain.GENESIS, None, []
    for row in AuditEvent.objects.order_by("id").values("id", *chain.FIELDS).iterator(chunk_size=2000):
        row["prev_hash"] = prev
        digest = chain.event_hash(row)
        batch.append(AuditEvent(id=row["id"], prev_hash=prev, hash=digest))
        prev, last_id = digest, row["id"]
        if len(batch) >= 2000:
            AuditEvent.objects.bulk_update(batch, ["prev_hash", "hash"])
            batch = []
    AuditEvent.objects.bulk_update(batch, ["prev_hash", "hash"])
    AuditChainHead.objects.create(id=1, last_id=last_id, last_hash=prev)


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="auditevent",
            name="created_at",
            field=models.DateTimeField(db_index=True, default=django.utils.timezone.now, editable=False),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.CreateModel(
            name="AuditChainHead",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("last_id", models.BigIntegerField(null=True)),
                ("last_hash", models.CharField(blank=True, default="", max_length=64)),
            ],
            options={
                "constraints": [models.CheckConstraint(condition=models.Q(("id", 1)), name="audit_chainhead_single_row")],
            },
        ),
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop),
        migrations.RunPython(create_triggers, drop_triggers),
    ]
