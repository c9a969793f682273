"""Shared pieces of the server-rendered UI's form actions."""
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError

from controlplane.audit.context import Actor
from controlplane.audit.models import Source
from controlplane.common.errors import ServiceError

# What a service raises when it refuses an action; a form action turns these into a message.
REFUSALS = (ValidationError, PermissionDenied, ServiceError)


def is_htmx(request) -> bool:
    """True for a request htmx made (it sends ``HX-Request: true``): answer with a fragment."""
    return request.headers.get("HX-Request") == "true"


def ui_actor(request) -> Actor:
    return Actor.from_request(request, source=Source.UI)


def refusal_text(exc: Exception) -> str:
    """Why an action was refused, naming the field where there is one."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        return "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
    if isinstance(exc, ServiceError):
        return f"{exc.field}: {exc.message}"
    return " ".join(getattr(exc, "messages", [])) or str(exc) or "You may not do that."


def flash_refusal(request, exc: Exception) -> None:
    messages.error(request, refusal_text(exc))
