"""quota_usage: numbers, breakdowns and a constant query count; and the bar it feeds."""
import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext

from controlplane.accounts.models import Team
from controlplane.audit.context import Actor
from controlplane.quotas.models import ReservationKind
from controlplane.quotas.selectors import quota_usage, quota_usages
from controlplane.quotas.services import quota_release, quota_reserve, quota_set
from tests.quotas.conftest import make_model, make_version

P, D = ReservationKind.PLACEMENT, ReservationKind.DEPLOYMENT


@pytest.fixture
def fill(as_deployer, team, server):
    def make(gpus, version, kind=P, holder=""):
        return quota_reserve(actor=as_deployer, team=team, gpus=gpus, kind=kind, version=version,
                             server=server if kind == P else None, holder=holder)

    return make


@pytest.fixture
def vision(as_admin, team, model, fill):
    """Quota 8: fraud-scorer placed 3 + 1, resnet50 placed 1, deployment 42 surging fraud-scorer v2 by 1."""
    quota_set(actor=as_admin, team=team, gpus=8)
    scorer1, scorer2 = make_version(model, 1), make_version(model, 2)
    resnet = make_version(make_model(team, "resnet50"), 1)
    fill(3, scorer1, holder="placement 1")
    fill(1, scorer1, holder="placement 2")
    fill(1, resnet)
    fill(1, scorer2, kind=D, holder="deployment 42")
    gone = fill(2, resnet)
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


def test_over_quota_scales_the_bar_to_what_is_held(vision, as_admin):
    quota_set(actor=as_admin, team=vision, gpus=4)
    usage = quota_usage(vision)
    assert (usage.limit, usage.held, usage.free, usage.over, usage.scale, usage.limit_percent) == (4, 6, 0, 2, 6, pytest.approx(66.667, abs=0.01))
    assert sum(s.percent for s in usage.segments) == pytest.approx(100, abs=0.01)


def test_usage_of_many_teams_takes_two_queries(vision, other_team, outsider):
    whisper = make_version(make_model(other_team, "whisper"), 1)
    quota_set(actor=Actor.system("worker"), team=other_team, gpus=2)
    quota_reserve(actor=Actor(user=outsider, source="api"), team=other_team, gpus=2, kind=D, version=whisper, holder="deployment 7")
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


def test_the_bar_escapes_names(team, as_admin, as_deployer, version):
    quota_set(actor=as_admin, team=team, gpus=2)
    quota_reserve(actor=as_deployer, team=team, gpus=1, kind=D, version=version, holder='<script>"x"</script>')
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
