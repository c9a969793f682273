"""quota_usage: distinct devices, breakdowns and a constant query count; and the bar it feeds."""
import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from controlplane.accounts.models import Team
from controlplane.audit.context import Actor
from controlplane.quotas.models import Reservation, ReservationKind
from controlplane.quotas.selectors import quota_usage, quota_usages, team_device_holders, team_devices_held
from controlplane.quotas.services import quota_release, quota_reserve, quota_set
from tests.quotas.conftest import make_model, make_version

P, D = ReservationKind.PLACEMENT, ReservationKind.DEPLOYMENT


@pytest.fixture
def fill(as_deployer, team, server):
    """fill([0, 1], version) reserves GPUs 0 and 1 of gpu-1 (8 GPUs)."""
    def make(devices, version, kind=P, holder="", on=None):
        return quota_reserve(actor=as_deployer, team=team, kind=kind, version=version, server=on or server,
                             devices=devices, holder=holder)

    return make


@pytest.fixture
def vision(as_admin, team, model, fill):
    """Quota 8 on gpu-1: fraud-scorer placed on GPUs 0-2 and 3, resnet50 on 4, deployment 42
    surging fraud-scorer v2 on 5; resnet50's 6-7 released."""
    quota_set(actor=as_admin, team=team, gpus=8)
    scorer1, scorer2 = make_version(model, 1), make_version(model, 2)
    resnet = make_version(make_model(team, "resnet50"), 1)
    fill([0, 1, 2], scorer1, holder="placement 1")
    fill([3], scorer1, holder="placement 2")
    fill([4], resnet)
    fill([5], scorer2, kind=D, holder="deployment 42")
    gone = fill([6, 7], resnet)
    quota_release(actor=Actor.system("worker"), reservation=gone)
    return team


def test_usage_numbers_and_breakdowns(vision):
    usage = quota_usage(vision)
    assert (usage.limit, usage.held, usage.free, usage.over, usage.scale) == (8, 6, 2, 0, 8)
    assert [(m.model, m.gpus) for m in usage.by_model] == [("fraud-scorer", 5), ("resnet50", 1)]
    assert [(h.kind, h.holder, h.gpus, h.models) for h in usage.by_holder] == [
        (P, "placement 1", 3, ("fraud-scorer",)),
        (P, "", 1, ("resnet50",)),
        (D, "deployment 42", 1, ("fraud-scorer",)),
        (P, "placement 2", 1, ("fraud-scorer",)),
    ]
    assert [(s.label, s.kind, s.gpus, s.percent, s.is_surge) for s in usage.segments] == [
        ("fraud-scorer", P, 4, 50.0, False),
        ("resnet50", P, 1, 12.5, False),
        ("deployment 42", D, 1, 12.5, True),
    ]
    assert usage.segments[2].detail == "surge of fraud-scorer"
    assert len({s.colour for s in usage.segments}) == 3


def test_a_device_shared_by_two_models_is_held_and_drawn_once(vision, model, fill):
    """resnet50 also on GPU 0, which fraud-scorer's placement 1 took first: held stays 6, and the
    bar draws GPU 0 under fraud-scorer, so its segments still add up to what is held."""
    fill([0], make_version(make_model(vision, "bert"), 1))
    usage = quota_usage(vision)
    assert (usage.held, usage.free) == (6, 2)
    assert [(m.model, m.gpus) for m in usage.by_model] == [("fraud-scorer", 5), ("bert", 1), ("resnet50", 1)]
    assert [(s.label, s.gpus) for s in usage.segments] == [("fraud-scorer", 4), ("resnet50", 1), ("deployment 42", 1)]
    assert sum(s.gpus for s in usage.segments) == usage.held


def test_a_second_version_on_the_same_devices_adds_nothing(vision, model, fill):
    fill([0, 1, 2, 3], make_version(model, 7), holder="placement 3")  # same-servers green beside blue
    usage = quota_usage(vision)
    assert usage.held == 6
    assert [(s.label, s.gpus) for s in usage.segments] == [("fraud-scorer", 4), ("resnet50", 1), ("deployment 42", 1)]


def test_the_surge_keeps_its_devices_when_green_is_placed_on_them(vision, model, fill, server):
    """Green's own placement on the surge's devices: counted once, and still drawn as the surge
    (what the rollout holds on top of blue) until the surge is released."""
    from controlplane.fleet.models import Server

    gpu2 = Server.objects.create(name="gpu-2", pool=server.pool, http_url="http://127.0.0.1:9", gpu_count=2)
    scorer2 = model.versions.get(version=2)
    fill([0, 1], scorer2, kind=D, holder="deployment 42", on=gpu2)
    fill([0, 1], scorer2, holder="placement 9", on=gpu2)
    usage = quota_usage(vision)
    assert usage.held == 8
    assert [(s.label, s.gpus, s.is_surge) for s in usage.segments] == [
        ("fraud-scorer", 4, False), ("resnet50", 1, False), ("deployment 42", 3, True)]
    assert [(h.holder, h.gpus) for h in usage.by_holder if h.kind == D] == [("deployment 42", 3)]


