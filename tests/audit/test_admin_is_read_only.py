"""The Django admin cannot create, change or delete anything (issue 7, item 4): its views would
bypass the services that authorize changes and audit them."""
import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import RequestFactory
from django.urls import reverse

from controlplane.audit.models import AuditEvent
from controlplane.audit.services import audit_checkpoint_extend
from controlplane.registry.models import ModelVersion
from controlplane.registry.services import version_register
from tests.conftest import _user


@pytest.fixture
def superuser(db):
    return _user("root", is_staff=True, is_superuser=True)


@pytest.fixture
def objects(model, deployer, s3):
    """One row of every model the admin shows."""
    from controlplane.audit.context import Actor

    version_register(actor=Actor(user=deployer, source="api"), model=model, version=1, contents={"model.py": b"x"})
    Group.objects.create(name="ops")
    audit_checkpoint_extend()
    return {m: m._default_manager.first() for m in admin.site._registry}


def test_every_registered_admin_refuses_add_change_and_delete(superuser):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    assert len(admin.site._registry) >= 5
    for model, model_admin in admin.site._registry.items():
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model
        assert not model_admin.has_delete_permission(request), model
        assert "delete_selected" not in model_admin.get_actions(request), model


def test_no_admin_view_writes_for_a_superuser(client, superuser, objects):
    client.force_login(superuser)
    events_before = AuditEvent.objects.count()
    for model, obj in objects.items():
        assert obj is not None, f"no {model.__name__} to try the admin on"
        info = (model._meta.app_label, model._meta.model_name)
        count = model._default_manager.count()
        assert client.get(reverse("admin:%s_%s_changelist" % info)).status_code == 200, model
        assert client.post(reverse("admin:%s_%s_add" % info), {"name": "x", "username": "x"}).status_code == 403, model
        assert client.post(reverse("admin:%s_%s_delete" % info, args=[obj.pk]), {"post": "yes"}).status_code == 403, model
        change = client.post(reverse("admin:%s_%s_change" % info, args=[obj.pk]), {"name": "changed", "is_staff": "on"})
        assert change.status_code == 403, model
        bulk = client.post(reverse("admin:%s_%s_changelist" % info), {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"})
        assert bulk.status_code in (200, 302), model
        assert model._default_manager.count() == count, model
    assert ModelVersion.objects.filter(version=1).exists()
    assert not _user_model().objects.filter(username="x").exists()
    assert not _user_model().objects.get(username="dana").is_staff
    assert AuditEvent.objects.count() == events_before


def test_deleting_a_version_through_the_admin_is_forbidden(client, superuser, objects):
    """The exact request from the report."""
    client.force_login(superuser)
    version = ModelVersion.objects.get()
    response = client.post(f"/admin/registry/modelversion/{version.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403 and ModelVersion.objects.filter(pk=version.pk).exists()
    assert client.get("/admin/registry/model/add/").status_code == 403


def _user_model():
    from django.contrib.auth import get_user_model

    return get_user_model()
