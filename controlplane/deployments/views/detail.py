"""A deployment's own page: its live part (state, progress, actions, history, gates, green's
servers) refreshed by htmx every second, its charts (loaded apart, from the series API), and the
actions people take, through a form that feeds the same service as the API."""
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from controlplane.accounts.models import Role
from controlplane.accounts.selectors import has_role
from controlplane.common.forms import failure_status, submit
from controlplane.common.ui import is_htmx, ui_actor
from controlplane.deployments import selectors, services
from controlplane.deployments.machine import State, actions_allowed, describe
from controlplane.deployments.models import Deployment
from controlplane.deployments.progress import (
    deployment_progress,
    duration_text,
    format_value,
    gate_board,
)

LIVE_ID = "deployment-live"  # the element the live part replaces, and the target of the action forms
LABELS = {
    "promote": "Promote", "approve": "Approve", "resume": "Resume", "rollback": "Roll back", "abort": "Abort",
    "retry": "Retry", "cancel": "Cancel",
}
DANGER = {"rollback", "abort", "cancel"}


class DeploymentActForm(forms.Form):
    reason = forms.CharField(
        max_length=2000, widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Give a reason: it goes into the history and the audit log."})


@dataclass
class Action:
    name: str  # the service's action: promote, rollback, ...
    label: str  # the button's text
    explain: str  # what Confirm does, in words
    danger: bool
    form: DeploymentActForm
    allowed: bool = True  # False: shown only to say why it was refused (the state moved on)
    failed: bool = False  # the dialog comes back open with the refusal

    @property
    def dialog_id(self) -> str:
        return f"act-{self.name}"


def _explain(d: Deployment, action: str) -> str:
    blue, green = f"v{d.blue_version.version}", f"v{d.green_version.version}"
    if action == "rollback" and d.state == State.SUCCEEDED:
        return f"Fast rollback: the label moves back to blue {blue}, still loaded, and traffic returns to it at once."
    return {
        "promote": f"Skip the remaining steps: 100% of traffic to green {green} and the label moves now.",
        "approve": f"Approve the promotion: 100% of traffic to green {green} and the label moves.",
        "resume": "Evaluate the gates again (a pause means too little traffic or no value).",
        "rollback": f"All traffic returns to blue {blue} at once, then green {green} is unloaded.",
        "abort": f"Stop the rollout: traffic returns to blue {blue}, green is unloaded, and it ends aborted.",
        "retry": "Try the rollback again." if d.state == State.ROLLBACK_FAILED else
                 "Start again from the beginning: validate, load green and walk the steps.",
        "cancel": "It will not start; nothing was loaded yet.",
    }[action]


def _label(d: Deployment, action: str) -> str:
    return "Fast rollback" if action == "rollback" and d.state == State.SUCCEEDED else LABELS[action]


def _actions(d: Deployment, can_act: bool, failed: tuple[str, DeploymentActForm] | None) -> list[Action]:
    allowed = actions_allowed(d.state) if can_act else []
    out = [Action(a, _label(d, a), _explain(d, a), a in DANGER, DeploymentActForm(auto_id=f"act-{a}-%s")) for a in allowed]
    if failed is not None:
        name, form = failed
        for action in out:
            if action.name == name:
                action.form, action.failed = form, True
                break
        else:  # refused because the state (or the role) does not allow it: the dialog says why
            out.append(Action(name, LABELS[name], _explain(d, name), name in DANGER, form, allowed=False, failed=True))
    return out


def _live_context(request, d: Deployment, failed=None) -> dict:
    now = timezone.now()
    history, history_total = selectors.deployment_timeline(d)
    evaluations, evaluations_total = selectors.deployment_evaluation_page(d)
    for e in evaluations:
        e.value_text, e.limit_text = format_value(e.gate, e.value), format_value(e.gate, e.limit)
    window_left = None
    if d.state == State.SUCCEEDED and d.succeeded_at:
        window_left = duration_text(d.rollback_window_s - (now - d.succeeded_at).total_seconds())
    progress = deployment_progress(state=d.state, steps=d.steps, step_index=d.step_index,
                                   step_started_at=d.step_started_at, traffic_percent=d.traffic_percent, now=now)
    can_act = has_role(request.user, d.team, Role.DEPLOYER)
    return {
        "d": d, "live_id": LIVE_ID, "state_words": describe(State(d.state)),
        "progress": progress, "window_left": window_left,
        "state_age": duration_text((now - d.state_changed_at).total_seconds()),
        "bake_left": duration_text(progress.bake_left_s), "bake_s": duration_text(progress.bake_s),
        "actions": _actions(d, can_act, failed), "can_act": can_act,
        "history": history, "history_hidden": history_total - len(history),
        "gate_rows": gate_board(d.gates, selectors.deployment_latest_evaluations(d)),
        "evaluations": evaluations, "evaluations_total": evaluations_total,
        "evaluations_hidden": evaluations_total - len(evaluations),
        "green_targets": selectors.deployment_green_targets(d),
    }


@login_required
@require_GET
def deployment_detail(request, pk):
    d = selectors.deployment_get(request.user, pk)
    return render(request, "deployments/deployment_detail.html", _live_context(request, d))


@login_required
@require_GET
def deployment_live(request, pk):
    """htmx fragment: the live part of the page, polled every second."""
    d = selectors.deployment_get(request.user, pk)
    return render(request, "deployments/_live.html", _live_context(request, d))


@login_required
@require_POST
def deployment_act(request, pk, action):
    """Promote, roll back, abort, approve, resume, retry or cancel, with a reason. htmx gets the
    refreshed live part (and the banner, which may have to go); a plain form post is redirected
    back to the page. A refusal comes back in the action's dialog, with the API's status."""
    d = selectors.deployment_get(request.user, pk)
    if action not in services.PERSON_EVENTS:
        raise Http404("No such action.")
    label = _label(d, action)
    form = DeploymentActForm(request.POST, auto_id=f"act-{action}-%s")
    moved, ok = submit(form, lambda data: services.deployment_act(
        actor=ui_actor(request), deployment=d, action=action, reason=data["reason"]))
    d = moved if ok else d  # a refused action read the row again (or never got past the form)
    status = 200 if ok else failure_status(form)
    if is_htmx(request) and request.headers.get("HX-Target") != LIVE_ID:
        # Another page's button (a list's Cancel, say): go to the deployment, or say why not there.
        if ok:
            response = HttpResponse(status=204)
            response["HX-Redirect"] = d.get_absolute_url()
            return response
        return render(request, "deployments/_live_act_refused.html", {"form": form, "label": label}, status=status)
    context = _live_context(request, d, failed=None if ok else (action, form))
    if is_htmx(request):
        return render(request, "deployments/_live_act.html", context, status=status)
    if ok:
        messages.success(request, f"{label}: deployment {d.pk} is now {d.state.replace('_', ' ')}.")
        return redirect(d.get_absolute_url())
    return render(request, "deployments/deployment_detail.html", context, status=status)


urlpatterns = [
    path("deployments/<int:pk>/", deployment_detail, name="deployment-detail"),
    path("deployments/<int:pk>/live/", deployment_live, name="deployment-live"),
    path("deployments/<int:pk>/act/<str:action>/", deployment_act, name="deployment-act"),
]
