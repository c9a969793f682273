"""Shared pieces of the server-rendered UI's form actions."""
from django.core.exceptions import PermissionDenied, ValidationError

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.common.errors import ServiceError

# What a service raises when it refuses an action; common.forms.submit puts it on the form.
REFUSALS = (ValidationError, PermissionDenied, ServiceError)


def is_htmx(request) -> bool:
    """True for a request htmx made (it sends ``HX-Request: true``): answer with a fragment."""
    return request.headers.get("HX-Request") == "true"


def ui_actor(request) -> Actor:
    return Actor.from_request(request, source=Source.UI)

