from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from controlplane.audit import selectors
from controlplane.audit.filters import AuditEventFilterSet

PAGE_SIZE = 50


@login_required
def audit_log(request):
    visible = selectors.audit_events_visible(request.user)
    filterset = AuditEventFilterSet(request.GET, queryset=visible, request=request)
    # An invalid filter shows its error and no rows, rather than quietly not filtering.
    events = filterset.qs if filterset.is_valid() else visible.none()
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    # The filters in force, for the export links: without the page, or the form's empty fields.
    query = urlencode([(key, value) for key, values in request.GET.lists() if key != "page" for value in values if value])
    return render(
        request,
        "audit/audit_log.html",
        {
            "filter": filterset,
            "page": page,
            "query": query,
            "actions": selectors.audit_actions(visible),
            "object_types": selectors.audit_object_types(visible),
        },
    )


@login_required
def audit_chain(request):
    """The chain badge, loaded by the Audit page after it renders: verification reads every event."""
    return render(request, "audit/_chain_badge.html", {"report": selectors.audit_chain_verify()})
