from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from controlplane.accounts.selectors import visible_teams


@login_required
def team(request):
    teams = visible_teams(request.user).prefetch_related("memberships__user")
    return render(request, "accounts/team.html", {"teams": teams})
