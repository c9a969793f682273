"""/api/v1/quotas/: who sees which team's quota, and who may set it."""
import pytest

from controlplane.audit.context import Actor
from controlplane.audit.models import AuditEvent
from controlplane.quotas.models import GpuQuota, ReservationKind
from controlplane.quotas.services import quota_reserve, quota_set
from tests.quotas.conftest import make_model, make_version

URL = "/api/v1/quotas/"


@pytest.fixture
def used(as_admin, as_deployer, team, other_team, model, server):
    """vision: quota 8; fraud-scorer v1 placed on GPUs 0-3 of gpu-1, deployment 42 surging v2 on 4-5,
    and v2 also placed on 0-1 beside v1 (no new device). speech: quota 3."""
    quota_set(actor=as_admin, team=team, gpus=8)
    quota_set(actor=as_admin, team=other_team, gpus=3)
    v1, v2 = make_version(model, 1), make_version(model, 2)
    quota_reserve(actor=as_deployer, team=team, kind=ReservationKind.PLACEMENT, version=v1, server=server, devices=[0, 1, 2, 3])
    quota_reserve(actor=as_deployer, team=team, kind=ReservationKind.DEPLOYMENT, version=v2, server=server, devices=[4, 5],
                  holder="deployment 42")
    quota_reserve(actor=as_deployer, team=team, kind=ReservationKind.PLACEMENT, version=v2, server=server, devices=[0, 1])


VISION = {
    "team": "vision", "gpus": 8, "held": 6, "free": 2, "over": 0,
    "by_model": [{"model": "fraud-scorer", "gpus": 6}],
    "by_holder": [
        {"kind": "placement", "holder": "", "gpus": 4, "models": ["fraud-scorer"]},
        {"kind": "deployment", "holder": "deployment 42", "gpus": 2, "models": ["fraud-scorer"]},
    ],
}
SPEECH = {"team": "speech", "gpus": 3, "held": 0, "free": 3, "over": 0, "by_model": [], "by_holder": []}


def test_members_see_their_teams_only(api, used, deployer, viewer, outsider):
    for user in (deployer, viewer):
        response = api(user).get(URL)
        assert response.status_code == 200
        assert response.json()["results"] == [VISION]
    response = api(outsider).get(URL)
    assert response.status_code == 200 and response.json()["results"] == [SPEECH]


def test_platform_admins_see_every_team(api, used, platform_admin):
    response = api(platform_admin).get(URL)
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert response.json()["results"] == [SPEECH, VISION]


