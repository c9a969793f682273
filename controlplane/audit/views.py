from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from controlplane.accounts.selectors import is_platform_admin
from controlplane.audit import selectors, services
from controlplane.audit.filters import AuditEventFilterSet
from controlplane.audit.forms import VerifyFullForm
from controlplane.common.forms import failure_status, flash_form_errors, submit
from controlplane.common.ui import ui_actor

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
    """The chain badge, loaded by the Audit page after it renders. It runs the quick check, from
    the newest checkpoint on, so its cost does not grow with the log."""
    return render(request, "audit/_chain_badge.html", {
        "report": selectors.audit_chain_verify_tail(),
        "can_verify_full": is_platform_admin(request.user),
    })


@login_required
@require_POST
def audit_verify_full(request):
    form = VerifyFullForm(request.POST)
    _, ok = submit(form, lambda data: services.audit_verify_full_request(actor=ui_actor(request), reason=data["reason"]))
    if not ok:  # the Audit page again, with the refusal and the API's status
        flash_form_errors(request, form)
        response = audit_log(request)
        response.status_code = failure_status(form)
        return response
    messages.success(request, "A full verification of the audit chain is queued; its outcome shows in the badge "
                              "and as an audit.verify_full event.")
    return redirect("audit")
