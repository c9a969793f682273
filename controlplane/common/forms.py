"""UI form actions: a Django Form checks the shape of the input, the service enforces every rule
(the same service the API calls), and a refusal comes back onto the form, next to its field."""
from django import forms
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.utils import flatatt
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from controlplane.common.errors import ServiceError
from controlplane.common.ui import REFUSALS


def add_refusal(form, exc: Exception) -> None:
    """Attach a service's refusal to ``form``: errors keyed by one of its fields go next to that
    field; the rest become the form's non-field errors, still naming their field."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        pairs = [(name, message) for name, messages in exc.message_dict.items() for message in messages]
    elif isinstance(exc, ServiceError):
        pairs = [(exc.field, exc.message)]
    elif isinstance(exc, PermissionDenied):
        pairs = [(None, str(exc) or "You may not do that.")]
    else:
        pairs = [(None, message) for message in getattr(exc, "messages", [str(exc)])]
    for name, message in pairs:
        if name in form.fields:
            form.add_error(name, message)
        else:  # "state" is the object's, not an input: its message says it all
            form.add_error(None, f"{name}: {message}" if name and name not in ("__all__", "body", "state") else message)


def submit(form, action):
    """Validate ``form``, then call ``action(form.cleaned_data)``. Returns ``(result, True)``, or
    ``(None, False)`` with the form's own errors or the service's refusal attached to the form."""
    if not form.is_valid():
        return None, False
    try:
        return action(form.cleaned_data), True
    except REFUSALS as exc:
        add_refusal(form, exc)
        form.status_code = refusal_status(exc)
        return None, False


def refusal_status(exc: Exception) -> int:
    """The HTTP status the API gives the same refusal, so a refused UI action answers alike."""
    if isinstance(exc, PermissionDenied):
        return 403
    return getattr(exc, "status_code", 400)


def failure_status(form) -> int:
    """400 for input the form itself rejects; the service's status for a refusal."""
    return getattr(form, "status_code", 400)


def flash_form_errors(request, form) -> None:
    """For a form with no visible fields (a lone button): its errors become page messages."""
    from django.contrib import messages

    for name, errors in form.errors.items():
        for error in errors:
            messages.error(request, error if name == "__all__" else f"{name}: {error}")


class PlainSelect(forms.Select):
    """A single <select> rendered in Python rather than through one widget template per option: the
    plan form's select of 500 endpoints took 36 ms to render that way, a third of its page."""

    def render(self, name, value, attrs=None, renderer=None):
        chosen = "" if value is None else str(value[0] if isinstance(value, (list, tuple)) and value else value)
        options = format_html_join("", "<option value=\"{}\"{}>{}</option>", (
            (str(v), mark_safe(" selected") if str(v) == chosen else "", label) for v, label in self.choices))
        return format_html("<select name=\"{}\"{}>{}</select>", name, flatatt(self.build_attrs(self.attrs, attrs)), options)