def test_one_team(api, used, viewer, outsider, platform_admin):
    assert api(viewer).get(f"{URL}vision/").json() == VISION
    assert api(platform_admin).get(f"{URL}speech/").json() == SPEECH
    response = api(outsider).get(f"{URL}vision/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
    assert api(viewer).get(f"{URL}no-such-team/").status_code == 404


def test_a_team_without_a_quota_reads_as_0(api, team, viewer):
    assert api(viewer).get(f"{URL}vision/").json() == {
        "team": "vision", "gpus": 0, "held": 0, "free": 0, "over": 0, "by_model": [], "by_holder": [],
    }


def test_anonymous_callers_are_refused(api, team):
    assert api().get(URL).status_code in (401, 403)
    assert api().put(f"{URL}vision/", {"gpus": 4}, format="json").status_code in (401, 403)
    assert not GpuQuota.objects.exists()


@pytest.mark.parametrize("method", ["put", "patch"])
def test_platform_admins_set_a_quota(api, team, platform_admin, method):
    response = getattr(api(platform_admin), method)(f"{URL}vision/", {"gpus": 12, "reason": "new A100s"}, format="json")
    assert response.status_code == 200
    assert response.json()["gpus"] == 12 and response.json()["free"] == 12
    assert GpuQuota.objects.get(team=team).gpus == 12
    event = AuditEvent.objects.get(action="quota.set")
    assert (event.before, event.after, event.reason, event.source) == ({"gpus": 0}, {"gpus": 12}, "new A100s", "api")


@pytest.mark.parametrize("who,status", [("deployer", 403), ("viewer", 403), ("outsider", 404)])
def test_others_cannot_set_a_quota(request, api, team, who, status):
    user = request.getfixturevalue(who)
    for method in ("put", "patch"):
        response = getattr(api(user), method)(f"{URL}vision/", {"gpus": 100}, format="json")
        assert response.status_code == status, response.json()
        assert "fields" not in response.json()
    # 403 comes before any look at the body
    assert api(request.getfixturevalue(who)).put(f"{URL}vision/", {"gpus": -1}, format="json").status_code == status
    assert not GpuQuota.objects.exists() and not AuditEvent.objects.filter(action="quota.set").exists()


def test_a_team_admin_gets_403_naming_platform_admins(api, team, django_user_model):
    from controlplane.accounts.models import Membership, Role

    boss = django_user_model.objects.create_user("ada", password="x")
    Membership.objects.create(user=boss, team=team, role=Role.ADMIN)
    response = api(boss).put(f"{URL}vision/", {"gpus": 100}, format="json")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only platform admins may do this."}


@pytest.mark.parametrize(
    "body,field",
    [
        ({"gpus": -1}, "gpus"),
        ({"gpus": "x"}, "gpus"),
        ({"gpus": 1.5}, "gpus"),
        ({"gpus": None}, "gpus"),
        ({"gpus": 100_001}, "gpus"),
        ({}, "gpus"),
        ({"reason": "no number"}, "gpus"),
        ({"gpus": 4, "gpu": 4}, "gpu"),
        ({"gpus": 4, "team": "speech"}, "team"),
        ({"gpus": 4, "reason": "x" * 2001}, "reason"),
    ],
)
@pytest.mark.parametrize("method", ["put", "patch"])
def test_bad_bodies_are_400_naming_the_field_and_write_nothing(api, as_admin, team, platform_admin, body, field, method):
    quota_set(actor=as_admin, team=team, gpus=2)
    response = getattr(api(platform_admin), method)(f"{URL}vision/", body, format="json")
    assert response.status_code == 400, response.json()
    assert list(response.json()["fields"]) == [field]
    assert response.json()["detail"].startswith(f"{field}: ")
    assert GpuQuota.objects.get(team=team).gpus == 2
    assert AuditEvent.objects.filter(action="quota.set").count() == 1


def test_malformed_json_is_400(api, team, platform_admin):
    response = api(platform_admin).put(f"{URL}vision/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "Malformed" in response.json()["detail"]
    response = api(platform_admin).put(f"{URL}vision/", [1, 2], format="json")
    assert response.status_code == 400 and response.json()["fields"] == {"body": ["Send a JSON object."]}


def test_quota_exceeded_comes_back_as_409_with_the_numbers(api, used, team, deployer, server, as_admin):
    """No API reserves GPUs yet; the error format is checked through DRF's handler directly."""
    from rest_framework.test import APIRequestFactory

    from controlplane.common.api import exception_handler
    from controlplane.quotas.services import QuotaExceeded

    version = make_version(make_model(team, "resnet50"), 1)
    quota_set(actor=as_admin, team=team, gpus=7)
    with pytest.raises(QuotaExceeded) as caught:
        quota_reserve(actor=Actor(user=deployer, source="api"), team=team, kind=ReservationKind.DEPLOYMENT,
                      version=version, server=server, devices=[5, 6, 7, 0], holder="deployment 43")
    response = exception_handler(caught.value, {"request": APIRequestFactory().post("/")})
    message = "team vision would hold 8 of 7 GPUs: resnet50 v1 for deployment 43 on gpu-1 needs 2 new on top of 6 held"
    assert response.status_code == 409
    assert response.data == {"detail": f"gpus: {message}", "fields": {"gpus": [message]}}


def test_post_and_delete_are_not_allowed(api, team, platform_admin):
    assert api(platform_admin).post(URL, {"gpus": 1}, format="json").status_code == 405
    assert api(platform_admin).delete(f"{URL}vision/").status_code == 405
