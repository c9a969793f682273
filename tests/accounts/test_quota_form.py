"""The Team page's quota form: platform admins only, through the same service as the API."""
from controlplane.audit.models import AuditEvent
from controlplane.quotas.models import GpuQuota

URL = "/team/vision/quota/"


def test_a_platform_admin_sets_the_quota_and_it_is_audited(client, team, platform_admin):
    client.force_login(platform_admin)
    assert 'action="/team/vision/quota/"' in client.get("/team/").content.decode()
    answer = client.post(URL, {"gpus": "4", "reason": "new cards"})
    assert answer.status_code == 302
    assert GpuQuota.objects.get(team=team).gpus == 4
    assert AuditEvent.objects.filter(action="quota.set", reason="new cards").count() == 1


def test_bad_input_is_a_400_next_to_the_field_and_writes_nothing(client, team, platform_admin):
    client.force_login(platform_admin)
    for data, field in (({"gpus": "two", "reason": "x"}, "gpus"), ({"gpus": "2", "reason": ""}, "reason")):
        answer = client.post(URL, data)
        assert answer.status_code == 400
        assert f'id="vision-quota-{field}"' in answer.content.decode() and 'class="errorlist' in answer.content.decode()
    assert not GpuQuota.objects.filter(gpus__gt=0).exists() and not AuditEvent.objects.filter(action="quota.set").exists()


def test_a_team_admin_is_refused_and_sees_no_form(client, team, team_admin):
    client.force_login(team_admin)
    assert "quota-set" not in client.get("/team/").content.decode()
    answer = client.post(URL, {"gpus": "9", "reason": "more"})
    assert answer.status_code == 403
    assert not GpuQuota.objects.filter(gpus=9).exists()


def test_another_teams_quota_is_a_404_for_its_outsiders(client, team, outsider):
    client.force_login(outsider)
    assert client.post(URL, {"gpus": "9", "reason": "more"}).status_code == 404