def test_a_reservation_whose_server_is_gone_holds_nothing(team, as_admin, fill, version):
    from controlplane.fleet.models import Pool, Server

    quota_set(actor=as_admin, team=team, gpus=8)
    doomed = Server.objects.create(name="gpu-9", pool=Pool.objects.create(name="old"), http_url="http://127.0.0.1:9", gpu_count=4)
    reservation = fill([0, 1, 2, 3], version, on=doomed)
    assert quota_usage(team).held == 4
    doomed.delete()
    usage = quota_usage(team)
    assert (usage.held, usage.segments) == (0, ())
    assert [(h.holder, h.gpus) for h in usage.by_holder] == [("", 0)]  # still active, holding no device
    assert team_devices_held(team) == set()
    assert Reservation.objects.get(pk=reservation.pk).is_active


def test_team_devices_held_is_one_query_and_counts_each_device_once(vision, server, fill, model):
    fill([0, 4], model.versions.get(version=1))
    with CaptureQueriesContext(connection) as queries:
        held = team_devices_held(vision)
    assert len(queries) == 1
    assert held == {(server.pk, i) for i in range(6)}
    holders = team_device_holders(vision)
    assert (holders[server.pk, 0], holders[server.pk, 4], holders[server.pk, 1]) == (2, 2, 1)
    placement_1 = Reservation.objects.get(holder="placement 1")
    assert team_devices_held(vision, except_reservations=[placement_1.pk]) == {(server.pk, i) for i in (0, 3, 4, 5)}


def test_over_quota_scales_the_bar_to_what_is_held(vision, as_admin):
    quota_set(actor=as_admin, team=vision, gpus=4)
    usage = quota_usage(vision)
    assert (usage.limit, usage.held, usage.free, usage.over, usage.scale, usage.limit_percent) == (4, 6, 0, 2, 6, pytest.approx(66.667, abs=0.01))
    assert sum(s.percent for s in usage.segments) == pytest.approx(100, abs=0.01)


def test_usage_of_many_teams_takes_two_queries(vision, other_team, outsider, server):
    whisper = make_version(make_model(other_team, "whisper"), 1)
    quota_set(actor=Actor.system("worker"), team=other_team, gpus=2)
    quota_reserve(actor=Actor(user=outsider, source="api"), team=other_team, kind=D, version=whisper, server=server,
                  devices=[0, 1], holder="deployment 7")
    for i in range(5):
        Team.objects.create(slug=f"t{i}")
    teams = list(Team.objects.all())
    with CaptureQueriesContext(connection) as few:
        quota_usage(vision)
    with CaptureQueriesContext(connection) as many:
        usages = quota_usages(teams)
    assert len(few) == len(many) == 2
    assert {t.slug: (u.limit, u.held) for t, u in ((t, usages[t.pk]) for t in teams)} == {
        "vision": (8, 6), "speech": (2, 2), **{f"t{i}": (0, 0) for i in range(5)}
    }


def bar(usage) -> str:
    return render_to_string("quotas/_quota_bar.html", {"usage": usage})


def test_the_bar_shows_the_numbers_segments_and_legend(vision):
    html = bar(quota_usage(vision))
    assert "6 of 8 GPUs held" in html and "2 free" in html
    assert 'role="meter"' in html and 'aria-valuenow="6"' in html and 'aria-valuemax="8"' in html
    assert 'aria-valuetext="6 of 8 GPUs held"' in html
    assert html.count('class="quota-seg ') == 3
    # widths go through data attributes (static/js/switchyard.js sizes them): the CSP blocks style=
    assert 'data-width="50.000"' in html and html.count('data-width="12.500"') == 2 and "style=" not in html
    assert html.count('quota-surge') == 2  # the segment and its swatch
    for label in ("fraud-scorer", "resnet50", "deployment 42"):
        assert f'<span class="quota-label">{label}</span>' in html
    assert "4 GPUs" in html and "1 GPU<" in html and "surge of fraud-scorer" in html
    assert "quota-limit" not in html and "over quota" not in html
    assert "Counted as distinct devices: each GPU of each server once" in html


def test_the_bar_over_quota_marks_the_limit(vision, as_admin):
    quota_set(actor=as_admin, team=vision, gpus=4)
    html = bar(quota_usage(vision))
    assert "6 of 4 GPUs held" in html and "2 over quota" in html
    assert 'aria-valuetext="6 of 4 GPUs held, 2 over quota"' in html
    assert 'class="quota-limit" data-left="66.667"' in html


def test_the_bar_of_a_team_without_a_quota(team):
    html = bar(quota_usage(team))
    assert "0 of 0 GPUs held" in html and "no GPU quota set" in html and "quota-seg" not in html


def test_the_bar_says_gpu_for_one(team, as_admin):
    quota_set(actor=as_admin, team=team, gpus=1)
    assert "0 of 1 GPU held" in bar(quota_usage(team)) and "1 GPU</span>" in bar(quota_usage(team))


def test_the_bar_escapes_names(team, as_admin, as_deployer, version, server):
    quota_set(actor=as_admin, team=team, gpus=2)
    quota_reserve(actor=as_deployer, team=team, kind=D, version=version, server=server, devices=[0],
                  holder='<script>"x"</script>')
    html = bar(quota_usage(team))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_nothing_renders_without_usage():
    assert bar(None).strip() == ""


def test_quota_bars_renders_every_team_in_two_queries(vision, other_team):
    from controlplane.quotas.ui import quota_bars

    teams = [vision, other_team]
    with CaptureQueriesContext(connection) as queries:
        bars = quota_bars(teams)
    assert len(queries) == 2
    assert "6 of 8 GPUs held" in bars[vision.pk] and "0 of 0 GPUs held" in bars[other_team.pk]
    assert 'data-team="speech"' in bars[other_team.pk] and "fraud-scorer" not in bars[other_team.pk]
