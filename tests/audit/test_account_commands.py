"""manage.py createsuperuser and changepassword are entry points that change state: they audit."""
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from controlplane.audit.models import AuditEvent


@pytest.mark.django_db
def test_createsuperuser_writes_an_audit_event(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-enough-passphrase-42")
    call_command("createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com")
    user = get_user_model().objects.get(username="root")
    event = AuditEvent.objects.get(action="user.create")
    assert (event.object_id, event.source) == (str(user.pk), "system")
    assert event.after == {"username": "root", "is_staff": True, "is_superuser": True}
    assert "passphrase" not in str(event.after)


@pytest.mark.django_db
def test_a_refused_createsuperuser_writes_nothing(monkeypatch):
    get_user_model().objects.create_user("root", password="x")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-enough-passphrase-42")
    with pytest.raises(Exception):
        call_command("createsuperuser", "--noinput", "--username", "root", "--email", "root@example.com")
    assert not AuditEvent.objects.filter(action="user.create").exists()


@pytest.mark.django_db
def test_changepassword_writes_an_audit_event_without_the_password(monkeypatch):
    from django.contrib.auth.management.commands import changepassword

    user = get_user_model().objects.create_user("root", password="old-passphrase-1")
    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt="Password: ": "new-passphrase-2-long")
    call_command("changepassword", "root")
    user.refresh_from_db()
    assert user.check_password("new-passphrase-2-long")
    event = AuditEvent.objects.get(action="user.password_change")
    assert event.object_id == str(user.pk) and "new-passphrase" not in str(event.after)
