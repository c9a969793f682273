"""Team page: members, tokens and quota. Every action calls a service; errors come back inline."""
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from controlplane.accounts import selectors, services
from controlplane.accounts.forms import MemberAddForm, MemberRoleForm, TokenIssueForm
from controlplane.accounts.models import Role
from controlplane.common.ui import REFUSALS, flash_refusal, ui_actor
from controlplane.quotas.ui import quota_bars


class LoginView(auth_views.LoginView):
    """Django's login. The authentication backend counts failures (accounts/backends.py); this page
    answers 429 when it refused to try."""

    def form_invalid(self, form):
        if getattr(self.request, "signin_throttled", False):
            return self.render_to_response(self.get_context_data(form=form, throttled=True), status=429)
        return super().form_invalid(form)


def _team_page(request, *, new_token=None, status=200):
    teams = list(selectors.visible_teams(request.user).order_by("slug"))
    bars = quota_bars(teams)
    sections = [
        {
            "team": team,
            "quota_bar": bars[team.pk],
            "members": selectors.team_members(team),
            "is_admin": selectors.has_role(request.user, team, Role.ADMIN),
            "tokens": selectors.tokens_manageable(request.user).filter(team=team),
            "history": selectors.team_history(team)[:10],
        }
        for team in teams
    ]
    personal = selectors.tokens_manageable(request.user).filter(user=request.user, team__isnull=True)
    context = {
        "sections": sections,
        "personal_tokens": personal,
        "roles": Role.choices,
        "token_form": TokenIssueForm(),
        "new_token": new_token,
        "now": timezone.now(),
    }
    return render(request, "accounts/team.html", context, status=status)


@login_required
def team(request):
    return _team_page(request)


def _valid(form) -> dict:
    if not form.is_valid():
        raise ValidationError({name: [e["message"] for e in errors] for name, errors in form.errors.get_json_data().items()})
    return form.cleaned_data


@login_required
@require_POST
def member_add(request, slug):
    team = get_object_or_404(selectors.visible_teams(request.user), slug=slug)
    try:
        data = _valid(MemberAddForm(request.POST))
        user = selectors.user_by_username(data["username"])
        services.membership_set(actor=ui_actor(request), team=team, user=user, role=data["role"])
        messages.success(request, f"{user.username} is now {data['role']} in {team.slug}.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect("team")


@login_required
@require_POST
def member_role(request, slug, username):
    team = get_object_or_404(selectors.visible_teams(request.user), slug=slug)
    membership = get_object_or_404(selectors.team_members(team), user__username=username)
    try:
        role = _valid(MemberRoleForm(request.POST))["role"]
        services.membership_set(actor=ui_actor(request), team=team, user=membership.user, role=role)
        messages.success(request, f"{username} is now {role} in {team.slug}.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect("team")


@login_required
@require_POST
def member_remove(request, slug, username):
    team = get_object_or_404(selectors.visible_teams(request.user), slug=slug)
    membership = get_object_or_404(selectors.team_members(team), user__username=username)
    try:
        services.membership_remove(actor=ui_actor(request), team=team, user=membership.user)
        messages.success(request, f"{username} was removed from {team.slug}.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect("team")


@login_required
@require_POST
def token_issue(request):
    """On success the page is rendered directly, so the secret is shown once and stored nowhere."""
    try:
        data = _valid(TokenIssueForm(request.POST))
        team = get_object_or_404(selectors.visible_teams(request.user), slug=data["team"]) if data["team"] else None
        token, secret = services.token_create(
            actor=ui_actor(request),
            user=None if team else request.user,
            team=team,
            name=data["name"],
            scopes=data["scopes"],
            expires_at=timezone.now() + timedelta(days=data["expires_in_days"]),
        )
    except REFUSALS as exc:
        flash_refusal(request, exc)
        return redirect("team")
    return _team_page(request, new_token={"token": token, "secret": secret}, status=201)


@login_required
@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(selectors.tokens_manageable(request.user), pk=pk)
    try:
        services.token_revoke(actor=ui_actor(request), token=token)
        messages.success(request, f"Token {token.prefix} ({token.name}) is revoked.")
    except REFUSALS as exc:
        flash_refusal(request, exc)
    return redirect("team")
