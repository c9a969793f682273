"""The Deployments page: every deployment the user may see, the scheduled ones with Cancel, and
the plan form (also on an endpoint's page, with the endpoint fixed).

The plan form's Preview and Start post the form (htmx swaps the form's section); both feed the
services the API calls, `deployment_plan` and `deployment_create`, and a refusal comes back with
the error next to its field and the API's status (400, 403, 409). A page costs a fixed number of
queries however many deployments, endpoints or teams there are.
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import teams_with_role
from controlplane.common.ui import REFUSALS, is_htmx, ui_actor
from controlplane.deployments import selectors, services
from controlplane.deployments.forms import DeploymentPlanForm
from controlplane.deployments.machine import State
from controlplane.deployments.models import PlacementMode, Strategy
from controlplane.deployments.planning import Plan
from controlplane.deployments.progress import Progress, deployment_progress
from controlplane.endpoints.models import Endpoint
from controlplane.quotas.services import QuotaExceeded

PER_PAGE = 25
SCHEDULED_SHOWN = 50


def deployer_endpoints(user) -> list[str]:
    """Public names of the endpoints the user may deploy to, for the form's select. One query."""
    teams = teams_with_role(user, Role.DEPLOYER)
    return [f"{team}.{name}" for team, name in
            Endpoint.objects.filter(team__in=teams).order_by("team__slug", "name").values_list("team__slug", "name")]


def plan_form(user, data=None, *, fixed: str | None = None) -> DeploymentPlanForm:
    return DeploymentPlanForm(data, endpoints=[] if fixed else deployer_endpoints(user), fixed=fixed)


# -- the plan as the preview shows it -------------------------------------------------------------


def duration_words(seconds: float) -> str:
    """1 hour 2 minutes, 3 minutes 20 seconds, 45 seconds: the two largest units."""
    seconds = round(seconds)
    if seconds <= 0:
        return "no time"
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts[:2])


