"""The GPU quota bar in Debian's chromium.

A test-only page (this module is its urlconf) renders the include inside base.html. The
team-page test runs once the team page shows the bar (its view calls quotas.ui.quota_bars).
"""

import pytest
from django.http import HttpResponse
from django.template import engines
from django.urls import include, path
from playwright.sync_api import expect

from controlplane.accounts.models import Team
from controlplane.audit.context import Actor
from controlplane.fleet.models import Pool, Server
from controlplane.quotas.selectors import quota_usage
from controlplane.quotas.services import quota_reserve, quota_set
from tests.quotas.conftest import make_model, make_version

pytestmark = pytest.mark.browser

PAGE = """{% extends "base.html" %}{% block title %}Quota bar{% endblock %}{% block content %}
<h1>Quota bar</h1><section class="card"><h2>{{ usage.team.slug }}</h2>{% include "quotas/_quota_bar.html" %}</section>
{% endblock %}"""


def quota_bar_page(request, slug):
    usage = quota_usage(Team.objects.get(slug=slug))
    return HttpResponse(engines["django"].from_string(PAGE).render({"usage": usage}, request))


urlpatterns = [path("test-quota-bar/<slug:slug>/", quota_bar_page), path("", include("controlplane.urls"))]


@pytest.fixture
def vision(team, deployer, platform_admin):
    """Quota 8: fraud-scorer placed with 4, resnet50 with 1, deployment 42 surging fraud-scorer v2 by 1."""
    admin, dana = Actor(user=platform_admin, source="api"), Actor(user=deployer, source="api")
    quota_set(actor=admin, team=team, gpus=8)
    scorer = make_model(team, "fraud-scorer")
    v1, v2 = make_version(scorer, 1), make_version(scorer, 2)
    resnet = make_version(make_model(team, "resnet50"), 1)
    server = Server.objects.create(name="gpu-1", pool=Pool.objects.create(name="a100"), http_url="http://127.0.0.1:9", gpu_count=8)
    for devices, version, kind, holder in [([0, 1, 2, 3], v1, "placement", ""), ([4], resnet, "placement", ""),
                                           ([5], v2, "deployment", "deployment 42")]:
        quota_reserve(actor=dana, team=team, kind=kind, version=version, holder=holder, server=server, devices=devices)
    return team


def check_bar(page, root):
    meter = root.get_by_role("meter", name="GPU quota")
    expect(meter).to_have_attribute("aria-valuenow", "6")
    expect(meter).to_have_attribute("aria-valuemax", "8")
    expect(meter).to_have_attribute("aria-valuetext", "6 of 8 GPUs held")
    expect(root.locator(".quota-numbers")).to_have_text("6 of 8 GPUs held")
    expect(root.locator(".quota-state")).to_have_text("2 free")
    legend = root.get_by_role("list", name="GPUs held by model and deployment").get_by_role("listitem")
    expect(legend).to_have_text(["fraud-scorer 4 GPUs", "resnet50 1 GPU", "deployment 42 surge 1 GPU", "free 2 GPUs"])

    # Widths as drawn: 4, 1 and 1 of 8 GPUs.
    bar_box = meter.bounding_box()
    widths = [box["width"] / bar_box["width"] for box in (s.bounding_box() for s in meter.locator(".quota-seg").all())]
    assert widths == [pytest.approx(w, abs=0.01) for w in (0.5, 0.125, 0.125)]
    colours = meter.locator(".quota-seg").evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert len(set(colours)) == 3
    surge = meter.locator(".quota-seg").nth(2).evaluate("e => getComputedStyle(e).backgroundImage")
    assert "repeating-linear-gradient" in surge


@pytest.mark.urls(__name__)
def test_quota_bar_in_a_page(ui, vision):
    ui.sign_in("dana")
    ui.goto("/test-quota-bar/vision/")
    check_bar(ui.page, ui.page.locator(".card"))
    ui.screenshot("quota-bar")
    ui.assert_only_local()


@pytest.mark.urls(__name__)
def test_quota_bar_over_quota(ui, vision, platform_admin):
    quota_set(actor=Actor(user=platform_admin, source="api"), team=vision, gpus=3, reason="budget cut")
    ui.sign_in("dana")
    ui.goto("/test-quota-bar/vision/")
    page = ui.page
    meter = page.get_by_role("meter", name="GPU quota")
    expect(meter).to_have_attribute("aria-valuetext", "6 of 3 GPUs held, 3 over quota")
    expect(page.locator(".quota-numbers")).to_have_text("6 of 3 GPUs held")
    expect(page.locator(".quota-state")).to_have_text("3 over quota")
    limit = page.locator(".quota-limit").bounding_box()
    bar_box = meter.bounding_box()
    middle = limit["x"] + limit["width"] / 2
    assert (middle - bar_box["x"]) / bar_box["width"] == pytest.approx(3 / 6, abs=0.01)  # the bar stands for 6
    assert limit["height"] > bar_box["height"]  # it sticks out, so it shows over the segments
    ui.screenshot("quota-bar-over")


def test_quota_bar_on_the_team_page(ui, vision, other_team):
    ui.sign_in("dana")
    ui.goto("/team/")
    card = ui.page.locator("section.card", has=ui.page.get_by_role("heading", name="vision"))
    check_bar(ui.page, card)
    expect(ui.page.get_by_role("meter")).to_have_count(1)  # speech's bar is not dana's to see
    ui.screenshot("team-quota")
    ui.assert_only_local()
