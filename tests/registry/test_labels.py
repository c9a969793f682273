import re

import pytest

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.registry.models import LabelMove, ModelVersion, VersionLabel, VersionStatus


@pytest.fixture
def versions(model):
    """Three ready versions and one still registering (not validated)."""
    made = [
        ModelVersion.objects.create(model=model, version=n, status=VersionStatus.READY, artifact_uri=f"s3://b/r/{n}/", checksum=f"sha256:{n}")
        for n in (1, 2, 3)
    ]
    ModelVersion.objects.create(model=model, version=4, status=VersionStatus.REGISTERING, artifact_uri="s3://b/r/4/", checksum="sha256:4")
    return made


def url(model, name=""):
    return f"/api/v1/models/{model.pk}/labels/{name + '/' if name else ''}"


def test_create_move_resolve_and_history(api, deployer, model, versions):
    client = api(deployer)
    created = client.put(url(model, "stable"), {"version": 1, "reason": "first release"}, format="json")
    assert created.status_code == 201, created.json()
    moved = client.put(url(model, "stable"), {"version": 2, "reason": "fixes drift", "expected_version": 1}, format="json")
    assert moved.status_code == 201 and moved.json()["version"] == 2
    same = client.put(url(model, "stable"), {"version": 2, "reason": "again"}, format="json")
    assert same.status_code == 200  # already there: no new history
    assert client.get(url(model, "stable")).json()["version"] == 2
    assert client.get(url(model, "latest")).json()["version"] == 3  # highest READY, not the registering v4
    listed = {l["name"]: (l["version"], l["computed"]) for l in client.get(url(model)).json()}
    assert listed == {"stable": (2, False), "latest": (3, True)}

    history = client.get(f"/api/v1/models/{model.pk}/label-history/", {"label": "stable"}).json()["results"]
    assert [(h["from_version"], h["to_version"], h["reason"], h["actor_name"]) for h in history] == [
        (1, 2, "fixes drift", "dana"),
        (None, 1, "first release", "dana"),
    ]
    events = list(AuditEvent.objects.filter(action__startswith="label.").order_by("id").values_list("action", "before", "after", "reason"))
    assert events == [
        ("label.create", None, {"label": "stable", "version": 1}, "first release"),
        ("label.move", {"label": "stable", "version": 1}, {"label": "stable", "version": 2}, "fixes drift"),
    ]
    resolved = client.get("/api/v1/resolve/", {"team": "vision", "model": "fraud-scorer", "label": "stable"})
    assert resolved.status_code == 200 and resolved.json()["version"] == 2


def test_move_is_refused_when_someone_moved_it_first(api, deployer, model, versions):
    client = api(deployer)
    client.put(url(model, "canary"), {"version": 1, "reason": "try"}, format="json")
    client.put(url(model, "canary"), {"version": 2, "reason": "colleague"}, format="json")
    stale = client.put(url(model, "canary"), {"version": 3, "reason": "mine", "expected_version": 1}, format="json")
    assert stale.status_code == 409 and "points at v2, not v1" in stale.json()["detail"]
    assert VersionLabel.objects.get(name="canary").version.version == 2
    exists = client.put(url(model, "canary"), {"version": 3, "reason": "new", "expected_version": None}, format="json")
    assert exists.status_code == 409 and "already exists" in exists.json()["detail"]