def clock(seconds: float) -> str:
    """+m:ss or +h:mm:ss from the start."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"+{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"+{rest // 60}:{rest % 60:02d}"


def _share(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0


def plan_display(r: services.Resolved) -> dict:
    """What the preview draws from a checked request: each phase with green's share and the GPUs
    held then, and the quota bar (held now, the surge, the quota's mark when over it)."""
    plan: Plan = r.plan
    scale = max(plan.quota, plan.peak, 1)
    phases = [{
        "name": p.name, "traffic": p.traffic_percent, "at": clock(p.starts_at_s),
        "lasts": duration_words(p.duration_s) if p.duration_s >= 1 else "a moment",
        "held": p.devices_held, "held_width": _share(p.devices_held, scale), "note": p.note,
        "over": p.devices_held > plan.quota and plan.surge > 0, "is_step": p.name.startswith("step "),
    } for p in plan.phases]
    window = next((p.duration_s for p in plan.phases if p.name == "rollback window"), 0)
    return {
        "endpoint": r.endpoint.public_name, "blue": r.blue.version, "green": r.green.version,
        "strategy": Strategy(r.spec.strategy).label, "placement": PlacementMode(r.spec.placement).label, "servers": [s.name for s in r.servers],
        "steps": [s.as_dict() for s in r.spec.steps], "phases": phases,
        "projected": duration_words(plan.projected_s), "window": duration_words(window) if window else "",
        "start_at": r.spec.start_at, "approval": r.spec.approval_required,
        "quota": plan.quota, "held_now": plan.held_now, "peak": plan.peak, "surge": plan.surge,
        "released": plan.released_at_retire, "over_quota": plan.over_quota, "over_by": max(plan.peak - plan.quota, 0),
        "free": max(plan.quota - plan.peak, 0),
        "held_width": _share(plan.held_now, scale), "surge_width": _share(plan.surge, scale),
        "free_width": _share(max(plan.quota - plan.peak, 0), scale), "limit_left": _share(plan.quota, scale),
        "scale": scale,
    }


# -- pages ----------------------------------------------------------------------------------------


def _list_page(request, *, form: DeploymentPlanForm | None = None, preview: dict | None = None, status: int = 200):
    """The page. A plain visit leaves the plan form out and lets htmx load it apart (``?part=plan``):
    its 37 inputs cost more to render than 25 rows. ``?plan=open`` puts it in the page (no script)."""
    user = request.user
    deploy_teams = set(teams_with_role(user, Role.DEPLOYER).values_list("pk", flat=True))
    # The rows never show the stored plan or gates (the largest columns): leave them in the database.
    visible = selectors.deployments_listed(user).defer("plan", "gates", "blue_placements", "status_text")
    page = Paginator(visible, PER_PAGE).get_page(request.GET.get("page"))
    scheduled = list(visible.filter(state=State.SCHEDULED).order_by("start_at", "id")[:SCHEDULED_SHOWN])
    if form is None and deploy_teams and request.GET.get("plan") == "open":
        form = plan_form(user)
    now = timezone.now()
    context = {
        "page": page, "rows": [(d, _row_progress(d, now)) for d in page],
        "scheduled": [(d, d.team_id in deploy_teams) for d in scheduled],
        "form": form, "preview": preview, "now": now, "plan_apart": form is None and bool(deploy_teams),
    }
    return render(request, "deployments/deployment_list.html", context, status=status)


def _row_progress(d, now) -> Progress:
    """A row's progress, from its own columns (no query), counted as its page counts it."""
    return deployment_progress(state=d.state, steps=d.steps or [], step_index=d.step_index,
                               step_started_at=d.step_started_at, traffic_percent=d.traffic_percent, now=now)


@login_required
@require_GET
def deployment_list(request):
    if request.GET.get("part") == "plan":
        return _plan_part(request)
    return _list_page(request)


def _require_deployer(user) -> None:
    if not teams_with_role(user, Role.DEPLOYER).exists():
        raise PermissionDenied("Planning a deployment needs the deployer role in a team.")


def _plan_part(request):
    """The plan form alone, which the page loads apart."""
    _require_deployer(request.user)
    return render(request, "deployments/_plan_form.html", {"form": plan_form(request.user), "preview": None})


def _refused(request, form: DeploymentPlanForm, preview: dict | None = None):
    """The form again with its errors, at the refusal's status: the form's section for htmx,
    else the whole Deployments page."""
    if is_htmx(request):
        return render(request, "deployments/_plan_form.html", {"form": form, "preview": preview},
                      status=form.status_code)
    return _list_page(request, form=form, preview=preview, status=form.status_code)


def _bound_form(request) -> DeploymentPlanForm:
    _require_deployer(request.user)
    fixed = request.POST.get("endpoint", "") if request.POST.get("fixed") == "1" else None
    return plan_form(request.user, request.POST, fixed=fixed)


@login_required
@require_POST
def plan_preview(request):
    """The plan without starting anything: writes nothing."""
    form = _bound_form(request)
    if not form.is_valid():
        return _refused(request, form)
    try:
        resolved = services.deployment_plan(actor=ui_actor(request), data=form.body())
    except REFUSALS as exc:
        form.refuse(exc)
        return _refused(request, form)
    preview = plan_display(resolved)
    if is_htmx(request):
        return render(request, "deployments/_plan_form.html", {"form": form, "preview": preview})
    return _list_page(request, form=form, preview=preview)


@login_required
@require_POST
def plan_start(request):
    """Create the deployment (scheduled with a start time), then go to its page."""
    form = _bound_form(request)
    if not form.is_valid():
        return _refused(request, form)
    actor = ui_actor(request)
    data = form.body()
    try:
        d = services.deployment_create(actor=actor, data=data)
    except REFUSALS as exc:
        form.refuse(exc)
        preview = None
        if isinstance(exc, QuotaExceeded):  # show the plan that does not fit, with its numbers
            try:
                preview = plan_display(services.deployment_plan(actor=actor, data=data))
            except REFUSALS:
                preview = None
        return _refused(request, form, preview)
    where = reverse("deployment-detail", args=[d.pk])
    change = f"v{d.blue_version.version} → v{d.green_version.version}"
    if d.state == State.SCHEDULED:
        messages.success(request, f"Deployment {d.pk} scheduled: {d.endpoint.public_name} {change}, "
                                  f"starting {d.start_at:%Y-%m-%d %H:%M} UTC.")
    else:
        messages.success(request, f"Deployment {d.pk} started: {d.endpoint.public_name} {change}.")
    if is_htmx(request):
        response = HttpResponse(status=200)
        response["HX-Redirect"] = where
        return response
    return redirect(where)


urlpatterns = [
    path("deployments/", deployment_list, name="deployments"),
    path("deployments/plan/preview/", plan_preview, name="deployment-plan-preview"),
    path("deployments/plan/", plan_start, name="deployment-plan-start"),
]
