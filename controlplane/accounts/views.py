"""Team page: members, tokens and quota. Every action is a form that feeds a service; a refusal
re-renders the page with the error next to its field."""
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from controlplane.accounts import selectors, services
from controlplane.accounts.forms import (
    MemberAddForm,
    MemberRemoveForm,
    MemberRoleForm,
    QuotaSetForm,
    TokenIssueForm,
    TokenRevokeForm,
)
from controlplane.accounts.models import Role
from controlplane.common.forms import failure_status, submit
from controlplane.common.ui import ui_actor
from controlplane.quotas import services as quota_services
from controlplane.quotas.models import GpuQuota
from controlplane.quotas.ui import quota_bars


class LoginView(auth_views.LoginView):
    """Django's login. The authentication backend counts failures (accounts/backends.py); this page
    answers 429 when it refused to try."""

    def form_invalid(self, form):
        if getattr(self.request, "signin_throttled", False):
            return self.render_to_response(self.get_context_data(form=form, throttled=True), status=429)
        return super().form_invalid(form)


def _team_page(request, *, failed=None, new_token=None, status=200):
    """The Team page. ``failed`` is (place, bound form) of a refused action, shown where it was
    submitted: ("member-add", slug), ("member", slug, username), ("token", slug or ""),
    ("quota", slug) or ("revoke", pk). A form the page does not show (not an admin) shows its errors at the top."""
    teams = list(selectors.visible_teams(request.user).order_by("slug"))
    bars = quota_bars(teams)
    platform_admin = selectors.is_platform_admin(request.user)
    limits = dict(GpuQuota.objects.filter(team__in=teams).values_list("team_id", "gpus")) if platform_admin else {}
    place, bound = failed or (None, None)
    sections = []
    for team in teams:
        is_admin = selectors.has_role(request.user, team, Role.ADMIN)
        sections.append({
            "team": team,
            "quota_bar": bars[team.pk],
            "members": selectors.team_members(team),
            "is_admin": is_admin,
            "tokens": selectors.tokens_manageable(request.user).filter(team=team),
            "history": selectors.team_history(team)[:10],
            "member_form": bound if place == ("member-add", team.slug) else MemberAddForm(auto_id=f"{team.slug}-member-%s"),
            "failed_member": place[2] if place and place[:2] == ("member", team.slug) else None,
            "failed_member_form": bound,
            "token_form": bound if place == ("token", team.slug) else TokenIssueForm(auto_id=f"{team.slug}-token-%s"),
            "quota_form": (bound if place == ("quota", team.slug) else QuotaSetForm(
                auto_id=f"{team.slug}-quota-%s", initial={"gpus": limits.get(team.pk, 0)})) if platform_admin else None,
        })
    shown = {("member-add", s["team"].slug) for s in sections if s["is_admin"]}
    shown |= {("token", s["team"].slug) for s in sections if s["is_admin"]} | {("token", "")}
    shown |= {("quota", s["team"].slug) for s in sections if s["quota_form"] is not None}
    shown_rows = {s["team"].slug for s in sections if s["is_admin"]}
    placed = place in shown or (place and place[0] == "member" and place[1] in shown_rows)
    personal = selectors.tokens_manageable(request.user).filter(user=request.user, team__isnull=True)
    context = {
        "sections": sections,
        "personal_tokens": personal,
        "personal_token_form": bound if place == ("token", "") else TokenIssueForm(auto_id="personal-token-%s"),
        "failed_revoke": place[1] if place and place[0] == "revoke" else None,
        "failed_revoke_form": bound,
        "unplaced_errors": bound if bound is not None and not placed and place[0] != "revoke" else None,
        "roles": Role.choices,
        "new_token": new_token,
        "now": timezone.now(),
    }
    return render(request, "accounts/team.html", context, status=status)


@login_required
def team(request):
    return _team_page(request)


def _done(request, message: str):
    messages.success(request, message)
    return redirect("team")


def _refused(request, place, form):
    return _team_page(request, failed=(place, form), status=failure_status(form))


@login_required
@require_POST
def member_add(request, slug):
    team = get_object_or_404(selectors.visible_teams(request.user), slug=slug)
    form = MemberAddForm(request.POST, auto_id=f"{slug}-member-%s")
    membership, ok = submit(form, lambda data: services.membership_set(
        actor=ui_actor(request), team=team, user=selectors.user_by_username(data["username"]), role=data["role"]))
    if not ok:
        return _refused(request, ("member-add", slug), form)
    return _done(request, f"{membership.user.username} is now {membership.role} in {team.slug}.")


@login_required
@require_POST
def member_role(request, slug, username):
    team = get_object_or_404(selectors.visible_teams(request.user), slug=slug)
    membership = get_object_or_404(selectors.team_members(team), user__username=username)
    form = MemberRoleForm(request.POST)
    changed, ok = submit(form, lambda data: services.membership_set(
        actor=ui_actor(request), team=team, user=membership.user, role=data["role"]))
    if not ok:
        return _refused(request, ("member", slug, username), form)
    return _done(request, f"{username} is now {changed.role} in {team.slug}.")


@login_required
@require_POST
def member_remove(request, slug, username):
    team = get_object_or_404(selectors.visible_teams(request.user), slug=slug)
    membership = get_object_or_404(selectors.team_members(team), user__username=username)
    form = MemberRemoveForm(request.POST)
    _, ok = submit(form, lambda data: services.membership_remove(actor=ui_actor(request), team=team, user=membership.user))
    if not ok:
        return _refused(request, ("member", slug, username), form)
    return _done(request, f"{username} was removed from {team.slug}.")


@login_required
@require_POST
def quota_set(request, slug):
    team = get_object_or_404(selectors.visible_teams(request.user), slug=slug)
    form = QuotaSetForm(request.POST, auto_id=f"{slug}-quota-%s")
    quota, ok = submit(form, lambda data: quota_services.quota_set(
        actor=ui_actor(request), team=team, gpus=data["gpus"], reason=data["reason"]))
    if not ok:
        return _refused(request, ("quota", slug), form)
    return _done(request, f"{team.slug}'s GPU quota is now {quota.gpus}.")


def _token_issue(request, data):
    # A team named in the form is resolved as in the API: unknown and foreign teams are a field error.
    team = selectors.team_for_write(request.user, data["team"]) if data["team"] else None
    return services.token_create(
        actor=ui_actor(request),
        user=None if team else request.user,
        team=team,
        name=data["name"],
        scopes=data["scopes"],
        expires_at=timezone.now() + timedelta(days=data["expires_in_days"]),
    )


@login_required
@require_POST
def token_issue(request):
    """On success the page is rendered directly, so the secret is shown once and stored nowhere."""
    slug = request.POST.get("team", "")
    form = TokenIssueForm(request.POST, auto_id=f"{slug}-token-%s" if slug else "personal-token-%s")
    issued, ok = submit(form, lambda data: _token_issue(request, data))
    if not ok:
        return _refused(request, ("token", slug), form)
    token, secret = issued
    return _team_page(request, new_token={"token": token, "secret": secret}, status=201)


@login_required
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(selectors.tokens_manageable(request.user), pk=pk)
    form = TokenRevokeForm(request.POST)
    _, ok = submit(form, lambda data: services.token_revoke(actor=ui_actor(request), token=token))
    if not ok:
        return _refused(request, ("revoke", token.pk), form)
    return _done(request, f"Token {token.prefix} ({token.name}) is revoked.")