@pytest.mark.parametrize(
    "name, payload, field",
    [
        ("latest", {"version": 1, "reason": "x"}, "name"),
        ("Stable", {"version": 1, "reason": "x"}, "name"),
        ("9lives", {"version": 1, "reason": "x"}, "name"),
        ("a" * 32, {"version": 1, "reason": "x"}, "name"),
        ("stable", {"version": 4, "reason": "x"}, "version"),  # registered but not validated
        ("stable", {"version": 99, "reason": "x"}, "version"),
        ("stable", {"version": 0, "reason": "x"}, "version"),
        ("stable", {"version": "two", "reason": "x"}, "version"),
        ("stable", {"version": 1}, "reason"),
        ("stable", {"version": 1, "reason": "   "}, "reason"),
        ("stable", {"version": 1, "reason": "x", "force": True}, "force"),
    ],
)
def test_bad_labels_are_400_naming_the_field(api, deployer, model, versions, name, payload, field):
    response = api(deployer).put(url(model, name), payload, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["fields"]
    assert not VersionLabel.objects.exists() and not LabelMove.objects.exists()


def test_delete_keeps_history(api, deployer, model, versions):
    client = api(deployer)
    client.put(url(model, "dev"), {"version": 3, "reason": "try"}, format="json")
    assert client.delete(url(model, "dev"), {"reason": "done"}, format="json").status_code == 204
    assert client.get(url(model, "dev")).status_code == 404
    assert client.delete(url(model, "dev"), {"reason": "again"}, format="json").status_code == 400
    assert [(m.label, m.from_version.version, m.to_version) for m in LabelMove.objects.filter(reason="done")] == [("dev", 3, None)]


def test_access(api, viewer, outsider, deployer, model, versions):
    assert api(viewer).put(url(model, "stable"), {"version": 1, "reason": "x"}, format="json").status_code == 403
    assert api(viewer).get(url(model)).status_code == 200
    assert api(outsider).get(url(model)).status_code == 404
    assert api(outsider).get("/api/v1/resolve/", {"team": "vision", "model": "fraud-scorer"}).status_code == 404
    assert not VersionLabel.objects.exists()


def test_model_page_move_form(client, deployer, model, versions):
    client.force_login(deployer)
    client.post(f"/models/{model.pk}/labels/move/", {"name": "stable", "version": "1", "reason": "first", "expected_version": ""})
    response = client.post(f"/models/{model.pk}/labels/move/", {"name": "stable", "version": "2", "reason": "ship", "expected_version": "1"}, follow=True)
    assert b"stable now points at v2" in response.content
    stale = client.post(f"/models/{model.pk}/labels/move/", {"name": "stable", "version": "3", "reason": "late", "expected_version": "1"}, follow=True)
    assert b"someone moved it" in stale.content
    html = client.get(f"/models/{model.pk}/").content.decode()
    assert "ship" in html and "first" in html and "Move…" in html
    assert AuditEvent.objects.filter(action="label.move", source="ui").count() == 1


def test_model_page_label_forms_show_refusals_next_to_their_field(client, deployer, viewer, model, versions):
    client.force_login(deployer)
    client.post(f"/models/{model.pk}/labels/move/", {"name": "stable", "version": "1", "reason": "first", "expected_version": ""})
    events = AuditEvent.objects.count()

    # a move without a reason: the service refuses (a move is a release); the dialog comes back open
    response = client.post(f"/models/{model.pk}/labels/move/", {"name": "stable", "version": "3", "reason": " ", "expected_version": "1"})
    assert response.status_code == 400
    html = response.content.decode()
    dialog = html.split('<dialog id="move-stable"')[1].split("</dialog>")[0]
    assert "data-show-modal" in dialog.split(">")[0]
    assert re.search(r'<textarea[^>]*aria-invalid="true"[^>]*aria-describedby="move-stable-reason_error"[^>]*id="move-stable-reason">'
                     r'[^<]*</textarea><ul class="errorlist" id="move-stable-reason_error"><li>Say why: moving a label is a release.</li></ul>', dialog)
    assert re.search(r'<option value="3" selected>', dialog)  # the chosen version stays

    # a version that is not ready: next to the version select
    response = client.post(f"/models/{model.pk}/labels/move/", {"name": "stable", "version": "4", "reason": "go", "expected_version": "1"})
    dialog = response.content.decode().split('<dialog id="move-stable"')[1].split("</dialog>")[0]
    assert response.status_code == 400 and 'aria-describedby="move-stable-version_error"' in dialog
    assert '<ul class="errorlist" id="move-stable-version_error"><li>' in dialog and "no registered, validated version 4" in dialog

    # a new label with a bad name: next to the name field of the create form, what was typed kept
    response = client.post(f"/models/{model.pk}/labels/move/", {"name": "Latest", "version": "2", "reason": "why", "expected_version": ""})
    html = response.content.decode()
    assert response.status_code == 400
    assert re.search(r'id="new-label-name" value="Latest"[^>]*aria-invalid="true"[^>]*><ul class="errorlist" id="new-label-name_error"><li>A label is', html)

    # a delete without a reason: the error in the label's row
    response = client.post(f"/models/{model.pk}/labels/delete/", {"name": "stable", "reason": ""})
    row = response.content.decode().split('<tr data-label="stable">')[1].split("</tr>")[0]
    assert response.status_code == 400 and '<ul class="errorlist" role="alert"><li>reason: Say why' in row

    client.force_login(viewer)
    response = client.post(f"/models/{model.pk}/labels/move/", {"name": "stable", "version": "2", "reason": "x", "expected_version": "1"})
    assert response.status_code == 403
    assert "needs the deployer role" in response.content.decode().split("<h2>Labels</h2>")[1].split("</div>")[0]
    assert AuditEvent.objects.count() == events and LabelMove.objects.count() == 1
    assert VersionLabel.objects.get(name="stable").version.version == 1


def test_model_history_includes_versions_labels_and_configs(client, deployer, model, versions, team):
    from controlplane.accounts.models import Membership, Role
    from controlplane.registry.labels import label_delete, label_set
    from controlplane.registry.selectors import model_history
    from controlplane.serving.services import serving_config_save

    Membership.objects.filter(user=deployer).update(role=Role.ADMIN)
    actor = Actor(user=deployer, source="api")
    label_set(actor=actor, model=model, name="dev", version=1, reason="try")
    label_delete(actor=actor, model=model, name="dev", reason="done")
    serving_config_save(actor=actor, model=model, spec={"dynamic_batching": {"max_queue_delay_microseconds": 100}}, reason="tune")
    actions = set(model_history(model).values_list("action", flat=True))
    assert {"model.create", "label.create", "label.delete", "serving_config.save"} <= actions
