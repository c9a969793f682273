"""Quota pieces for server-rendered pages."""
from collections.abc import Iterable

from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from controlplane.accounts.models import Team
from controlplane.quotas.selectors import quota_usages


def quota_bars(teams: Iterable[Team]) -> dict[int, SafeString]:
    """Each team's rendered quota bar (templates/quotas/_quota_bar.html), keyed by team id.
    Two queries whatever the number of teams."""
    return {pk: render_to_string("quotas/_quota_bar.html", {"usage": usage}) for pk, usage in quota_usages(teams).items()}
